"""PicoDet person detector (PaddleDetection PicoDet-S-LCNet pedestrian, exported to OpenVINO IR
without NMS), run in torch through :mod:`posetracker.estimators.runtimes.openvino_ir`.

The export takes ``(N, 3, 320, 320)``: the whole image **resized** (not letterboxed) to the input,
RGB / 255 normalised with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). It
returns every anchor point's box ``(N, 2125, 4)`` (x1, y1, x2, y2 in input pixels, decoded inside
the graph) and its person score ``(N, 1, 2125)`` (sigmoid); thresholding, NMS and the map back to
image pixels are done here with the detectors' shared step (:func:`posetracker.estimators.boxes.
select_detections`, :func:`~posetracker.estimators.boxes.batched_nms`), so that every detector has the interface of
:meth:`posetracker.estimators.runtimes.darknet.DarknetYolo.detect`.

Typical use::

    det = load_picodet("picodet-s-320-pedestrian.xml")
    boxes = det.detect([rgb_image], conf=0.3, nms=0.5)   # [(m, 5) xyxy + score]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.boxes import (
    GraphDetector,
    LetterboxTransform,
    as_image_list,
    darknet_batch,
    select_detections,
)
from posetracker.estimators.boxes import letterbox as _letterbox

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class PicoDetDetector(GraphDetector):
    """PicoDet on batches of RGB images.

    Args:
        graph: The IR module (:func:`posetracker.estimators.runtimes.openvino_ir.load_openvino_ir`); outputs
            one ``(N, B, 4)`` box tensor and one ``(N, 1, B)`` score tensor.
    """

    def __init__(self, graph: nn.Module):
        shape = tuple(graph.input_shape)  # the input size is fixed by the export
        super().__init__(graph, (int(shape[2]), int(shape[3])), _MEAN, _STD)
        with torch.inference_mode():
            outs = graph(torch.zeros(1, 3, *self._input_size))
        boxes = [n for n, t in outs.items() if t.dim() == 3 and t.shape[-1] == 4]
        scores = [n for n, t in outs.items() if t.dim() == 3 and t.shape[1] == 1]
        if len(boxes) != 1 or len(scores) != 1:
            raise ModelError("not a PicoDet export without NMS: expected outputs boxes (1, B, 4) "
                             "and scores (1, 1, B); got "
                             + ", ".join(f"{n} {tuple(t.shape)}" for n, t in outs.items()))
        self.boxes_name, self.scores_name = boxes[0], scores[0]

    def preprocess(self, images: list[np.ndarray], letterbox: bool = False
                   ) -> tuple[torch.Tensor, tuple[LetterboxTransform, ...]]:
        """RGB uint8 images -> the network input (N, 3, h, w) float32 (RGB / 255, normalised, on
        the device) and each image's transform back to image pixels.

        Stretched (the default, as trained): each image resized as uint8 by OpenCV (bilinear),
        then the whole batch converted and normalised at once. ``letterbox``: Darknet's centred
        canvas with 0.5 grey borders (:func:`posetracker.estimators.boxes.darknet_batch`).
        """
        if letterbox:
            x, transforms = darknet_batch(images, self.input_size, True, self.device)
        else:
            canvases, transforms = zip(*(_letterbox(im, self.input_size, keep_ratio=False, unit=False)
                                         for im in images))
            x = torch.from_numpy(np.stack(canvases)).to(self.device)   # (N, h, w, 3) uint8
            x = x.permute(0, 3, 1, 2).contiguous().float() / 255.0
        return (x - self.mean) / self.std, transforms

    @torch.inference_mode()
    def detect(self, images, conf: float = 0.3, nms: float = 0.5, class_id: int | None = 0,
               letterbox: bool = False, max_detections: int = 300) -> list[np.ndarray]:
        """People on a batch of images: a list of (H, W, 3) uint8 RGB arrays (sizes may differ)
        -> one (m, 5) float64 array per image (x1, y1, x2, y2 in image pixels, score), best
        first. ``class_id`` must be 0 (person) or ``None``; ``letterbox`` is off by default,
        as the model was trained on stretched images."""
        if class_id not in (0, None):
            raise ValueError(f"class_id {class_id}: PicoDet pedestrian has one class (0)")
        images = as_image_list(images)
        if not images:
            return []
        x, transforms = self.preprocess(images, letterbox)
        out = self.graph(x)
        boxes = out[self.boxes_name].float()
        scores = out[self.scores_name].float().transpose(1, 2)  # (N, B, 1)
        return select_detections(boxes, scores, transforms, [im.shape[:2] for im in images],
                                 conf, nms, 0, max_detections)


def load_picodet(xml: str | Path, weights: str | Path | None = None,
                 backend: str = "torch", threads: int = 0) -> PicoDetDetector:
    """PicoDet from its IR ``.xml`` (weights: the ``.bin`` beside it, or ``weights``), its graph run
    by torch (:func:`posetracker.estimators.runtimes.openvino_ir.load_openvino_ir`) or by
    ``backend`` ``openvino`` (:class:`posetracker.estimators.runtimes.native.NativeGraph`, on
    ``threads`` CPU threads)."""
    if backend == "torch":
        from posetracker.estimators.runtimes.openvino_ir import load_openvino_ir

        return PicoDetDetector(load_openvino_ir(xml, weights))
    from posetracker.estimators.runtimes.native import NativeGraph

    return PicoDetDetector(NativeGraph(backend, Path(xml), None if weights is None else Path(weights),
                                       precision="fp32", threads=threads))


def read_detector(topology: Path, weights: Path | None, *, device: torch.device | str = "cpu",
                  input_size: int | None = None, backend: str = "torch", threads: int = 0
                  ) -> PicoDetDetector:
    """The ``openvino`` format's detector reader (:func:`load_picodet`; the graph fixes its
    input size, ``input_size`` does not apply)."""
    return load_picodet(topology, weights, backend, threads).to(device)
