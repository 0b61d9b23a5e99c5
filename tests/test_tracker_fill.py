"""PoseFlow gap filling: interpolation, what is filled and what not, scores, and that filled poses
reach the tracker's consumers (``track_frames``, the pipeline's writers) in the frames they fill."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from posetracker.tracker.fill import Anchor, interpolate_box, interpolate_joints
from tests.test_tracker import frame, person, run


def test_interpolate_joints_lies_on_the_line_with_decayed_scores():
    kp_a = np.array([[0.0, 0.0], [10.0, 10.0], [np.nan, np.nan], [5.0, 5.0]])
    t_a = np.array([2.0, 1.0, -np.inf, 2.0])
    sc_a = np.array([0.8, 0.6, 0.0, 0.9])
    kp_b = np.array([[40.0, 20.0], [30.0, 10.0], [7.0, 7.0], [np.nan, np.nan]])
    sc_b = np.array([0.6, 0.6, 0.9, 0.0])
    kp, sc = interpolate_joints(4, kp_a, t_a, sc_a, kp_b, sc_b, t_b=6, max_gap=7, decay=0.5)
    # joint 0: seen at 2 and 6, halfway; joint 1: seen at 1 and 6, 3/5 of the way
    assert np.allclose(kp[0], [20.0, 10.0]) and np.allclose(kp[1], [22.0, 10.0])
    # joints seen on one side only are not invented
    assert np.isnan(kp[2:]).all() and (sc[2:] == 0).all()
    # scores: interpolated, times decay ** (frames to the nearer sighting)
    assert sc[0] == pytest.approx(0.7 * 0.5 ** 2) and sc[1] == pytest.approx(0.6 * 0.5 ** 2)
    # sightings further apart than max_gap + 1 frames are not bridged
    kp, sc = interpolate_joints(4, kp_a, t_a, sc_a, kp_b, sc_b, t_b=6, max_gap=3, decay=0.5)
    assert np.isfinite(kp[0]).all() and not np.isfinite(kp[1]).any()
    assert np.allclose(interpolate_box(3, [0, 0, 10, 10], 1, [4, 8, 14, 18], 5), [2, 4, 12, 14])


def test_anchor_keeps_the_last_sighting_of_each_joint():
    a = Anchor.first(0, np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([0.9, 0.8]),
                     np.zeros(4), 0.9, 0.95, None)
    a.update(3, np.array([[5.0, 5.0], [np.nan, np.nan]]), np.array([0.7, 0.0]), np.ones(4), 0.7,
             0.75, None)
    assert a.t == 3 and a.seen_at.tolist() == [3.0, 0.0] and (a.person_score, a.box_score) == (0.7, 0.75)
    assert np.allclose(a.kp, [[5.0, 5.0], [2.0, 2.0]]) and np.allclose(a.joint_scores, [0.7, 0.8])


def _walker(n: int, missing: set[int], dx: float = 4.0):
    return [frame(person(100 + dx * t, 300)) if t not in missing else frame() for t in range(n)]


def test_a_missed_person_is_filled_with_its_id_on_the_line_between_sightings():
    out = run("poseflow", _walker(24, {10, 11, 12}))
    assert [len(f) for f in out] == [1] * 24
    assert {int(f.track_ids[0]) for f in out} == {0}
    for t in (10, 11, 12):
        assert np.allclose(out[t].keypoints[0], person(100 + 4 * t, 300))
        # honest scores: below the detections (0.9), lower in the middle of the gap
        near = min(t - 9, 13 - t)
        assert np.allclose(out[t].keypoint_scores[0], 0.9 * 0.9 ** near)
        assert out[t].scores[0] < out[9].scores[0]
    off = run("poseflow", _walker(24, {10, 11, 12}), fill_gaps=False)
    assert [len(f) for f in off][10:13] == [0, 0, 0]


def test_long_gaps_and_ends_of_flows_are_not_filled():
    # A 9-frame gap is longer than max_fill_gap (7): only re-linked, not filled.
    out = run("poseflow", _walker(40, set(range(10, 19))))
    assert [len(f) for f in out][10:19] == [0] * 9
    assert {int(f.track_ids[0]) for f in out if len(f)} == {0}
    # max_fill_gap 9 fills it in part: a gap is filled while its frames are in the window (8)
    out = run("poseflow", _walker(40, set(range(10, 19))), max_fill_gap=9)
    assert 0 < sum(len(f) for f in out[10:19]) < 9
    # A person who leaves (or has not arrived) is not extrapolated.
    out = run("poseflow", _walker(20, set(range(12, 20)) | {0, 1}))
    assert [len(f) for f in out] == [0, 0] + [1] * 10 + [0] * 8


def test_missing_joints_are_interpolated_in_detected_poses():
    frames = _walker(20, set())
    wrist = 2  # any joint index
    kp = frames[10].keypoints.copy()
    sc = frames[10].keypoint_scores.copy()
    kp[0, wrist], sc[0, wrist] = np.nan, 0.0
    frames[10] = dataclasses.replace(frames[10], keypoints=kp, keypoint_scores=sc)
    out = run("poseflow", frames)
    assert np.allclose(out[10].keypoints[0, wrist], person(140, 300)[wrist])
    assert out[10].keypoint_scores[0, wrist] == pytest.approx(0.9 * 0.9)
    assert np.allclose(np.delete(out[10].keypoints[0], wrist, 0),
                       np.delete(person(140, 300), wrist, 0))
    off = run("poseflow", frames, fill_joints=False)
    assert np.isnan(off[10].keypoints[0, wrist]).all()


def test_a_suppressed_flow_is_never_filled():
    # Three isolated poses (shorter than min_flow_len 4): suppressed, and their gaps stay empty.
    frames = [frame(person(100, 300)) if t in (3, 5, 7) else frame() for t in range(12)]
    assert all(len(f) == 0 for f in run("poseflow", frames))


def test_filled_poses_reach_the_pipeline_writers():
    from pipeline_doubles import FakeStages, make_frames

    from posetracker.app.pipeline import PipelineOptions, run_pipeline
    from posetracker.tracker.poseflow import PoseFlowTracker

    class Misses(FakeStages):  # the detector misses the second person in frames 5 and 6
        def detect(self, images):
            return [[0] if int(im[0, 0, 0]) in (5, 6) else [0, 1] for im in images]

    written = []
    run_pipeline(make_frames(14), Misses(people=2), PoseFlowTracker(),
                 lambda fr, poses: written.append((fr.index, poses)), PipelineOptions(mode="sequential"))
    assert [i for i, _ in written] == list(range(14))
    assert [len(p) for _, p in written] == [2] * 14
    assert all(sorted(p.track_ids.tolist()) == [0, 1] for _, p in written)


def test_fills_add_more_true_than_false_positives_on_bonn(data_dir):
    """Bonn test annotations, moderate noise, seed 1 (the tuning seed): each kind of fill must add
    more matched joints than false positives, by a wide margin."""
    from posetracker.app.benchmarks.tracking import tracker_config
    from posetracker.evaluation.posetrack import evaluate_videos_per_joint
    from posetracker.io.formats.bonn import read_bonn_mat
    from posetracker.tracker import make_tracker, track_frames
    from posetracker.tracker.perturb import NOISE_LEVELS, perturb_video

    gt = read_bonn_mat(data_dir / "bonn_posetrack" / "annolist" / "test" / "annolist.mat")[:12]
    noisy = [perturb_video(v, NOISE_LEVELS["moderate"], 1 + i) for i, v in enumerate(gt)]

    def counts(name):
        tracker = make_tracker(tracker_config(name))
        preds = [dataclasses.replace(v, frames=[
            dataclasses.replace(f, poses=o)
            for f, o in zip(v.frames, track_frames(tracker, [f.poses for f in v.frames]))])
            for v in noisy]
        j = evaluate_videos_per_joint(gt, preds).sum()
        return j["GT joints"] - j["Misses"], j["False positives"], j

    tp_none, fp_none, _ = counts("poseflow-nofill")
    tp_gaps, fp_gaps, _ = counts("poseflow-nojointfill")
    tp_all, fp_all, _ = counts("poseflow")
    assert tp_gaps - tp_none > 2 * (fp_gaps - fp_none) > 0
    assert tp_all - tp_gaps > 5 * (fp_all - fp_gaps)
