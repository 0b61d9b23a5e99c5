"""Boxes of people: overlap and one-to-one pairing, shared by the estimator, the trackers, video
mode, training and the benchmarks. Boxes are ``x1, y1, x2, y2`` pixels (xyxy)."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes: ``(n, 4), (m, 4) -> (n, m)``; degenerate boxes give 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0) * np.maximum(a[:, 3] - a[:, 1], 0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def greedy_pairs(similarity: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """One-to-one pairs ``(row, column)`` of an ``(n, m)`` similarity matrix (IoU, OKS: >= 0),
    the most similar first (ties: the first in row-major order), each at >= ``minimum``."""
    sim = np.asarray(similarity, dtype=np.float64)
    pairs: list[tuple[int, int]] = []
    used_rows, used_cols = set(), set()
    for flat in np.argsort(-sim, axis=None, kind="stable"):
        i, j = divmod(int(flat), sim.shape[1])
        if sim[i, j] < minimum:
            break
        if i not in used_rows and j not in used_cols:
            used_rows.add(i)
            used_cols.add(j)
            pairs.append((i, j))
    return pairs
