"""The CPU glue around the pose model, made cheaper, gives the same results: crops, the network's
input normalisation and the DARK heatmap decoding each equal a straightforward torch/OpenCV
computation written here (the implementation they replaced), on real COCO people and the real
PP-TinyPose heatmaps of their crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import require_test_extra

from posetracker.estimators.heatmaps import (
    argmax_cells,
    decode_heatmaps,
    gaussian_kernel,
    refine_dark,
)
from posetracker.estimators.sppe import load_sppe
from posetracker.estimators.transform import box_regions, crop_affines, snap_boxes, warp_crops
from tests import test_backends

coco = test_backends.coco   # the fixture of the first COCO images with people

SIZE = (256, 192)


@pytest.fixture(scope="module")
def people(coco):
    """``(frames, frame index (m,), boxes (m, 4) xyxy)``: the people of 4 COCO images, and
    boxes cut by the frame's border."""
    frames = [im for im, _ in coco[:4]]
    h, w = frames[0].shape[:2]
    border = [[-40.0, -30.0, 80.0, 150.0], [w - 60.0, h - 100.0, w + 30.0, h + 20.0]]
    fidx = np.concatenate([np.full(len(b), n) for n, (_, b) in enumerate(coco[:4])] + [[0, 0]])
    boxes = np.concatenate([b for _, b in coco[:4]] + [border])
    return frames, fidx.astype(np.int64), snap_boxes(boxes)


def _reference_crops(frames, fidx, A, keep) -> torch.Tensor:
    """The crops as made before: warp into a zeroed uint8 batch, blank outside the keep region
    through boolean masks, then one torch conversion of the whole batch."""
    out = np.zeros((len(fidx), *SIZE, 3), np.uint8)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for i, f in enumerate(fidx):
        cv2.warpAffine(frames[f], A[i], SIZE[::-1], dst=out[i], flags=flags,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        v, u = np.mgrid[0:SIZE[0], 0:SIZE[1]]
        px = A[i, 0, 0] * u + A[i, 0, 1] * v + A[i, 0, 2]
        py = A[i, 1, 0] * u + A[i, 1, 1] * v + A[i, 1, 2]
        x1, y1, x2, y2 = keep[i]
        out[i][(px < x1) | (px > x2) | (py < y1) | (py > y2)] = 0
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(torch.float32,
                                                        memory_format=torch.contiguous_format)


def _keep(boxes: np.ndarray, margin: float = 0.2) -> np.ndarray:
    pad = margin * (boxes[:, 2:] - boxes[:, :2])
    return np.concatenate([boxes[:, :2] - pad, boxes[:, 2:] + pad], axis=1)


def test_crops_equal_the_batch_warp_with_boolean_masks(people):
    frames, fidx, boxes = people
    A = crop_affines(box_regions(boxes, SIZE, 1.25), SIZE)
    keep = _keep(boxes)
    got = warp_crops(frames, fidx, A, SIZE, keep)
    want = _reference_crops(frames, fidx, A.numpy(), keep)
    assert got.is_contiguous() and got.dtype == torch.float32
    assert torch.equal(got, want)
    blank = (want == 0).all(1).float().mean()
    assert 0.05 < blank < 0.9                      # the keep regions do blank some pixels
    # a rotated crop goes through the general mask, and a keep region that misses the crop
    # blanks it all
    R = A.clone()
    R[:, 0, 1], R[:, 1, 0] = 0.3 * R[:, 0, 0], -0.3 * R[:, 1, 1]
    keep[-1] = [-500.0, -500.0, -400.0, -400.0]
    assert torch.equal(warp_crops(frames, fidx, R, SIZE, keep),
                       _reference_crops(frames, fidx, R.numpy(), keep))
    assert torch.equal(warp_crops(frames, fidx, A, SIZE, keep),
                       _reference_crops(frames, fidx, A.numpy(), keep))
    assert (warp_crops(frames, fidx, A, SIZE, keep)[-1] == 0).all()


@pytest.fixture(scope="module")
def heatmaps(models_dir, people):
    """``(crops, network, heatmaps (m, 17, 64, 48))`` of the real people through PP-TinyPose."""
    require_test_extra("openvino")
    frames, fidx, boxes = people
    sppe = load_sppe(models_dir / "tinypose-256x192.xml", backend="openvino", threads=1)
    A = crop_affines(box_regions(boxes, SIZE, 1.25), SIZE)
    crops = warp_crops(frames, fidx, A, SIZE, _keep(boxes))
    with torch.inference_mode():
        return crops, sppe.network, sppe.network.heatmaps(crops).float()


def test_normalisation_is_bit_identical_to_torch(heatmaps):
    crops, net, _ = heatmaps
    before = crops.clone()
    with torch.inference_mode():
        got = net.normalise(crops)
    assert torch.equal(got, crops * net.scale + net.bias) and torch.equal(crops, before)


def _reference_argmax(hm: torch.Tensor):
    m, k, hh, hw = hm.shape
    values, idx = hm.reshape(m, k, hh * hw).max(dim=2)
    return torch.stack((idx % hw, idx // hw), dim=-1), values


def _reference_dark(hm: torch.Tensor, cells: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """DARK as written before: whole maps zero-padded, 5 + 2r windows cut by indexing, blurred
    by two ``conv2d``, then the same Newton step in torch."""
    m, k, hh, hw = hm.shape
    g = gaussian_kernel(sigma, dtype=hm.dtype)
    half = (g.numel() - 1) // 2 + 2
    maps = F.pad(hm.reshape(m * k, hh, hw), (half, half, half, half))
    span = torch.arange(2 * half + 1)
    x, y = cells[..., 0].reshape(-1), cells[..., 1].reshape(-1)
    win = maps[torch.arange(m * k)[:, None, None], (y[:, None] + span)[:, :, None],
               (x[:, None] + span)[:, None, :]].unsqueeze(1)
    win = F.conv2d(F.conv2d(win, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))[:, 0]
    L = torch.log(win.clamp_min(1e-10))

    def at(ox, oy):
        return L[:, 2 + oy, 2 + ox]
    c = at(0, 0)
    gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    hxx, hyy = 0.25 * (at(2, 0) - 2 * c + at(-2, 0)), 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    ok = (x >= 2) & (x <= hw - 3) & (y >= 2) & (y <= hh - 3) & (det.abs() > 1e-12)
    safe = torch.where(ok, det, torch.ones_like(det))
    step = torch.stack((-(hyy * gx - hxy * gy) / safe, -(-hxy * gx + hxx * gy) / safe), -1)
    step = torch.where(ok[:, None], step.clamp(-1.0, 1.0), torch.zeros_like(step))
    return (cells.to(hm.dtype).reshape(-1, 2) + step).reshape(m, k, 2)


def test_dark_decoding_equals_the_torch_decoding_on_real_heatmaps(heatmaps):
    """Same arg-max cells and peak values (exactly), same refined cells to float32 rounding
    (bit for bit where the BLAS sums the 13 blur terms in conv2d's order, as here)."""
    _, _, hm = heatmaps
    assert hm.shape[1:] == (17, 64, 48) and len(hm) >= 10
    cells, values = argmax_cells(hm)
    want_cells, want_values = _reference_argmax(hm)
    assert torch.equal(cells, want_cells) and torch.equal(values, want_values)
    # peaks near the border too: shift some maps so the arg-max sits within 2 cells of an edge
    edge = torch.cat([hm, torch.roll(hm, (25, 20), (2, 3)), torch.roll(hm, (-30, -22), (2, 3))])
    for maps in (hm, edge, edge.double()):
        c, _ = _reference_argmax(maps)
        got, want = refine_dark(maps, c), _reference_dark(maps, c)
        assert got.dtype == maps.dtype and got.shape == want.shape
        assert (got - want).abs().max() <= 1e-5
        moved = (want - c).abs().sum(-1) > 0
        assert moved.float().mean() > 0.5    # most joints moved: not a comparison of fall-backs
    near = (edge.reshape(len(edge), 17, -1).argmax(-1) // 48 < 2).sum()
    assert near > 0
    out, scores = decode_heatmaps(hm, "dark")
    assert torch.equal(scores, want_values)
    assert (out - _reference_dark(hm, want_cells)).abs().max() <= 1e-5


def test_detector_input_equals_the_torch_normalisation(people):
    """RTMDet's input (letterboxed, BGR, ``(x - mean) / std``) made by NumPy equals torch's,
    bit for bit, for a batch of frames of different sizes."""
    from torch import nn

    from posetracker.estimators.rtmdet import GraphNMS, RTMDetDetector, letterbox_top_left

    frames = [people[0][0], people[0][1], people[0][2][:300, :500]]
    det = RTMDetDetector(nn.Identity(), "boxes", "scores", GraphNMS(0.6, 0.05, 100), (416, 416))
    x, scales = det.preprocess(frames)
    canvases, want_scales = zip(*(letterbox_top_left(f, (416, 416)) for f in frames))
    bgr = torch.from_numpy(np.stack(canvases)).permute(0, 3, 1, 2).flip(1)
    assert torch.equal(x, (bgr.to(torch.float32) - det.mean) / det.std)
    assert scales == list(want_scales) and x.shape == (3, 3, 416, 416)
