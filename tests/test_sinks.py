"""Sinks: the JSON-lines stream (flushed per frame, read back), CSV rows, atomic final files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pipeline_doubles import FakeStages, NearestTracker, make_frames

from posetracker.core.errors import InputError
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17
from posetracker.io.formats.coco import read_coco_results, write_coco_results
from posetracker.io.sinks import CsvSink, FinalJsonSink, JsonlSink, SinkSet, atomic_write, frame_record, read_jsonl


def _tracked_frames(n=4, people=2):
    stages, tracker = FakeStages(people=people), NearestTracker()
    for f in make_frames(n):
        est = stages.estimate([f.image], [list(range(people))])[0]
        yield f, tracker.update(est, f.image)


def test_jsonl_lines_are_flushed_per_frame_and_read_back(tmp_path):
    path = tmp_path / "out" / "run.jsonl"
    sink = JsonlSink(path)
    frames = list(_tracked_frames(3))
    for i, (f, p) in enumerate(frames):
        sink.write(f, p)
        # on disk before close: an interrupted run keeps it
        assert len(path.read_text().splitlines()) == i + 1
    sink.close({})
    rec = json.loads(path.read_text().splitlines()[1])
    assert rec["frame"] == 1 and rec["schema"] == "coco17"
    assert [p["track_id"] for p in rec["people"]] == [0, 1]
    assert len(rec["people"][0]["keypoints"]) == 17
    video = read_jsonl(path)
    assert [f.index for f in video.frames] == [0, 1, 2]
    np.testing.assert_allclose(video.frames[2].poses.keypoints, frames[2][1].keypoints, atol=1e-3)
    np.testing.assert_array_equal(video.frames[2].poses.track_ids, [0, 1])


def test_jsonl_absent_joints_are_null_and_cut_line_ignored(tmp_path):
    kp = np.full((1, 17, 2), 5.0)
    kp[0, 3] = np.nan
    poses = FramePoses.from_keypoints(kp, np.full((1, 17), 0.5), COCO17, track_ids=[7])
    f = next(make_frames(1))
    rec = frame_record(f, poses)
    assert rec["people"][0]["keypoints"][3][:2] == [None, None]
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(rec) + "\n" + json.dumps(rec)[:40])
    video = read_jsonl(path)
    assert len(video.frames) == 1 and np.isnan(video.frames[0].poses.keypoints[0, 3]).all()


def test_csv_one_row_per_frame_track_joint(tmp_path):
    path = tmp_path / "poses.csv"
    sink = CsvSink(path)
    for f, p in _tracked_frames(3, people=2):
        sink.write(f, p)
    sink.close({})
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 3 * 2 * 17
    assert rows[0].keys() == {"frame", "image", "track_id", "joint", "x", "y", "score"}
    assert {r["track_id"] for r in rows} == {"0", "1"}
    assert rows[0]["joint"] == "nose" and float(rows[0]["x"]) > 0


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "final.json"

    def fails(tmp):
        tmp.write_text("{half")
        raise RuntimeError("died while writing")

    with pytest.raises(RuntimeError):
        atomic_write(target, fails)
    assert list(tmp_path.iterdir()) == []
    atomic_write(target, lambda tmp: tmp.write_text("{}"))
    assert [p.name for p in tmp_path.iterdir()] == ["final.json"]
    plain = tmp_path / "plain"
    plain.write_text("")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not private 0600


def test_final_coco_file_and_meta(tmp_path):
    sink = FinalJsonSink(tmp_path / "res.json", "coco", "clip")
    for f, p in _tracked_frames(2):
        sink.write(f, p)
    assert not (tmp_path / "res.json").exists()  # nothing before close
    sink.close({"version": "x"})
    res = json.loads((tmp_path / "res.json").read_text())
    assert len(res) == 4 and res[0]["category_id"] == 1 and len(res[0]["keypoints"]) == 51
    assert {r["track_id"] for r in res} == {0, 1}
    assert json.loads((tmp_path / "res.meta.json").read_text()) == {"version": "x"}
    # the sink writes what the one COCO results writer writes, and it reads back
    from posetracker.core.poses import Frame, VideoPoses

    frames = [Frame(f.index, p) for f, p in _tracked_frames(2)]
    write_coco_results(VideoPoses("clip", frames, COCO17), tmp_path / "direct.json")
    assert json.loads((tmp_path / "direct.json").read_text()) == res
    back = read_coco_results(tmp_path / "res.json")
    for f in frames:
        np.testing.assert_allclose(back[f.index].keypoints, f.poses.keypoints)
        np.testing.assert_allclose(back[f.index].scores, f.poses.scores)


def test_final_aborted_writes_nothing(tmp_path):
    sink = FinalJsonSink(tmp_path / "res.json", "posetrack18", "clip")
    for f, p in _tracked_frames(2):
        sink.write(f, p)
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_final_rejects_unknown_format(tmp_path):
    with pytest.raises(InputError, match="format"):
        FinalJsonSink(tmp_path / "x.json", "mot")


def test_sinkset_closes_all_even_when_one_fails(tmp_path):
    class Bad:
        def write(self, f, p): ...
        def close(self, meta): raise OSError("full disk")
        def abort(self): ...

    j = JsonlSink(tmp_path / "a.jsonl")
    j.write(*next(_tracked_frames(1)))
    s = SinkSet([Bad(), j])
    with pytest.raises(InputError, match="cannot write an output: full disk"):  # one line, exit 2
        s.close({})
    assert j._f.closed


def test_coco_results_are_loadable(tmp_path, data_dir):
    from pycocotools.coco import COCO

    from posetracker.core.poses import Frame, VideoPoses

    frames = [Frame(i, p, image=f.name) for i, (f, p) in enumerate(_tracked_frames(2))]
    video = VideoPoses("clip", frames, COCO17)
    write_coco_results(video, tmp_path / "r.json")
    gt = COCO()
    gt.dataset = {"images": [{"id": 0}, {"id": 1}], "annotations": [],
                  "categories": [{"id": 1, "name": "person"}]}
    gt.createIndex()
    assert len(gt.loadRes(str(tmp_path / "r.json")).anns) == 4


@pytest.mark.parametrize("fmt", ["posetrack18", "posetrack17"])
def test_final_posetrack_file_round_trips_with_meta(tmp_path, fmt):
    from posetracker.io.formats.posetrack import read_posetrack

    sink = FinalJsonSink(tmp_path / "clip.json", fmt, "clip")
    for f, p in _tracked_frames(3):
        sink.write(f, p)
    sink.close({"version": "0.1.0", "device": "cpu"})
    assert [p.name for p in tmp_path.iterdir()] == ["clip.json"]  # no temp file left
    data = json.loads((tmp_path / "clip.json").read_text())
    assert data["meta"] == {"version": "0.1.0", "device": "cpu"}
    video = read_posetrack(tmp_path / "clip.json")
    assert len(video.frames) == 3
    for fr in video.frames:
        assert sorted(fr.poses.track_ids.tolist()) == [0, 1]


def test_final_posetrack_file_warns_on_ids_poseval_refuses(tmp_path, caplog):
    sink = FinalJsonSink(tmp_path / "a.json", "posetrack18", "clip")
    for f, p in _tracked_frames(2):
        sink.write(f, p.with_track_ids(p.track_ids + 999))
    with caplog.at_level("WARNING"):
        sink.close({})
    assert "track ids reach 1000" in caplog.text and (tmp_path / "a.json").exists()
