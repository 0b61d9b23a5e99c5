"""`posetracker eval posetrack`: poseval's rules on hand-made and Bonn-derived cases.

Expected values are computed by hand from the rules (see evaluation/posetrack.py's docstring):
head size 0.6 x head-box diagonal, PCKh 0.5, VOC AP from per-joint scores, CLEAR-MOT per joint
with the last frame of each sequence skipped.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from posetracker.app.api import evaluate_posetrack
from posetracker.app.cli import main
from posetracker.core.poses import Frame, FramePoses, VideoPoses
from posetracker.core.schemas import COCO17, POSETRACK17, convert_keypoints
from posetracker.evaluation.posetrack import (
    JOINTS,
    average_precision,
    evaluate_videos,
    evaluate_videos_per_joint,
)
from posetracker.evaluation.posetrack_mot import MotCounter
from posetracker.io.formats.bonn import read_bonn_mat
from posetracker.io.formats.posetrack import write_posetrack17, write_posetrack18

K = POSETRACK17.num_keypoints
ANNOTATED = [j for j in JOINTS if j != "nose"]  # Bonn never annotates the nose


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _poses(kp, ids, score=1.0, heads=None, scores=None):
    kp = np.asarray(kp, dtype=np.float64).reshape(-1, K, 2)
    sc = np.where(np.isfinite(kp).all(-1), score, 0.0) if scores is None else scores
    return FramePoses.from_keypoints(kp, sc, POSETRACK17, track_ids=np.asarray(ids, np.int64)
                                     ) if heads is None else FramePoses(
        kp, sc, np.zeros((len(kp), 4)), np.ones(len(kp)), POSETRACK17,
        track_ids=np.asarray(ids, np.int64), head_boxes=np.asarray(heads, float).reshape(-1, 4))


def _video(name, frames):
    return VideoPoses(name, [Frame(i, p) for i, p in enumerate(frames)], POSETRACK17)


TEMPLATE = np.stack([np.arange(K) * 6.0, np.arange(K) * 4.0], axis=1)  # (15, 2), within 100 px
HEAD = [0.0, 0.0, 36.0, 48.0]  # diagonal 60 -> head size 36 px -> match within 18 px


def _tiny_case():
    """Two people 500 px apart, four frames; see test_tiny_case_by_hand for the story."""
    A, B, FAR = TEMPLATE, TEMPLATE + [500.0, 0.0], TEMPLATE + [1000.0, 0.0]
    gt = _video("tiny", [_poses([A, B], [0, 1], heads=[HEAD, HEAD]) for _ in range(4)])
    pr = _video("tiny", [
        _poses([A, B], [10, 11], 0.9),                              # two matches
        _poses([A, FAR], [10, 12], scores=np.array([[0.9] * K, [0.95] * K])),  # B missed, 1 FP
        _poses([A, B], [11, 10], 0.9),                              # both identities switch
        _poses([A], [11], 0.8),                                     # last frame: AP only
    ])
    return gt, pr


@pytest.fixture(scope="module")
def bonn_videos(data_dir):
    return read_bonn_mat(data_dir / "bonn_posetrack/annolist/test/annolist.mat")


@pytest.fixture(scope="module")
def clip(bonn_videos):
    """Bonn test video 000048, people 0 and 1 only (far apart in all 61 frames): ground truth."""
    v = next(v for v in bonn_videos if v.name == "000048")
    frames = []
    for f in v.frames:
        keep = np.isin(f.poses.track_ids, [0, 1])
        frames.append(Frame(f.index, f.poses.subset(keep)))
    assert all(len(f.poses) == 2 for f in frames)
    return VideoPoses("000048", frames, POSETRACK17)


def _as_pred(gt: VideoPoses, edit=None) -> VideoPoses:
    """Ground truth copied as predictions (score 1), then ``edit(t, kp, ids, sc)`` applied."""
    frames = []
    for t, f in enumerate(gt.frames):
        kp = np.array(f.poses.keypoints)
        ids = np.array(f.poses.track_ids)
        sc = np.where(np.isfinite(kp).all(-1), 1.0, 0.0)
        if edit is not None:
            kp, ids, sc = edit(t, kp, ids, sc)
        frames.append(Frame(t, FramePoses.from_keypoints(kp, sc, POSETRACK17, track_ids=ids)))
    return VideoPoses(gt.name, frames, POSETRACK17)


def _present(clip, person, frames):
    """(len(frames), 15) bool: person ``person`` (track id) has the joint in those frames."""
    out = []
    for t in frames:
        p = clip.frames[t].poses
        i = int(np.flatnonzero(p.track_ids == person)[0])
        out.append(p.present[i])
    return np.array(out)


def _head_sizes(clip, t):
    hb = clip.frames[t].poses.head_boxes
    return 0.6 * np.hypot(hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1])


# ----------------------------------------------------------------------------------------------
# hand-made case
# ----------------------------------------------------------------------------------------------
def test_tiny_case_by_hand():
    gt, pr = _tiny_case()
    per_joint = evaluate_videos_per_joint([gt], [pr])
    # MOT over frames 0-2 (frame 3 is the last): 6 objects; 3 matches, 2 switches (frame 2),
    # 1 miss and 1 false positive (frame 1) per joint.
    assert (per_joint["ID switches"] == 2).all()
    assert (per_joint["Misses"] == 1).all() and (per_joint["False positives"] == 1).all()
    np.testing.assert_allclose(per_joint["MOTA"], 100 * (1 - 4 / 6))
    np.testing.assert_allclose(per_joint["MOTP"], 100.0)
    np.testing.assert_allclose(per_joint["Precision"], 100 * 5 / 6)
    np.testing.assert_allclose(per_joint["Recall"], 100 * 5 / 6)
    # AP over all 4 frames: 8 GT joints; ranked: FP (0.95), 5 TP (0.9), TP (0.8).
    # Interpolated precision is 6/7 up to recall 6/8 -> AP = 6/8 * 6/7.
    np.testing.assert_allclose(per_joint["AP"], 100 * 6 / 8 * 6 / 7)
    row = evaluate_videos([gt], [pr]).loc["total"]
    assert row["MOTA Total"] == pytest.approx(100 / 3)
    assert row["AP Head"] == pytest.approx(100 * 36 / 56)
    assert row["Precision Total"] == pytest.approx(500 / 6)


def test_average_precision_by_hand():
    # TP, FP, TP with 4 positives: precision 1, 1/2, 2/3 at recall 1/4, 1/4, 2/4.
    # Interpolated: 1 for the first quarter, 2/3 for the second -> 0.25 + 0.25 * 2/3.
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 4) == pytest.approx(
        0.25 + 0.25 * 2 / 3)
    assert average_precision(np.array([]), np.array([]), 3) == 0.0


def test_pckh_threshold_is_half_head_size():
    A = TEMPLATE
    gt = _video("t", [_poses([A], [0], heads=[HEAD]) for _ in range(3)])
    # head size 36 px: shifting by 17.9 px matches, by 18.1 px does not
    near = _video("t", [_poses([A + [17.9, 0.0]], [0]) for _ in range(3)])
    far = _video("t", [_poses([A + [18.1, 0.0]], [0]) for _ in range(3)])
    pj = evaluate_videos_per_joint([gt], [near])
    np.testing.assert_allclose(pj["AP"], 100.0)
    np.testing.assert_allclose(pj["MOTP"], 100 * (1 - 17.9 / 36))
    pj = evaluate_videos_per_joint([gt], [far])
    np.testing.assert_allclose(pj["AP"], 0.0)
    np.testing.assert_allclose(pj["MOTA"], -100.0)  # every object missed, every hypothesis FP


def test_empty_prediction_frame_costs_one_miss_and_one_fp_per_joint():
    """poseval enters one stand-in object and hypothesis when a frame has no predictions."""
    A, B = TEMPLATE, TEMPLATE + [500.0, 0.0]
    gt = _video("t", [_poses([A, B], [0, 1], heads=[HEAD, HEAD]) for _ in range(4)])
    empty = FramePoses.empty(POSETRACK17, tracked=True)
    both = _poses([A, B], [0, 1])
    pr = _video("t", [both, empty, both, both])
    pj = evaluate_videos_per_joint([gt], [pr])
    # objects: 2 + 1 (stand-in) + 2 = 5; one miss, one FP
    assert (pj["Misses"] == 1).all() and (pj["False positives"] == 1).all()
    np.testing.assert_allclose(pj["MOTA"], 100 * (1 - 2 / 5))
    # AP: 6 of 8 GT joints found, all ranked equally, no FP detections
    np.testing.assert_allclose(pj["AP"], 100 * 6 / 8)


def test_ignore_regions_remove_points_on_both_sides():
    A, B = TEMPLATE, TEMPLATE + [500.0, 0.0]
    box = np.array([[450.0, -50.0], [700.0, -50.0], [700.0, 150.0], [450.0, 150.0]])  # around B
    frames = [Frame(i, _poses([A, B], [0, 1], heads=[HEAD, HEAD]), ignore_regions=(box,))
              for i in range(3)]
    gt = VideoPoses("t", frames, POSETRACK17)
    only_a = _video("t", [_poses([A], [0]) for _ in range(3)])
    b_far = _video("t", [_poses([A, B + [30.0, 0.0]], [0, 1]) for _ in range(3)])
    for pr in (only_a, b_far):  # B is ignored whether or not it is predicted (inside the region)
        row = evaluate_videos([gt], [pr]).loc["total"]
        assert row["AP Total"] == pytest.approx(100.0)
        assert row["MOTA Total"] == pytest.approx(100.0)
        assert row["Precision Total"] == pytest.approx(100.0)


def test_untracked_predictions_score_ap_only():
    gt, pr = _tiny_case()
    untracked = VideoPoses(pr.name, [Frame(f.index, f.poses.with_track_ids(None)) for f in pr],
                           POSETRACK17)
    row = evaluate_videos([gt], [untracked]).loc["total"]
    assert row["AP Total"] == pytest.approx(100 * 6 / 8 * 6 / 7)
    assert np.isnan(row["MOTA Total"])


def test_other_schemas_are_converted():
    """COCO-17 predictions score their body joints; head_top/neck count as missing."""
    gt, _ = _tiny_case()
    frames = []
    for f in gt.frames:
        kp, sc = convert_keypoints(f.poses.keypoints, np.ones((len(f.poses), K)), POSETRACK17,
                                   COCO17)
        frames.append(Frame(f.index, FramePoses.from_keypoints(kp, sc, COCO17, track_ids=[0, 1])))
    pj = evaluate_videos_per_joint([gt], [VideoPoses("tiny", frames, COCO17)])
    assert pj.loc["left_knee", "AP"] == pytest.approx(100.0)
    assert pj.loc["head_top", "AP"] == 0.0 and pj.loc["head_bottom", "Recall"] == 0.0


# ----------------------------------------------------------------------------------------------
# perturbed Bonn annotations
# ----------------------------------------------------------------------------------------------
def test_bonn_clip_self_score(clip):
    pj = evaluate_videos_per_joint([clip], [_as_pred(clip)])
    np.testing.assert_allclose(pj.loc[ANNOTATED, ["AP", "MOTA", "MOTP", "Precision", "Recall"]],
                               100.0)
    assert pj.loc["nose"].isna()[["AP", "MOTA"]].all()


def test_swapped_ids_in_one_middle_frame(clip):
    t = 30
    def swap(i, kp, ids, sc):
        return kp, (ids[::-1].copy() if i == t else ids), sc
    pj = evaluate_videos_per_joint([clip], [_as_pred(clip, swap)])
    n = len(clip)
    # The people are far apart, so at frame t each person present there switches to the other's
    # id (if matched before: present in an earlier frame), and switches back at its next frame
    # with the joint (if that frame is scored: the last frame is not).
    expect = np.zeros(K, dtype=int)
    for p in (0, 1):
        has = _present(clip, p, range(n))
        expect += has[t] & has[:t].any(0)
        expect += has[t] & has[t + 1:n - 1].any(0)
    idx = [JOINTS.index(j) for j in ANNOTATED]
    assert expect[idx].min() >= 2  # the clip gives every annotated joint a switch
    np.testing.assert_array_equal(pj["ID switches"].to_numpy(), expect)
    n_obj = np.array([sum(_present(clip, p, range(n - 1))[:, j].sum() for p in (0, 1))
                      for j in range(K)])
    np.testing.assert_allclose(pj["MOTA"].to_numpy()[idx], 100 * (1 - expect[idx] / n_obj[idx]))
    np.testing.assert_allclose(pj.loc[ANNOTATED, "Recall"], 100.0)  # switches are detections
    np.testing.assert_allclose(pj.loc[ANNOTATED, "AP"], 100.0)  # AP ignores identities


def test_broken_track_costs_one_switch(clip):
    t = 20
    def rename(i, kp, ids, sc):
        ids = ids.copy()
        if i >= t:
            ids[ids == 0] = 77  # person 0 gets a new id from frame t on
        return kp, ids, sc
    pj = evaluate_videos_per_joint([clip], [_as_pred(clip, rename)])
    before = _present(clip, 0, range(t)).any(0)
    at_t = _present(clip, 0, range(t, len(clip) - 1))
    # the first frame >= t where the joint is present brings the one switch, if matched before
    expect = (before & at_t.any(0)).astype(int)
    np.testing.assert_array_equal(pj["ID switches"].to_numpy(), expect)


def test_jitter_within_and_beyond_threshold(clip):
    j = JOINTS.index("left_wrist")
    def shift(frac):
        def edit(i, kp, ids, sc):
            kp = kp.copy()
            kp[:, j, 0] += frac * _head_sizes(clip, i)
            return kp, ids, sc
        return edit
    pj = evaluate_videos_per_joint([clip], [_as_pred(clip, shift(0.3))])
    assert pj.loc["left_wrist", "AP"] == pytest.approx(100.0)
    assert pj.loc["left_wrist", "MOTP"] == pytest.approx(70.0)  # 1 - 0.3 head sizes
    assert pj.loc["right_wrist", "MOTP"] == pytest.approx(100.0)
    pj = evaluate_videos_per_joint([clip], [_as_pred(clip, shift(0.6))])
    assert pj.loc["left_wrist", "AP"] == 0.0
    assert pj.loc["left_wrist", "MOTA"] == pytest.approx(-100.0)  # all missed, all FP
    assert pj.loc["left_wrist", "Precision"] == 0.0
    assert pj.loc["right_wrist", "AP"] == pytest.approx(100.0)


def test_dropped_joints_lower_recall_and_ap(clip):
    j = JOINTS.index("right_knee")
    def drop(i, kp, ids, sc):
        kp = kp.copy()
        if i % 2 == 0:
            kp[:, j] = np.nan
        return kp, ids, sc
    pj = evaluate_videos_per_joint([clip], [_as_pred(clip, drop)])
    n = len(clip)
    pres = np.stack([_present(clip, p, range(n))[:, j] for p in (0, 1)], 1)  # (n, 2)
    kept = pres[1::2].sum()
    # every kept detection is a TP with the same score: AP = recall = kept / annotated
    assert pj.loc["right_knee", "AP"] == pytest.approx(100 * kept / pres.sum())
    misses = pres[:-1][0::2].sum()  # even frames except the last
    assert pj.loc["right_knee", "Misses"] == misses
    assert pj.loc["right_knee", "MOTA"] == pytest.approx(100 * (1 - misses / pres[:-1].sum()))


def test_false_positives_lower_precision_and_ap(clip):
    def add_fp(score):
        def edit(i, kp, ids, sc):
            fp = kp[:1] + [2000.0, 2000.0]  # far from everyone
            fs = np.where(np.isfinite(fp).all(-1), score, 0.0)
            return np.concatenate([kp, fp]), np.append(ids, 50), np.concatenate([sc, fs])
        return edit
    n = len(clip)
    pres_gt = np.array([sum(_present(clip, p, range(n))[:, j].sum() for p in (0, 1))
                        for j in range(K)])
    pres_fp_mot = _present(clip, 0, range(n - 1)).sum(0)
    pres_fp = _present(clip, 0, range(n)).sum(0)
    low = evaluate_videos_per_joint([clip], [_as_pred(clip, add_fp(0.1))])
    high = evaluate_videos_per_joint([clip], [_as_pred(clip, add_fp(2.0))])
    idx = [JOINTS.index(j) for j in ANNOTATED]
    np.testing.assert_array_equal(low["False positives"].to_numpy()[idx], pres_fp_mot[idx])
    det = pres_gt - np.array([sum(_present(clip, p, [n - 1])[0, j] for p in (0, 1))
                              for j in range(K)])
    np.testing.assert_allclose(low["Precision"].to_numpy()[idx],
                               100 * det[idx] / (det[idx] + pres_fp_mot[idx]))
    np.testing.assert_allclose(low["AP"].to_numpy()[idx], 100.0)  # FPs rank below every TP
    # ranked above every TP: interpolated precision is n_gt / (n_gt + n_fp) at every recall
    np.testing.assert_allclose(high["AP"].to_numpy()[idx],
                               100 * pres_gt[idx] / (pres_gt[idx] + pres_fp[idx]))


def test_mot_counter_equals_motmetrics(clip):
    """MotCounter's counts equal motmetrics' on a mix of every perturbation."""
    import motmetrics as mm

    from posetracker.evaluation.posetrack import _mot_inputs, _score_sequence

    rng = np.random.default_rng(0)
    def chaos(i, kp, ids, sc):
        kp = kp + rng.normal(0, 8, kp.shape)
        ids = ids.copy()
        if i % 7 == 3:
            ids = ids[::-1].copy()
        if i % 11 == 5:
            kp[rng.integers(0, len(kp))] = np.nan
        if i % 5 == 0:
            kp = np.concatenate([kp, kp[:1] + rng.normal(0, 10, (1, K, 2))])
            ids = np.append(ids, 40 + i)
            sc = np.concatenate([sc, sc[:1]])
        return kp, ids, sc
    seq = _score_sequence(clip, _as_pred(clip, chaos), 0, True)
    mh = mm.metrics.create()
    names = ["num_misses", "num_switches", "num_false_positives", "num_objects", "num_detections"]
    total_switches = 0
    for j in range(K):
        acc = mm.MOTAccumulator(auto_id=True)
        for fr in seq.frames[:-1]:
            acc.update(*_mot_inputs(fr, j))
        ref = mh.compute(acc, metrics=names + ["motp"], return_dataframe=False)
        mine = seq.mot[j]
        for name in names:
            assert getattr(mine, name) == ref[name], (JOINTS[j], name)
        if mine.num_detections:
            assert mine.sum_distance / mine.num_detections == pytest.approx(ref["motp"])
        total_switches += mine.num_switches
    assert total_switches > 0


def test_mot_counter_handles_contested_assignment():
    import motmetrics as mm

    frames = [([1, 2], [10, 20], np.array([[0.1, 0.2], [0.3, np.nan]])),
              ([1, 2], [10, 20], np.array([[0.1, np.nan], [np.nan, 0.1]]))]
    c = MotCounter()
    acc = mm.MOTAccumulator(auto_id=True)
    c.update(*frames[0])
    acc.update(*frames[0])
    # most pairs first: 1-20 and 2-10, although 1-10 is the closest pair
    assert (c.num_matches, c.num_switches) == (2, 0)
    c.update(*frames[1])
    acc.update(*frames[1])
    assert (c.num_matches, c.num_switches) == (2, 2)  # both identities changed
    ref = mm.metrics.create().compute(acc, metrics=["num_matches", "num_switches"],
                                      return_dataframe=False)
    assert (ref["num_matches"], ref["num_switches"]) == (2, 2)
    assert c.sum_distance == pytest.approx(0.2 + 0.3 + 0.1 + 0.1)


# ----------------------------------------------------------------------------------------------
# files: mixed versions, CLI report (the whole Bonn test set is scored in test_bonn.py)
# ----------------------------------------------------------------------------------------------
def test_mixed_2017_and_2018_files(clip, tmp_path):
    gt_dir, pr_dir = tmp_path / "gt", tmp_path / "pr"
    gt2 = VideoPoses("other", clip.frames, POSETRACK17)
    write_posetrack17(clip, gt_dir / "000048.json")
    write_posetrack18(gt2, gt_dir / "other.json")
    pr = _as_pred(clip)
    write_posetrack18(pr, pr_dir / "000048.json")
    write_posetrack17(VideoPoses("other", pr.frames, POSETRACK17), pr_dir / "other.json")
    df = evaluate_posetrack(gt_dir, pr_dir, per_sequence=True)
    assert list(df.index) == ["total", "000048", "other"]
    assert df.loc["total", "AP Total"] == pytest.approx(100.0)
    assert df.loc["total", "MOTA Total"] == pytest.approx(100.0)


def test_cli_writes_report(tmp_path, capsys):
    gt, pr = _tiny_case()
    write_posetrack18(gt, tmp_path / "gt" / "tiny.json")
    write_posetrack17(pr, tmp_path / "pr" / "tiny.json")
    out = tmp_path / "report.csv"
    assert main(["eval", "posetrack", str(tmp_path / "gt"), str(tmp_path / "pr"),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Average Precision" in text and "Multiple Object Tracking" in text
    assert "33.3" in text  # MOTA of the tiny case
    assert "64.2857" in out.read_text()


# ----------------------------------------------------------------------------------------------
# bad input: one line, exit status 2
# ----------------------------------------------------------------------------------------------
def _fail(argv, capsys, *needles):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posetracker: error:") and "\n" not in err and "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def pair(tmp_path):
    gt, pr = _tiny_case()
    write_posetrack18(gt, tmp_path / "gt" / "tiny.json")
    write_posetrack18(pr, tmp_path / "pr" / "tiny.json")
    return tmp_path / "gt", tmp_path / "pr"


def test_bad_input_missing_files(pair, tmp_path, capsys):
    gt, pr = pair
    _fail(["eval", "posetrack", str(tmp_path / "nope"), str(pr)], capsys, "nope")
    (tmp_path / "pr2").mkdir()
    _fail(["eval", "posetrack", str(gt), str(tmp_path / "pr2")], capsys, "tiny.json")


def test_bad_input_malformed_json(pair, capsys):
    gt, pr = pair
    (pr / "tiny.json").write_text('{"images": [')
    _fail(["eval", "posetrack", str(gt), str(pr)], capsys, "tiny.json", "malformed JSON")


def test_bad_input_frame_count_mismatch(pair, capsys):
    gt, pr = pair
    d = json.loads((pr / "tiny.json").read_text())
    d["images"] = d["images"][:3]
    kept = {i["id"] for i in d["images"]}
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in kept]
    (pr / "tiny.json").write_text(json.dumps(d))
    _fail(["eval", "posetrack", str(gt), str(pr)], capsys, str(pr / "tiny.json"), "3 frames")


def test_bad_input_duplicate_track_ids(pair, capsys):
    gt, pr = pair
    d = json.loads((pr / "tiny.json").read_text())
    for a in d["annotations"]:
        a["track_id"] = 5
    (pr / "tiny.json").write_text(json.dumps(d))
    _fail(["eval", "posetrack", str(gt), str(pr)], capsys, "tiny.json", "frame 0", "duplicate")


def test_bad_input_keypoint_length(pair, capsys):
    gt, pr = pair
    d = json.loads((pr / "tiny.json").read_text())
    d["annotations"][2]["keypoints"] = d["annotations"][2]["keypoints"][:-3]
    (pr / "tiny.json").write_text(json.dumps(d))
    _fail(["eval", "posetrack", str(gt), str(pr)], capsys, "tiny.json", "frame 1", "48 keypoint")


def test_bad_input_unknown_schema(pair, capsys):
    gt, pr = pair
    d = json.loads((pr / "tiny.json").read_text())
    d["categories"][0]["keypoints"][0] = "tail"
    (pr / "tiny.json").write_text(json.dumps(d))
    _fail(["eval", "posetrack", str(gt), str(pr)], capsys, "tiny.json", "tail")
    (pr / "tiny.json").write_text(json.dumps({"people": []}))
    _fail(["eval", "posetrack", str(gt), str(pr)], capsys, "not a PoseTrack file")


def test_bad_input_gt_without_head_box(pair, capsys):
    gt, pr = pair
    d = json.loads((gt / "tiny.json").read_text())
    del d["annotations"][0]["bbox_head"]
    (gt / "tiny.json").write_text(json.dumps(d))
    _fail(["eval", "posetrack", str(gt), str(pr)], capsys, "tiny", "frame 0", "head box")
