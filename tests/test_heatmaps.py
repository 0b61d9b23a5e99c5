"""Heatmap decoding: arg-max, quarter and DARK refinement, flip-back, peaks, HeatmapNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from posetracker.core.schemas import COCO17
from posetracker.estimators.heatmaps import (
    HeatmapNet,
    argmax_cells,
    decode_heatmaps,
    flip_back,
    heatmap_peaks,
    refine_quarter,
)


def gaussian_maps(points: np.ndarray, shape=(64, 48), sigma: float = 2.0) -> torch.Tensor:
    """``(m, k, 2)`` cell coordinates -> ``(m, k, hh, hw)`` unnormalised Gaussians (peak 1 at
    the sub-cell point, as a training target would be before quantisation)."""
    hh, hw = shape
    yy, xx = np.mgrid[0:hh, 0:hw]
    p = np.asarray(points, dtype=np.float64)
    d2 = (xx - p[..., 0, None, None]) ** 2 + (yy - p[..., 1, None, None]) ** 2
    return torch.from_numpy(np.exp(-d2 / (2 * sigma ** 2))).float()


def test_dark_recovers_subcell_peaks_better_than_quarter():
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(4, 43, (6, 17)), rng.uniform(4, 59, (6, 17))], -1)
    hm = gaussian_maps(pts)
    dark, scores = decode_heatmaps(hm, "dark")
    quarter, _ = decode_heatmaps(hm, "quarter")
    plain, _ = decode_heatmaps(hm, "none")
    err = lambda c: np.abs(c.numpy() - pts).max()  # noqa: E731
    assert err(dark) < 0.05          # a Gaussian's log is a quadratic: one Newton step is exact
    assert err(quarter) <= 0.5 + 1e-6 and err(plain) <= 0.5 + 1e-6
    assert err(dark) < err(quarter)
    assert torch.all(scores > 0.8) and torch.all(scores <= 1.0)


def test_quarter_moves_towards_the_higher_neighbour_and_not_at_the_border():
    hm = torch.zeros(1, 2, 5, 6)
    hm[0, 0, 2, 3] = 1.0
    hm[0, 0, 2, 4] = 0.5          # right neighbour higher -> +0.25 in x
    hm[0, 0, 1, 3] = 0.2          # upper neighbour higher -> -0.25 in y
    hm[0, 1, 0, 0] = 1.0          # corner: no neighbours on both sides -> no move
    hm[0, 1, 1, 0] = 0.5
    cells, _ = argmax_cells(hm)
    out = refine_quarter(hm, cells)
    assert out[0, 0].tolist() == [3.25, 1.75]
    assert out[0, 1].tolist() == [0.0, 0.0]


def test_dark_falls_back_to_the_argmax_at_the_border():
    hm = gaussian_maps(np.array([[[0.3, 30.0]]]))
    cells, _ = decode_heatmaps(hm, "dark")
    assert cells[0, 0].tolist() == [0.0, 30.0]


@pytest.mark.parametrize("stride", [4, 2])
def test_flip_back_aligns_the_mirrored_maps(stride):
    """A joint at crop pixel p has its mirrored twin at w - 1 - p; after flip_back the mirrored
    map peaks where the original does (cell = pixel / stride)."""
    hh, hw = 64, 48
    w = hw * stride
    rng = np.random.default_rng(1)
    px = rng.uniform(20, w - 20, (3, 17))
    py = rng.uniform(20, hh * stride - 20, (3, 17))
    own = gaussian_maps(np.stack([px / stride, py / stride], -1), (hh, hw))
    perm = COCO17.flip_permutation
    # The mirrored crop shows joint j where the original shows its mirror joint perm[j].
    mx, my = (w - 1 - px)[:, perm], py[:, perm]
    mirrored = gaussian_maps(np.stack([mx / stride, my / stride], -1), (hh, hw))
    back = flip_back(mirrored, perm, 1.0 - 1.0 / stride)
    c_own, _ = decode_heatmaps(own, "dark")
    c_back, _ = decode_heatmaps(back, "dark")
    assert np.abs(c_back.numpy() - c_own.numpy()).max() < 0.1
    # A whole-cell roll (the common shortcut) is off by 1/stride cell.
    rolled, _ = decode_heatmaps(flip_back(mirrored, perm, 1.0), "dark")
    assert np.abs(rolled.numpy() - c_own.numpy())[..., 0].mean() > 0.5 / stride


def test_heatmap_peaks_lists_local_maxima_best_first():
    hm = gaussian_maps(np.array([[[10.0, 10.0], [5.0, 5.0]]]), (32, 24))
    hm[0, 0] += 0.5 * gaussian_maps(np.array([[[20.0, 25.0]]]), (32, 24))[0, 0]
    peaks = heatmap_peaks(hm, 3, stride=4.0, offset=0.0)
    assert peaks.shape == (1, 2, 3, 3)
    assert peaks[0, 0, 0].tolist() == pytest.approx([40.0, 40.0, 1.0], abs=1e-4)
    assert peaks[0, 0, 1, :2].tolist() == [80.0, 100.0]
    assert peaks[0, 1, 1, 2] == 0          # one peak only: the rest are empty


class _Synthetic(nn.Module):
    """A 'network' that draws Gaussians where a bright pixel of channel 0 is (stride 4)."""

    def forward(self, x):
        # Undo the normalisation of channel 0 to find the marker.
        m = x.shape[0]
        v = x[:, 0] * 0.229 + 0.485
        idx = v.reshape(m, -1).argmax(1)
        w = x.shape[-1]
        px, py = (idx % w).float(), (idx // w).float()
        pts = torch.stack([px / 4, py / 4], -1)[:, None].repeat(1, 17, 1).numpy()
        return gaussian_maps(pts, (x.shape[-2] // 4, w // 4))


def test_heatmap_net_decodes_to_crop_pixels_and_flip_is_consistent():
    x = torch.zeros(2, 3, 256, 192)
    x[0, 0, 100, 60] = 255.0
    x[1, 0, 40, 150] = 255.0
    net = HeatmapNet(_Synthetic(), (256, 192), flip_permutation=list(range(17)), refine="dark",
                     sigma=2.0)
    out = net(x, return_heatmaps=True, candidates=2)
    kp = out["keypoints"]
    assert kp.shape == (2, 17, 2) and out["heatmaps"].shape == (2, 17, 64, 48)
    assert np.abs(kp[0, 0].numpy() - [60, 100]).max() < 0.2
    assert np.abs(kp[1, 0].numpy() - [150, 40]).max() < 0.2
    flipped = net(x, flip=True)["keypoints"]
    assert np.abs(flipped.numpy() - kp.numpy()).max() < 0.5
    assert out["candidates"].shape == (2, 17, 2, 3)


def test_dark_on_windows_equals_dark_on_whole_blurred_maps():
    """DARK blurs only a window around each peak: the step must equal the one computed from
    the whole blurred map (rescaled as DARK does), peaks near the border included."""
    from posetracker.estimators.heatmaps import argmax_cells, refine_dark, smooth

    gen = torch.Generator().manual_seed(3)
    hm = torch.rand(4, 17, 64, 48, generator=gen) * 0.2
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
    for i in range(4):
        for j in range(17):
            cx, cy = torch.rand(2, generator=gen) * torch.tensor([47.0, 63.0])
            hm[i, j] += torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8.0)
    cells, _ = argmax_cells(hm)
    got = refine_dark(hm, cells)
    logm = torch.log(smooth(hm, 2.0).clamp_min(1e-10)).reshape(-1, 64, 48)
    x, y = cells[..., 0].reshape(-1), cells[..., 1].reshape(-1)
    n = torch.arange(x.numel())

    def at(ox, oy):
        return logm[n, (y + oy).clamp(0, 63), (x + ox).clamp(0, 47)]
    c = at(0, 0)
    gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    hxx, hyy = 0.25 * (at(2, 0) - 2 * c + at(-2, 0)), 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    room = (x >= 2) & (x <= 45) & (y >= 2) & (y <= 61)
    step = torch.stack((-(hyy * gx - hxy * gy) / det, -(-hxy * gx + hxx * gy) / det), -1)
    step = torch.where(room[:, None], step.clamp(-1, 1), torch.zeros_like(step))
    want = cells.float().reshape(-1, 2) + step
    assert torch.allclose(got.reshape(-1, 2), want, atol=1e-4)
    assert (step.abs().sum(1) > 0).sum() > 40   # the comparison is not all fall-backs
