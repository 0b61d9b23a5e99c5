"""Darknet YOLO models in torch: ``.cfg`` parser, network builder, ``.weights`` reader/writer,
letterbox preprocessing, YOLO box decoding, person filtering and NMS.

Covers the layer types that the Yolo-Fastest 1.1 models and AlphaPose's default detector
(``yolov3-spp.cfg``) use: ``[net]``, ``[convolutional]`` (batch-norm, groups for depthwise convs),
``[maxpool]`` (incl. Darknet's stride-1 padding), ``[route]`` (incl. ``groups``/``group_id``),
``[shortcut]``, ``[upsample]``, ``[dropout]`` (identity at inference) and ``[yolo]``.

The ``.weights`` file is a header -- major, minor, revision (int32 each), then ``seen`` (int64
when ``major * 10 + minor >= 2``, else int32) -- followed by float32 parameters in layer order.
Each convolutional layer stores, with batch-norm: bn bias (beta), bn weight (gamma), running
mean, running variance, then the conv kernel; without batch-norm: conv bias, then the kernel.

Modules: :mod:`.cfg` (the ``.cfg`` text), :mod:`.layers` (the layer modules and the table of
builders by section kind), :mod:`.weights` (``.weights`` files), :mod:`.network`
(:class:`DarknetYolo`, YOLO decoding; letterbox and NMS are
:mod:`posetracker.estimators.boxes`').

Typical use::

    yolo = DarknetYolo.from_files("yolo-fastest-1.1-xl.cfg", "yolo-fastest-1.1-xl.weights")
    boxes = yolo.detect([rgb_image], conf=0.25, nms=0.45)   # [(m, 5) xyxy + score]
"""

from posetracker.estimators.boxes import LetterboxTransform
from posetracker.estimators.runtimes.darknet.cfg import CfgSection, cfg_input_size, parse_cfg, read_cfg
from posetracker.estimators.runtimes.darknet.layers import (
                                                            ConvLayer,
                                                            MaxPoolLayer,
                                                            RouteLayer,
                                                            ShortcutLayer,
                                                            UpsampleLayer,
                                                            YoloLayer,
)
from posetracker.estimators.runtimes.darknet.network import DarknetYolo, decode_yolo, postprocess, preprocess
from posetracker.estimators.runtimes.darknet.weights import load_darknet_weights, write_darknet_weights

__all__ = ["CfgSection", "ConvLayer", "DarknetYolo", "LetterboxTransform", "MaxPoolLayer",
           "RouteLayer", "ShortcutLayer", "UpsampleLayer", "YoloLayer", "cfg_input_size",
           "decode_yolo", "load_darknet_weights", "parse_cfg", "postprocess", "preprocess",
           "read_cfg", "write_darknet_weights"]
