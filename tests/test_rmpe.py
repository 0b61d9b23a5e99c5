"""The RMPE per-frame estimator with a toy pose network: geometry, NMS, timings, intermediates."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from posetracker.core.pose_nms import PoseNMSConfig
from posetracker.estimators.config import EstimatorConfig, SPPEConfig
from posetracker.estimators.rmpe import PersonDetector, RMPEEstimator
from posetracker.estimators.sppe import SPPE
from posetracker.estimators.transform import crop_to_image


class BlobNet(nn.Module):
    """Puts every joint at the brightest pixel of channel 0 (a toy SPPE with a known answer)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, return_heatmaps=False, candidates=0):
        m, _, h, w = x.shape
        flat = x[:, 0].reshape(m, -1)
        val, idx = flat.max(1)
        xy = torch.stack([(idx % w).float(), (idx // w).float()], -1)
        out = {"keypoints": xy[:, None].expand(m, 17, 2), "scores": (val / 255)[:, None].expand(m, 17)}
        if return_heatmaps:
            out["heatmaps"] = nn.functional.avg_pool2d(x[:, :1], 4).expand(m, 17, h // 4, w // 4)
        if candidates:
            out["candidates"] = torch.cat([out["keypoints"], out["scores"][..., None]], -1)[:, :, None]
        return out


def _scene():
    """Two frames of different sizes with bright dots (people) at known points, and their boxes."""
    frames, points, boxes = [], [], []
    for h, w, pts in [(120, 160, [(40.0, 60.0), (120.0, 50.0)]), (100, 200, [(150.0, 30.0)])]:
        yy, xx = np.mgrid[0:h, 0:w]
        blob = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0) for x, y in pts)
        img = np.repeat((255 * blob)[..., None], 3, axis=2).astype(np.uint8)
        frames.append(img)
        points.append(np.array(pts))
        boxes.append(np.array([[x - 15, y - 25, x + 15, y + 25, 0.9] for x, y in pts]))
    return frames, points, boxes


def _estimator(**cfg):
    sppe = SPPE(BlobNet(), (64, 48), flip_test=False)
    return RMPEEstimator(sppe, config=EstimatorConfig(**cfg))


def test_keypoints_return_to_image_pixels():
    frames, points, boxes = _scene()
    est = _estimator(sppe=SPPEConfig(scale_factor=1.0))
    poses = est.estimate(frames, boxes=boxes)
    assert [len(p) for p in poses] == [2, 1]
    for p, pts in zip(poses, points):
        got = p.keypoints[np.argsort(p.keypoints[:, 0, 0]), 0]
        # crop pixels are 50/64 image pixels here: the argmax lands within one crop pixel
        np.testing.assert_allclose(got, pts[np.argsort(pts[:, 0])], atol=0.8)
        assert np.all(p.scores > 0.5)
    assert est.times.frames["detect"] == est.times.frames["nms"] == 2 and est.times.persons == 3
    assert set(est.times.ms_per_frame()) >= {"detect", "transform", "sppe", "sdtn", "nms", "total"}


def test_duplicate_boxes_merged_by_pose_nms_and_kept_without():
    frames, points, boxes = _scene()
    rng = np.random.default_rng(0)
    dup = [np.concatenate([b + np.r_[rng.normal(0, 2, 4), 0] for _ in range(3)]) for b in boxes]
    with_nms = _estimator(nms=PoseNMSConfig(mode="rmpe")).estimate(frames, boxes=dup)
    alpha = _estimator(nms=PoseNMSConfig(mode="alphapose")).estimate(frames, boxes=dup)
    without = _estimator(nms=PoseNMSConfig(mode="none")).estimate(frames, boxes=dup)
    assert [len(p) for p in with_nms] == [2, 1]
    assert [len(p) for p in alpha] == [2, 1]
    assert [len(p) for p in without] == [6, 3]


def test_detector_path_and_empty_frames():
    frames, points, boxes = _scene()

    class FakeYolo:
        def detect(self, images, conf, nms, max_detections):
            return [b for b in boxes[: len(images)]] + [np.zeros((0, 5))] * (len(images) - len(boxes))

    est = RMPEEstimator(SPPE(BlobNet(), (64, 48), flip_test=False),
                        PersonDetector(FakeYolo(), conf_threshold=0.05, min_box_size=4, flip=False),
                        EstimatorConfig(frame_batch=8))
    empty = np.zeros((50, 60, 3), np.uint8)
    poses = est.estimate(frames + [empty])
    assert [len(p) for p in poses] == [2, 1, 0]


def test_intermediates_give_heatmaps_candidates_and_affines():
    frames, points, boxes = _scene()
    est = _estimator()
    inter = est.intermediates(frames, boxes=boxes, heatmaps=True, candidates=1)
    assert len(inter) == 2 and inter[0].heatmaps.shape == (2, 17, 16, 12)
    assert inter[0].heatmap_stride == 4.0
    for it, pts in zip(inter, points):
        # candidates are already in image pixels; the affines map crop pixels there too
        np.testing.assert_allclose(it.candidates[:, 0, 0, :2], it.keypoints[:, 0], atol=1e-6)
        centre = crop_to_image(torch.tensor([[[23.5, 31.5]]] * len(pts)), it.affines).numpy()[:, 0]
        np.testing.assert_allclose(centre, (it.boxes[:, :2] + it.boxes[:, 2:]) / 2, atol=1e-6)


def test_flip_test_is_symmetric_for_a_symmetric_net():
    frames, points, boxes = _scene()
    est = _estimator(sppe=SPPEConfig(scale_factor=1.0))
    est.sppe.flip_test = True
    for p, pts in zip(est.estimate(frames, boxes=boxes), points):
        # mirrored crops, un-mirrored and averaged, still land on the dots
        np.testing.assert_allclose(np.sort(p.keypoints[:, 0, 0]), np.sort(pts[:, 0]), atol=0.8)
        np.testing.assert_allclose(np.sort(p.keypoints[:, 0, 1]), np.sort(pts[:, 1]), atol=0.8)


class _GivenBoxes:
    """A detector returning fixed ``(m, 5)`` boxes for every frame."""

    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, dtype=np.float64)

    def detect(self, images, conf, nms, max_detections):
        return [self.boxes[self.boxes[:, 4] >= conf][:max_detections] for _ in images]


_FRAME = [np.zeros((200, 300, 3), np.uint8)]


def test_a_part_inside_a_better_box_is_dropped():
    person = [50, 20, 130, 190, 0.9]
    upper_body = [60, 25, 125, 100, 0.4]     # wholly inside, less than half the score
    det = PersonDetector(_GivenBoxes([person, upper_body]), contain_threshold=0.8, flip=False,
                         contain_score_ratio=0.6)
    assert det(_FRAME)[0].tolist() == [person]
    # a part scored near its whole is not dropped (a child in front of an adult may be one)
    near = [60, 25, 125, 100, 0.8]
    assert len(det.__class__(_GivenBoxes([person, near]), det.config)(_FRAME)[0]) == 2
    # off: every box reaches the pose model
    assert len(PersonDetector(_GivenBoxes([person, upper_body]), flip=False)(_FRAME)[0]) == 2


def test_two_overlapping_people_both_reach_the_pose_model():
    front = [50, 20, 130, 190, 0.9]
    behind = [100, 30, 170, 185, 0.3]        # half of it hidden behind the front person
    det = PersonDetector(_GivenBoxes([front, behind]), contain_threshold=0.8, flip=False,
                         contain_score_ratio=0.6)
    assert len(det(_FRAME)[0]) == 2


def test_too_small_boxes_are_dropped():
    person = [50, 20, 130, 190, 0.9]
    tiny = [200, 100, 210, 130, 0.9]         # 10 px wide
    assert len(PersonDetector(_GivenBoxes([person, tiny]), min_box_size=12, flip=False)(_FRAME)[0]) == 1
    assert len(PersonDetector(_GivenBoxes([person, tiny]), min_box_size=8, flip=False)(_FRAME)[0]) == 2


def test_detector_config_checks_the_filters():
    import pytest

    from posetracker.estimators.config import DetectorConfig

    for bad in ({"contain_threshold": 1.5}, {"contain_threshold": -0.1},
                {"contain_score_ratio": 0.0}, {"contain_score_ratio": 1.2}):
        with pytest.raises(ValueError, match="contain"):
            DetectorConfig(**bad)
