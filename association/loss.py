"""The joint-candidate loss of CrowdPose (Li et al., CVPR 2019, Sec. 3.1), for training an SPPE.

A standard SPPE is trained to answer only the box's own person and to suppress everyone else; in a
crowd that teaches it to guess. CrowdPose instead asks every heatmap of joint type ``k`` to show the
target person's joint at full height and every *interference* joint of the same type (other people's
joints inside the crop) at height ``mu``:

    T_k = G(target_k) + mu * sum_i G(interference_{k,i}),      loss = mean over pixels of (P_k - T_k)^2

averaged over joint types (weighted by the target joints' visibility weights), with ``mu = 0.5`` as in
the paper. ``G(p)`` is an unnormalized Gaussian (peak 1) of standard deviation ``sigma`` cells centred
at ``p``. Overlapping Gaussians simply add, as in the paper's formula (no clipping to 1).

Coordinates are heatmap cells (x = column, y = row, cell centres at integers).
"""

from __future__ import annotations

import torch


def gaussian_heatmaps(
    points: torch.Tensor, size: tuple[int, int], sigma: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Unit-peak Gaussians at ``points``.

    Args:
        points: ``(..., 2)`` xy in heatmap cells.
        size: ``(h, w)`` of the heatmaps.
        sigma: Standard deviation in cells.
        mask: ``(...)`` bool/float; masked-out points give an all-zero map.

    Returns:
        ``(..., h, w)`` float tensor.
    """
    h, w = size
    pts = points.float()
    ys = torch.arange(h, device=pts.device, dtype=pts.dtype)
    xs = torch.arange(w, device=pts.device, dtype=pts.dtype)
    gx = torch.exp(-((xs - pts[..., 0:1]) ** 2) / (2 * sigma**2))          # (..., w)
    gy = torch.exp(-((ys - pts[..., 1:2]) ** 2) / (2 * sigma**2))          # (..., h)
    g = gy.unsqueeze(-1) * gx.unsqueeze(-2)
    g = torch.nan_to_num(g, nan=0.0)
    if mask is not None:
        g = g * mask.to(g.dtype)[..., None, None]
    return g


def candidate_targets(
    targets: torch.Tensor,
    interference: torch.Tensor,
    size: tuple[int, int],
    sigma: float = 2.0,
    mu: float = 0.5,
    target_mask: torch.Tensor | None = None,
    interference_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Target heatmaps ``G(target) + mu * sum G(interference)``.

    Args:
        targets: ``(b, k, 2)`` the crop's own person's joints, heatmap cells.
        interference: ``(b, k, q, 2)`` other people's joints of the same types, heatmap cells
            (pad with anything and mask out; ``q`` may be 0).
        size: ``(h, w)`` heatmap size.
        sigma: Gaussian standard deviation, cells.
        mu: Height of the interference peaks (paper: 0.5).
        target_mask: ``(b, k)`` which target joints exist (default: all).
        interference_mask: ``(b, k, q)`` which interference joints exist (default: all).

    Returns:
        ``(b, k, h, w)`` target heatmaps.
    """
    own = gaussian_heatmaps(targets, size, sigma, target_mask)
    if interference.shape[-2] == 0:
        return own
    others = gaussian_heatmaps(interference, size, sigma, interference_mask).sum(dim=2)
    return own + mu * others


def joint_candidate_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Heatmap MSE against joint-candidate targets.

    Args:
        pred: ``(b, k, h, w)`` predicted heatmaps.
        target: ``(b, k, h, w)`` from :func:`candidate_targets`.
        weights: ``(b, k)`` per-joint weights (e.g. 0 for unlabelled joints); default all 1.

    Returns:
        Scalar: sum over (b, k) of weight x mean-over-pixels squared error, divided by ``b * k``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    per_joint = ((pred - target) ** 2).mean(dim=(-2, -1))                  # (b, k)
    if weights is not None:
        per_joint = per_joint * weights.to(per_joint.dtype)
    return per_joint.sum() / max(per_joint.numel(), 1)
