"""A cheap appearance cue: the colour histogram of each person's torso.

Pose and box geometry cannot tell two people apart while they overlap (two players crossing): their
boxes and joints coincide for a few frames. Clothing usually can. Per pose:

1. Torso region: the box around the shoulders and hips (at least three of the four present), shrunk
   by ``shrink`` of its size on each side so that arms and background stay out; without enough of
   those joints, the middle of the person box (x 25-75 %, y 20-55 %).
2. Histogram of hue x saturation in HSV (``bins``), over the region's pixels with enough saturation
   and brightness for hue to mean something, plus three brightness bins (dark, mid, light) for the
   other pixels (black, grey and white shirts differ there, not in hue), L1-normalised. A region
   smaller than 4 px a side, or outside the image, gets no histogram (an all-zero row).
3. Similarity of two histograms: the Bhattacharyya coefficient ``sum sqrt(p q)``, 1 for identical
   colour distributions, 0 for disjoint ones.
"""

from __future__ import annotations

import numpy as np

_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")


def torso_indices(keypoint_names: tuple[str, ...]) -> np.ndarray:
    """Indices of the shoulders and hips in a schema's joint order (missing names left out)."""
    return np.array([keypoint_names.index(n) for n in _TORSO if n in keypoint_names],
                    dtype=np.int64)


def torso_boxes(keypoints: np.ndarray, boxes: np.ndarray, torso: np.ndarray,
                shrink: float = 0.15) -> np.ndarray:
    """``(n, 4)`` xyxy torso regions (see the module docstring, step 1)."""
    n = len(keypoints)
    out = np.zeros((n, 4))
    if n == 0:
        return out
    b = np.asarray(boxes, dtype=np.float64)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    out[:] = np.stack([b[:, 0] + 0.25 * w, b[:, 1] + 0.2 * h,
                       b[:, 0] + 0.75 * w, b[:, 1] + 0.55 * h], axis=1)
    if len(torso):
        tk = np.asarray(keypoints, dtype=np.float64)[:, torso]          # (n, 4, 2)
        ok = np.isfinite(tk).all(-1)
        enough = ok.sum(1) >= min(3, len(torso))
        lo = np.where(ok[..., None], tk, np.inf).min(axis=1)[enough]
        hi = np.where(ok[..., None], tk, -np.inf).max(axis=1)[enough]
        size = hi - lo
        out[enough] = np.concatenate([lo + shrink * size, hi - shrink * size], axis=1)
    return out


def torso_histograms(image: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray,
                     torso: np.ndarray, bins: tuple[int, int] = (8, 4),
                     min_saturation: int = 40, min_value: int = 40) -> np.ndarray:
    """``(n, bins[0] * bins[1] + 3)`` float64 L1-normalised torso histograms of a BGR frame.

    Args:
        image: ``(h, w, 3)`` BGR uint8 frame.
        keypoints: ``(n, k, 2)`` poses in pixels; boxes: ``(n, 4)`` their boxes.
        torso: Shoulder and hip indices (:func:`torso_indices`).
        bins: Hue and saturation bins.
        min_saturation, min_value: Pixels below either (0-255) count as grey (the last three
            bins, by brightness).

    Returns:
        One row per pose; all zeros where the region is too small or outside the image.
    """
    import cv2

    nc = bins[0] * bins[1]
    nb = nc + 3
    regions = torso_boxes(keypoints, boxes, torso)
    out = np.zeros((len(regions), nb))
    if len(regions) == 0:
        return out
    ih, iw = image.shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(regions):
        if not np.isfinite([x1, y1, x2, y2]).all():
            continue
        x1, x2 = int(max(x1, 0)), int(min(x2, iw))
        y1, y2 = int(max(y1, 0)), int(min(y2, ih))
        if x2 - x1 < 4 or y2 - y1 < 4:
            continue
        crop = image[y1:y2, x1:x2]
        # Big torsos are subsampled: a histogram needs a few hundred pixels, not a million.
        step = max(1, int(np.sqrt((x2 - x1) * (y2 - y1) / 2500)))
        hsv = cv2.cvtColor(np.ascontiguousarray(crop[::step, ::step]), cv2.COLOR_BGR2HSV)
        hsv = hsv.reshape(-1, 3)
        colour = (hsv[:, 1] >= min_saturation) & (hsv[:, 2] >= min_value)
        hue = hsv[colour, 0].astype(np.int64) * bins[0] // 180
        sat = (hsv[colour, 1].astype(np.int64) - min_saturation) * bins[1] // (256 - min_saturation)
        out[i, :nc] = np.bincount(hue * bins[1] + sat, minlength=nc)[:nc]
        grey = hsv[~colour, 2].astype(np.int64) * 3 // 256
        out[i, nc:] = np.bincount(grey, minlength=3)[:3]
        total = out[i].sum()
        if total > 0:
            out[i] /= total
    return out


def bhattacharyya(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, B), (m, B) -> (n, m)`` Bhattacharyya coefficients of L1-normalised histograms
    (0 where either row is all zeros)."""
    return np.sqrt(np.maximum(a, 0)) @ np.sqrt(np.maximum(b, 0)).T


def has_histogram(h: np.ndarray) -> np.ndarray:
    """``(n, B) -> (n,)`` bool: the row is a histogram (not the all-zero 'none')."""
    return h.sum(-1) > 0
