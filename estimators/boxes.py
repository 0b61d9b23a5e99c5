"""The box steps every detector shares: fitting images into the network input (letterbox or
stretch), and turning scored boxes into per-image detections (threshold, map back to image
pixels, clip, NMS, best first).

Used by :mod:`posetracker.estimators.runtimes.darknet` (YOLO), :mod:`posetracker.estimators.picodet`,
:mod:`posetracker.estimators.rtmdet` and :mod:`posetracker.estimators.tfjs_detectors`, so that every
detector has the interface of :meth:`posetracker.estimators.runtimes.darknet.DarknetYolo.detect`:
a batch of RGB images in, one ``(m, 5)`` array per image out (x1, y1, x2, y2 in image pixels,
score; best first).

Two letterbox conventions are in use, each the one its model was trained with:

- Darknet's (``top_left=False``): new side ``int(side * scale)``, centred with integer offsets.
- mmdet's (``top_left=True, round_half=True``): new side ``int(side * scale + 0.5)`` (at most the
  input side), at the top-left corner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from posetracker.core.boxes import box_iou

# Rows of the IoU matrix NMS computes at once (memory: this x the group's boxes x 4 bytes x a few).
_NMS_BLOCK = 256

# Darknet fills the letterbox border with 0.5 grey (after / 255).
DARKNET_GREY = 0.5


@dataclass(frozen=True)
class LetterboxTransform:
    """Maps network-input pixels back to image pixels: ``image = (net - offset) / scale``."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float


class GraphDetector(nn.Module):
    """What the graph-backed detectors share: the graph (in eval mode), the network input size,
    and, when given, the per-channel ``mean`` and ``std`` (non-persistent buffers, (1, 3, 1, 1))
    their input is normalised with."""

    def __init__(self, graph: nn.Module, input_size: tuple[int, int],
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        if mean is not None and std is not None:
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.graph = graph.eval()
        self._input_size = (int(input_size[0]), int(input_size[1]))

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) in pixels of the network input."""
        return self._input_size

    @property
    def device(self) -> torch.device:
        for t in self.buffers():
            return t.device
        return torch.device("cpu")


def as_image_list(images) -> list[np.ndarray]:
    """A list of (H, W, 3) uint8 arrays, or an (N, H, W, 3) array or tensor -> a list of arrays."""
    if isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    return list(images)


def letterbox(image: np.ndarray, input_size: tuple[int, int], *, keep_ratio: bool = True,
              top_left: bool = False, round_half: bool = False, fill: float = DARKNET_GREY,
              unit: bool = True) -> tuple[np.ndarray, LetterboxTransform]:
    """Fit an (H, W, 3) uint8 RGB image into the network input ``input_size`` (h, w) pixels.

    ``keep_ratio``: scale to fit keeping the aspect ratio and fill the rest with ``fill``
    (centred with Darknet's integer offsets, or at the top-left); else stretch to the whole input.
    ``round_half``: the new side is ``int(side * scale + 0.5)`` (mmdet) instead of ``int(side *
    scale)`` (Darknet). ``unit``: the canvas is float32 in [0, 1] (pixels / 255, ``fill`` in the
    same unit); else uint8 (``fill`` 0..255).

    Returns the (h, w, 3) canvas and the transform back to image pixels (the per-axis ratio of
    the rounded size, as both conventions map boxes back).
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    net_h, net_w = input_size
    if keep_ratio:
        scale = min(net_w / w, net_h / h)
        if round_half:
            new_w = min(net_w, max(1, int(w * scale + 0.5)))
            new_h = min(net_h, max(1, int(h * scale + 0.5)))
        else:
            new_w, new_h = max(1, int(w * scale)), max(1, int(h * scale))
        dx, dy = (0, 0) if top_left else ((net_w - new_w) // 2, (net_h - new_h) // 2)
    else:
        new_w, new_h, dx, dy = net_w, net_h, 0, 0
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if unit:
        out = np.full((net_h, net_w, 3), fill, np.float32)
        out[dy:dy + new_h, dx:dx + new_w] = resized.astype(np.float32) / 255.0
    else:
        out = np.full((net_h, net_w, 3), fill, np.uint8)
        out[dy:dy + new_h, dx:dx + new_w] = resized
    return out, LetterboxTransform(new_w / w, new_h / h, float(dx), float(dy))


def darknet_input(image: np.ndarray, input_size: tuple[int, int],
                  keep_ratio: bool = True) -> tuple[np.ndarray, LetterboxTransform]:
    """An (H, W, 3) uint8 RGB image -> the network input (3, h, w) float32 in [0, 1]: Darknet's
    centred letterbox with 0.5 grey borders (``keep_ratio``), or stretched."""
    out, transform = letterbox(image, input_size, keep_ratio=keep_ratio)
    return np.ascontiguousarray(out.transpose(2, 0, 1)), transform


def darknet_batch(images: Sequence[np.ndarray], input_size: tuple[int, int], keep_ratio: bool,
                  device: torch.device) -> tuple[torch.Tensor, tuple[LetterboxTransform, ...]]:
    """:func:`darknet_input` of every image, stacked: (N, 3, h, w) float32 on ``device``."""
    batch, transforms = zip(*(darknet_input(im, input_size, keep_ratio) for im in images))
    return torch.from_numpy(np.stack(batch)).to(device), transforms


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression within each group (``torchvision.ops.batched_nms``'s rule and
    arithmetic, without importing torchvision: about a second off the first frame).

    Per group, boxes are taken by decreasing score; a box is dropped when its IoU with a kept box
    of the same group exceeds ``iou_threshold``. IoU is computed in the boxes' own dtype as
    ``inter / (area_i + area_j - inter)``, compared in float64, as torchvision's CPU kernel does.

    Args:
        boxes: ``(n, 4)`` xyxy.
        scores: ``(n,)``.
        groups: ``(n,)`` int; boxes of different groups never suppress each other.
        iou_threshold: IoU above which the lower-scored box is dropped.

    Returns:
        ``(k,)`` int64 indices of the kept boxes, by decreasing score (ties: by index), on the
        boxes' device.
    """
    b = boxes.detach().cpu().numpy()
    s = scores.detach().cpu().numpy()
    g = groups.detach().cpu().numpy()
    n = len(b)
    idx = np.arange(n)
    # Steps 1-2: sort by group, then by decreasing score (stable: ties by index).
    order = np.lexsort((idx, -s, g))
    b, g = b[order], g[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1) * (y2 - y1)
    # "IoU > threshold" with the threshold in float64, as one comparison in the boxes' dtype: over
    # the largest value of that dtype not above the threshold.
    limit = np.asarray(iou_threshold, dtype=b.dtype)
    if float(limit) > iou_threshold:
        limit = np.nextafter(limit, -np.inf)
    suppressed = np.zeros(n, dtype=bool)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if n else idx
    for start, end in zip(starts, np.r_[starts[1:], n]):
        # Step 3: the best remaining box of the group is kept and drops its overlaps after it.
        # The overlaps of a block of rows at once (numpy's per-call cost, not a loop per pair),
        # of the rows still in at the block's start only (the rest are dropped already).
        for r0 in range(start, end, _NMS_BLOCK):
            rows = r0 + np.flatnonzero(~suppressed[r0:min(r0 + _NMS_BLOCK, end)])
            cols = slice(r0, end)
            w = np.maximum(np.minimum(x2[rows, None], x2[None, cols])
                           - np.maximum(x1[rows, None], x1[None, cols]), 0)
            h = np.maximum(np.minimum(y2[rows, None], y2[None, cols])
                           - np.maximum(y1[rows, None], y1[None, cols]), 0)
            inter = w * h
            with np.errstate(divide="ignore", invalid="ignore"):  # empty boxes: NaN, never over
                over = inter / (area[rows, None] + area[None, cols] - inter) > limit
            for k, i in enumerate(rows):
                if not suppressed[i]:
                    suppressed[i + 1:end] |= over[k, i + 1 - r0:]
    kept = order[~suppressed]
    # Step 4: all groups' kept boxes by decreasing score.
    kept = kept[np.lexsort((kept, -s[kept]))]
    return torch.from_numpy(kept.astype(np.int64)).to(boxes.device)


def select_detections(boxes: torch.Tensor, scores: torch.Tensor,
                      transforms: Sequence[LetterboxTransform], image_sizes: Sequence[tuple[int, int]],
                      conf: float, nms: float, class_id: int | None, max_detections: int, *,
                      nms_in_input_pixels: bool = False) -> list[np.ndarray]:
    """Threshold, map to image pixels, clip, and run NMS per image (and per class).

    ``boxes`` (N, B, 4) xyxy in network-input pixels, ``scores`` (N, B, C); ``image_sizes`` (h, w)
    per image. Boxes scoring at least ``conf`` are kept; ``nms`` is the IoU above which a
    lower-scoring box of the same image (and class) is suppressed; ``class_id`` the class kept
    (``None``: every class, NMS per class). ``nms_in_input_pixels``: NMS on the network-input
    boxes before mapping back (what an export with NMS inside does, RTMDet), else on the mapped,
    clipped boxes (Darknet).

    Returns per image an (m, 5) float64 array xyxy + score (with ``class_id=None``, an (m, 6)
    array with the class index appended), at most ``max_detections``, best first.
    """
    if class_id is not None:
        if not 0 <= class_id < scores.shape[2]:
            raise ValueError(f"class_id {class_id} outside 0..{scores.shape[2] - 1}")
        scores = scores[..., class_id:class_id + 1]
    img, box, cls = torch.nonzero(scores >= conf, as_tuple=True)
    sel_scores = scores[img, box, cls]
    sel_boxes = boxes[img, box]
    groups = img * scores.shape[2] + cls  # one NMS group per (image, class)
    if nms_in_input_pixels:
        keep = batched_nms(sel_boxes, sel_scores, groups, nms)  # by decreasing score
        img_k = img[keep]
        result = []
        for i, (tr, (h, w)) in enumerate(zip(transforms, image_sizes)):
            k = keep[img_k == i][:max_detections]
            b = sel_boxes[k].double()
            b[:, 0::2] = ((b[:, 0::2] - tr.offset_x) / tr.scale_x).clamp(0, w)
            b[:, 1::2] = ((b[:, 1::2] - tr.offset_y) / tr.scale_y).clamp(0, h)
            cols = [b, sel_scores[k, None].double()]
            if class_id is None:
                cols.append(cls[k, None].double())
            result.append(torch.cat(cols, dim=1).cpu().numpy())
        return result
    sel_boxes = sel_boxes.clone()
    t = torch.tensor([[tr.offset_x, tr.offset_y, tr.scale_x, tr.scale_y] for tr in transforms],
                     dtype=sel_boxes.dtype, device=sel_boxes.device)[img]
    sizes = torch.tensor([[w, h] for h, w in image_sizes], dtype=sel_boxes.dtype,
                         device=sel_boxes.device)[img]
    sel_boxes[:, 0::2] = ((sel_boxes[:, 0::2] - t[:, 0:1]) / t[:, 2:3]).clamp(min=0)
    sel_boxes[:, 1::2] = ((sel_boxes[:, 1::2] - t[:, 1:2]) / t[:, 3:4]).clamp(min=0)
    sel_boxes[:, 0::2] = torch.minimum(sel_boxes[:, 0::2], sizes[:, 0:1])
    sel_boxes[:, 1::2] = torch.minimum(sel_boxes[:, 1::2], sizes[:, 1:2])
    keep = batched_nms(sel_boxes, sel_scores, groups, nms)  # sorted by decreasing score
    result = []
    img_k = img[keep]
    for i in range(len(transforms)):
        k = keep[img_k == i][:max_detections]
        cols = [sel_boxes[k], sel_scores[k, None]]
        if class_id is None:
            cols.append(cls[k, None].to(sel_boxes.dtype))
        result.append(torch.cat(cols, dim=1).double().cpu().numpy())
    return result


def weighted_box_fusion(passes: Sequence[np.ndarray], iou_threshold: float = 0.55) -> np.ndarray:
    """Weighted boxes fusion (Solovyev, Wang and Gabruseva, "Weighted boxes fusion: Ensembling
    boxes from different object detection models", Image and Vision Computing 2021) of the
    detections of ``N = len(passes)`` detector runs on one image (other models, the mirrored
    image, other input sizes), every model weighted equally.

    Args:
        passes: Per run an ``(m_i, 5)`` array of boxes xyxy (image pixels) + score, after that
            run's own NMS.
        iou_threshold: A box joins a fused box it overlaps at IoU above this (the paper: 0.55).

    Returns:
        ``(k, 5)`` float64 fused boxes xyxy + score, best first. A box every run found keeps its
        mean score; one that ``T < N`` runs found has it scaled by ``T / N``.
    """
    n_runs = len(passes)
    # Step 1: every run's boxes in one list B, by decreasing score.
    boxes = np.concatenate([np.asarray(p, np.float64).reshape(-1, 5) for p in passes] or
                           [np.zeros((0, 5))])
    boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
    # Step 2: the clusters L (indices into B) and the fused boxes F, both empty.
    clusters: list[list[int]] = []
    fused = np.zeros((0, 5))
    for i, box in enumerate(boxes):
        # Step 3: the fused box of F that B's box overlaps most, if above the threshold.
        ious = box_iou(box[None, :4], fused[:, :4])[0]
        pos = int(np.argmax(ious)) if len(ious) else -1
        if pos < 0 or ious[pos] <= iou_threshold:
            # Step 4: no match: the box starts a new cluster and is its own fused box.
            clusters.append([i])
            fused = np.vstack([fused, box])
            continue
        # Step 5: the box joins cluster ``pos``; its fused box is recomputed from the cluster's
        # T boxes: corners weighted by score, score the mean.
        clusters[pos].append(i)
        members = boxes[clusters[pos]]
        weights = members[:, 4:5]
        fused[pos, :4] = (weights * members[:, :4]).sum(0) / max(float(weights.sum()), 1e-12)
        fused[pos, 4] = members[:, 4].mean()
    # Step 6: a box few runs found is less sure: its score times min(T, N) / N.
    counts = np.array([len(c) for c in clusters], dtype=np.float64)
    if len(fused):
        fused[:, 4] *= np.minimum(counts, n_runs) / n_runs
    return fused[np.argsort(-fused[:, 4], kind="stable")]


def add_missed_boxes(passes: Sequence[np.ndarray], iou_threshold: float = 0.55) -> np.ndarray:
    """The first run's boxes as they are, plus the people only the other runs found.

    The further runs are there to find the people the first one missed, not to move the boxes
    it found: their boxes are fused among themselves (:func:`weighted_box_fusion`, whose score
    is then that of ``N - 1`` runs), and a fused box that overlaps no box of the first run at IoU
    above ``iou_threshold`` is added with its score scaled to the ``N`` runs (found by none of
    the first: ``(N - 1) / N`` of it).

    Args:
        passes: Per run an ``(m_i, 5)`` array of boxes xyxy + score; the first is the main run.
        iou_threshold: Overlap above which a further box is taken as one the first run found.

    Returns:
        ``(k, 5)`` float64 boxes xyxy + score, best first.
    """
    first = np.asarray(passes[0], np.float64).reshape(-1, 5)
    if len(passes) < 2:
        return first
    others = weighted_box_fusion(passes[1:], iou_threshold)
    missed = others[box_iou(others[:, :4], first[:, :4]).max(1, initial=0.0) <= iou_threshold]
    missed[:, 4] *= (len(passes) - 1) / len(passes)
    out = np.concatenate([first, missed])
    return out[np.argsort(-out[:, 4], kind="stable")]
