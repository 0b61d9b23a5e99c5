"""The CrowdPose joint-candidate loss on synthetic heatmaps with known values."""

from __future__ import annotations

import math

import pytest
import torch

from posetracker.association.loss import candidate_targets, gaussian_heatmaps, joint_candidate_loss


def test_gaussian_heatmaps_values_and_mask():
    g = gaussian_heatmaps(torch.tensor([[2.0, 1.0], [0.0, 0.0]]), (3, 4), sigma=1.0,
                          mask=torch.tensor([True, False]))
    assert g.shape == (2, 3, 4)
    assert g[0, 1, 2] == pytest.approx(1.0)
    assert g[0, 0, 0] == pytest.approx(math.exp(-(4 + 1) / 2))
    assert g[1].abs().sum() == 0


def test_targets_add_interference_at_mu():
    tgt = torch.tensor([[[2.0, 2.0]]])                         # b=1, k=1
    inter = torch.tensor([[[[6.0, 2.0], [2.0, 2.0]]]])          # two interference joints, q=2
    mask = torch.tensor([[[True, False]]])
    t = candidate_targets(tgt, inter, (5, 9), sigma=1.0, interference_mask=mask)
    assert t[0, 0, 2, 2] == pytest.approx(1.0 + 0.5 * math.exp(-8))
    assert t[0, 0, 2, 6] == pytest.approx(0.5 + math.exp(-8))
    # mu is a parameter; no interference -> plain Gaussian targets
    t2 = candidate_targets(tgt, inter, (5, 9), sigma=1.0, mu=0.25, interference_mask=mask)
    assert t2[0, 0, 2, 6] == pytest.approx(0.25 + math.exp(-8))
    t0 = candidate_targets(tgt, torch.zeros(1, 1, 0, 2), (5, 9), sigma=1.0)
    assert t0[0, 0, 2, 6] == pytest.approx(math.exp(-8))
    # an absent target joint leaves only the interference peaks
    t3 = candidate_targets(tgt, inter, (5, 9), sigma=1.0, target_mask=torch.tensor([[False]]),
                           interference_mask=mask)
    assert t3[0, 0, 2, 2] == pytest.approx(0.5 * math.exp(-8))


def test_loss_known_values():
    # 1x1 heatmaps: target 1 + 0.5 * 1 = 1.5 where both joints sit on the single cell.
    tgt = torch.zeros(1, 2, 2)
    inter = torch.zeros(1, 2, 1, 2)
    t = candidate_targets(tgt, inter, (1, 1), sigma=1.0)
    assert torch.allclose(t, torch.full((1, 2, 1, 1), 1.5))
    pred = torch.tensor([[[[0.5]], [[1.5]]]])
    # per joint: (0.5 - 1.5)^2 = 1 and 0 -> mean over the 2 joints = 0.5
    assert joint_candidate_loss(pred, t).item() == pytest.approx(0.5)
    assert joint_candidate_loss(pred, t, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0.0)
    assert joint_candidate_loss(pred, t, torch.tensor([[2.0, 1.0]])).item() == pytest.approx(1.0)
    # a perfect prediction of the joint-candidate target costs nothing; the single-peak target
    # (what a standard SPPE is trained on) is penalised for the neighbour's peak
    tgt = torch.tensor([[[3.0, 3.0]]])
    inter = torch.tensor([[[[10.0, 4.0]]]])
    t = candidate_targets(tgt, inter, (8, 16), sigma=1.5)
    assert joint_candidate_loss(t, t).item() == 0.0
    single = gaussian_heatmaps(tgt, (8, 16), 1.5)
    expected = ((single - t) ** 2).mean().item()
    assert joint_candidate_loss(single, t).item() == pytest.approx(expected)
    assert expected > 0


def test_loss_backpropagates_and_checks_shapes():
    pred = torch.zeros(2, 3, 6, 6, requires_grad=True)
    t = candidate_targets(torch.full((2, 3, 2), 2.5), torch.full((2, 3, 1, 2), 4.0), (6, 6))
    loss = joint_candidate_loss(pred, t)
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        joint_candidate_loss(pred, t[:, :2])
