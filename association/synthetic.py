"""Synthetic crowded scenes with known answers, for the association's tests and benchmark.

A scene is a set of people (COCO-17 joints from a standing template, scaled, shifted and jittered),
one proposal box per person, and for every proposal a stack of heatmaps over its square crop in which
*every* person's joints inside the crop show up as Gaussian peaks: the box's own person at
``own_peak``, the others at ``other_peak``, the situation of a single-person estimator in a crowd.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A standing person in box-normalized coordinates (x in [0, 1] across the box width, y down its height),
# COCO-17 order.
_TEMPLATE = np.array([
    [0.50, 0.07], [0.54, 0.05], [0.46, 0.05], [0.59, 0.07], [0.41, 0.07],
    [0.70, 0.20], [0.30, 0.20], [0.80, 0.36], [0.20, 0.36], [0.84, 0.50], [0.16, 0.50],
    [0.62, 0.52], [0.38, 0.52], [0.62, 0.74], [0.38, 0.74], [0.62, 0.95], [0.38, 0.95],
])


@dataclass(frozen=True)
class Scene:
    """A synthetic frame.

    Attributes:
        joints: ``(n, 17, 2)`` true joint positions, image pixels.
        boxes: ``(n, 4)`` proposal boxes xyxy (one per person, same order).
        heatmaps: ``(n, 17, h, w)`` float32 heatmaps of each proposal's crop.
        heatmap_to_image: ``(n, 2, 3)`` affines from heatmap cells (centres at integers) to pixels.
    """

    joints: np.ndarray
    boxes: np.ndarray
    heatmaps: np.ndarray
    heatmap_to_image: np.ndarray


def standing_person(x0: float, y0: float, height: float) -> np.ndarray:
    """``(17, 2)`` COCO joints of the template person whose box starts at ``(x0, y0)``, pixels."""
    return _TEMPLATE * np.array([0.45 * height, height]) + np.array([x0, y0])


def person_boxes(joints: np.ndarray, margin: float = 5.0) -> np.ndarray:
    """``(n, 4)`` xyxy boxes around ``(n, k, 2)`` joints, ``margin`` pixels wider on each side."""
    return np.concatenate([joints.min(1) - margin, joints.max(1) + margin], axis=1)


def crop_affines(boxes: np.ndarray, size: int, pad: float = 1.25) -> np.ndarray:
    """``(n, 2, 3)`` heatmap -> image affines of square crops around ``boxes`` (longer side x ``pad``)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) / 2
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * pad
    cell = side / size
    aff = np.zeros((b.shape[0], 2, 3))
    aff[:, 0, 0] = aff[:, 1, 1] = cell
    aff[:, :, 2] = centre - side[:, None] / 2 + cell[:, None] / 2
    return aff


def render_heatmaps(
    joints: np.ndarray,
    heatmap_to_image: np.ndarray,
    size: int,
    amplitude: np.ndarray,
    sigma: float = 1.5,
) -> np.ndarray:
    """Heatmaps of each proposal: the max over people of a Gaussian at each of their joints.

    Args:
        joints: ``(n_people, k, 2)`` image pixels.
        heatmap_to_image: ``(n_prop, 2, 3)``.
        size: heatmap side ``h = w``.
        amplitude: ``(n_prop, n_people, k)`` peak height of person ``j``'s joint in proposal ``i``.
        sigma: Gaussian width in cells.

    Returns:
        ``(n_prop, k, size, size)`` float32.
    """
    aff = np.asarray(heatmap_to_image, dtype=np.float64)
    lin, off = aff[:, :, :2], aff[:, :, 2]
    inv = np.linalg.inv(lin)                                                  # (P, 2, 2)
    pts = np.einsum("pij,nkj->pnki", inv, joints) - np.einsum("pij,pj->pi", inv, off)[:, None, None]
    grid = np.arange(size, dtype=np.float64)
    gx = np.exp(-((grid - pts[..., 0:1]) ** 2) / (2 * sigma**2))             # (P, N, k, w)
    gy = np.exp(-((grid - pts[..., 1:2]) ** 2) / (2 * sigma**2))             # (P, N, k, h)
    g = gy[..., :, None] * gx[..., None, :] * amplitude[..., None, None]
    return g.max(axis=1).astype(np.float32)


def make_scene(
    n: int,
    rng: np.random.Generator,
    size: int = 64,
    image_size: tuple[int, int] = (1280, 720),
    spacing: float = 0.45,
    own_peak: tuple[float, float] = (0.6, 0.95),
    other_peak: tuple[float, float] = (0.3, 0.9),
) -> Scene:
    """``n`` people in a row, neighbours overlapping by ``1 - spacing`` of a box width.

    Peak heights are drawn uniformly from ``own_peak`` (the proposal's person) and ``other_peak``
    (everybody else inside the crop), so some proposals see a neighbour's joint stronger than their own.
    """
    width, height = image_size
    h_person = rng.uniform(0.35, 0.5, n) * height
    w_person = 0.45 * h_person
    x0 = 20 + np.cumsum(np.r_[0, w_person[:-1] * spacing])
    x0 = x0 % max(width - w_person.max() - 40, 1.0)
    y0 = rng.uniform(0.05, 0.45, n) * height
    joints = (_TEMPLATE[None] * np.stack([w_person, h_person], 1)[:, None]
              + np.stack([x0, y0], 1)[:, None] + rng.normal(0, 0.02, (n, 17, 2)) * h_person[:, None, None])
    boxes = person_boxes(joints)
    aff = crop_affines(boxes, size)
    amp = rng.uniform(*other_peak, (n, n, 17))
    idx = np.arange(n)
    amp[idx, idx] = rng.uniform(*own_peak, (n, 17))
    heatmaps = render_heatmaps(joints, aff, size, amp)
    return Scene(joints=joints, boxes=boxes, heatmaps=heatmaps, heatmap_to_image=aff)
