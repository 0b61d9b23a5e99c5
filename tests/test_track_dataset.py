"""``posetracker track-dataset``: sequences found in a tree (PoseTrack's images/<split>/<seq>/ and
videos), one output per sequence named for the evaluation, the same output as ``posetracker
track``, a rerun that skips everything, a worker killed in the middle with nothing lost, failures
retried and reported, the Ray engine on a local Ray, and the one line without Ray.

The datasets are built from the shared videos: a few frames each (model loading, once per
worker process, is most of each run's time)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import require_test_extra

from posetracker.app import dataset as ds
from posetracker.app.cli import main
from posetracker.core.errors import InputError

GT_NAME = "003418_mpii_test"  # a PoseTrack 2018 val file of the shared data: one 1920x1080 frame


@pytest.fixture
def models(monkeypatch, models_dir):
    monkeypatch.setenv("POSETRACKER_MODELS", str(models_dir))
    return models_dir


def _write_frames(video: Path, folder: Path, n: int, start: int = 0) -> None:
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ok, bgr = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), bgr)
    cap.release()


def _tree(root: Path, data_dir: Path) -> Path:
    """PoseTrack's layout (a frame folder named like the shared ground truth, one frame of the
    right size; a 3-frame one) and a video in another folder."""
    videos = data_dir / "videos"
    _write_frames(videos / "two_people.mp4", root / "images" / "val" / GT_NAME, 1, start=30)
    _write_frames(videos / "basketball_crossing.mp4", root / "images" / "val" / "seqB", 3)
    (root / "clips").mkdir(parents=True)
    os.symlink(videos / "basketball_crossing.mp4", root / "clips" / "bb.mp4")
    return root


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, data_dir, models_dir):
    """One local run with 2 workers over the tree, rendered, scored against the shared ground
    truth; then the same command again."""
    mp = pytest.MonkeyPatch()
    mp.setenv("POSETRACKER_MODELS", str(models_dir))
    try:
        base = tmp_path_factory.mktemp("tracked")
        root = _tree(base / "root", data_dir)
        gt = base / "gt"
        gt.mkdir()
        shutil.copy(data_dir / "posetrack18_format" / f"{GT_NAME}.json", gt)
        out = base / "out"
        argv = ["track-dataset", str(root), "-o", str(out), "--workers", "2", "--max-frames",
                "3", "--render", "--eval", str(gt), "--eval-out", str(base / "report.csv"), "-q"]
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(argv)
        first = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
        summary1 = json.loads((out / "summary.json").read_text())
        t0 = time.perf_counter()
        rc2 = main(argv)
        rerun_s = time.perf_counter() - t0
        yield {"root": root, "out": out, "gt": gt, "rc": rc, "stdout": buf.getvalue(),
               "mtimes": first, "summary1": summary1, "rc2": rc2, "rerun_s": rerun_s,
               "report": base / "report.csv"}
    finally:
        mp.undo()


# ----------------------------------------------------------------------------------------------
# discovery


def test_sequences_are_found_named_uniquely_and_stably(tmp_path, data_dir):
    root = tmp_path / "root"
    img = cv2.imread(str(data_dir / "coco_mini_val2017" / "val2017" /
                         sorted(os.listdir(data_dir / "coco_mini_val2017" / "val2017"))[0]))
    for folder in ("images/val/s1", "images/train/s1", "images/val/s2", "deep/a/b/frames",
                   "mask/val/s2"):  # PoseTrack's ignore-region masks of images/val/s2
        (root / folder).mkdir(parents=True)
        cv2.imwrite(str(root / folder / "000000.jpg"), img)
    (root / "videos").mkdir()
    for name in ("a.mp4", "a.avi", "c.mkv"):
        (root / "videos" / name).write_bytes(b"x")
    (root / "videos" / "notes.txt").write_text("not a sequence")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "z.mp4").write_bytes(b"x")
    (root / "out").mkdir()
    (root / "out" / "s9.mp4").write_bytes(b"x")  # a rendered output inside ROOT is no input

    found = ds.discover(root, exclude=[root / "out"])
    by_name = {s.name: (s.kind, s.rel) for s in found}
    assert by_name == {
        "images__train__s1": ("frames", "images/train/s1"),
        "images__val__s1": ("frames", "images/val/s1"),
        "s2": ("frames", "images/val/s2"),
        "frames": ("frames", "deep/a/b/frames"),
        "videos__a_mp4": ("video", "videos/a.mp4"),
        "videos__a_avi": ("video", "videos/a.avi"),
        "c": ("video", "videos/c.mkv"),
    }
    assert [s.name for s in found] == sorted(by_name)
    assert ds.discover(root, exclude=[root / "out"]) == found  # stable
    assert [s.name for s in ds.select(found, ["s2", "videos/*.mkv"])] == ["c", "s2"]
    # ROOT itself a frame folder, or a video: one sequence named after it
    assert [(s.name, s.rel) for s in ds.discover(root / "images" / "val" / "s2")] == [("s2", ".")]
    video = data_dir / "videos" / "two_people.mp4"
    assert [(s.name, s.kind) for s in ds.discover(video)] == [("two_people", "video")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no videos"):
        ds.discover(empty)


def test_bad_arguments_end_with_one_line(tmp_path, capsys):
    root = tmp_path / "root"
    (root / "s").mkdir(parents=True)
    cv2.imwrite(str(root / "s" / "0.jpg"), np.zeros((8, 8, 3), np.uint8))
    cases = [
        (["track-dataset", str(tmp_path / "nope"), "-o", str(tmp_path / "o")], "no such file"),
        (["track-dataset", str(root), "-o", str(tmp_path / "o"), "--only", "zz*"],
         "matches none"),
        (["track-dataset", str(root), "-o", str(tmp_path / "o"), "--gpus-per-task", "0.5"],
         "--engine ray"),
        (["track-dataset", str(root), "-o", str(tmp_path / "o"), "--retries", "-1"], "retries"),
        (["track-dataset", str(root), "-o", str(tmp_path / "o"), "--eval",
          str(tmp_path / "nogt")], "no such folder"),
    ]
    for argv, text in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("posetracker: error:") and text in err[0]
    assert not (tmp_path / "o").exists()


def test_without_ray_the_ray_engine_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    root = tmp_path / "root"
    (root / "s").mkdir(parents=True)
    cv2.imwrite(str(root / "s" / "0.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert main(["track-dataset", str(root), "-o", str(tmp_path / "o"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['posetracker: error: --engine ray needs Ray, an optional extra: '
                   'pip install -e ".[ray]" (or pip install "ray>=2.9")']
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------
# the local engine


def test_every_sequence_written_named_for_the_evaluation_and_scored(tracked):
    out = tracked["out"]
    assert tracked["rc"] == 0
    names = {GT_NAME: 1, "seqB": 3, "bb": 3}
    for name, n in names.items():
        data = json.loads((out / f"{name}.json").read_text())
        assert len(data["images"]) == n and data["meta"]["source"]["frames"] == n
        assert {a["track_id"] for a in data["annotations"]} and all(
            isinstance(a["track_id"], int) for a in data["annotations"])
        assert len((out / f"{name}.jsonl").read_text().splitlines()) == n
        cap = cv2.VideoCapture(str(out / f"{name}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        cap.release()
    assert not [p for p in out.iterdir() if "partial" in p.name or p.suffix == ".tmp"]
    # the summary lists every sequence, in both files
    s = tracked["summary1"]
    assert {r["name"]: (r["status"], r["frames"], r["attempts"]) for r in s["sequences"]} == \
        {n: ("done", k, 1) for n, k in names.items()}
    assert all(r["ids"] >= 1 and r["people_per_frame"] > 0 and r["seconds"] > 0 and
               r["rss_mb"] > 100 for r in s["sequences"])
    # worker processes, not this one, took them: which of the two took which depends on which
    # loaded its models first (one that is ready early may take all three short sequences)
    workers = {r["worker"] for r in s["sequences"]}
    assert 1 <= len(workers) <= 2 and s["workers"] in (1, 2)
    assert all(int(w.rsplit(":", 1)[1]) != os.getpid() for w in workers)
    # --eval: the official evaluation's tables, paired by file name with the ground truth
    assert "Average Precision" in tracked["stdout"] and "MOTA" in tracked["stdout"]
    assert tracked["report"].is_file()
    from posetracker.app.api import evaluate_posetrack

    df = evaluate_posetrack(tracked["gt"], out)
    assert len(df) == 1 and np.isfinite(df["AP Total"].iloc[0])


def test_the_per_sequence_job_writes_what_posetrack_track_writes(tracked, models, tmp_path):
    """seqB through `posetracker track` directly: the same poses and ids."""
    mine = tmp_path / "seqB.json"
    assert main(["track", str(tracked["root"] / "images" / "val" / "seqB"), "-o", str(mine),
                 "--max-frames", "3", "-q"]) == 0
    a = json.loads(mine.read_text())
    b = json.loads((tracked["out"] / "seqB.json").read_text())
    assert [i["file_name"] for i in a["images"]] == [i["file_name"] for i in b["images"]]
    assert [x["track_id"] for x in a["annotations"]] == [x["track_id"] for x in b["annotations"]]
    np.testing.assert_allclose(np.array([x["keypoints"] for x in a["annotations"]], float),
                               np.array([x["keypoints"] for x in b["annotations"]], float),
                               atol=1e-3)
    assert a["meta"]["models"] == b["meta"]["models"]


def test_a_rerun_skips_everything(tracked):
    out = tracked["out"]
    assert tracked["rc2"] == 0
    s = json.loads((out / "summary.json").read_text())
    assert {r["status"] for r in s["sequences"]} == {"skipped"} and s["workers"] == 0
    assert {r["name"]: r["frames"] for r in s["sequences"]} == \
        {r["name"]: r["frames"] for r in tracked["summary1"]["sequences"]}
    now = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    for name, t in tracked["mtimes"].items():
        if not name.startswith("summary"):
            assert now[name] == t, name  # not rewritten
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["name"] for r in rows) == sorted([GT_NAME, "bb", "seqB"])
    assert tracked["rerun_s"] < 15  # no worker started, no model loaded


def test_changed_settings_or_models_or_frames_mean_tracking_again(tracked, models):
    from posetracker.app.settings import AppConfig
    from posetracker.core.config import replace_path

    out, fmt = tracked["out"], "posetrack18"
    seq = next(s for s in ds.discover(tracked["root"]) if s.name == "seqB")
    config = AppConfig()
    settings, models_sha = ds.settings_for_key(config), ds.model_checksums(config)

    def rec(settings, models_sha, max_frames=3, render=True):
        job = ds.Job(seq, out / "seqB.json", out / "seqB.mp4" if render else None, max_frames,
                     ds.job_key(seq, settings, models_sha, max_frames, render))
        return ds.finished_record(job, out, fmt, settings, models_sha)

    assert rec(settings, models_sha) is not None
    # threads are how fast, not what: the same outputs
    assert rec(ds.settings_for_key(replace_path(config, "pipeline.threads", 3)),
               models_sha) is not None
    assert rec(ds.settings_for_key(replace_path(config, "pipeline.min_pose_score", 0.3)),
               models_sha) is None
    other = json.loads(json.dumps(models_sha))
    next(iter(other.values()))[next(iter(next(iter(other.values()))))] = "0" * 64
    assert rec(settings, other) is None
    assert rec(settings, models_sha, max_frames=None) is None
    assert rec(settings, models_sha, render=False) is None


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def test_a_killed_worker_loses_nothing_and_the_rerun_finishes(models, data_dir, tmp_path):
    """A worker is killed in the middle of a sequence: that sequence is reported failed
    (--retries 0), the others finish; the rerun tracks only it and keeps the others' files."""
    root = tmp_path / "root"
    # 12 frames a sequence: long enough that a sequence is seen running with frames written
    # (the tracker's window holds the first frames back; 3-frame sequences wrote all their lines
    # at the end, so the moment to catch was a few milliseconds on a fast machine)
    n_frames = 12
    for i in range(4):
        _write_frames(data_dir / "videos" / "basketball_crossing.mp4", root / f"s{i}", n_frames,
                      start=20 * i)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "posetracker.app.cli", "track-dataset", str(root), "-o",
            str(out), "--workers", "2", "--retries", "0"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 240
    try:
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
            try:
                s = json.loads((out / "summary.json").read_text())
            except (OSError, ValueError):
                continue
            for r in s["sequences"]:
                jl = out / f"{r['name']}.jsonl"
                # in the middle: a frame or more written, the sequence not finished
                if r["status"] == "running" and jl.is_file() and jl.read_text().count("\n"):
                    pid = int(r["worker"].rsplit(":", 1)[1])
                    assert pid in _children(proc.pid)
                    os.kill(pid, signal.SIGKILL)
                    killed = r["name"]
                    break
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no sequence caught in the middle"
    assert proc.returncode == 1, err
    assert f"posetracker: {killed} failed after 1 attempt(s): worker process died" in err
    s = json.loads((out / "summary.json").read_text())
    status = {r["name"]: r["status"] for r in s["sequences"]}
    assert status == {f"s{i}": ("failed" if f"s{i}" == killed else "done") for i in range(4)}
    assert not (out / f"{killed}.json").exists()
    kept = {n: (out / f"{n}.json").stat().st_mtime_ns for n, st in status.items() if st == "done"}

    assert main(["track-dataset", str(root), "-o", str(out), "--workers", "2", "-q"]) == 0
    s = json.loads((out / "summary.json").read_text())
    status = {r["name"]: r["status"] for r in s["sequences"]}
    assert status == {f"s{i}": ("done" if f"s{i}" == killed else "skipped") for i in range(4)}
    assert s["workers"] == 1  # one sequence left: one worker
    for n, t in kept.items():
        assert (out / f"{n}.json").stat().st_mtime_ns == t
    for i in range(4):
        data = json.loads((out / f"s{i}.json").read_text())
        assert len(data["images"]) == n_frames


# ----------------------------------------------------------------------------------------------
# the Ray engine


def test_ray_engine_on_a_local_ray_retries_and_writes_what_local_writes(tracked, models,
                                                                        tmp_path, capsys):
    require_test_extra("ray")
    root = tmp_path / "root"
    shutil.copytree(tracked["root"] / "images" / "val" / "seqB", root / "seqB")
    (root / "broken.mp4").write_bytes(os.urandom(4096))  # fails on every attempt
    out = tmp_path / "out"
    rc = main(["track-dataset", str(root), "-o", str(out), "--engine", "ray", "--workers", "2",
               "--retries", "1", "--max-frames", "3", "-q"])
    err = capsys.readouterr().err
    assert rc == 1
    s = json.loads((out / "summary.json").read_text())
    recs = {r["name"]: r for r in s["sequences"]}
    assert recs["broken"]["status"] == "failed" and recs["broken"]["attempts"] == 2
    assert "cannot open video" in recs["broken"]["error"] and "broken failed" in err
    assert recs["seqB"]["status"] == "done" and recs["seqB"]["frames"] == 3
    assert s["engine"] == "ray" and s["workers"] == 2
    a = json.loads((out / "seqB.json").read_text())
    b = json.loads((tracked["out"] / "seqB.json").read_text())
    assert [x["track_id"] for x in a["annotations"]] == [x["track_id"] for x in b["annotations"]]
    np.testing.assert_allclose(np.array([x["keypoints"] for x in a["annotations"]], float),
                               np.array([x["keypoints"] for x in b["annotations"]], float),
                               atol=1e-3)
