"""Parametric pose NMS: duplicates are merged, distinct people are kept (both modes)."""

from __future__ import annotations

import numpy as np
import pytest

from posetracker.core.pose_nms import PoseNMSConfig, alphapose_pose_nms, pose_nms, rmpe_pose_nms
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17


def _person(rng, x0, y0, size=200.0):
    """17 joints spread over a size x size box at (x0, y0)."""
    return np.column_stack([x0 + rng.uniform(0.2, 0.8, 17) * size,
                            y0 + np.linspace(0.05, 0.95, 17) * size])


def _duplicated_scene(seed=0):
    rng = np.random.default_rng(seed)
    people = [_person(rng, 0, 0), _person(rng, 400, 50), _person(rng, 120, 10)]  # #3 overlaps #1
    kps, scores, boxes, truth_of = [], [], [], []
    for t, p in enumerate(people):
        for d in range(3):  # each person detected three times, jittered by ~1.5 px
            kps.append(p + rng.normal(0, 1.5, p.shape))
            scores.append(np.clip(rng.uniform(0.5, 0.95, 17) - 0.1 * d, 0.05, 1))
            x1, y1 = p.min(0) - 10 + rng.normal(0, 4, 2)
            x2, y2 = p.max(0) + 10 + rng.normal(0, 4, 2)
            boxes.append([x1, y1, x2, y2])
            truth_of.append(t)
    return people, np.array(kps), np.array(scores), np.array(boxes), np.array(truth_of)


@pytest.mark.parametrize("mode", ["rmpe", "alphapose"])
def test_duplicates_merged_distinct_people_kept(mode):
    people, kps, scores, boxes, truth_of = _duplicated_scene()
    cfg = PoseNMSConfig(mode=mode)
    if mode == "rmpe":
        res = rmpe_pose_nms(kps, scores, boxes, config=cfg)
    else:
        res = alphapose_pose_nms(kps, scores, boxes, config=cfg)
    assert len(res.keep) == 3
    assert sorted(truth_of[res.keep].tolist()) == [0, 1, 2]
    for c, i in enumerate(res.keep):
        # each cluster holds exactly the duplicates of one person
        assert set(truth_of[res.clusters[c]].tolist()) == {truth_of[i]}
        assert len(res.clusters[c]) == 3
        # the merged pose is at least as close to the truth as the mean duplicate error
        err = np.linalg.norm(res.keypoints[c] - people[truth_of[i]], axis=-1).mean()
        assert err < 2.0
    assert np.all((res.keypoint_scores > 0) & (res.keypoint_scores <= 1))


def test_pick_order_follows_pose_score_and_merge_is_score_weighted():
    base = np.zeros((17, 2)) + np.arange(17)[:, None] * 10
    kps = np.stack([base, base + 2.0])
    scores = np.stack([np.full(17, 0.9), np.full(17, 0.3)])
    boxes = np.array([[0, 0, 200, 200]] * 2, dtype=float)
    res = rmpe_pose_nms(kps, scores, boxes, config=PoseNMSConfig())
    assert res.keep.tolist() == [0] and res.clusters[0].tolist() == [0, 1]
    np.testing.assert_allclose(res.keypoints[0], base + 2.0 * 0.3 / 1.2)
    np.testing.assert_allclose(res.keypoint_scores[0], (0.81 + 0.09) / 1.2)


def test_absent_joints_and_none_mode():
    rng = np.random.default_rng(1)
    kp = np.stack([_person(rng, 0, 0), _person(rng, 300, 0)])
    kp[0, 3] = np.nan
    sc = np.full((2, 17), 0.8)
    sc[0, 3] = 0
    poses = FramePoses(kp, sc, np.array([[0, 0, 200, 200], [300, 0, 500, 200.]]), np.array([.9, .8]),
                       COCO17)
    for mode in ("rmpe", "alphapose", "none"):
        out, res = pose_nms(poses, PoseNMSConfig(mode=mode))
        assert len(out) == 2
        assert np.isnan(out.keypoints[res.keep.tolist().index(0), 3]).all()
    empty, _ = pose_nms(FramePoses.empty(COCO17))
    assert len(empty) == 0


def test_eta_controls_elimination():
    _, kps, scores, boxes, _ = _duplicated_scene(2)
    n_strict = len(rmpe_pose_nms(kps, scores, boxes, config=PoseNMSConfig(eta=1e9)).keep)
    n_loose = len(rmpe_pose_nms(kps, scores, boxes, config=PoseNMSConfig(eta=0.0)).keep)
    assert n_strict == len(kps) and n_loose == 1


def test_fit_nms_coordinate_search_improves_a_bad_start():
    from posetracker.estimators.fit_nms import fit_nms

    frames = {}
    for seed in range(3):
        _, kps, scores, boxes, _ = _duplicated_scene(seed)
        frames[seed] = FramePoses(kps, scores, boxes, scores.mean(1), COCO17)

    def score(merged: dict) -> float:  # 1 when every image has exactly its 3 people
        return -sum(abs(len(p) - 3) for p in merged.values())

    start = PoseNMSConfig(eta=60.0)  # far too strict: nothing is eliminated
    res = fit_nms(frames, score, start, max_rounds=6, refinements=0, factors=(0.25, 0.5, 1.0, 2.0))
    assert res.start_score == -18 and res.score == 0
    assert res.config.eta < start.eta and len(res.history) > 1
