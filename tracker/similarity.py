"""Vectorised similarities between two sets of poses (all pairs at once).

Shapes: ``a`` holds ``n`` poses and ``b`` holds ``m`` poses of ``k`` joints; every function returns
an ``(n, m)`` (or ``(n, m, k)``) array so that a whole frame is scored with a few numpy operations.
Absent joints are NaN and never contribute.
"""

from __future__ import annotations

import numpy as np


def person_scale(boxes: np.ndarray, minimum: float = 1.0) -> np.ndarray:
    """Person size in pixels, ``sqrt(box width * box height)``: ``(n, 4) -> (n,)``.

    ``minimum`` keeps single-joint poses (zero-area boxes) from dividing by zero.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.maximum(np.sqrt(np.maximum(b[:, 2] - b[:, 0], 0)
                              * np.maximum(b[:, 3] - b[:, 1], 0)), minimum)


def pose_similarity(a: np.ndarray, b: np.ndarray, scale: np.ndarray, sigma: float,
                    min_common: int = 1) -> np.ndarray:
    """Gaussian pose similarity, the PoseFlow/RMPE ``P_sim`` normalised by person scale.

    ``mean_n exp(-|a_n - b_n|^2 / (2 (sigma * scale)^2))`` over the joints present in both poses.

    Args:
        a: ``(n, k, 2)`` poses (pixels).
        b: ``(m, k, 2)`` poses (pixels).
        scale: ``(n,)`` or ``(n, m)`` person size in pixels (see :func:`person_scale`).
        sigma: Joint tolerance as a fraction of the person size.
        min_common: Pairs sharing fewer present joints get similarity 0.

    Returns:
        ``(n, m)`` similarities in [0, 1].
    """
    diff = np.asarray(a, dtype=np.float64)[:, None] - np.asarray(b, dtype=np.float64)[None, :]
    d2 = (diff * diff).sum(-1)                               # (n, m, k) squared pixels
    common = np.isfinite(d2)
    s = np.asarray(scale, dtype=np.float64)
    s = s[:, None] if s.ndim == 1 else s
    with np.errstate(invalid="ignore"):
        g = np.where(common, np.exp(-d2 / (2.0 * (sigma * s[..., None]) ** 2)), 0.0)
    cnt = common.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(cnt >= max(min_common, 1), g.sum(-1) / np.maximum(cnt, 1), 0.0)
    return out


def top_mean(values: np.ndarray, num: int) -> np.ndarray:
    """Mean of the ``num`` largest values along the last axis: ``(..., k) -> (...)``."""
    k = values.shape[-1]
    num = min(num, k)
    if num <= 0:
        return np.zeros(values.shape[:-1])
    part = np.partition(values, k - num, axis=-1)[..., k - num:]
    return part.mean(-1)


def pose_confidence(keypoint_scores: np.ndarray, person_scores: np.ndarray,
                    present: np.ndarray) -> np.ndarray:
    """PoseFlow's pose confidence ``s(P) = s_box + mean(s_pose) + max(s_pose)``: ``-> (n,)``.

    ``s_box`` is the person score (:attr:`FramePoses.scores`), the one per-person score the
    reference PoseFlow reads from its pose estimator's results (AlphaPose's ``score``, a pose
    score), not the raw detector score. Means and maxima run over the present joints; a pose
    without joints scores ``s_box``.
    """
    sc = np.where(present, keypoint_scores, 0.0)
    cnt = present.sum(-1)
    mean = np.where(cnt > 0, sc.sum(-1) / np.maximum(cnt, 1), 0.0)
    mx = sc.max(-1) if sc.shape[-1] else np.zeros(sc.shape[0])
    return np.asarray(person_scores, dtype=np.float64) + mean + mx


def box_iou_paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes paired element by element: ``(..., 4), (..., 4) -> (...)`` (broadcast)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area_a = np.maximum(a[..., 2] - a[..., 0], 0) * np.maximum(a[..., 3] - a[..., 1], 0)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def pose_similarity_paired(a: np.ndarray, b: np.ndarray, scale: np.ndarray,
                           sigma: float) -> np.ndarray:
    """:func:`pose_similarity` of poses paired element by element: ``(..., k, 2), (..., k, 2)``
    and ``scale (...)`` -> ``(...)`` (broadcast); 0 where the two share no present joint."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d2 = (diff * diff).sum(-1)
    common = np.isfinite(d2)
    s = np.asarray(scale, dtype=np.float64)[..., None]
    with np.errstate(invalid="ignore"):
        g = np.where(common, np.exp(-d2 / (2.0 * (sigma * s) ** 2)), 0.0)
    cnt = common.sum(-1)
    return np.where(cnt > 0, g.sum(-1) / np.maximum(cnt, 1), 0.0)
