"""``posetracker track VIDEO``: the whole command with a test-double estimator (no models):
outputs and metadata, track ids on every pose, bad input -> exit 2 with one line, an interrupted
run keeps the finished frames' JSON lines and leaves no final file, settings and --help defaults."""

from __future__ import annotations

import argparse
import csv
import json
import re

import cv2
import numpy as np
import pytest
from pipeline_doubles import FakeStages

from posetracker.app import api
from posetracker.app.cli import build_parser, main
from posetracker.app.settings import AppConfig, load_app_config


def _video(path, n=12, size=(96, 128)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size[1], size[0]))
    for i in range(n):
        w.write(np.full((*size, 3), 40 + 5 * i, np.uint8))
    w.release()
    return path


class IndexedStages(FakeStages):
    """FakeStages for decoded video: the frame index is painted by the detector (the JPEG codec
    would blur a pixel painted before encoding), counted on the detector's one thread, which sees
    the frames in stream order."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.count = 0

    def detect(self, images):
        for image in images:
            image[0, 0, 0] = self.count  # the pipeline owns the decoded frame; mark it in place
            self.count += 1
        return super().detect(images)


@pytest.fixture
def stages(monkeypatch):
    """Replace the model loading with the test double; returns the double to configure."""
    holder = {"stages": IndexedStages(people=2)}
    monkeypatch.setattr(api, "build_stages",
                        lambda config: (holder["stages"], "cpu"))
    return holder


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_full_run_writes_every_output(tmp_path, stages, capsys):
    video = _video(tmp_path / "clip.avi")
    out = tmp_path / "out" / "clip.json"
    code = main(["track", str(video), "-o", str(out), "--render", str(tmp_path / "r.mp4"),
                 "--csv", str(tmp_path / "p.csv"), "--tracker", "iou", "--quiet"])
    assert code == 0
    data = json.loads(out.read_text())
    assert len(data["images"]) == 12
    assert len(data["annotations"]) == 24
    assert all(isinstance(a["track_id"], int) for a in data["annotations"])
    assert len({a["track_id"] for a in data["annotations"]}) == 2  # two people, two tracks
    meta = data["meta"]
    assert meta["version"] and meta["device"] == "cpu"
    assert meta["config"]["tracker"]["kind"] == "iou"
    assert meta["timings"]["frames"] == 12 and "detect" in meta["timings"]["ms_per_frame"]
    d = load_app_config().estimator
    assert set(meta["models"]) == {d.detector.model, d.sppe.model}
    jl = _lines(out.with_suffix(".jsonl"))
    assert [r["frame"] for r in jl] == list(range(12))
    assert all(p["track_id"] is not None for r in jl for p in r["people"])
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 12 * 2 * 17
    cap = cv2.VideoCapture(str(tmp_path / "r.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 12
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.json", "clip.jsonl"]


def test_summary_and_selection(tmp_path, stages, capsys):
    video = _video(tmp_path / "clip.avi", n=20)
    out = tmp_path / "s.json"
    assert main(["track", str(video), "-o", str(out), "--start-frame", "2", "--stride", "3",
                 "--max-frames", "4", "--tracker", "none", "--sequential"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"4 frames, 2\.00 people/frame, [\d.]+ frames/s \(sequential\)", err)
    assert "ms/frame: read" in err
    assert [r["frame"] for r in _lines(out.with_suffix(".jsonl"))] == [2, 5, 8, 11]


@pytest.mark.parametrize("sequential", [False, True])
def test_interrupted_run_keeps_finished_frames(tmp_path, stages, capsys, sequential):
    stages["stages"] = IndexedStages(people=2, fail_at=7, fail_stage="pose")
    video = _video(tmp_path / "clip.avi", n=30)
    out_dir = tmp_path / "out"
    out = out_dir / "clip.json"
    args = ["track", str(video), "-o", str(out), "--tracker", "iou", "--det-batch", "1",
            "--pose-batch", "1", "--csv", str(out_dir / "c.csv"), "--quiet"]
    with pytest.raises(Exception, match="injected failure in pose at frame 7"):
        main(args + (["--sequential"] if sequential else []))
    assert not out.exists()  # no half-written (or any) final file
    lines = _lines(out.with_suffix(".jsonl"))  # every line complete JSON
    assert [r["frame"] for r in lines] == list(range(len(lines)))
    assert all(p["track_id"] is not None for r in lines for p in r["people"])
    if sequential:
        assert len(lines) == 7  # frames 0..6 finished before frame 7 failed
    else:
        assert len(lines) <= 7
    assert sorted(p.name for p in out_dir.iterdir()) == ["c.csv", "clip.jsonl"]  # no temp files


def test_ctrl_c_exits_130_and_keeps_frames(tmp_path, stages, monkeypatch, capsys):
    stages["stages"] = IndexedStages(people=1)
    from posetracker.io.sinks import JsonlSink

    real_write = JsonlSink.write

    def write(self, frame, poses):
        if frame.index == 5:
            raise KeyboardInterrupt
        real_write(self, frame, poses)

    monkeypatch.setattr(JsonlSink, "write", write)
    video = _video(tmp_path / "clip.avi", n=30)
    out = tmp_path / "clip.json"
    assert main(["track", str(video), "-o", str(out), "--tracker", "none"]) == 130
    assert "finished frames are in" in capsys.readouterr().err
    assert len(_lines(out.with_suffix(".jsonl"))) == 5 and not out.exists()
    # the stream finishes into the final file the run would have written, for those frames
    monkeypatch.setattr(JsonlSink, "write", real_write)
    assert main(["convert", "jsonl", str(out.with_suffix(".jsonl")), str(out)]) == 0
    from posetracker.io.formats.posetrack import read_posetrack

    video_out = read_posetrack(out)
    assert len(video_out.frames) == 5
    assert all(f.poses.track_ids is not None and len(f.poses) == 1 for f in video_out.frames)
    assert main(["convert", "jsonl", str(tmp_path / "none.jsonl"), str(out)]) == 2


@pytest.mark.parametrize("make", [
    lambda d: (d / "bad.mp4").write_bytes(b"junk" * 100) and d / "bad.mp4",
    lambda d: d / "missing.avi",
    lambda d: (d / "empty").mkdir() or d / "empty",
])
def test_bad_input_exit_2_one_line(tmp_path, make, capsys, monkeypatch):
    # no models are loaded before the input is checked
    monkeypatch.setattr(api, "build_stages", lambda *a, **k: pytest.fail("loaded models"))
    code = main(["track", str(make(tmp_path)), "-o", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("posetracker: error: ")
    assert not (tmp_path / "o.json").exists()


def test_corrupt_frame_mid_folder_is_skipped_and_named(tmp_path, stages, caplog):
    # A frame that fails to decode mid-input is named in a warning, and the run goes on
    # (posetracker.io.sources); the outputs keep one entry per source frame, the lost one with no
    # people, so every frame keeps its index.
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(1, 6):
        cv2.imwrite(str(d / f"{i}.png"), np.full((40, 50, 3), 30, np.uint8))
    (d / "6.png").write_bytes(b"broken")
    for i in range(7, 12):
        cv2.imwrite(str(d / f"{i}.png"), np.full((40, 50, 3), 30, np.uint8))
    out = tmp_path / "o.json"
    assert main(["track", str(d), "-o", str(out), "--tracker", "none", "--quiet",
                 "--sequential", "--det-batch", "1"]) == 0
    assert "6.png" in caplog.text
    records = _lines(out.with_suffix(".jsonl"))
    assert [r["frame"] for r in records] == list(range(11))
    assert records[5]["image"] == "6.png" and records[5]["people"] == []
    images = json.loads(out.read_text())["images"]
    assert [(im["id"], im["file_name"]) for im in images] == [(i, f"{i + 1}.png") for i in range(11)]
    assert len(list(d.iterdir())) == 11  # nothing written into the input folder


def test_dump_config_round_trips(tmp_path, capsys):
    assert main(["track", "--dump-config", "--tracker", "alphapose", "--det-batch", "2",
                 "--set", "pipeline.queue_size=7", "--set", "tracker.poseflow.window=5"]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg = load_app_config(path)
    assert cfg.tracker.kind == "alphapose" and cfg.estimator.frame_batch == 2
    assert cfg.pipeline.queue_size == 7 and cfg.tracker.poseflow.window == 5


def test_bad_setting_is_one_line(capsys):
    assert main(["track", "--dump-config", "--set", "pipeline.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no_such_key" in err


def test_default_yaml_loads_and_names_registry_models():
    from posetracker.app.models import REGISTRY

    cfg = load_app_config()
    assert isinstance(cfg, AppConfig)
    assert cfg.estimator.detector.model in REGISTRY and cfg.estimator.sppe.model in REGISTRY


def test_help_shows_the_real_defaults():
    """The defaults written in --help are the settings' defaults."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["track"].format_help()
    text = " ".join(text.split())
    d = load_app_config()
    assert f"(estimator.frame_batch, default: {d.estimator.frame_batch})" in text
    assert f"(estimator.sppe.batch_size, default: {d.estimator.sppe.batch_size})" in text
    assert f"(pipeline.association, default: {d.pipeline.association})" in text
    assert f"default: {d.estimator.device} = CUDA" in text
    assert f"default: the config's kind, {d.tracker.kind}" in text
    assert f"default: {d.pipeline.output.format};" in text
    assert f"default: {d.pipeline.mode})" in text
    assert f"(estimator.precision, default: {d.estimator.precision} = bf16 on CPUs with AMX, else fp32;" in text
    assert f"(estimator.backend, default: {d.estimator.backend} = torch on CUDA" in text


class ScoredStages(IndexedStages):
    """IndexedStages whose joints score 0.2..0.95 across the skeleton, so the joint threshold
    (0.5) removes some of them."""

    def estimate(self, images, detections):
        from posetracker.core.poses import FramePoses

        out = []
        for p in super().estimate(images, detections):
            sc = np.tile(np.linspace(0.2, 0.95, p.keypoints.shape[1]), (len(p), 1))
            out.append(FramePoses.from_keypoints(p.keypoints, sc, p.schema))
        return out


@pytest.mark.parametrize("fmt", ["posetrack18", "posetrack17"])
def test_every_output_holds_the_same_joints(tmp_path, stages, fmt):
    """The output policy (joint threshold, head joints) is applied once, before every sink."""
    stages["stages"] = ScoredStages(people=2)
    video = _video(tmp_path / "clip.avi", n=6)
    out = tmp_path / "clip.json"
    assert main(["track", str(video), "-o", str(out), "--tracker", "iou", "--format", fmt,
                 "--csv", str(tmp_path / "c.csv"), "-q"]) == 0
    data = json.loads(out.read_text())
    lines = _lines(out.with_suffix(".jsonl"))
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    from posetracker.core.schemas import get_schema
    from posetracker.io.formats.posetrack import read_posetrack

    schema = get_schema(fmt)
    assert {r["schema"] for r in lines} == {fmt}
    assert {r["joint"] for r in rows} == set(schema.keypoints)
    final = read_posetrack(out)
    for rec, frame in zip(lines, final.frames):
        people = sorted(rec["people"], key=lambda p: p["track_id"])
        order = np.argsort(frame.poses.track_ids)
        for p, i in zip(people, order):
            present = [j[0] is not None for j in p["keypoints"]]
            assert present == np.isfinite(frame.poses.keypoints[i]).all(-1).tolist()
            assert all(j[2] >= 0.5 for j, ok in zip(p["keypoints"], present) if ok)
        kept = [r for r in rows if int(r["frame"]) == rec["frame"] and r["x"] != ""]
        assert len(kept) == sum(j[0] is not None for p in people for j in p["keypoints"])
    assert 0 < sum(r["x"] != "" for r in rows) < len(rows)  # the threshold removed some joints
    assert len(final.frames) == 6 and sum(len(f.poses) for f in final.frames) == 12
    assert "meta" in data
