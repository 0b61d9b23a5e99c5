"""The Python API (``from posetracker import PoseTracker, ...``): a user's script on a shared video
with the real models; frames stream out of the threaded pipeline and an early stop joins its
threads; ``track_to`` is what ``posetracker track`` writes; ``estimate`` is what
``posetracker estimate`` finds; the evaluations return DataFrames; the README's examples run."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pipeline_doubles import FakeStages, make_frames

import posetracker
from posetracker.app import api
from posetracker.app.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def models(monkeypatch, models_dir):
    monkeypatch.setenv("POSETRACKER_MODELS", str(models_dir))
    return models_dir


def _stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("posetracker-")]


def test_a_users_script_on_a_shared_video(models, data_dir, tmp_path):
    """Construct, track a shared video, read ids and keypoint shapes, write PoseTrack JSON, read
    and evaluate it, as a user's script would, through the top-level names only."""
    from posetracker import PoseTracker, TrackedFrame, evaluate_posetrack

    video = data_dir / "videos" / "two_people.mp4"
    tracker = PoseTracker(device="cpu")
    frames = list(tracker.track(str(video), max_frames=6))
    assert [f.index for f in frames] == list(range(6))
    assert all(isinstance(f, TrackedFrame) and f.image_size == (1920, 1080) for f in frames)
    for f in frames:
        p = f.poses
        n = len(p)
        assert p.keypoints.shape == (n, 17, 2) and p.keypoint_scores.shape == (n, 17)
        assert p.boxes.shape == (n, 4) and p.scores.shape == (n,)
        assert p.track_ids.shape == (n,) and np.issubdtype(p.track_ids.dtype, np.integer)
        assert p.schema.num_keypoints == 17
    # two people hug through the video: two tracks, both on every frame
    assert {tuple(sorted(f.poses.track_ids.tolist())) for f in frames} == {(0, 1)}

    out = tmp_path / "pred" / "two_people.json"
    summary = tracker.track_to(str(video), out, max_frames=6)
    assert summary.frames == 6 and summary.people == sum(len(f.poses) for f in frames)
    data = json.loads(out.read_text())
    assert len(data["images"]) == 6 and {a["track_id"] for a in data["annotations"]} == {0, 1}
    # the file holds what track() yielded (same settings, same models)
    from posetracker.io.formats.posetrack import read_posetrack

    written = read_posetrack(out)
    for f, w in zip(frames, written.frames):
        assert sorted(w.poses.track_ids.tolist()) == sorted(f.poses.track_ids.tolist())
    # scoring it against itself as ground truth needs head boxes: give them from the boxes
    gt = json.loads(out.read_text())
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["bbox_head"] = [x + w / 3, y, w / 3, h / 6]
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "two_people.json").write_text(json.dumps(gt))
    report = evaluate_posetrack(tmp_path / "gt", tmp_path / "pred")
    assert isinstance(report, pd.DataFrame) and report.loc["total", "MOTA Total"] > 50


def test_frames_stream_and_an_early_stop_joins_the_threads(monkeypatch, tmp_path):
    read: list[int] = []

    class Source:  # an opened source that counts what the reader has taken
        name, fps, start_frame, stride, expected_frames = "clip", 25.0, 0, 1, 400
        closed = False

        def __iter__(self):
            try:
                for f in make_frames(400):
                    read.append(f.index)
                    yield f
            finally:
                Source.closed = True

    monkeypatch.setattr(api, "build_stages", lambda config: (FakeStages(people=1), "cpu"))
    tracker = posetracker.PoseTracker(tracker="iou", pipeline__queue_size=2)
    gen = tracker.track(Source())
    first = next(gen)
    assert first.index == 0 and len(first.poses) == 1
    # the first frame came out long before the input was read: bounded queues, not collected
    assert len(read) < 60
    assert _stage_threads()
    gen.close()
    assert not _stage_threads() and Source.closed
    # breaking out of a for loop stops them too
    for f in tracker.track(Source()):
        if f.index == 3:
            break
    assert not _stage_threads()


def test_track_to_is_what_the_command_writes(monkeypatch, tmp_path):
    import cv2

    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(9):
        w.write(np.full((48, 64, 3), 30 + 10 * i, np.uint8))
    w.release()
    monkeypatch.setattr(api, "build_stages", lambda config: (FakeStages(people=2), "cpu"))
    a, b = tmp_path / "a" / "clip.json", tmp_path / "b" / "clip.json"
    summary = posetracker.PoseTracker(tracker="iou").track_to(str(video), a, csv=tmp_path / "a.csv")
    assert main(["track", str(video), "-o", str(b), "--tracker", "iou", "--csv",
                 str(tmp_path / "b.csv"), "-q"]) == 0
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ja["annotations"] == jb["annotations"] and ja["images"] == jb["images"]
    assert ja["meta"]["config"] == jb["meta"]["config"]
    assert a.with_suffix(".jsonl").read_text() == b.with_suffix(".jsonl").read_text()
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert summary.frames == 9 and summary.people == 18 and summary.output == a
    assert summary.jsonl == a.with_suffix(".jsonl") and "9 frames" in summary.text()
    # outputs are checked before any model loads: one error, nothing written
    monkeypatch.setattr(api, "build_stages", lambda config: pytest.fail("loaded models"))
    with pytest.raises(posetracker.core.errors.InputError, match="cannot write"):
        posetracker.PoseTracker().track_to(str(video), tmp_path / "c.json", csv=tmp_path)


def test_track_to_writes_through_the_pipeline_loop(monkeypatch, tmp_path):
    """``track_to`` is :func:`run_pipeline` with the output files as its writer, in either mode:
    its summary and the timings in the output's metadata are the loop's own result."""
    from posetracker.app import pipeline

    class Source:
        name, fps, start_frame, stride, expected_frames = "clip", 25.0, 0, 1, 7

        def __iter__(self):
            return make_frames(7)

    results = []
    real = pipeline.run_pipeline

    def spy(*args, **kw):
        results.append(real(*args, **kw))
        return results[-1]

    monkeypatch.setattr(pipeline, "run_pipeline", spy)
    monkeypatch.setattr(api, "build_stages", lambda config: (FakeStages(people=2), "cpu"))
    annotations = []
    for mode in ("threaded", "sequential"):
        seen = []
        out = tmp_path / mode / "clip.json"
        summary = posetracker.PoseTracker(tracker="iou", mode=mode).track_to(
            Source(), out, jsonl=False, progress=lambda n, total: seen.append((n, total)))
        run = results[-1]
        assert run.mode == summary.mode == mode
        assert (summary.frames, summary.people) == (run.frames, run.people) == (7, 14)
        assert summary.meta["timings"] == run.as_dict()
        assert seen == [(n, 7) for n in range(8)]
        data = json.loads(out.read_text())
        assert data["meta"]["timings"] == run.as_dict()
        annotations.append(data["annotations"])
    assert len(results) == 2 and annotations[0] == annotations[1]


def test_estimate_is_what_the_command_finds(models, data_dir, tmp_path):
    image = data_dir / "coco_mini_val2017" / "val2017" / "000000397133.jpg"
    out = tmp_path / "p.json"
    assert main(["estimate", str(image), "-o", str(out), "--device", "cpu", "-q"]) == 0
    cli = json.loads(out.read_text())
    from posetracker.io.sources import read_image

    (poses,) = posetracker.PoseTracker(device="cpu", estimate__estimator__device="cpu"
                                       ).estimate([read_image(image)])
    assert poses.track_ids is None and len(poses) == len(cli) > 0
    got = sorted(poses.scores.tolist(), reverse=True)
    np.testing.assert_allclose(got, sorted((r["score"] for r in cli), reverse=True), atol=1e-4)


def test_bad_settings_are_one_clear_error():
    from posetracker.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        posetracker.PoseTracker(colour="red")
    with pytest.raises(ConfigError, match="device"):
        posetracker.PoseTracker(device="gpu")
    with pytest.raises(ConfigError, match="unknown key"):
        posetracker.PoseTracker({"tracker": {"nope": 1}})


def test_evaluations_return_dataframes(data_dir):
    cases = data_dir / "metric_cases"
    coco = posetracker.evaluate_coco(cases / "example_coco_val.json",
                                     cases / "example_coco_preds.json")
    crowd = posetracker.evaluate_crowdpose(cases / "example_crowdpose_val.json",
                                           cases / "example_crowdpose_preds.json")
    gt = data_dir / "posetrack18_format"
    track = posetracker.evaluate_posetrack(gt, gt)
    assert all(isinstance(r, pd.DataFrame) for r in (coco, crowd, track))
    assert round(float(coco["AP"].iloc[0]), 4) == 0.8609  # the known answers (data README)
    assert round(float(crowd["AP hard"].iloc[0]), 4) == 0.4116
    assert track.loc["total", "AP Total"] == pytest.approx(100.0)


def _readme_api_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_readme_python_examples_run(models, data_dir, tmp_path, monkeypatch, capsys):
    blocks = _readme_api_blocks()
    assert len(blocks) >= 4
    for src in (data_dir / "videos" / "two_people.mp4",
                data_dir / "coco_mini_val2017" / "val2017" / "000000397133.jpg",
                data_dir / "metric_cases" / "example_coco_val.json",
                data_dir / "metric_cases" / "example_coco_preds.json"):
        (tmp_path / src.name).symlink_to(src)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    assert "(2, 17, 2)" in out and "iou 0.3" in out
    assert (tmp_path / "out" / "two_people.json").is_file()
    assert (tmp_path / "out" / "two_people.csv").is_file()
    shutil.rmtree(tmp_path / "out")
