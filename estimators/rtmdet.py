"""RTMDet-nano person detector (OpenMMLab ``rtmdet_nano_8xb32-100e_coco-obj365-person``, the
detector of the RTMPose project), from its mmdeploy "end2end" ONNX export, run in torch through
:mod:`posetracker.estimators.runtimes.onnx_graph`.

The export takes ``input`` (N, 3, H, W) float (320x320 here): the image in **BGR**, resized
keeping its aspect ratio so that it fits (mmcv: new size ``int(side * scale + 0.5)``, bilinear),
placed at the **top-left** of an H x W canvas filled with 114, then normalised with mean
(103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395) (B, G, R order). Inside the graph the
three heads (strides 8, 16, 32: 2100 anchor points at 320x320) are decoded into boxes (x1, y1, x2,
y2 in input pixels) and sigmoid person scores, the best ``min(5000, B)`` are kept by a TopK
("pre_top_k"), and ``NonMaxSuppression`` runs with the thresholds stored in the file (read back
at load, see :attr:`RTMDetDetector.graph_nms`): for the published file **iou_threshold 0.6,
score_threshold 0.05, max_output_boxes_per_class 200**, followed by a TopK that keeps the best
**100** per image ("keep_top_k"; ``dets`` is zero-padded, ``labels`` -1 there).

Here the graph is cut right before ``NonMaxSuppression``: its two inputs, boxes (N, B, 4) and
scores (N, 1, B) sorted by score, are computed in torch, and thresholding, NMS
(:func:`posetracker.estimators.boxes.batched_nms`, one group per image, suppressing IoU > ``nms`` as onnxruntime
does), the map back to image pixels (``/ scale``, per axis) and the clip to the image are done
with the caller's thresholds by the detectors' shared step
(:func:`posetracker.estimators.boxes.select_detections`). With ``conf=0.05, nms=0.6, max_detections=100`` the result is
the file's own ``dets`` mapped back (tested against onnxruntime on COCO images: the same boxes in
the same order, scores within 1e-5, corners within 1e-3 px where the score is >= 0.3 and a few
hundredths of a pixel on the weakest boxes, float32 sums in another order).

Typical use::

    det = load_rtmdet("rtmdet-nano-person.onnx")
    boxes = det.detect([rgb_image], conf=0.3, nms=0.6)   # [(m, 5) xyxy + score]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.boxes import GraphDetector, LetterboxTransform, as_image_list, select_detections
from posetracker.estimators.boxes import letterbox as _letterbox

_MEAN_BGR = (103.53, 116.28, 123.675)
_STD_BGR = (57.375, 57.12, 58.395)
_PAD_VALUE = 114


@dataclass(frozen=True)
class GraphNMS:
    """The NMS settings stored in an mmdeploy export (inputs of its ``NonMaxSuppression``)."""
    iou_threshold: float
    score_threshold: float
    max_output_boxes_per_class: int


def letterbox_top_left(image: np.ndarray, input_size: tuple[int, int], letterbox: bool = True,
                       pad_value: int = _PAD_VALUE) -> tuple[np.ndarray, tuple[float, float]]:
    """An (H, W, 3) uint8 image -> the (h, w, 3) uint8 network canvas and (scale_x, scale_y)
    (input pixels per image pixel).

    ``letterbox``: mmdet's keep-ratio resize (new side ``int(side * scale + 0.5)``) at the
    top-left, the rest ``pad_value``; otherwise the image is stretched to the whole input.
    mmdet maps boxes back with the per-axis ratio of the rounded size.
    """
    canvas, tr = _letterbox(image, input_size, keep_ratio=letterbox, top_left=True,
                            round_half=True, fill=pad_value, unit=False)
    return canvas, (tr.scale_x, tr.scale_y)


def _constant(model: Any, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    return None


def find_nms(model: Any, source: str) -> tuple[str, str, GraphNMS]:
    """The boxes and scores tensor names that feed the graph's ``NonMaxSuppression``, and its
    stored thresholds."""
    nms = [n for n in model.graph.node if n.op_type == "NonMaxSuppression"]
    if len(nms) != 1:
        raise ModelError(f"{source}: not an mmdeploy RTMDet end2end export (expected one "
                         f"NonMaxSuppression node, found {len(nms)})")
    node = nms[0]
    values = [_constant(model, name) if name else None for name in list(node.input)[2:5]]
    values += [None] * (3 - len(values))
    if any(v is None for v in values):
        raise ModelError(f"{source}: NonMaxSuppression node {node.name!r}: thresholds are not "
                         "constants")
    max_out, iou, score = (np.asarray(v).reshape(-1)[0] for v in values)
    return node.input[0], node.input[1], GraphNMS(float(iou), float(score), int(max_out))


class RTMDetDetector(GraphDetector):
    """RTMDet on batches of RGB images.

    Args:
        graph: The export's graph cut before NMS (:func:`estimators.runtimes.onnx_graph.
            load_onnx_graph` with ``outputs=[boxes_name, scores_name]``).
        boxes_name, scores_name: Its outputs: boxes (N, B, 4) xyxy in input pixels and scores
            (N, 1, B).
        graph_nms: The NMS settings stored in the file (for reference; ``detect`` takes its own).
        input_size: (height, width) the images are letterboxed to; the export's spatial dims are
            symbolic (the setting: :attr:`posetracker.estimators.config.DetectorConfig.input_size`).
    """

    def __init__(self, graph: nn.Module, boxes_name: str, scores_name: str, graph_nms: GraphNMS,
                 input_size: tuple[int, int]):
        super().__init__(graph, input_size, _MEAN_BGR, _STD_BGR)
        self.boxes_name, self.scores_name = boxes_name, scores_name
        self.graph_nms = graph_nms

    def preprocess(self, images: list[np.ndarray], letterbox: bool = True
                   ) -> tuple[torch.Tensor, list[tuple[float, float]]]:
        """RGB uint8 images -> the network input (N, 3, h, w) (BGR, normalised, on the device,
        in the graph's float type) and each image's (scale_x, scale_y)."""
        canvases, scales = zip(*(letterbox_top_left(im, self.input_size, letterbox)
                                 for im in images))
        dtype = self.mean.dtype
        if self.device.type == "cpu" and dtype == torch.float32:
            # NumPy on the calling thread: the same float32 values bit for bit, a tenth of the
            # time of torch's ops here, whose intra-op threads stall when the other cores are busy
            bgr = np.stack(canvases)[..., ::-1].transpose(0, 3, 1, 2)   # (N, 3, h, w) uint8
            x = np.ascontiguousarray(bgr, dtype=np.float32)
            x -= self.mean.numpy()
            x /= self.std.numpy()
            return torch.from_numpy(x), list(scales)
        x = torch.from_numpy(np.stack(canvases)).to(self.device)   # (N, h, w, 3) uint8 RGB
        x = x.permute(0, 3, 1, 2).flip(1)                           # BGR, (N, 3, h, w)
        return (x.to(dtype) - self.mean) / self.std, list(scales)

    @torch.inference_mode()
    def detect(self, images, conf: float = 0.3, nms: float = 0.6, class_id: int | None = 0,
               letterbox: bool = True, max_detections: int = 100) -> list[np.ndarray]:
        """People on a batch of images: a list of (H, W, 3) uint8 RGB arrays (sizes may differ,
        one forward call for all) -> one (m, 5) float64 array per image (x1, y1, x2, y2 in image
        pixels, clipped to the image; score), best first.

        ``conf``: minimum score kept (the file's own: 0.05); ``nms``: IoU above which a
        lower-scored box is suppressed (the file's own: 0.6); ``max_detections``: per image
        (the file's own: 100). ``class_id`` must be 0 (person) or ``None`` (the same: one class).
        ``letterbox``: top-left letterbox as the model was trained (default); else stretch.
        """
        if class_id not in (0, None):
            raise ValueError(f"class_id {class_id}: RTMDet person has one class (0)")
        images = as_image_list(images)
        if not images:
            return []
        x, scales = self.preprocess(images, letterbox)
        out = self.graph(x)
        boxes = out[self.boxes_name].float()         # (N, B, 4) input pixels
        scores = out[self.scores_name].float()       # (N, 1, B)
        if boxes.dim() != 3 or scores.dim() != 3 or scores.shape[1] != 1 \
                or boxes.shape[:2] != (scores.shape[0], scores.shape[2]):
            raise ModelError(f"RTMDet graph outputs boxes {tuple(boxes.shape)} and scores "
                             f"{tuple(scores.shape)}; expected (N, B, 4) and (N, 1, B)")
        # NMS in input pixels, before any clipping: the graph's own NonMaxSuppression sees these.
        return select_detections(boxes, scores.transpose(1, 2),
                                 [LetterboxTransform(sx, sy, 0.0, 0.0) for sx, sy in scales],
                                 [im.shape[:2] for im in images], conf, nms, 0, max_detections,
                                 nms_in_input_pixels=True)


def load_rtmdet(path: str | Path, input_size: tuple[int, int] = (320, 320),
                backend: str = "torch", threads: int = 0) -> RTMDetDetector:
    """RTMDet from its mmdeploy end2end ``.onnx`` (NMS in the graph; cut off and done here).

    ``backend``: ``torch`` (:class:`posetracker.estimators.runtimes.onnx_graph.OnnxGraph`) or a
    native runtime (``onnxruntime``, ``openvino``) running the same cut graph
    (:class:`posetracker.estimators.runtimes.native.NativeGraph`, on ``threads`` CPU threads)."""
    from posetracker.estimators.runtimes.onnx_graph import OnnxGraph, read_onnx

    model = read_onnx(path)
    boxes, scores, graph_nms = find_nms(model, str(path))
    if backend == "torch":
        graph = OnnxGraph(model, outputs=[boxes, scores], source=str(path))
    else:
        from onnx.utils import Extractor

        from posetracker.estimators.runtimes.native import NativeGraph

        inputs = [i.name for i in model.graph.input
                  if i.name not in {t.name for t in model.graph.initializer}]
        cut = Extractor(model).extract_model(inputs, [boxes, scores])
        graph = NativeGraph(backend, cut.SerializeToString(), precision="fp32", threads=threads,
                            source=str(path))
    return RTMDetDetector(graph, boxes, scores, graph_nms, input_size)


def read_detector(topology: Path, weights: Path | None, *, device: torch.device | str = "cpu",
                  input_size: int | None = None, backend: str = "torch", threads: int = 0
                  ) -> RTMDetDetector:
    """The ``onnx`` format's detector reader: RTMDet (:func:`load_rtmdet`) letterboxed to
    ``input_size`` squared (any multiple of 32; ``None``: 320, its training size)."""
    size = (input_size, input_size) if input_size else (320, 320)
    return load_rtmdet(topology, input_size=size, backend=backend, threads=threads).to(device)
