"""The CrowdPose association in the product paths: MoveNet's sub-cell offsets reach the
intermediates (flip test included), ``estimate`` and ``track`` share one association call and rank
people by the estimator's rule, and ``estimate --association crowdpose`` works on a real image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from posetracker.association.assign import associate_intermediates
from posetracker.core.schemas import COCO17
from posetracker.estimators.config import EstimatorConfig, SPPEConfig
from posetracker.estimators.rmpe import PersonDetector, RMPEEstimator
from posetracker.estimators.sppe import SPPE, unflip_cells

STRIDE = 4


class TwoDotNet(nn.Module):
    """A toy SPPE that is exactly mirror-equivariant, with MoveNet's outputs.

    The crop shows two bright dots, one in each half. ``left_*`` joints sit on the dot of the left
    half, ``right_*`` joints on the right one, the others (nose) half-way. Joint position ``c`` in
    cells is ``(pixel + 0.5) / STRIDE`` (cell ``i`` at crop edge coordinate ``i * STRIDE``). Heatmaps:
    a Gaussian around ``c`` (``sharp``: 1 at the nearest cell only, so only the offsets tell the
    sub-cell position); offsets: ``c - cell`` at every cell (x first), as MoveNet regresses them.
    """

    def __init__(self, sharp: bool = False):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.sharp = sharp
        names = COCO17.keypoints
        self.side = torch.tensor([0 if n.startswith("left") else 1 if n.startswith("right") else 2
                                  for n in names])

    def forward(self, x, return_heatmaps=False, candidates=0):
        m, _, h, w = x.shape
        g = x.mean(1)
        pts = []
        for lo in (0, w // 2):
            half = g[:, :, lo: lo + w // 2].reshape(m, -1)
            idx = half.argmax(1)
            pts.append(torch.stack([(idx % (w // 2) + lo).float(), (idx // (w // 2)).float()], -1))
        pts.append((pts[0] + pts[1]) / 2)
        kp = torch.stack(pts, 1)[:, self.side]  # (m, 17, 2) pixel-index crop coordinates
        out = {"keypoints": kp, "scores": torch.full(kp.shape[:2], 0.9)}
        if return_heatmaps:
            c = (kp + 0.5) / STRIDE  # cells
            hh, hw = h // STRIDE, w // STRIDE
            ys = torch.arange(hh, dtype=torch.float32).reshape(hh, 1)
            xs = torch.arange(hw, dtype=torch.float32).reshape(1, hw)
            dx = c[..., 0, None, None] - xs  # (m, 17, 1, hw)
            dy = c[..., 1, None, None] - ys  # (m, 17, hh, 1)
            if self.sharp:
                hm = ((dx.abs() <= 0.5) & (dy.abs() <= 0.5)).float() * 0.9
            else:
                hm = 0.9 * torch.exp(-(dx ** 2 + dy ** 2) / (2 * 1.5 ** 2))
            out["heatmaps"] = hm
            out["offsets"] = torch.stack(torch.broadcast_tensors(dx, dy), -1)  # (m, 17, hh, hw, 2)
        return out


def _crops(rng, m=3, h=64, w=48):
    crops = torch.zeros(m, 3, h, w)
    for i in range(m):
        for lo in (0, w // 2):
            crops[i, :, rng.integers(2, h - 2), lo + rng.integers(1, w // 2 - 1)] = 255.0
    return crops


def test_flip_test_keeps_offsets_and_heatmaps_consistent():
    rng = np.random.default_rng(1)
    crops = _crops(rng)
    plain = SPPE(TwoDotNet(), (64, 48), flip_test=False)(crops, heatmaps=True)
    flipped = SPPE(TwoDotNet(), (64, 48), flip_test=True)(crops, heatmaps=True)
    assert plain.offsets.shape == flipped.offsets.shape == (3, 17, 16, 12, 2)
    # For a mirror-equivariant network the mirrored view, brought back (cells shifted, dx negated,
    # left/right swapped), says exactly what the direct view says.
    torch.testing.assert_close(flipped.keypoints, plain.keypoints)
    torch.testing.assert_close(flipped.heatmaps, plain.heatmaps)
    torch.testing.assert_close(flipped.offsets, plain.offsets)
    # A plain flip (cell c -> hw - 1 - c) would put every joint one cell off.
    naive = torch.flip(plain.heatmaps, dims=[3])
    assert not torch.allclose(unflip_cells(naive, plain.heatmaps, 3), naive)


def _scene():
    """Two frames with two dots per person box; boxes (m, 5)."""
    frames, boxes = [], []
    for h, w, centres in [(120, 160, [(45.0, 60.0), (115.0, 62.0)]), (100, 200, [(100.0, 50.0)])]:
        img = np.zeros((h, w, 3), np.uint8)
        for x, y in centres:
            img[int(y) - 7, int(x) - 6] = 255
            img[int(y) + 9, int(x) + 5] = 255
        frames.append(img)
        boxes.append(np.array([[x - 15, y - 20, x + 15, y + 20, 0.8] for x, y in centres]))
    return frames, boxes


def _estimator(sharp=False, detector=None):
    return RMPEEstimator(SPPE(TwoDotNet(sharp), (64, 48), flip_test=False), detector,
                         EstimatorConfig(sppe=SPPEConfig(scale_factor=1.0), device="cpu"))


def test_intermediates_carry_offsets_per_frame_and_the_association_uses_them():
    frames, boxes = _scene()
    est = _estimator(sharp=True)
    inter = est.intermediates(frames, boxes=boxes, heatmaps=True, candidates=0)
    assert [it.offsets.shape for it in inter] == [(2, 17, 16, 12, 2), (1, 17, 16, 12, 2)]
    assert est.intermediates(frames, boxes=boxes, heatmaps=False)[0].offsets is None
    for it in inter:
        poses, kept = associate_intermediates(it, COCO17)
        assert list(kept) == list(range(len(it.boxes)))
        # sharp heatmaps: only the offsets give the sub-cell position, and they give it exactly
        np.testing.assert_allclose(poses.keypoints, it.keypoints, atol=1e-3)
        it.offsets = None
        blind, _ = associate_intermediates(it, COCO17)
        assert np.abs(blind.keypoints - it.keypoints).max() > 0.2


class _FakeYolo:
    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, images, conf, nms, max_detections):
        return self.boxes[: len(images)]


def test_estimate_and_track_paths_give_the_same_poses_and_ranking():
    from posetracker.app.pipeline import RMPEStages

    frames, boxes = _scene()
    from posetracker.app.build import build_grouping

    est = _estimator(detector=PersonDetector(_FakeYolo(boxes), conf_threshold=0.05, flip=False))
    est.grouping = build_grouping("crowdpose", est.config)
    via_estimate = est.estimate(frames)  # as PoseTracker.estimate / `posetracker estimate`
    stages = RMPEStages(est)
    inter = stages.estimate(frames, stages.detect(frames))
    via_track = [stages.group(it, f) for it, f in zip(inter, frames)]
    for a, b, it in zip(via_estimate, via_track, inter):
        assert len(a) == len(b) == len(it.boxes)
        np.testing.assert_allclose(a.keypoints, b.keypoints)
        np.testing.assert_allclose(a.scores, b.scores)
        # ranked by the estimator's own rule, as the pose-NMS path ranks
        np.testing.assert_allclose(b.scores, est.person_scores(it.box_scores, b.keypoint_scores))
        np.testing.assert_allclose(b.box_scores, it.box_scores)


def test_movenet_sppe_returns_offsets_that_decode_its_keypoints(models_dir, data_dir):
    from posetracker.estimators.sppe import load_sppe
    from posetracker.estimators.transform import box_regions, crop_affines, crop_boxes, frames_to_tensor
    from posetracker.io.sources import read_image

    sppe = load_sppe(models_dir / "movenet-lightning.json")
    img = read_image(data_dir / "coco_mini_val2017" / "val2017" / "000000397133.jpg")
    boxes = np.array([[388.0, 69.0, 498.0, 347.0], [0.0, 262.0, 62.0, 299.0]])
    size = sppe.input_size
    A = crop_affines(box_regions(boxes, size, 1.25), size)
    crops = crop_boxes(frames_to_tensor([img]), np.zeros(2, dtype=np.int64), A, size,
                       frame_sizes=np.array([img.shape[:2]]))
    out = sppe(crops, heatmaps=True)
    m, k, hh, hw = out.heatmaps.shape
    assert out.offsets.shape == (m, k, hh, hw, 2)
    # each keypoint is (cell + offset) * stride - 0.5 at one of the cells (x first, cells)
    cells = torch.stack(torch.meshgrid(torch.arange(hw), torch.arange(hh), indexing="xy"), -1)
    decoded = (cells + out.offsets) * out.heatmap_stride - 0.5  # (m, k, hh, hw, 2)
    err = (decoded - out.keypoints[:, :, None, None]).norm(dim=-1).reshape(m, k, -1).min(-1).values
    assert err.max() < 0.05, err.max()


@pytest.mark.parametrize("association", ["crowdpose", "auto"])
def test_estimate_cli_crowdpose_on_a_real_image(tmp_path, data_dir, models_dir, association):
    import shutil

    from posetracker.app.cli import main

    coco = data_dir / "coco_mini_val2017"
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(coco / "val2017" / "000000397133.jpg", folder)
    gt_path = coco / "annotations" / "person_keypoints_val2017.json"
    out = tmp_path / "preds.json"
    assert main(["estimate", str(folder), "-o", str(out), "--gt", str(gt_path), "--association",
                 association, "--pose-model", str(models_dir / "movenet-lightning.json"),
                 "--detector", str(models_dir / "yolo-fastest-1.1-xl.cfg"), "--device", "cpu",
                 "--threads", "1", "-q"]) == 0
    preds = json.loads(out.read_text())
    gt = json.loads(gt_path.read_text())
    image_id = next(im["id"] for im in gt["images"] if im["file_name"] == "000000397133.jpg")
    assert preds and all(p["image_id"] == image_id and len(p["keypoints"]) == 51 for p in preds)
    # the clearly visible person (the man at the right) is found: mean joint error < 10 px
    person = max((a for a in gt["annotations"] if a["image_id"] == image_id),
                 key=lambda a: a["num_keypoints"])
    g = np.array(person["keypoints"], float).reshape(17, 3)
    vis = g[:, 2] > 0
    best = min(np.linalg.norm(np.array(p["keypoints"]).reshape(17, 3)[vis, :2] - g[vis, :2],
                              axis=1).mean() for p in preds)
    assert best < 10, best
