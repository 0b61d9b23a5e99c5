"""The per-box results of the pose estimator before its people are grouped: what the estimator
hands its grouping step (pose NMS, or the CrowdPose association, which lives in another domain
package and reads them from here).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: core itself needs no torch
    import torch


@dataclass
class FrameIntermediates:
    """One frame's per-box SPPE results before pose NMS (``m`` boxes, ``k`` joints).

    Attributes:
        boxes: ``(m, 4)`` detector boxes xyxy, image pixels.
        box_scores: ``(m,)`` detector scores.
        affines: ``(m, 2, 3)`` float64 crop-pixel -> image-pixel maps (the SDTN); apply with
            :func:`posetracker.estimators.transform.crop_to_image` (``heatmap_stride`` for heatmap cells).
        keypoints: ``(m, k, 2)`` image pixels.
        keypoint_scores: ``(m, k)``.
        heatmaps: ``(m, k, hh, hw)`` raw SPPE heatmaps (CPU float32), or ``None``.
        heatmap_stride: Crop pixels per heatmap cell.
        heatmap_offset: Crop pixel of heatmap cell 0 (see :class:`posetracker.estimators.sppe.SPPEOutput`).
        candidates: ``(m, k, c, 3)`` multi-peak candidates x, y (image pixels), score; or ``None``.
        offsets: ``(m, k, hh, hw, 2)`` sub-cell offsets in heatmap cells, x first (CPU float32),
            when the SPPE regresses them (MoveNet) and heatmaps were asked for; else ``None``.
    """

    boxes: np.ndarray
    box_scores: np.ndarray
    affines: torch.Tensor
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    heatmaps: torch.Tensor | None = None
    heatmap_stride: float = 1.0
    candidates: np.ndarray | None = None
    offsets: torch.Tensor | None = None
    heatmap_offset: float = -0.5

    #: The fields holding one row per box (``None`` where not estimated): what :meth:`subset`
    #: picks and :meth:`join` concatenates.
    PER_BOX = ("boxes", "box_scores", "affines", "keypoints", "keypoint_scores", "heatmaps",
               "candidates", "offsets")

    def subset(self, index: np.ndarray) -> FrameIntermediates:
        """The boxes at ``index`` (an index array), with everything estimated for them."""
        idx = np.asarray(index, dtype=np.int64)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731 - arrays and tensors alike
        return replace(self, **{f: pick(getattr(self, f)) for f in self.PER_BOX})

    def join(self, other: FrameIntermediates) -> FrameIntermediates:
        """These boxes followed by ``other``'s (the same frame, estimated in two calls: video
        mode estimates the detector's boxes ahead and its proposals in order)."""
        if (self.heatmap_stride, self.heatmap_offset) != (other.heatmap_stride,
                                                          other.heatmap_offset):
            raise ValueError("cannot join intermediates of different heatmap geometries")

        def cat(a, b):
            if (a is None) != (b is None):
                raise ValueError("cannot join intermediates with and without the same outputs")
            if a is None:
                return None
            if isinstance(a, np.ndarray):
                return np.concatenate([a, b])
            import torch  # tensors came from torch: it is loaded

            return torch.cat([a, b.to(a.device)])

        return replace(self, **{f: cat(getattr(self, f), getattr(other, f)) for f in self.PER_BOX})
