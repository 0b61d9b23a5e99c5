"""``posetracker eval crowdpose``, the crowd index and its buckets, COCO-17 -> CrowdPose-14 conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from posetracker.app.api import evaluate_coco_by_crowd, evaluate_crowdpose
from posetracker.app.cli import main
from posetracker.core.coco import coco_gt_to_frames, crowd_index
from posetracker.core.errors import InputError
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17, CROWDPOSE14, HEAD_TOP_T, NECK_TOWARDS_HEAD
from posetracker.evaluation.crowdpose import (
    CROWDPOSE_COLUMNS,
    bucket,
    coco_to_crowdpose,
    crowd_index_table,
    split_by_crowd,
)
from posetracker.io.formats.coco import read_coco_gt, read_crowdpose_gt

# ../shared/data/README.md, "Known answers for metric_cases/", CrowdPose pair.
KNOWN = {"AP": 0.7877, "AP50": 0.9881, "AP75": 0.7314, "AR": 0.8222, "AR50": 1.0, "AR75": 0.7778,
         "AP easy": 1.0, "AP medium": 0.9802, "AP hard": 0.4116}


@pytest.fixture(scope="module")
def case(data_dir):
    d = data_dir / "metric_cases"
    return d / "example_crowdpose_val.json", d / "example_crowdpose_preds.json"


@pytest.fixture(scope="module")
def crowdpose_val(data_dir):
    return read_crowdpose_gt(data_dir / "crowdpose" / "crowdpose_val.json")


def _assert_known(row) -> None:
    for name, want in KNOWN.items():
        assert round(float(row[name]), 4) == want, name


def test_known_answers_from_files_and_memory(case):
    df = evaluate_crowdpose(*case)
    assert list(df.columns) == list(CROWDPOSE_COLUMNS)
    _assert_known(df.iloc[0])
    _assert_known(evaluate_crowdpose(json.loads(case[0].read_text()),
                                     json.loads(case[1].read_text())).iloc[0])


def test_known_answers_through_cli(case, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["eval", "crowdpose", str(case[0]), str(case[1]), "--out", str(out),
                 "--plot", str(tmp_path / "r.png")]) == 0
    printed = capsys.readouterr().out
    for name, want in KNOWN.items():
        assert name in printed and f"{want:.4f}" in printed
    import pandas as pd

    _assert_known(pd.read_csv(out).iloc[0])
    assert (tmp_path / "r.png").stat().st_size > 1000


def _perturbed_predictions(ds, rng):
    """Ground truth made into predictions: jittered joints, dropped people, false positives."""
    preds = []
    for a in ds.annotations:
        if a["iscrowd"] or a["num_keypoints"] == 0 or rng.random() < 0.15:
            continue
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        scale = np.sqrt(a["bbox"][2] * a["bbox"][3]) * rng.uniform(0.0, 0.12)
        kp[:, :2] += rng.normal(0, scale + 1e-3, size=(len(kp), 2))
        kp[:, 2] = rng.uniform(0.1, 1.0, len(kp))
        preds.append({"image_id": a["image_id"], "category_id": 1,
                      "keypoints": kp.ravel().tolist(), "score": float(rng.uniform(0.05, 1.0))})
        if rng.random() < 0.2:  # a false positive shifted by a box width
            fp = kp.copy()
            fp[:, 0] += a["bbox"][2]
            preds.append({"image_id": a["image_id"], "category_id": 1,
                          "keypoints": fp.ravel().tolist(), "score": float(rng.uniform(0, 0.6))})
    return preds


def test_agrees_with_faster_coco_eval_crowd_mode(crowdpose_val, tmp_path):
    """faster-coco-eval's 'keypoints_crowd' mode is an independent implementation of
    crowdposetools' rules; on real CrowdPose GT (every 8th image) with perturbed predictions
    both must give the same figures (it rounds easy/medium/hard to 4 decimals)."""
    from faster_coco_eval import COCO, COCOeval_faster

    data = crowdpose_val.to_dict()
    keep = {im["id"] for im in data["images"][::8]}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(data))
    preds = _perturbed_predictions(read_coco_gt(gt_path), np.random.default_rng(1))
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(preds))

    ours = evaluate_crowdpose(gt_path, pred_path).iloc[0].to_numpy()
    cgt = COCO(str(gt_path))
    ev = COCOeval_faster(cgt, cgt.loadRes(str(pred_path)), "keypoints_crowd",
                         kpt_oks_sigmas=np.array(CROWDPOSE14.sigmas), use_area=False,
                         print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    theirs = np.asarray(ev.all_stats[:9])
    assert 0.3 < ours[0] < 0.95  # a case that is neither trivial nor hopeless
    np.testing.assert_allclose(ours[:6], theirs[:6], atol=1e-9)
    np.testing.assert_allclose(ours[6:], theirs[6:], atol=5.1e-5)


# -- crowd index ------------------------------------------------------------------------------
def test_crowd_index_reproduces_crowdpose_val(crowdpose_val):
    """The index recomputed from the annotations equals the stored crowdIndex of all 2000 images
    after rounding to its two decimals (so never more than 0.005 away), and the stored values
    give the README's bucket sizes."""
    stored = crowdpose_val.stored_crowd_index()
    ours = crowd_index_table(crowdpose_val)
    ids = sorted(stored)
    diff = np.array([ours[i] - stored[i] for i in ids])
    assert np.abs(diff).max() <= 0.005 + 1e-9
    # numpy's rounding (of 100 x, half to even) is how the stored values were made: Python's
    # round() differs on 7 images whose index sits at a half (0.675 computed as 0.67499...).
    assert all(np.round(ours[i], 2) == stored[i] for i in ids)
    counts = {b: len(v) for b, v in split_by_crowd(stored).items()}
    assert counts == {"easy": 411, "medium": 1240, "hard": 349}


def _ann(points, bbox, iscrowd=0):
    kp = []
    for p in points:
        kp += [p[0], p[1], 2] if p is not None else [0, 0, 0]
    return {"keypoints": kp, "bbox": bbox, "iscrowd": iscrowd}


def test_crowd_index_by_hand():
    a = _ann([(1, 1), (2, 2), (3, 3), (4, 4)], [0, 0, 10, 10])        # 4 own joints
    b = _ann([(5, 5), (6, 6), (20, 20), (30, 30)], [4, 4, 30, 30])    # 2 of them in a's box
    # a sees b's (5,5) and (6,6): 2/4; b's box [4,34]^2 holds a's (4,4): 1/4.
    assert crowd_index([a, b]) == pytest.approx((2 / 4 + 1 / 4) / 2)
    # A person with fewer than 4 labelled joints does not enter the mean but still counts as other.
    # c's (7, 7) lies in both a's and b's boxes.
    c = _ann([(7, 7), None, None, None], [6, 6, 1, 1])
    assert crowd_index([a, b, c]) == pytest.approx((3 / 4 + 2 / 4) / 2)
    # Crowd regions likewise.
    assert crowd_index([a, b, dict(c, iscrowd=1)]) == pytest.approx((3 / 4 + 2 / 4) / 2)
    # The joint count for "at least 4" is the file's num_keypoints when present (CrowdPose counts
    # only its 12 body joints there).
    assert crowd_index([dict(a, num_keypoints=3), b]) == pytest.approx(1 / 4)
    assert crowd_index([a]) == 0.0 and crowd_index([]) == 0.0


def test_buckets():
    assert [bucket(v) for v in (0.0, 0.1999, 0.2, 0.7999, 0.8, 3.0)] == \
        ["easy", "easy", "medium", "medium", "hard", "hard"]


def test_coco_by_crowd(data_dir):
    gt = read_coco_gt(data_dir / "coco_mini_val2017" / "annotations" / "person_keypoints_val2017.json")
    frames = {i: p.subset(p.present.any(1)) for i, p in coco_gt_to_frames(gt).items()}
    df = evaluate_coco_by_crowd(gt, frames)
    assert list(df.index) == ["overall", "easy", "medium", "hard"]
    assert df.loc["overall", "images"] == 79 == df["images"].iloc[1:].sum()
    for b in df.index:
        if df.loc[b, "images"] and not np.isnan(df.loc[b, "AP"]):
            assert df.loc[b, "AP"] == pytest.approx(1.0)
    table = crowd_index_table(gt)
    assert df.loc["hard", "images"] == sum(v >= 0.8 for v in table.values())


def test_coco_by_crowd_cli(data_dir, capsys):
    d = data_dir / "metric_cases"
    assert main(["eval", "coco", str(d / "example_coco_val.json"), str(d / "example_coco_preds.json"),
                 "--by-crowd"]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "0.8609" in out and "easy" in out


# -- COCO-17 -> CrowdPose-14 ------------------------------------------------------------------
def _coco_person(rng):
    kp = rng.uniform(0, 100, size=(1, 17, 2))
    sc = rng.uniform(0.2, 1.0, size=(1, 17))
    return kp, sc


def _face_centre(kp, sc):
    """The head centre the derivation uses: the eyes and ears weighted by their scores."""
    face = [COCO17.index(n) for n in ("left_eye", "right_eye", "left_ear", "right_ear")]
    w = sc[face]
    return (kp[face] * w[:, None]).sum(0) / w.sum(), w.mean()


def test_coco_to_crowdpose_geometry_and_scores():
    rng = np.random.default_rng(3)
    kp, sc = _coco_person(rng)
    poses = FramePoses(kp, sc, np.array([[0, 0, 100, 100.0]]), np.array([0.8]), COCO17,
                       track_ids=np.array([4]), box_scores=np.array([0.95]))
    out = coco_to_crowdpose(poses)
    assert out.schema is CROWDPOSE14 and out.track_ids.tolist() == [4]
    assert out.scores.tolist() == [0.8] and out.box_scores.tolist() == [0.95]
    for name in CROWDPOSE14.keypoints[:12]:
        np.testing.assert_array_equal(out.keypoints[0, CROWDPOSE14.index(name)],
                                      kp[0, COCO17.index(name)])
    s = (kp[0, 5] + kp[0, 6]) / 2
    c, face_score = _face_centre(kp[0], sc[0])
    head = s + HEAD_TOP_T * (c - s)
    np.testing.assert_allclose(out.keypoints[0, 12], head)
    # CrowdPose's neck: NECK_TOWARDS_HEAD of the way from the shoulders to the head top
    np.testing.assert_allclose(out.keypoints[0, 13], s + NECK_TOWARDS_HEAD * (head - s))
    want = min((sc[0, 5] + sc[0, 6]) / 2, face_score)
    np.testing.assert_allclose(out.keypoint_scores[0, 12:], [want, want])


def test_coco_to_crowdpose_missing_sources():
    rng = np.random.default_rng(4)
    kp, sc = _coco_person(rng)
    kp = np.repeat(kp, 4, 0)
    sc = np.repeat(sc, 4, 0)
    kp[0, 1:5] = np.nan  # no eyes or ears: the nose is the head centre
    kp[1, 0:5] = np.nan  # no face at all: no head; neck is the shoulder midpoint
    kp[2, 6] = np.nan  # one shoulder missing: neither head nor neck
    kp[3, 0] = np.nan  # no nose: the eyes and ears alone
    sc[np.isnan(kp[..., 0])] = 0
    out = coco_to_crowdpose(FramePoses.from_keypoints(kp, sc, COCO17))
    s = (kp[:, 5] + kp[:, 6]) / 2
    sh = (sc[:, 5] + sc[:, 6]) / 2
    np.testing.assert_allclose(out.keypoints[0, 12], s[0] + HEAD_TOP_T * (kp[0, 0] - s[0]))
    assert out.keypoint_scores[0, 12] == min(sc[0, 0], sh[0])
    assert np.isnan(out.keypoints[1, 12]).all() and out.keypoint_scores[1, 12] == 0
    np.testing.assert_allclose(out.keypoints[1, 13], s[1])
    assert out.keypoint_scores[1, 13] == sh[1]
    assert np.isnan(out.keypoints[2, 12:]).all() and (out.keypoint_scores[2, 12:] == 0).all()
    np.testing.assert_allclose(out.keypoints[3, 12], s[3] + HEAD_TOP_T * (_face_centre(kp[3], sc[3])[0] - s[3]))
    with pytest.raises(InputError):
        coco_to_crowdpose(out)


def test_coco17_predictions_on_crowdpose_gt(case, tmp_path, capsys):
    """COCO-17 results are converted on request, and refused with a hint otherwise."""
    gt = read_crowdpose_gt(case[0])
    rng = np.random.default_rng(5)
    frames = {}
    for image_id, people in coco_gt_to_frames(gt).items():
        n = len(people)
        kp = np.full((n, 17, 2), np.nan)
        for name in CROWDPOSE14.keypoints[:12]:
            kp[:, COCO17.index(name)] = people.keypoints[:, CROWDPOSE14.index(name)]
        kp[:, :5] = people.keypoints[:, [13]] + rng.normal(0, 3, (n, 5, 2))  # a face near the neck
        frames[image_id] = FramePoses(kp, np.isfinite(kp[..., 0]) * 0.9, people.boxes,
                                      np.full(n, 0.9), COCO17)
    from posetracker.io.formats.coco import write_coco_results

    path = tmp_path / "coco17.json"
    write_coco_results(frames, path)
    by_file = evaluate_crowdpose(case[0], path, pred_schema=COCO17)
    by_frames = evaluate_crowdpose(case[0], frames)
    np.testing.assert_allclose(by_file.to_numpy(), by_frames.to_numpy())
    assert by_file.iloc[0]["AP50"] > 0.5  # body joints exact, head and neck derived
    assert main(["eval", "crowdpose", str(case[0]), str(path), "--pred-schema", "coco17"]) == 0
    assert main(["eval", "crowdpose", str(case[0]), str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "51 values, expected 42" in err[0] and "--pred-schema coco17" in err[0]
    assert str(path) in err[0]


def test_crowdpose_bad_input(case, data_dir, tmp_path, capsys):
    coco_gt = data_dir / "metric_cases" / "example_coco_val.json"
    assert main(["eval", "crowdpose", str(coco_gt), str(case[1])]) == 2
    results = json.loads(case[1].read_text())
    unknown = tmp_path / "u.json"
    unknown.write_text(json.dumps([dict(results[0], image_id=1)]))
    assert main(["eval", "crowdpose", str(case[0]), str(unknown)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "14 joints" in err[0] and "not in the ground truth: 1" in err[1]
