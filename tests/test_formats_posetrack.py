"""PoseTrack 2017/2018 JSON: reading the official files, writing, round trips, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from posetracker.core.errors import InputError
from posetracker.core.poses import Frame, FramePoses, VideoPoses
from posetracker.core.schemas import COCO17, POSETRACK17, POSETRACK18, convert_keypoints
from posetracker.io.formats.posetrack import read_posetrack, read_posetrack_dir, write_posetrack17, write_posetrack18

FILES = {"003418_mpii_test": (1, 9), "009473_mpii_test": (2, 2), "012834_mpii_test": (11, 4)}


@pytest.fixture(scope="module")
def official(data_dir):
    return read_posetrack_dir(data_dir / "posetrack18_format")


def test_reads_official_2018_files(official, data_dir):
    assert [v.name for v in official] == sorted(FILES)
    for v in official:
        people, regions = FILES[v.name]
        assert v.schema is POSETRACK18 and len(v) == 1
        f = v.frames[0]
        assert f.labeled and len(f.poses) == people and len(f.ignore_regions) == regions
        assert f.poses.track_ids is not None and f.poses.head_boxes is not None
        assert np.isnan(f.poses.keypoints[:, [POSETRACK18.index("left_ear"),
                                              POSETRACK18.index("right_ear")]]).all()
        assert v.meta["has_scores"] is False
    # values straight from the file: first annotation of 009473 (head box xywh -> xyxy)
    raw = json.loads((data_dir / "posetrack18_format/009473_mpii_test.json").read_text())
    ann = raw["annotations"][0]
    p = official[1].frames[0].poses
    x, y, w, h = ann["bbox_head"]
    np.testing.assert_allclose(p.head_boxes[0], [x, y, x + w, y + h])
    trip = np.reshape(ann["keypoints"], (17, 3))
    present = ~((trip[:, 0] == 0) & (trip[:, 1] == 0) & (trip[:, 2] == 0))
    np.testing.assert_array_equal(p.present[0], present)
    np.testing.assert_allclose(p.keypoints[0][present], trip[present, :2])
    img = raw["images"][0]
    np.testing.assert_allclose(official[1].frames[0].ignore_regions[1][:, 0],
                               img["ignore_regions_x"][1])


def _same(a: VideoPoses, b: VideoPoses, schema=None):
    assert len(a) == len(b)
    for fa, fb in zip(a.frames, b.frames):
        pa, pb = fa.poses, fb.poses
        ka, sa = pa.keypoints, pa.keypoint_scores
        if schema is not None and pa.schema is not schema:
            ka, sa = convert_keypoints(ka, sa, pa.schema, schema)
        np.testing.assert_allclose(ka, pb.keypoints)  # NaN == NaN here
        np.testing.assert_allclose(sa, pb.keypoint_scores)
        np.testing.assert_array_equal(pa.track_ids, pb.track_ids)
        np.testing.assert_allclose(pa.head_boxes, pb.head_boxes)
        assert fa.labeled == fb.labeled and fa.image == fb.image
        assert len(fa.ignore_regions) == len(fb.ignore_regions)
        for ra, rb in zip(fa.ignore_regions, fb.ignore_regions):
            np.testing.assert_allclose(ra, rb)


def test_round_trip_2018(official, tmp_path):
    for v in official:
        write_posetrack18(v, tmp_path / f"{v.name}.json")
        back = read_posetrack(tmp_path / f"{v.name}.json")
        assert back.name == v.name and back.schema is POSETRACK18
        _same(v, back)


def test_round_trip_2017(official, tmp_path):
    for v in official:
        write_posetrack17(v, tmp_path / f"{v.name}.json")
        back = read_posetrack(tmp_path / f"{v.name}.json")
        assert back.schema is POSETRACK17
        _same(v, back, schema=POSETRACK17)  # the ears, never annotated, are dropped
        write_posetrack17(back, tmp_path / "again.json")
        _same(back, read_posetrack(tmp_path / "again.json"))


def test_writer_output_follows_poseval_conventions(tmp_path):
    """Scores per joint, integer ids unique per frame, one entry per frame, COCO17 converted."""
    kp = np.arange(2 * 17 * 2, dtype=float).reshape(2, 17, 2) + 1
    sc = np.full((2, 17), 0.5)
    frames = [Frame(0, FramePoses.from_keypoints(kp, sc, COCO17, track_ids=[3, 7])),
              Frame(1, FramePoses.empty(COCO17, tracked=True)),
              Frame(2, FramePoses.from_keypoints(kp, sc, COCO17))]  # untracked: ids 0..n-1
    v = VideoPoses("seq", frames, COCO17)
    write_posetrack18(v, tmp_path / "seq18.json")
    d = json.loads((tmp_path / "seq18.json").read_text())
    assert len(d["images"]) == 3 and d["categories"][0]["keypoints"] == list(POSETRACK18.keypoints)
    anns = d["annotations"]
    assert [a["track_id"] for a in anns] == [3, 7, 0, 1]
    assert all(len(a["scores"]) == 17 and len(a["keypoints"]) == 51 for a in anns)
    trip = np.reshape(anns[0]["keypoints"], (17, 3))
    # COCO's eye slots do not carry over: PoseTrack's head_bottom/head_top stay absent; the ears
    # are written (poseval ignores them) and the body joints keep their slots
    assert (trip[1:3] == 0).all()
    np.testing.assert_allclose(trip[0, :2], kp[0, 0])
    np.testing.assert_allclose(trip[3:, :2], kp[0, 3:])
    assert (trip[3:, 2] == 1).all()
    write_posetrack17(v, tmp_path / "seq17.json")
    d = json.loads((tmp_path / "seq17.json").read_text())
    assert len(d["annolist"]) == 3
    pts = d["annolist"][0]["annorect"][0]["annopoints"][0]["point"]
    assert sorted(p["id"][0] for p in pts) == sorted(
        POSETRACK17.index(n) for n in POSETRACK17.keypoints if n not in ("head_bottom", "head_top"))
    assert all(p["score"] == [0.5] for p in pts)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_writer_derives_head_joints_and_drops_low_scored_ones(tmp_path):
    """``posetracker track``'s options: head joints for COCO poses, low joints written absent."""
    kp = np.full((1, 17, 2), np.nan)
    for name, xy in {"nose": (50, 65), "left_eye": (55, 60), "right_eye": (45, 60),
                     "left_shoulder": (75, 100), "right_shoulder": (25, 100),
                     "left_hip": (70, 200), "right_hip": (30, 200)}.items():
        kp[0, COCO17.index(name)] = xy
    sc = np.where(np.isfinite(kp[..., 0]), 0.8, 0.0)
    sc[0, COCO17.index("right_hip")] = 0.2
    v = VideoPoses("seq", [Frame(0, FramePoses.from_keypoints(kp, sc, COCO17, track_ids=[1]))],
                   COCO17)
    write_posetrack18(v, tmp_path / "a.json", derive_head=True, min_score=0.3)
    ann = json.loads((tmp_path / "a.json").read_text())["annotations"][0]
    trip = np.reshape(ann["keypoints"], (17, 3))
    top, neck = POSETRACK18.index("head_top"), POSETRACK18.index("head_bottom")
    np.testing.assert_allclose(trip[top], [50, 100 - 1.58 * 40, 1])
    np.testing.assert_allclose(trip[neck], [50, 100 - 0.30 * 40, 1])
    assert ann["scores"][top] == pytest.approx(0.8)
    rhip = POSETRACK18.index("right_hip")
    assert list(trip[rhip]) == [0, 0, 0] and ann["scores"][rhip] == 0
    assert list(trip[POSETRACK18.index("left_hip")]) == [70, 200, 1]
    # read back, the derived joints are ordinary joints and the dropped one is absent
    back = read_posetrack(tmp_path / "a.json").frames[0].poses
    assert np.isfinite(back.keypoints[0, top]).all() and np.isnan(back.keypoints[0, rhip]).all()
    write_posetrack17(v, tmp_path / "b.json", derive_head=True, min_score=0.3)
    pts = json.loads((tmp_path / "b.json").read_text())["annolist"][0]["annorect"][0][
        "annopoints"][0]["point"]
    ids = {p["id"][0] for p in pts}
    assert {POSETRACK17.index("head_top"), POSETRACK17.index("head_bottom")} <= ids
    assert POSETRACK17.index("right_hip") not in ids


def test_2018_absent_joint_rule(tmp_path):
    """poseval drops x=y=v=0 only: a joint with v=0 but coordinates is present."""
    kps = [0, 0, 0] * 17
    kps[0:3] = [10, 20, 0]
    kps[15:18] = [30, 40, 1]
    doc = {"images": [{"id": 1, "file_name": "images/x/000000.jpg", "is_labeled": True}],
           "annotations": [{"image_id": 1, "track_id": 0, "keypoints": kps,
                            "bbox_head": [0, 0, 10, 10]}],
           "categories": [{"keypoints": list(POSETRACK18.keypoints)}]}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    p = read_posetrack(tmp_path / "x.json").frames[0].poses
    assert p.present[0].sum() == 2
    np.testing.assert_allclose(p.keypoint_scores[0, [0, 5]], [0.0, 1.0])  # visibility as score


@pytest.mark.parametrize("text, needle", [
    ("{not json", "malformed JSON"),
    ('{"people": []}', "not a PoseTrack file"),
    ('{"annolist": [{"annorect": [{"track_id": [0], "annopoints": [{"point": '
     '[{"id": [15], "x": [1], "y": [2]}]}]}]}]}', "frame 0, person 0: joint id 15"),
    ('{"annolist": [{"annorect": [{"track_id": [1], "annopoints": [{"point": []}]}, '
     '{"track_id": [1], "annopoints": [{"point": []}]}]}]}', "frame 0: duplicate track ids"),
])
def test_bad_files_name_file_and_frame(tmp_path, text, needle):
    f = tmp_path / "bad.json"
    f.write_text(text)
    with pytest.raises(InputError) as e:
        read_posetrack(f)
    assert str(f) in str(e.value) and needle in str(e.value)


def test_missing_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_posetrack(tmp_path / "none.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .json files"):
        read_posetrack_dir(tmp_path / "empty")


def test_convert_posetrack_cli_and_score(data_dir, tmp_path, capsys):
    """2018 ground truth -> 2017 files via the CLI; scored against the 2018 originals: all 100."""
    from posetracker.app.cli import main

    src = data_dir / "posetrack18_format"
    assert main(["convert", "posetrack", str(src), str(tmp_path), "--to", "2017"]) == 0
    assert sorted(f.name for f in tmp_path.glob("*.json")) == sorted(f"{n}.json" for n in FILES)
    assert all("annolist" in json.loads(f.read_text()) for f in tmp_path.glob("*.json"))
    capsys.readouterr()
    report_file = tmp_path / "r.json"
    assert main(["eval", "posetrack", str(src), str(tmp_path), "--out", str(report_file)]) == 0
    report = json.loads(report_file.read_text())[0]
    assert report["AP Total"] == pytest.approx(100.0)
