"""Bonn Multi-Person PoseTrack ``annolist.mat`` reader and ``posetracker convert bonn``."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.io

from posetracker.app.cli import main
from posetracker.core.errors import InputError
from posetracker.core.schemas import MPII16, POSETRACK17
from posetracker.io.formats.bonn import read_bonn_mat
from posetracker.io.formats.posetrack import read_posetrack


@pytest.fixture(scope="module")
def mat_path(data_dir):
    return data_dir / "bonn_posetrack/annolist/test/annolist.mat"


@pytest.fixture(scope="module")
def videos(mat_path):
    return read_bonn_mat(mat_path)


def test_reads_all_test_videos(videos):
    assert len(videos) == 30
    assert sum(len(v) for v in videos) == 1566
    assert all(v.schema is POSETRACK17 for v in videos)
    nose = POSETRACK17.index("nose")
    for v in videos:
        for f in v.frames:
            p = f.poses
            assert np.isnan(p.keypoints[:, nose]).all()  # Bonn has no nose
            assert np.isfinite(p.head_boxes).all()  # every test person has a head box
            assert len(np.unique(p.track_ids)) == len(p)


def test_points_match_the_raw_file(mat_path, videos):
    """Spot-check against scipy's raw structs: MPII id -> PoseTrack 2017 slot by joint name."""
    raw = scipy.io.loadmat(str(mat_path), struct_as_record=False, squeeze_me=True)["annolist"]
    checked = 0
    for vi in (0, 7, 29):
        r = raw[vi]
        cells = np.asarray(r.annopoints, dtype=object).reshape(r.num_persons, r.num_frames)
        for t in (0, r.num_frames // 2):
            for person in range(r.num_persons):
                cell = cells[person, t]
                if not hasattr(cell, "point"):
                    continue
                p = videos[vi].frames[t].poses
                i = int(np.flatnonzero(p.track_ids == person)[0])
                np.testing.assert_allclose(p.head_boxes[i], cell.head_rect)
                for pt in np.atleast_1d(cell.point):
                    j = POSETRACK17.index(MPII16.keypoints[int(pt.id)].replace(
                        "upper_neck", "head_bottom"))
                    np.testing.assert_allclose(p.keypoints[i, j], [pt.x, pt.y])
                    assert p.keypoint_scores[i, j] == float(int(pt.is_visible) > 0)
                    checked += 1
    assert checked > 100


@pytest.fixture(scope="module")
def converted(mat_path, tmp_path_factory):
    """``posetracker convert bonn`` output for the test split."""
    out = tmp_path_factory.mktemp("bonn_test")
    assert main(["convert", "bonn", str(mat_path), str(out)]) == 0
    return out


def test_convert_cli_writes_one_posetrack17_file_per_video(converted, videos):
    tmp_path = converted
    files = sorted(tmp_path.glob("*.json"))
    assert [f.stem for f in files] == sorted(v.name for v in videos)
    v = videos[3]
    back = read_posetrack(tmp_path / f"{v.name}.json")
    assert back.schema is POSETRACK17 and len(back) == len(v)
    for fa, fb in zip(v.frames, back.frames):
        np.testing.assert_allclose(fa.poses.keypoints, fb.poses.keypoints)
        np.testing.assert_allclose(fa.poses.keypoint_scores, fb.poses.keypoint_scores)
        np.testing.assert_array_equal(fa.poses.track_ids, fb.poses.track_ids)
        np.testing.assert_allclose(fa.poses.head_boxes, fb.poses.head_boxes)


def test_bad_mat_input(tmp_path, capsys):
    bad = tmp_path / "annolist.mat"
    bad.write_bytes(b"not a mat file at all")
    assert main(["convert", "bonn", str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1
    with pytest.raises(InputError, match="no such file"):
        read_bonn_mat(tmp_path / "missing.mat")
    scipy.io.savemat(str(tmp_path / "other.mat"), {"x": np.zeros(3)})
    with pytest.raises(InputError, match="no 'annolist'"):
        read_bonn_mat(tmp_path / "other.mat")


ANNOTATED = [j for j in POSETRACK17.keypoints if j != "nose"]  # Bonn never annotates the nose


def test_bonn_test_set_scored_against_itself(converted, videos, tmp_path, capsys):
    """Converted ground truth as predictions: 100 AP and 100 MOTA on every annotated joint.

    The nose, never annotated in Bonn, is not evaluated (NaN) and does not enter any mean.
    """
    import pandas as pd

    from posetracker.evaluation.posetrack import evaluate_videos_per_joint

    capsys.readouterr()
    report = tmp_path / "report.csv"
    t0 = time.perf_counter()
    assert main(["eval", "posetrack", str(converted), str(converted), "--per-sequence",
                 "--out", str(report)]) == 0
    elapsed = time.perf_counter() - t0
    assert "100.0" in capsys.readouterr().out
    print(f"eval posetrack --per-sequence, 30 Bonn test videos: {elapsed:.2f} s")
    df = pd.read_csv(report, index_col=0)
    assert len(df) == 31 and df.index[0] == "total"
    np.testing.assert_allclose(df.to_numpy(dtype=float), 100.0)  # every group, every sequence
    pj = evaluate_videos_per_joint(videos, videos)
    np.testing.assert_allclose(pj.loc[ANNOTATED, ["AP", "MOTA", "MOTP", "Precision", "Recall"]],
                               100.0)
    assert pj.loc["nose", ["AP", "MOTA", "MOTP"]].isna().all()
    assert (pj.loc[ANNOTATED, "GT joints"] > 1000).all()
    # poseval's own handling of the never-annotated nose, on request: AP 0 and MOTP 0 enter the
    # means, Head's MOTA is NaN (mean with a NaN), Total MOTA leaves the NaN out
    from posetracker.evaluation.posetrack import evaluate_videos

    row = evaluate_videos(videos[:4], videos[:4], strict_poseval=True).loc["total"]
    assert row["AP Head"] == pytest.approx(200 / 3) and row["AP Total"] == pytest.approx(1400 / 15)
    assert np.isnan(row["MOTA Head"]) and row["MOTA Total"] == pytest.approx(100.0)
    assert row["MOTP Total"] == pytest.approx(1400 / 15)
    assert row["Precision Total"] == pytest.approx(100.0)
