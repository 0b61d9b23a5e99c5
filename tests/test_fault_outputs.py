"""Fault matrix for outputs (issue 20, items 1-3): no run destroys a user's file, none reports
success over a broken output, and one run at a time writes an output.

Every case runs a real command (in-process through ``posetracker.app.cli.main``, or as the console
script where a signal or a second process is the point) in a fresh copy of a small input folder,
and asserts: the exit status; that stderr is one line; byte for byte (SHA-256) that every input
file is unchanged; that every output is complete and valid, or absent (a refused run creates
nothing at all).

- :data:`REFUSED`: an output that is an input (directly, through a symlink, a hard link or
  ``..``), another output, or not writable, for every command; refused before any model loads.
- Runs that succeed next to their inputs (an output inside an input image folder).
- A second run on an output in use: refused at once, naming the first run's pid.
- SIGINT, SIGTERM and ``kill -9`` at random moments of a run writing JSON, JSON lines, a video
  and a CSV: whole lines only, every other file complete or absent.
- A full disk (a small tmpfs, as root; skipped otherwise) for every output kind: one line naming
  the path the user gave, exit 2, the finished frames of the stream kept, no temporary file left.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
from conftest import signal_later

from posetracker.app.cli import main
from posetracker.core.outputs import POLICY, OutputClaim
from posetracker.io import render
from posetracker.io.sinks import CsvSink

FRAMES = 14  # frames of the small clip the tests track


def _make_inputs(root: Path, data: Path) -> None:
    """The inputs every case gets a fresh copy of: a 14-frame 320x180 clip, three frames, an image,
    COCO/CrowdPose/PoseTrack files, a JSON-lines stream, a settings file, a dataset folder."""
    root.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(data / "videos" / "two_people.mp4"))
    w = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 180))
    frames = root / "frames"
    frames.mkdir()
    for i in range(FRAMES):
        ok, img = cap.read()
        assert ok
        small = cv2.resize(img, (320, 180), interpolation=cv2.INTER_AREA)
        w.write(small)
        if i < 3:
            cv2.imwrite(str(frames / f"{i + 1}.jpg"), small)
    w.release()
    cap.release()
    shutil.copy(frames / "1.jpg", root / "a.jpg")
    (root / "ds").mkdir()
    shutil.copy(root / "clip.mp4", root / "ds" / "clip.mp4")
    metric = data / "metric_cases"
    shutil.copy(metric / "example_coco_val.json", root / "gt.json")
    shutil.copy(metric / "example_coco_preds.json", root / "pred.json")
    shutil.copy(metric / "example_coco_preds.json", root / "p.json")
    shutil.copy(metric / "example_crowdpose_val.json", root / "crowd_gt.json")
    for name in ("pt_gt", "pt_pred"):
        (root / name).mkdir()
        shutil.copy(data / "posetrack18_format" / "003418_mpii_test.json", root / name / "seq.json")
    rec = {"frame": 0, "image": "a.jpg", "schema": "coco17",
           "people": [{"track_id": 0, "score": 0.9, "box": [1, 2, 30, 40],
                       "keypoints": [[10.0 + j, 20.0 + j, 0.9] for j in range(17)]}]}
    (root / "a.jsonl").write_text(json.dumps(rec) + "\n" + json.dumps({**rec, "frame": 1}) + "\n")
    (root / "cfg.yaml").write_text("tracker:\n  kind: iou\n")


def _tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: file -> SHA-256, symlink -> its target, folder -> "dir"."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("fault inputs")
    _make_inputs(root, data_dir)
    return root


@pytest.fixture
def work(inputs, tmp_path) -> Path:
    """A fresh copy of the inputs, with the links the cases name."""
    d = tmp_path / "w"
    shutil.copytree(inputs, d)
    (d / "link.json").symlink_to(d / "clip.mp4")
    (d / "plink.json").symlink_to(d / "p.json")
    os.link(d / "clip.mp4", d / "hard.json")
    os.link(d / "a.jsonl", d / "hard.jsonl")
    (d / "sub").mkdir()
    return d


def _fields(d: Path, models_dir: Path) -> dict[str, str]:
    return {"d": str(d), "det": str(models_dir / "rtmdet-nano-person.onnx"),
            "sppe": str(models_dir / "tinypose-256x192.xml")}


TRACK = ("track", "--device", "cpu", "--quiet", "--max-frames", "3",
         "--set", "estimator.detector.model={det}", "--set", "estimator.sppe.model={sppe}")
ESTIMATE = ("estimate", "--device", "cpu", "--quiet", "--detector", "{det}", "--pose-model",
            "{sppe}")


@dataclass(frozen=True)
class Refused:
    id: str
    argv: tuple[str, ...]
    match: str  # text the one error line must contain


_INPUT = "is also the input"

#: Outputs that are inputs, other outputs, or unwritable: refused with one line, nothing created.
REFUSED: tuple[Refused, ...] = (
    # track VIDEO
    Refused("track-o-is-the-video", (*TRACK, "{d}/clip.mp4", "-o", "{d}/clip.mp4"), _INPUT),
    Refused("track-render-over-the-video", (*TRACK, "{d}/clip.mp4", "-o", "{d}/out.json",
                                            "--render", "{d}/clip.mp4"), _INPUT),
    Refused("track-jsonl-is-the-video", (*TRACK, "{d}/clip.mp4", "-o", "{d}/out.json", "--jsonl",
                                         "{d}/clip.mp4"), _INPUT),
    Refused("track-csv-is-the-video", (*TRACK, "{d}/clip.mp4", "-o", "{d}/out.json", "--csv",
                                       "{d}/clip.mp4"), _INPUT),
    Refused("track-o-symlink-to-the-video", (*TRACK, "{d}/clip.mp4", "-o", "{d}/link.json"),
            _INPUT),
    Refused("track-o-hard-link-to-the-video", (*TRACK, "{d}/clip.mp4", "-o", "{d}/hard.json"),
            _INPUT),
    Refused("track-o-dotdot-to-the-video", (*TRACK, "{d}/clip.mp4", "-o", "{d}/sub/../clip.mp4"),
            _INPUT),
    Refused("track-o-an-image-of-the-folder", (*TRACK, "{d}/frames", "-o", "{d}/frames/1.jpg"),
            _INPUT),
    Refused("track-render-an-image-of-the-glob", (*TRACK, "{d}/frames/*.jpg", "-o",
                                                  "{d}/out.json", "--render", "{d}/frames/2.jpg"),
            _INPUT),
    Refused("track-o-the-config", (*TRACK, "{d}/clip.mp4", "--config", "{d}/cfg.yaml", "-o",
                                   "{d}/cfg.yaml"), _INPUT),
    Refused("track-o-is-the-image", (*TRACK, "{d}/a.jpg", "-o", "{d}/a.jpg"), _INPUT),
    Refused("track-csv-is-o", (*TRACK, "{d}/clip.mp4", "-o", "{d}/out.json", "--csv",
                               "{d}/out.json"), "is also the -o output"),
    Refused("track-render-is-csv", (*TRACK, "{d}/clip.mp4", "-o", "{d}/out.json", "--csv",
                                    "{d}/x.mp4", "--render", "{d}/x.mp4"), "is also the"),
    Refused("track-o-a-folder", (*TRACK, "{d}/clip.mp4", "-o", "{d}/frames"), "is a directory"),
    Refused("track-o-ends-in-a-slash", (*TRACK, "{d}/clip.mp4", "-o", "{d}/new/"),
            "not a folder"),
    Refused("eval-out-ends-in-a-slash", ("eval", "coco", "{d}/gt.json", "{d}/pred.json", "--out",
                                         "{d}/new/"), "not a folder"),
    Refused("track-o-under-a-file", (*TRACK, "{d}/clip.mp4", "-o", "{d}/a.jpg/out.json"),
            "not a directory"),
    Refused("track-o-name-too-long", (*TRACK, "{d}/clip.mp4", "-o", "{d}/" + "n" * 250 + ".json"),
            "file name too long"),
    Refused("estimate-jsonl-name-too-long", (*ESTIMATE, "{d}/a.jpg", "-o", "{d}/out.json",
                                             "--jsonl", "{d}/" + "é" * 130 + ".jsonl"),
            "file name too long"),
    # track --poses
    Refused("poses-o-is-the-poses", ("track", "--poses", "{d}/p.json", "-o", "{d}/p.json"),
            _INPUT),
    Refused("poses-o-symlink-to-the-poses", ("track", "--poses", "{d}/p.json", "-o",
                                             "{d}/plink.json"), _INPUT),
    Refused("poses-o-a-frame", ("track", "--poses", "{d}/p.json", "--frames", "{d}/frames",
                                "-o", "{d}/frames/3.jpg"), _INPUT),
    # estimate
    Refused("estimate-o-is-the-image", (*ESTIMATE, "{d}/a.jpg", "-o", "{d}/a.jpg"), _INPUT),
    Refused("estimate-jsonl-an-image-of-the-folder", (*ESTIMATE, "{d}/frames", "-o",
                                                      "{d}/out.json", "--jsonl",
                                                      "{d}/frames/1.jpg"), _INPUT),
    Refused("estimate-o-is-the-gt", (*ESTIMATE, "{d}/a.jpg", "--gt", "{d}/gt.json", "-o",
                                     "{d}/gt.json"), _INPUT),
    Refused("estimate-o-is-the-jsonl", (*ESTIMATE, "{d}/a.jpg", "-o", "{d}/out.json", "--jsonl",
                                        "{d}/out.json"), "is also the -o output"),
    # eval
    Refused("eval-coco-out-is-pred", ("eval", "coco", "{d}/gt.json", "{d}/pred.json", "--out",
                                      "{d}/pred.json"), _INPUT),
    Refused("eval-coco-plot-is-gt", ("eval", "coco", "{d}/gt.json", "{d}/pred.json", "--plot",
                                     "{d}/gt.json"), _INPUT),
    Refused("eval-coco-out-is-plot", ("eval", "coco", "{d}/gt.json", "{d}/pred.json", "--out",
                                      "{d}/r.png", "--plot", "{d}/r.png"), "is also the --out"),
    Refused("eval-crowdpose-out-is-gt", ("eval", "crowdpose", "{d}/crowd_gt.json",
                                         "{d}/pred.json", "--out", "{d}/crowd_gt.json"), _INPUT),
    Refused("eval-posetrack-out-a-prediction", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_pred",
                                                "--out", "{d}/pt_pred/seq.json"), _INPUT),
    Refused("eval-posetrack-plot-dotdot-gt", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_pred",
                                              "--plot", "{d}/pt_pred/../pt_gt/seq.json"), _INPUT),
    # convert
    Refused("convert-jsonl-onto-itself", ("convert", "jsonl", "{d}/a.jsonl", "{d}/a.jsonl"),
            _INPUT),
    Refused("convert-jsonl-hard-link", ("convert", "jsonl", "{d}/a.jsonl", "{d}/hard.jsonl"),
            _INPUT),
    Refused("convert-posetrack-into-its-folder", ("convert", "posetrack", "{d}/pt_pred",
                                                  "{d}/pt_pred", "--to", "2017"), _INPUT),
    # fit-nms, train, bench, track-dataset
    Refused("fit-nms-o-is-the-gt", ("fit-nms", "--gt", "{d}/gt.json", "--images", "{d}/frames",
                                    "-o", "{d}/gt.json"), _INPUT),
    Refused("fit-nms-o-the-config", ("fit-nms", "--gt", "{d}/gt.json", "--images", "{d}/frames",
                                     "--config", "{d}/cfg.yaml", "-o", "{d}/cfg.yaml"), _INPUT),
    Refused("train-sppe-out-dotdot-annotations", ("train", "sppe", "--annotations", "{d}/gt.json",
                                                  "--images", "{d}/frames", "--out",
                                                  "{d}/frames/../gt.json"), _INPUT),
    Refused("train-pgpg-out-an-image", ("train", "pgpg", "--annotations", "{d}/gt.json",
                                        "--images", "{d}/frames", "--out", "{d}/frames/2.jpg",
                                        "--no-detector"), _INPUT),
    Refused("bench-tracking-out-is-its-input", ("bench", "tracking", "--bonn", "{d}/gt.json",
                                                "--out", "{d}/gt.json"), _INPUT),
    Refused("bench-association-pictures-is-an-image", ("bench", "association", "--coco", "{d}",
                                                       "--pictures", "{d}/frames/1.jpg"), _INPUT),
    Refused("bench-association-pictures-is-out", ("bench", "association", "--out", "{d}/t.png",
                                                   "--pictures", "{d}/t.png"), "is also the"),
    Refused("track-dataset-render-over-its-video", ("track-dataset", "{d}/ds/clip.mp4", "-o", "{d}/ds",
                                                     "--render", "--quiet"), _INPUT),
    Refused("track-dataset-eval-out-is-summary", ("track-dataset", "{d}/ds", "-o", "{d}/o",
                                                  "--eval", "{d}/pt_gt", "--eval-out",
                                                  "{d}/o/summary.json"), "is also the"),
)


def test_the_matrix_covers_every_writing_command():
    assert len(REFUSED) >= 30 and len({c.id for c in REFUSED}) == len(REFUSED)
    commands = {" ".join(c.argv[:2]) if c.argv[0] in ("eval", "convert", "train", "bench")
                else c.argv[0] for c in REFUSED}
    assert {"track", "estimate", "eval coco", "eval crowdpose", "eval posetrack", "convert jsonl",
            "convert posetrack", "fit-nms", "train sppe", "train pgpg", "bench tracking",
            "track-dataset"} <= commands


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_refused_output(case, work, models_dir, capsys, monkeypatch):
    from posetracker.app import build

    def no_model(*a, **k):  # refused before any model loads
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(build, "build_estimator", no_model)
    before = _tree(work)
    fields = _fields(work, models_dir)
    code = main([a.format(**fields) for a in case.argv])
    _, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("posetracker: error: "), err
    assert case.match in lines[0], lines[0]
    assert _tree(work) == before  # every input byte for byte, and nothing created


def _posetrack_images(path: Path) -> int:
    doc = json.loads(path.read_text())
    assert isinstance(doc["annotations"], list)
    return len(doc["images"])


def test_an_output_in_an_input_image_folder_that_is_no_input_is_written(work, models_dir,
                                                                        shared_models, capsys):
    before = _tree(work)
    f = _fields(work, models_dir)
    code = main([a.format(**f) for a in (*TRACK, "{d}/frames", "-o", "{d}/frames/out.json")])
    err = capsys.readouterr().err
    assert code == 0 and not err.strip(), err
    assert _posetrack_images(work / "frames" / "out.json") == 3
    after = _tree(work)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"frames/out.json", "frames/out.jsonl"}


def test_no_frame_read_leaves_no_stream_and_offers_no_recovery(work, models_dir, shared_models,
                                                               capsys):
    before = _tree(work)
    f = _fields(work, models_dir)
    argv = [a.format(**f) for a in TRACK if a != "--quiet"]
    code = main([*argv, str(work / "clip.mp4"), "--start-frame", "500", "-o",
                 str(work / "new" / "out.json"), "--csv", str(work / "new" / "out.csv"),
                 "--render", str(work / "new" / "out.mp4")])
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 2
    assert len(lines) == 1 and "no frames were read" in lines[0], lines
    assert _tree(work) == before  # no 0-byte out.jsonl, no out.json, no new folder


def test_coco_metadata_belongs_to_its_output(work, capsys):
    out, meta = work / "out.json", work / "out.meta.json"
    assert main(["convert", "jsonl", str(work / "a.jsonl"), str(out), "--format", "coco"]) == 0
    assert isinstance(json.loads(out.read_text()), list)
    assert json.loads(meta.read_text())["converted_from"].endswith("a.jsonl")
    # a PoseTrack file to the same output carries its metadata inside: the coco one goes
    assert main(["convert", "jsonl", str(work / "a.jsonl"), str(out)]) == 0
    assert _posetrack_images(out) == 2
    assert not meta.exists()
    # and the metadata file is an output: never an input's name
    (work / "x.meta.json").write_text("{}")
    code = main(["convert", "jsonl", str(work / "a.jsonl"), str(work / "x.json"), "--format",
                 "coco"])
    assert code == 0 and json.loads((work / "x.meta.json").read_text())["converted_from"]
    capsys.readouterr()
    assert main(["convert", "jsonl", str(work / "x.meta.json"), str(work / "x.json")]) == 2
    assert "is also the input" in capsys.readouterr().err


def test_help_of_every_writing_command_states_the_policy(capsys):
    for argv in ([], ["track"], ["estimate"], ["eval", "coco"], ["eval", "posetrack"],
                 ["convert", "jsonl"], ["fit-nms"], ["train", "sppe"], ["track-dataset"],
                 ["bench", "tracking"]):
        assert main([*argv, "--help"]) == 0
        assert " ".join(POLICY.split()) in " ".join(capsys.readouterr().out.split()), argv
    docs = Path(__file__).resolve().parents[1] / "docs" / "outputs.md"
    assert " ".join(POLICY.split()) in " ".join(docs.read_text(encoding="utf-8").split())


# -- a second run, signals, kill -9: the console script in its own process -----------------------

def _script(work: Path, models_dir: Path, frames: int, *extra: str) -> list[str]:
    # the console script of this interpreter's environment (the one on PATH may be another
    # checkout's)
    exe = Path(sys.executable).parent / "posetracker"
    start = [str(exe)] if exe.is_file() else [
        sys.executable, "-c", "from posetracker.app.cli import main_entry; main_entry()"]
    return [*start, "track", str(work / "clip.mp4"), "-o", str(work / "out.json"),
            "--max-frames", str(frames), "--device", "cpu", "--quiet",
            "--set", f"estimator.detector.model={models_dir / 'rtmdet-nano-person.onnx'}",
            "--set", f"estimator.sppe.model={models_dir / 'tinypose-256x192.xml'}", *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("POSETRACKER_MODELS", None)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _wait_lines(p: subprocess.Popen, path: Path, n: int, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while p.poll() is None and time.monotonic() < deadline and _lines(path) < n:
        time.sleep(0.02)


def test_a_second_run_on_an_output_in_use_is_refused_naming_the_pid(work, models_dir, capsys):
    # the IoU tracker writes each frame as it comes (PoseFlow's window would hold the first
    # line back until near the end of a short clip)
    p = subprocess.Popen(_script(work, models_dir, FRAMES, "--tracker", "iou"), env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_lines(p, work / "out.jsonl", 1)  # its outputs are claimed, frames being written
        assert p.poll() is None, p.communicate()[1]
        t0 = time.monotonic()
        code = main(["convert", "jsonl", str(work / "a.jsonl"), str(work / "out.json")])
        fast = time.monotonic() - t0
        second_err = capsys.readouterr().err
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    lines = [x for x in second_err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, second_err
    assert f"(pid {p.pid})" in lines[0] and "out.json" in lines[0], lines[0]
    assert fast < 5  # at once, not after waiting for the first run
    assert p.returncode in (0, 130), err
    # the first run's stream is whole and its own (the refused run wrote nothing into it)
    _check_stream(work / "out.jsonl")
    # released: the next run gets the output
    assert main(["convert", "jsonl", str(work / "out.jsonl"), str(work / "out.json")]) == 0


def _check_stream(path: Path) -> int:
    """The JSON-lines stream holds whole lines only, frames 0, 1, ...; returns how many."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-80:]
    for n, line in enumerate(data.decode().splitlines()):
        rec = json.loads(line)
        assert rec["frame"] == n and isinstance(rec["people"], list)
    return data.count(b"\n")


def _video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        assert cap.isOpened(), path
        n = 0
        while cap.read()[0]:
            n += 1
        return n
    finally:
        cap.release()


def _check_outputs(work: Path, rc: int) -> int:
    """Every output complete and valid or absent; returns the frames in the stream."""
    n = _check_stream(work / "out.jsonl")
    out = work / "out.json"
    if rc == 0 or out.exists():  # finished (a signal may land after the final file was written)
        assert _posetrack_images(out) == n == FRAMES
    if (work / "out.csv").exists():
        with open(work / "out.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert tuple(rows[0]) == CsvSink.COLUMNS and all(len(r) == 7 for r in rows)
        assert {int(r[0]) for r in rows[1:]} <= set(range(n))
    if (work / "out.mp4").exists():
        assert n - 1 <= _video_frames(work / "out.mp4") <= n
    return n


def _temporaries(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)]


def test_signals_at_random_moments_leave_whole_or_no_files(inputs, tmp_path, models_dir):
    """SIGINT, SIGTERM and kill -9, each twice: once at a random moment from the start (start-up,
    model loading), once a random moment after 1-3 frames were written."""
    rng = random.Random(20)
    plan = [(sig, code, rng.uniform(0.5, 4.0), 0) for sig, code in SIGNALS] + \
        [(sig, code, rng.uniform(0.0, 0.8), rng.randint(1, 3)) for sig, code in SIGNALS]

    def one(i: int):
        sig, code, delay, after = plan[i]
        work = tmp_path / f"run{i}"
        shutil.copytree(inputs, work)
        before = _tree(work)
        p = subprocess.Popen(_script(work, models_dir, FRAMES, "--render", str(work / "out.mp4"),
                                     "--csv", str(work / "out.csv")),
                             env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        if after:
            _wait_lines(p, work / "out.jsonl", after)
        sent = signal_later(p, delay, sig)
        _, err = p.communicate(timeout=120)
        return i, work, before, p.returncode, err, sent

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(len(plan))))
    for i, work, before, rc, err, sent in results:
        sig, code, _, _ = plan[i]
        assert "Traceback" not in err and "terminate called" not in err, (plan[i], err)
        after = _tree(work)
        assert {k: v for k, v in after.items() if k in before} == before  # inputs untouched
        if not sent or rc == 0:  # finished before the signal: every output whole
            assert rc == 0, (plan[i], rc, err)
            _check_outputs(work, 0)
            continue
        if sig == signal.SIGKILL:
            assert rc == -9
            if _check_outputs(work, rc) < FRAMES:  # killed while running: renamed only when complete
                for name in ("out.json", "out.csv", "out.mp4"):
                    assert not (work / name).exists(), name
            # the next run on these outputs takes their lock and removes the killed run's
            # temporary files
            OutputClaim().acquire({"-o": work / "out.json", "--csv": work / "out.csv",
                                   "--render": work / "out.mp4"}).release()
            assert not _temporaries(work)
            continue
        if rc == -sig and not err:  # before the interpreter set its handler: nothing written
            assert set(after) == set(before)
            continue
        assert rc == code, (plan[i], rc, err)
        assert err.strip().splitlines()[-1].startswith("posetracker: "), err
        _check_outputs(work, rc)
        assert not _temporaries(work)


# -- a full disk: a small tmpfs --------------------------------------------------------------------

@pytest.fixture
def tiny(tmp_path):
    """A 1 MiB tmpfs (root only); :func:`_fill` leaves the free space a case wants."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the full-disk cases needs root")
    d = tmp_path / "tiny"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip() or r.returncode}")
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(d: Path, free: int) -> None:
    """Leave about ``free`` bytes free in ``d`` (a file takes the rest)."""
    filler = d / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - free))


def _full_disk_run(argv: list[str], capsys, work: Path, tiny: Path, target: Path) -> list[str]:
    before = _tree(work)
    code = main(argv)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()
             and not x.startswith("posetracker: note: ")]  # mp4v without the video extra
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0] == f"posetracker: error: cannot write {target}: No space left on device"
    after = _tree(work)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs untouched
    assert not target.exists() or target.suffix == ".jsonl"
    assert sorted(p.name for p in tiny.iterdir()) == sorted(
        ["filler"] + ([target.name] if target.exists() else []))  # no temporary file left
    return lines


@pytest.mark.parametrize("kind,free,frames", [("-o", 4096, 3), ("--jsonl", 4096, 8),
                                              ("--jsonl", 0, 3), ("--render", 8192, 8),
                                              ("--csv", 4096, 8)])
def test_full_disk_during_track(kind, free, frames, work, tiny, models_dir, shared_models,
                                capsys):
    f = _fields(work, models_dir)
    target = tiny / {"-o": "out.json", "--jsonl": "out.jsonl", "--render": "out.mp4",
                     "--csv": "out.csv"}[kind]
    argv = [a.format(**f) for a in TRACK if a != "--quiet"]  # one line all the same
    argv[argv.index("--max-frames") + 1] = str(frames)
    argv += [str(work / "clip.mp4"), "-o", str(target if kind == "-o" else work / "out.json"),
             "--jsonl", str(target if kind == "--jsonl" else work / "out.jsonl")]
    if kind in ("--render", "--csv"):
        argv += [kind, str(target)]
    if kind == "--render" and not render.h264_available():
        # OpenCV's mp4v writer refuses a frame the disk cannot hold whole (64 KiB spare): leave
        # room for the dummy frame the render target is tried on, not for the video
        free = 64 * 64 * 3 + (1 << 16) + 8192
    _fill(tiny, free)
    _full_disk_run(argv, capsys, work, tiny, target)
    assert not (work / "out.json").exists()
    # the finished frames stay in the stream, as whole lines
    if kind == "-o":  # the disk filled at the end: every frame is in the stream
        assert _check_stream(work / "out.jsonl") == frames
    elif kind == "--jsonl" and not free:  # not one line fitted: no empty stream is left
        assert not target.exists()
    elif kind == "--jsonl":  # it filled after some frames: those stay
        assert 1 <= _check_stream(target) < frames
    else:
        assert 1 <= _check_stream(work / "out.jsonl") <= frames


@pytest.mark.parametrize("what,name", [("--out", "report.json"), ("--plot", "plot.png"),
                                       ("--out", "new/folders/report.json")])
def test_full_disk_writing_an_evaluation_report(what, name, work, tiny, capsys):
    target = tiny / name  # folders a failed write made are removed again
    _fill(tiny, 0 if what == "--out" else 4096)
    _full_disk_run(["eval", "coco", str(work / "gt.json"), str(work / "pred.json"), what,
                    str(target)], capsys, work, tiny, target)


def test_full_disk_converting_a_stream(work, tiny, capsys):
    target = tiny / "out.json"
    _fill(tiny, 0)
    _full_disk_run(["convert", "jsonl", str(work / "a.jsonl"), str(target)], capsys, work, tiny,
                   target)


def test_a_claim_removes_its_outputs_stale_temporaries_and_nothing_else(tmp_path):
    """The temporary names a killed run leaves beside an output (``fileio``'s, with or without
    the output's suffix, and a writer's own temporary path written atomically) go when the next
    run claims that output; other files, other outputs' temporaries and folders stay."""
    stale = [".out.json.ab12CD34.tmp", ".out.json.ab12CD34.tmp.json",
             "..out.json.ab12CD34.tmp.zz99YY88.tmp"]
    kept = ["out.json", ".out.json.abc.tmp", ".other.json.ab12CD34.tmp", "x.out.json.ab12CD34.tmp",
            ".out.jsonl.ab12CD34.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    (tmp_path / ".out.json.00000000.tmp").mkdir()
    OutputClaim().acquire({"-o": tmp_path / "out.json"}).release()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + [".out.json.00000000.tmp"])
