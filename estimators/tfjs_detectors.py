"""Person detectors from the TF.js graph models of the npm package (CenterNet and NanoDet).

Both have the interface of :meth:`posetracker.estimators.runtimes.darknet.DarknetYolo.detect` -- a batch of RGB images
in, one ``(m, 5)`` array per image out (x1, y1, x2, y2 in the image's pixels, score; best first)
-- so the estimator can use either in place of a Darknet YOLO. They share Darknet's letterbox
(:func:`posetracker.estimators.boxes.darknet_input`) and the detectors' threshold / back-mapping /
NMS step (:func:`posetracker.estimators.boxes.select_detections`, :func:`~posetracker.estimators.boxes.batched_nms`).

Each graph's own batch-1 post-processing is skipped: the heads are fetched for the whole batch
with :meth:`posetracker.estimators.runtimes.tfjs.TfjsGraph.run` and decoded here in torch.

**CenterNet** (MobileNetV3 backbone, github.com/610265158/mobilenetv3_centernet): input
``(N, 512, 512, 3)`` float RGB in 0..255, unscaled, as the npm package's own user
(@vladmandic/human) feeds it; the input size is fixed by the graph's upsampling layers. Heads
on a stride-4 grid (128x128):
``tower_0/keypoints`` = sigmoid class heatmaps ``(N, 128, 128, 80)`` and ``tower_0/wh`` =
distances ``(N, 128, 128, 4)`` from the cell to the left, top, right and bottom box sides in input
pixels. Decoded as the graph's own ``tower_0/detections``: a cell is a peak when it equals the
3x3 max of its neighbourhood; the box is ``(4 x - l, 4 y - t, 4 x + r, 4 y + b)``; only the
requested class's channel is decoded.

**NanoDet** (github.com/RangiLyu/nanodet, the GFL head with strides 8, 16, 32): input
``(N, 3, 416, 416)`` float **BGR**, normalised as NanoDet's training config does:
``(v - mean) / std`` with mean (103.53, 116.28, 123.675) and std (57.375, 57.12, 58.395) on 0..255
values (not the RGB / 255 that the npm package's own user feeds; ``docs/models.md`` has the
box AP of each). Per level a sigmoid class map ``(N, 80, h, w)`` and a box-distribution map
``(N, 44, h, w)``: for each side (left, top, right, bottom) 11 logits over the distances 0..10
(in strides); the distance is the softmax's expectation (GFL's "integral") times the stride,
measured from the cell centre ``((x + 0.5) s, (y + 0.5) s)``.

Typical use::

    det = load_tfjs_detector("centernet.json")
    boxes = det.detect([rgb_image], conf=0.1, nms=0.5)   # [(m, 5) xyxy + score]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posetracker.core.errors import ModelError
from posetracker.estimators.boxes import GraphDetector, as_image_list, darknet_batch, select_detections
from posetracker.estimators.runtimes.tfjs import TfjsGraph, load_tfjs_graph, read_tfjs_topology

PERSON = 0  # COCO-80 class index of "person" in both models


class _TfjsDetector(GraphDetector):
    """What both detectors share: the graph, the fixed input size (the graph's resize layers
    have constant sizes), letterbox and postprocess."""

    def _heads(self, x: torch.Tensor, class_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, 3, h, w) RGB float in 0..1 -> boxes (N, B, 4) xyxy in input pixels and scores
        (N, B, C) of every class, or (N, B, 1) of ``class_id`` alone."""
        raise NotImplementedError

    @torch.inference_mode()
    def detect(self, images, conf: float = 0.25, nms: float = 0.45, class_id: int | None = PERSON,
               letterbox: bool = True, max_detections: int = 300) -> list[np.ndarray]:
        """Detect objects of one class (default person) on a batch of images.

        Parameters are those of :meth:`posetracker.estimators.runtimes.darknet.DarknetYolo.detect`: ``images`` a list
        of (H, W, 3) uint8 RGB arrays (sizes may differ) or an (N, H, W, 3) array; ``conf`` the
        minimum score; ``nms`` the IoU above which a lower-scored box is suppressed; ``class_id``
        the COCO-80 class kept (``None``: all, NMS per class); ``letterbox`` keep the aspect ratio
        (grey borders) or stretch; ``max_detections`` per image.

        Returns one (m, 5) float64 array per image (x1, y1, x2, y2 in image pixels, score; with
        ``class_id=None`` a sixth column holds the class), by decreasing score.
        """
        images = as_image_list(images)
        if not images:
            return []
        x, transforms = darknet_batch(images, self.input_size, letterbox, self.device)
        boxes, scores = self._heads(x, class_id)
        if scores.shape[2] == 0:
            raise ValueError(f"class_id {class_id} is not one of the model's classes")
        return select_detections(boxes, scores, transforms, [im.shape[:2] for im in images],
                                 conf, nms, None if class_id is None else 0, max_detections)


class CenterNetDetector(_TfjsDetector):
    """CenterNet (MobileNetV3) from its TF.js graph; see the module docstring for the decoding.

    Args:
        graph: The compiled ``centernet.json`` graph.
        max_peaks: Peaks taken per image and class before thresholding (the graph's own
            post-processing takes 100 over all classes).
    """

    INPUT = "tower_0/images"
    HEATMAP = "tower_0/keypoints"   # (N, 128, 128, C) sigmoid class scores
    SIZES = "tower_0/wh"            # (N, 128, 128, 4) left, top, right, bottom distances, pixels
    STRIDE = 4

    def __init__(self, graph: TfjsGraph, *, max_peaks: int = 100):
        shape = graph.input_shapes.get(self.INPUT)
        if shape is None or len(shape) != 4:
            raise ModelError(f"not a CenterNet graph: no 4-d input '{self.INPUT}'")
        super().__init__(graph, (int(shape[1]), int(shape[2])))
        self.max_peaks = max_peaks

    def _heads(self, x: torch.Tensor, class_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        # Unscaled RGB, NHWC: the layout and range the graph was exported for.
        out = self.graph.run({self.INPUT: x.permute(0, 2, 3, 1) * 255.0}, [self.HEATMAP, self.SIZES])
        heat = out[self.HEATMAP].permute(0, 3, 1, 2).float()          # (N, C, h, w)
        if class_id is not None:
            heat = heat[:, class_id:class_id + 1]
        sides = out[self.SIZES].float()                               # (N, h, w, 4)
        n, c, h, w = heat.shape
        # 1. Peaks: cells equal to the max of their 3x3 neighbourhood (CenterNet's NMS).
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
        # 2. The best max_peaks cells per class.
        k = min(self.max_peaks, h * w)
        scores, cells = peaks.reshape(n, c, h * w).topk(k, dim=2)     # (N, C, k)
        # 3. Boxes from the cell position and the four side distances.
        d = torch.gather(sides.reshape(n, 1, h * w, 4).expand(n, c, h * w, 4), 2,
                         cells[..., None].expand(n, c, k, 4))        # (N, C, k, 4)
        cx = (cells % w).to(d.dtype) * self.STRIDE
        cy = torch.div(cells, w, rounding_mode="floor").to(d.dtype) * self.STRIDE
        boxes = torch.stack((cx - d[..., 0], cy - d[..., 1], cx + d[..., 2], cy + d[..., 3]), -1)
        # As (N, C*k, 4) boxes with one-hot scores (N, C*k, C) for the shared postprocess.
        boxes = boxes.reshape(n, c * k, 4)
        one_hot = torch.zeros(n, c, k, c, dtype=scores.dtype, device=scores.device)
        one_hot.scatter_(3, torch.arange(c, device=scores.device).view(1, c, 1, 1).expand(n, c, k, 1),
                         scores[..., None])
        return boxes, one_hot.reshape(n, c * k, c)


class NanoDetDetector(_TfjsDetector):
    """NanoDet (GFL head, strides 8/16/32) from its TF.js graph; see the module docstring.

    Args:
        graph: The compiled ``nanodet.json`` graph.
    """

    REG_MAX = 10  # distances 0..REG_MAX strides, 11 bins per side
    MEAN_BGR = (103.53, 116.28, 123.675)
    STD_BGR = (57.375, 57.12, 58.395)

    def __init__(self, graph: TfjsGraph, topology: dict[str, Any]):
        if len(graph.input_shapes) != 1:
            raise ModelError("not a NanoDet graph: expected one input")
        (name, shape), = graph.input_shapes.items()
        if shape is None or len(shape) != 4 or shape[1] != 3:
            raise ModelError("not a NanoDet graph: expected one (N, 3, h, w) input")
        super().__init__(graph, (int(shape[2]), int(shape[3])))
        self.input_name = name
        self.levels = self._find_levels(graph, topology)

    @staticmethod
    def _find_levels(graph: TfjsGraph, topology: dict[str, Any]) -> list[tuple[int, str, str]]:
        """(stride, class-map node, distribution-map node) per level, finest first.

        The graph's outputs reshape each head to (1, h*w, channels), which fixes the batch to 1;
        the maps before that reshape are per image, so those are fetched instead.
        """
        nodes = {n["name"]: (n["op"], (n.get("input") or [""])[0]) for n in topology["node"]}
        x = torch.zeros(1, 3, *graph.input_shapes[graph.input_names[0]][2:])
        maps = {}
        for out in graph.output_names:
            src = out
            for op in ("Identity", "Transpose", "Reshape"):
                node = nodes.get(src)
                if node is None or node[0] != op:
                    raise ModelError(f"not a NanoDet graph: output {out} is not "
                                     "Identity(Transpose(Reshape(map)))")
                src = node[1]
            maps[out] = src
        with torch.inference_mode():
            got = graph.run({graph.input_names[0]: x}, list(maps.values()))
        by_size: dict[int, dict[int, str]] = {}
        for name in maps.values():
            _, ch, h, w = got[name].shape
            by_size.setdefault(h, {})[ch] = name
        levels = []
        for h, chans in sorted(by_size.items(), reverse=True):
            cls = [n for c, n in chans.items() if c != 4 * (NanoDetDetector.REG_MAX + 1)]
            reg = chans.get(4 * (NanoDetDetector.REG_MAX + 1))
            if len(cls) != 1 or reg is None:
                raise ModelError(f"not a NanoDet graph: level {h}x{h} lacks a class or box map")
            levels.append((x.shape[2] // h, cls[0], reg))
        return levels

    def _heads(self, x: torch.Tensor, class_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.MEAN_BGR, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.STD_BGR, device=x.device).view(1, 3, 1, 1)
        x = (x.flip(1) * 255.0 - mean) / std  # RGB 0..1 -> normalised BGR
        out = self.graph.run({self.input_name: x}, [n for _, c, r in self.levels for n in (c, r)])
        bins = torch.arange(self.REG_MAX + 1, dtype=torch.float32, device=x.device)
        all_boxes, all_scores = [], []
        for stride, cls_name, reg_name in self.levels:
            cls, reg = out[cls_name].float(), out[reg_name].float()   # (N, C, h, w), (N, 44, h, w)
            n, c, h, w = cls.shape
            # GFL integral: expected distance under the softmax over the bins, in pixels.
            prob = reg.reshape(n, 4, self.REG_MAX + 1, h * w).softmax(dim=2)
            dist = (prob * bins.view(1, 1, -1, 1)).sum(2) * stride       # (N, 4, h*w)
            gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device),
                                    indexing="ij")
            cx = (gx.reshape(-1).float() + 0.5) * stride
            cy = (gy.reshape(-1).float() + 0.5) * stride
            all_boxes.append(torch.stack((cx - dist[:, 0], cy - dist[:, 1],
                                          cx + dist[:, 2], cy + dist[:, 3]), -1))
            if class_id is not None:
                cls, c = cls[:, class_id:class_id + 1], 1
            all_scores.append(cls.reshape(n, c, h * w).transpose(1, 2))
        return torch.cat(all_boxes, 1), torch.cat(all_scores, 1)


def load_tfjs_detector(model_json: str | Path, weights: str | Path | dict[str, Any] | None = None
                       ) -> CenterNetDetector | NanoDetDetector:
    """The detector a TF.js graph implements, recognised by its heads (CenterNet: the
    ``tower_0/keypoints`` and ``tower_0/wh`` tensors; NanoDet: one (N, 3, h, w) input and
    class/box-distribution outputs); :class:`ModelError` for any other graph.

    ``weights`` (a ``.safetensors`` path, e.g. the model cache's, or ``{name: array}``) replaces
    reading the ``.bin`` beside the JSON.
    """
    if isinstance(weights, (str, Path)):
        from safetensors.numpy import load_file

        try:
            weights = load_file(str(weights))
        except Exception as e:  # safetensors' own error types
            raise ModelError(f"cannot read detector weights {weights}: {e}") from None
    graph = load_tfjs_graph(Path(model_json), weights)
    if {CenterNetDetector.HEATMAP, CenterNetDetector.SIZES} <= set(graph.node_names):
        return CenterNetDetector(graph)
    try:
        return NanoDetDetector(graph, read_tfjs_topology(Path(model_json)))
    except ModelError as e:
        raise ModelError(f"{model_json}: a TF.js graph that is neither CenterNet nor NanoDet "
                         f"({e}); no person detector can be made from it") from None


def read_detector(topology: Path, weights: Path | None, *, device: torch.device | str = "cpu",
                  input_size: int | None = None) -> CenterNetDetector | NanoDetDetector:
    """The ``tfjs`` format's detector reader (:func:`load_tfjs_detector`; the graph fixes its
    input size, ``input_size`` does not apply)."""
    return load_tfjs_detector(topology, weights).to(device)
