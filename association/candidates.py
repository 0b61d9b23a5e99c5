"""Joint candidates: several peaks per heatmap instead of the single argmax (CrowdPose Sec. 3.1).

In a crowded box the single-person estimator's heatmap for, say, the left wrist peaks on the box's own
person *and* on the neighbour's left wrist. The paper's joint-candidate SPPE keeps every such peak; the
global association (:mod:`posetracker.association.assign`) later decides which proposal owns which peak.

Steps, batched over proposals and joint types (torch, on the heatmaps' device):

1. local maxima: a cell is a peak when it equals the maximum of its ``peak_window`` neighbourhood and
   its response is at least ``fallback_threshold`` (``candidate_threshold`` decides later which
   candidates enter the graph);
2. keep the ``max_candidates`` strongest peaks per proposal and joint;
3. sub-pixel refinement: a parabola through the peak and its two neighbours in x and in y, fitted to the
   log response (exact for a Gaussian: its vertex gives the position and the peak height, which is the
   candidate's response score, and its curvature the Gaussian's width ``u``), or the estimator's own
   sub-cell offsets when given (then the score is the peak cell's value);
4. map the refined heatmap coordinates to image pixels with the proposal's heatmap -> image affine
   (the spatial de-transformer, SDTN); ``u`` is scaled by the affine's scale.

Heatmap coordinates: x = column index, y = row index, cell centres at integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from posetracker.association.config import AssociationConfig


@dataclass(frozen=True, eq=False)
class JointCandidates:
    """Candidates of every proposal and joint type, padded to ``m`` per joint.

    Attributes:
        xy: ``(n, k, m, 2)`` float64 image pixels; NaN in padding slots.
        score: ``(n, k, m)`` float64 heatmap responses, sorted descending along ``m``; 0 in padding.
        size: ``(n, k, m)`` float64 Gaussian response size ``u`` in image pixels; 0 in padding.
        value: ``(n, k, m)`` float64 raw heatmap value at the peak cell, the joint's confidence in
            the output poses; equals ``score`` unless a person prior weighted the heatmaps.
    """

    xy: np.ndarray
    score: np.ndarray
    size: np.ndarray
    value: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.value is None:
            object.__setattr__(self, "value", self.score)

    @property
    def valid(self) -> np.ndarray:
        """``(n, k, m)`` bool: the slot holds a candidate."""
        return self.score > 0

    @property
    def num_proposals(self) -> int:
        return int(self.score.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.score.shape[1])

    def top(self) -> tuple[np.ndarray, np.ndarray]:
        """The single-peak reading: each proposal's strongest candidate per joint.

        Returns ``(n, k, 2)`` pixels (NaN where a joint has no candidate) and ``(n, k)`` scores.
        """
        return self.xy[:, :, 0].copy(), self.value[:, :, 0].copy()


def find_peaks(
    heatmaps: torch.Tensor,
    config: AssociationConfig = AssociationConfig(),
    offsets: torch.Tensor | None = None,
    refine_on: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Steps 1-3: local maxima of ``(n, k, h, w)`` heatmaps with sub-cell positions, in heatmap cells.

    Args:
        heatmaps: ``(n, k, h, w)`` responses in [0, 1] (probabilities, not logits).
        config: Threshold, window, count and refinement settings.
        offsets: Optional ``(n, k, h, w, 2)`` sub-cell (dx, dy) offsets in cells, added at the peak
            cell instead of the parabola fit (MoveNet regresses these).
        refine_on: Optional ``(n, k, h, w)`` maps whose neighbourhoods give the sub-cell fit and the
            width ``u`` instead of ``heatmaps`` (the raw heatmaps when ``heatmaps`` are weighted by a
            person prior, whose slope would pull the fitted vertex towards the prior's centre);
            the score is then the weighted peak cell's value.

    Returns:
        ``xy`` ``(n, k, m, 2)`` heatmap coordinates (NaN where no candidate), ``score`` ``(n, k, m)``
        the refined peak height (0 there), ``size`` ``(n, k, m)`` the response width ``u`` in cells
        (0 there), ``cell`` ``(n, k, m)`` int flat index ``y * w + x`` of the peak cell (-1 there);
        ``m = min(max_candidates, h * w)``.
    """
    hm = heatmaps.float()
    n, k, h, w = hm.shape
    m = min(config.max_candidates, h * w)
    dev = hm.device
    if n == 0 or k == 0:
        z = torch.zeros((n, k, m), device=dev)
        none = torch.full((n, k, m), -1, dtype=torch.long, device=dev)
        return torch.full((n, k, m, 2), float("nan"), device=dev), z, z.clone(), none

    # 1. local maxima above the threshold
    is_peak = _local_maxima(hm.reshape(n * k, h, w), config.peak_window // 2).reshape(n, k, h, w)
    is_peak &= (hm >= config.fallback_threshold) & (hm > 0)
    masked = torch.where(is_peak, hm, torch.full_like(hm, -1.0)).reshape(n, k, h * w)

    # 2. strongest m peaks
    score, flat = masked.topk(m, dim=-1)  # sorted descending
    valid = score >= 0
    py = torch.div(flat, w, rounding_mode="floor")
    px = flat - py * w

    # 3. sub-cell refinement from the 3-cell neighbourhoods in x and y
    fit_on = hm if refine_on is None else refine_on.float()
    dx, dy, centre, size = _refine_peaks(fit_on, score, flat, px, py, config, offsets,
                                         weighted=refine_on is not None)
    if refine_on is not None:
        centre = score.clamp_min(0)
    xy = torch.stack([px.to(fit_on.dtype) + dx, py.to(fit_on.dtype) + dy], dim=-1)
    nan = torch.full_like(xy, float("nan"))
    xy = torch.where(valid.unsqueeze(-1), xy, nan)
    score = torch.where(valid, centre, torch.zeros_like(score))
    size = torch.where(valid, size, torch.zeros_like(size))
    return xy, score, size, torch.where(valid, flat, torch.full_like(flat, -1))


def _refine_peaks(
    maps: torch.Tensor,
    score: torch.Tensor,
    flat: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    config: AssociationConfig,
    offsets: torch.Tensor | None,
    weighted: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 3 of :func:`find_peaks`: the sub-cell fit at each peak.

    Args:
        maps: ``(n, k, h, w)`` the maps whose neighbourhoods are fitted.
        score: ``(n, k, m)`` the peak heights (-1 for no peak); flat, px, py: ``(n, k, m)`` the
            peak cells as flat index and column/row.
        offsets: Optional ``(n, k, h, w, 2)`` regressed (dx, dy), used instead of the fit.
        weighted: ``score`` came from other (person-weighted) maps than ``maps``.

    Returns:
        ``dx``, ``dy`` offsets in cells, the fitted peak height and the response width ``u`` in
        cells, each ``(n, k, m)``.
    """
    n, k, h, w = maps.shape
    m = flat.shape[-1]
    plane = maps.reshape(n, k, h * w)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return plane.gather(-1, (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)))

    centre = at(py, px) if weighted else score.clamp_min(0)
    left, right = at(py, px - 1), at(py, px + 1)
    up, down = at(py - 1, px), at(py + 1, px)
    in_x = (px > 0) & (px < w - 1)
    in_y = (py > 0) & (py < h - 1)

    size = torch.full_like(centre, config.response_size)
    if offsets is not None:
        flat2 = flat.unsqueeze(-1).expand(n, k, m, 2)
        off = offsets.float().reshape(n, k, h * w, 2).gather(2, flat2)
        dx, dy = off[..., 0], off[..., 1]
    elif config.refine == "none":
        dx = dy = torch.zeros_like(centre)
    else:
        if config.refine == "gaussian":
            eps = 1e-6
            c, l_, r_, u_, d_ = (torch.log(t.clamp_min(eps)) for t in (centre, left, right, up, down))
        else:
            c, l_, r_, u_, d_ = centre, left, right, up, down
        dx, curv_x = _parabola_vertex(l_, c, r_, in_x)
        dy, curv_y = _parabola_vertex(u_, c, d_, in_y)
        # the fitted parabolas' height at the vertex: c + curv * d^2 / 2 - curv * d^2 = c - curv d^2/2
        lift = -0.5 * (curv_x * dx * dx + curv_y * dy * dy)
        if config.refine == "gaussian":
            centre = torch.exp(c + lift).clamp(max=1.0)
        else:
            centre = (centre + lift).clamp(max=1.0)
        if config.refine == "gaussian" and config.measure_size:
            # log of a Gaussian has second difference -1/s^2 per axis; geometric mean of both axes.
            ok = (curv_x < 0) & (curv_y < 0)
            s2 = 1.0 / (curv_x * curv_y).clamp_min(1e-12).sqrt()
            measured = s2.sqrt().clamp(0.5 * config.response_size, 3.0 * config.response_size)
            size = torch.where(ok, measured, size)
    return dx, dy, centre, size


def _local_maxima(maps: torch.Tensor, r: int) -> torch.Tensor:
    """``(N, h, w)`` bool: the cell is the maximum of its ``(2r+1)^2`` window.

    Plateaus (a peak halfway between two cells gives two equal cells) count once: the cell must be
    strictly greater than the window's cells before it in reading order, and not smaller than those
    after it. Written as shifted comparisons, which on CPU are several times faster than
    ``max_pool2d`` with stride 1.
    """
    N, h, w = maps.shape
    if r == 0:
        return torch.ones_like(maps, dtype=torch.bool)
    p = F.pad(maps, (r, r, r, r), value=-float("inf"))
    centre = maps
    ok = torch.ones_like(maps, dtype=torch.bool)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy == 0 and dx == 0:
                continue
            nb = p[:, r + dy: r + dy + h, r + dx: r + dx + w]
            ok &= (centre > nb) if (dy, dx) < (0, 0) else (centre >= nb)
    return ok


def _parabola_vertex(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, inside: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertex offset and second difference of the parabola through (-1, a), (0, b), (1, c).

    The offset is in [-0.5, 0.5] at a true maximum; 0 where the fit is flat, not a maximum, or the
    peak is on the border (``inside`` false).
    """
    curv = a - 2.0 * b + c
    ok = inside & (curv < 0)
    off = torch.where(ok, 0.5 * (a - c) / torch.where(ok, curv, -torch.ones_like(curv)),
                      torch.zeros_like(curv))
    return off.clamp(-0.5, 0.5), torch.where(ok, curv, torch.zeros_like(curv))


def apply_affine(xy: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map points ``(n, ..., 2)`` with per-proposal affines ``(n, 2, 3)``; NaN stays NaN."""
    a = np.asarray(affine, dtype=np.float64)
    pts = np.asarray(xy, dtype=np.float64)
    flat = pts.reshape(pts.shape[0], -1, 2)
    out = np.einsum("nij,npj->npi", a[:, :, :2], flat) + a[:, None, :, 2]
    return out.reshape(pts.shape)


def affine_scale(affine: np.ndarray) -> np.ndarray:
    """Isotropic scale ``sqrt(|det A|)`` of each ``(n, 2, 3)`` affine: image pixels per heatmap cell."""
    a = np.asarray(affine, dtype=np.float64)[:, :, :2]
    return np.sqrt(np.abs(a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]))


def distance_prior(points: torch.Tensor, size: tuple[int, int], bias: float = 1.8) -> torch.Tensor:
    """Person prior maps ``bias / (distance to the proposal's expected joint + bias)``.

    MoveNet decodes its single person by dividing each heatmap by ``distance + 1.8`` to the joint
    position regressed from the person's centre; this is the same weighting, scaled to 1 at the
    expected position, so a weighted peak keeps its height where the SPPE expects the joint.

    Args:
        points: ``(n, k, 2)`` expected joint xy per proposal, heatmap cells.
        size: ``(h, w)``.

    Returns:
        ``(n, k, h, w)`` weights in (0, 1].
    """
    h, w = size
    p = points.float()
    ys = torch.arange(h, device=p.device, dtype=p.dtype).reshape(h, 1)
    xs = torch.arange(w, device=p.device, dtype=p.dtype).reshape(1, w)
    d = torch.sqrt((ys - p[..., 1, None, None]) ** 2 + (xs - p[..., 0, None, None]) ** 2)
    return bias / (d + bias)


def extract_candidates(
    heatmaps: torch.Tensor | np.ndarray,
    heatmap_to_image: np.ndarray,
    config: AssociationConfig = AssociationConfig(),
    offsets: torch.Tensor | np.ndarray | None = None,
    prior: torch.Tensor | np.ndarray | None = None,
) -> JointCandidates:
    """Steps 1-4: joint candidates of ``n`` proposals in image pixels.

    Args:
        heatmaps: ``(n, k, h, w)`` responses in [0, 1], torch (any device) or numpy.
        heatmap_to_image: ``(n, 2, 3)`` affines mapping heatmap coordinates (cell centres at integers)
            to image pixels: the SDTN of each proposal, composed with the heatmap -> crop scaling.
        config: Candidate settings.
        offsets: Optional ``(n, k, h, w, 2)`` sub-cell offsets in cells (see :func:`find_peaks`).
        prior: Optional ``(n, k, h, w)`` person prior (e.g. :func:`distance_prior`) multiplied into
            the heatmaps before peak finding, so each candidate's ``score`` (the graph's edge weight)
            is the response *for this proposal's person*; ``value`` keeps the raw heatmap value.

    Departure from the paper: CrowdPose's SPPE is trained with the joint-candidate loss, so its own
    person answers at full height and interference at ``mu``; an SPPE trained otherwise (MoveNet's
    heatmaps answer every person alike and the person is chosen by a regression from its centre)
    gets that person-specific response from ``prior`` instead.
    """
    hm = torch.as_tensor(heatmaps)
    off = None if offsets is None else torch.as_tensor(offsets, device=hm.device)
    with torch.no_grad():
        weighted = hm if prior is None else hm.float() * torch.as_tensor(prior, device=hm.device)
        xy, score, size, cell = find_peaks(weighted, config, off,
                                           refine_on=None if prior is None else hm.float())
        n, k, h, w = hm.shape
        raw = hm.float().reshape(n, k, h * w).gather(-1, cell.clamp_min(0))
        value = torch.where(cell >= 0, raw, torch.zeros_like(raw)) if prior is not None else score
    xy_np = xy.double().cpu().numpy()
    aff = np.asarray(heatmap_to_image, dtype=np.float64).reshape(-1, 2, 3)
    if aff.shape[0] != xy_np.shape[0]:
        raise ValueError(f"{aff.shape[0]} affines for {xy_np.shape[0]} heatmap sets")
    return JointCandidates(
        xy=apply_affine(xy_np, aff),
        score=score.double().cpu().numpy(),
        size=size.double().cpu().numpy() * affine_scale(aff)[:, None, None],
        value=value.double().cpu().numpy(),
    )
