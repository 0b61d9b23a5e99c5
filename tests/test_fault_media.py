"""Fault matrix for media and names: file names of any bytes, damaged videos, degenerate images,
render targets, and the smaller faults of issue 20, through every command.

Each case of :data:`CASES` is a command line (``{d}`` is the case's own folder, where the inputs
are linked; ``{bad}`` two bytes that are not UTF-8; ``{long}`` a 300-byte name) and what must
happen. Every case asserts:

- the exit status;
- stderr: one line ``posetracker: error: ...`` for a refusal, else only the documented warnings
  and notes (:attr:`Case.warn`);
- every input file byte for byte (sha256) unchanged, and no file added among the inputs;
- outputs: complete and valid (:attr:`Case.check`), or, for a refusal, absent: nothing at all
  is left in the case's folder (no probe file, no stream, no temporary file).

The damaged videos are made here: an MJPG AVI written with OpenCV whose frames 3 and 4 lose
their JPEG data (the decoder rejects them) or their chunk headers (the demuxer drops them, and
numbers the later frames as if they never were), an MP4 whose samples 3 and 4 are zeroed, and an
AVI cut in the middle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from posetracker.app.cli import main
from posetracker.core.paths import opencv_path
from posetracker.io import render, sources

BAD = os.fsdecode(b"\xff\xfe")  # two bytes that are no UTF-8: "\udcff\udcfe" in Python
LONG = "a" * 300
N = 8  # frames of the test videos
LOST = (3, 4)  # the damaged frames
WARN_LOST = r"frame [34] could not be decoded; written as a frame with no people"


def _have_av() -> bool:
    return sources._have_av()


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int = 0
    match: str = ""  # for a refusal: text its one line must contain
    check: Callable[[Path, str, str], None] | None = None  # check(folder, stdout, stderr)
    warn: tuple[str, ...] = ()  # regexes the lines of stderr may match (code 0)
    setup: Callable[[pytest.MonkeyPatch, Path], None] | None = None
    needs_av: bool = False


# ---------------------------------------------------------------------------------------------
# inputs


def _frames(data: Path, n: int, size=(192, 108)) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(data / "videos" / "two_people.mp4"))
    out = []
    for _ in range(n):
        ok, bgr = cap.read()
        assert ok
        out.append(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA))
    cap.release()
    return out


def _write_video(path: Path, frames: list[np.ndarray], fourcc: str) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    assert path.stat().st_size > 0


def _avi_chunks(data: bytes) -> list[tuple[int, int]]:
    """``(payload offset, size)`` of each video chunk (``00dc``) of an AVI's ``movi`` list."""
    i, end, out = data.find(b"movi") + 4, data.find(b"idx1"), []
    while i < end:
        tag, size = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        if tag == b"LIST":
            i += 12
            continue
        if tag == b"00dc":
            out.append((i + 8, size))
        i += 8 + size + (size & 1)
    return out


def _make_inputs(root: Path, data: Path) -> None:
    frames = _frames(data, N)
    _write_video(root / "clip.avi", frames, "MJPG")
    clip = (root / "clip.avi").read_bytes()
    chunks = _avi_chunks(clip)
    assert len(chunks) == N
    payload, headers = bytearray(clip), bytearray(clip)
    for k in LOST:
        p, size = chunks[k]
        payload[p:p + size] = bytes(size)  # the JPEG is gone: the decoder rejects the frame
        headers[p - 8:p] = bytes(8)  # the chunk header is gone: the demuxer drops the frame
    (root / "payload.avi").write_bytes(bytes(payload))
    (root / "chunks.avi").write_bytes(bytes(headers))
    (root / "cut.avi").write_bytes(clip[:chunks[5][0]])  # frames 0-4 whole, then the end
    (root / f"n{BAD}me.avi").write_bytes(clip)
    (root / "line\nbreak.avi").write_bytes(clip)
    _write_video(root / "clip.mp4", frames, "mp4v")
    if _have_av():
        import av

        with av.open(str(root / "clip.mp4")) as c:
            entries = list(c.streams.video[0].index_entries)
        mp4 = bytearray((root / "clip.mp4").read_bytes())
        for k in LOST:
            mp4[entries[k].pos:entries[k].pos + entries[k].size] = bytes(entries[k].size)
        (root / "damaged.mp4").write_bytes(bytes(mp4))
    # degenerate and odd images
    rng = np.random.default_rng(0)
    for name, (h, w) in {"w1": (64, 1), "h1": (1, 64), "p1": (1, 1), "strip": (1, 2000)}.items():
        (root / name).mkdir()
        for i in range(3):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 255, (h, w, 3), np.uint8))
    (root / "mixed").mkdir()
    for i, f in enumerate((frames[0], cv2.resize(frames[1], (108, 192)),
                           cv2.resize(frames[2], (96, 54)))):
        cv2.imwrite(str(root / "mixed" / f"{i}.jpg"), f)
    cv2.imwrite(str(root / "huge.png"), cv2.resize(frames[0], (4400, 300)))
    # (OpenCV itself crashes on a name that is not UTF-8: encode here, write with Python)
    (root / f"image{BAD}.jpg").write_bytes(cv2.imencode(".jpg", frames[0])[1].tobytes())
    (root / "odd frames").mkdir()  # one image per image of coco_preds.json, for --frames
    for i in range(4):
        jpg = cv2.imencode(".jpg", frames[i])[1].tobytes()
        (root / "odd frames" / f"{i}{BAD}.jpg").write_bytes(jpg)
    (root / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    (root / "a file").write_text("not a folder\n")
    # evaluation inputs
    mc = data / "metric_cases"
    gt = json.loads((mc / "example_coco_val.json").read_text())
    (root / "coco_gt.json").write_text(json.dumps(gt))
    (root / "coco_gt_nobody.json").write_text(json.dumps(dict(gt, annotations=[])))
    cgt = json.loads((mc / "example_crowdpose_val.json").read_text())
    (root / "crowd_gt_nobody.json").write_text(json.dumps(dict(cgt, annotations=[])))
    (root / "coco_preds.json").write_text((mc / "example_coco_preds.json").read_text())
    pt = json.loads((data / "posetrack18_format" / "003418_mpii_test.json").read_text())
    for name, doc in (("pt_pred", pt), ("pt_gt_nobody", dict(pt, annotations=[]))):
        (root / name).mkdir()
        (root / name / "seq.json").write_text(json.dumps(doc))
    # a run's JSON-lines stream from frame 5 on, frame 7 lost (no people)
    person = {"track_id": 0, "score": 0.9, "box": [1, 2, 30, 40],
              "keypoints": [[10.0, 20.0, 0.9]] * 17}
    lines = [{"frame": i, "image": f"v/{i:06d}.jpg", "schema": "coco17",
              "people": [] if i == 7 else [person]} for i in range(5, 9)]
    (root / f"run{BAD}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    # text files saved with a byte-order mark (as some Windows editors do)
    (root / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (root / f"run{BAD}.jsonl").read_bytes())
    (root / "bom.json").write_bytes(b"\xef\xbb\xbf" + (mc / "example_coco_preds.json").read_bytes())
    # a dataset: two good videos (one named with odd bytes) and a broken one
    ds = root / "ds"
    ds.mkdir()
    short = (root / "short.avi")
    _write_video(short, frames[:2], "MJPG")
    (ds / "good.avi").write_bytes(short.read_bytes())
    (ds / f"odd{BAD}.avi").write_bytes(short.read_bytes())
    (ds / f"broken{BAD}.avi").write_bytes(b"\0not a video" * 100)


def _hashes(root: Path) -> dict[bytes, str]:
    """sha256 of every file under ``root``, by its path in bytes (any name)."""
    out = {}
    for folder, _, files in os.walk(os.fsencode(root)):
        for f in files:
            p = os.path.join(folder, f)
            with open(p, "rb") as fh:
                out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


# ---------------------------------------------------------------------------------------------
# checks of outputs


def _posetrack(name: str, n: int, lost: tuple[int, ...] = (), first: int = 0):
    """The PoseTrack file ``name`` has ``n`` entries, one per source frame from ``first`` on:
    ``id == frame_id ==`` the frame index its ``file_name`` says; the ``lost`` ones without
    people."""
    def check(d: Path, out: str, err: str) -> None:
        doc = json.loads((d / name.format(bad=BAD)).read_text())
        images = doc["images"]
        assert len(images) == n, [im["file_name"] for im in images]
        index = [int(Path(im["file_name"]).stem.lstrip("0") or 0) for im in images]
        assert index == list(range(first, first + n)), index
        assert [im["id"] for im in images] == index == [im["frame_id"] for im in images]
        with_people = {a["image_id"] for a in doc["annotations"]}
        assert not with_people & set(lost), (with_people, lost)
    return check


def _jsonl(name: str, frames: list[int], lost: tuple[int, ...] = ()):
    """The JSON lines ``name`` have a record per frame of ``frames``; the ``lost`` ones say so
    and have no people."""
    def check(d: Path, out: str, err: str) -> None:
        rows = [json.loads(x) for x in (d / name.format(bad=BAD)).read_text().splitlines()]
        assert [r["frame"] for r in rows] == frames
        assert [r["frame"] for r in rows if r.get("lost")] == list(lost)
        assert all(r["people"] == [] for r in rows if r.get("lost"))
    return check


def _video(name: str, frames: int, max_side: int | None = None):
    """A playable video of ``frames`` frames (read back from the start)."""
    def check(d: Path, out: str, err: str) -> None:
        path = d / name.format(bad=BAD)
        with opencv_path(path) as safe:
            cap = cv2.VideoCapture(safe)
        n, shape = 0, None
        while True:
            ok, img = cap.read()
            if not ok:
                break
            n, shape = n + 1, img.shape
        cap.release()
        assert n == frames, (n, frames)
        if max_side is not None:
            assert max(shape[:2]) <= max_side, shape
    return check


def _images(name: str, n: int):
    """The PoseTrack file ``name`` of an image input has ``n`` entries with ids 0..n-1."""
    def check(d: Path, out: str, err: str) -> None:
        images = json.loads((d / name).read_text())["images"]
        assert [im["id"] for im in images] == list(range(n)), images
    return check


def _frame_count(name: str, n: int):
    def check(d: Path, out: str, err: str) -> None:
        assert len(json.loads((d / name).read_text())["images"]) == n
    return check


def _json_list(name: str):
    def check(d: Path, out: str, err: str) -> None:
        res = json.loads((d / name.format(bad=BAD)).read_text())
        assert isinstance(res, list)
    return check


def _all(*checks):
    def check(d: Path, out: str, err: str) -> None:
        for c in checks:
            c(d, out, err)
    return check


def _by_crowd_report(d: Path, out: str, err: str) -> None:
    md = (d / "report.md").read_text().splitlines()
    counts = [line.rstrip(" |").rsplit("|", 1)[1].strip() for line in md[2:]]
    assert counts == ["4", "3", "1", "0"], md  # image counts as integers, not 79.0000
    png = cv2.imread(str(d / "plot.png"))
    assert png is not None and png.size > 0


def _dataset(d: Path, out: str, err: str) -> None:
    summary = json.loads((d / "out" / "summary.json").read_text())
    status = {r["name"]: r["status"] for r in summary["sequences"]}
    assert status == {"good": "done", f"odd{BAD}": "done", f"broken{BAD}": "failed"}, status
    (d / "out" / "summary.csv").read_bytes().decode("utf-8")  # a text table, any name
    _posetrack(f"out/odd{BAD}.json", 2)(d, out, err)
    _posetrack("out/good.json", 2)(d, out, err)


def _no_av(mp: pytest.MonkeyPatch, d: Path) -> None:
    """Read videos with OpenCV and render with mp4v, as without the ``video`` extra."""
    mp.setattr(sources, "_have_av", lambda: False)
    mp.setattr(render, "h264_available", lambda: False)


def _unwritable_cache(mp: pytest.MonkeyPatch, d: Path) -> None:
    mp.setenv("POSETRACKER_CACHE", str(d / "a file" / "cache"))  # under a file: ENOTDIR


def _unreadable_sequence(mp: pytest.MonkeyPatch, d: Path) -> None:
    """A dataset with a sequence folder that cannot be listed (EACCES; root reads any folder,
    so the refusal is injected where the walk lists it)."""
    (d / "dsu" / "locked").mkdir(parents=True)
    shutil.copy(d / "clip.avi", d / "dsu" / "clip.avi")
    scandir = os.scandir

    def refuse(path=".", *a):
        if os.fsdecode(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", path)
        return scandir(path, *a)
    mp.setattr(os, "scandir", refuse)


def _cache_is_a_file(mp: pytest.MonkeyPatch, d: Path) -> None:
    mp.setenv("POSETRACKER_CACHE", str(d / "a file"))  # not "models fetch --force": it cannot help


def _fifos(mp: pytest.MonkeyPatch, d: Path) -> None:
    """Named pipes that no program writes to, where files are read (a reader must not hang)."""
    for name in ("fifo.json", "fifo.jsonl"):
        os.mkfifo(d / name)
    (d / "pt_fifo").mkdir()
    os.mkfifo(d / "pt_fifo" / "seq.json")


TRACK = ("track", "--device", "cpu", "--quiet", "--set", "estimator.detector.model={det}",
         "--set", "estimator.sppe.model={sppe}")
ESTIMATE = ("estimate", "--device", "cpu", "--quiet", "--detector", "{det}", "--pose-model",
            "{sppe}")
MP4V_NOTE = r"^posetracker: note: .* is mp4v"
SCALED_NOTE = r"^posetracker: note: frames of 4400x300 are rendered at 4096x280"
ENDED = r"cut\.avi: video ended at frame 5, early: its header announced 8 frames"

CASES: tuple[Case, ...] = (
    # --- file names of any bytes: read, written, refused in one line
    Case("track-input-name-not-utf8", (*TRACK, "{d}/n{bad}me.avi", "--max-frames", "3", "-o",
                                       "{d}/out.json"), check=_posetrack("out.json", 3)),
    Case("track-output-name-not-utf8", (*TRACK, "{d}/clip.avi", "--max-frames", "2", "-o",
                                        "{d}/out{bad}.json"),
         check=_all(_posetrack("out{bad}.json", 2), _jsonl("out{bad}.jsonl", [0, 1]))),
    Case("track-render-name-not-utf8", (*TRACK, "{d}/clip.avi", "--max-frames", "2", "-o",
                                        "{d}/out.json", "--render", "{d}/out{bad}.mp4"),
         check=_video("out{bad}.mp4", 2)),
    Case("track-names-not-utf8-without-pyav", (*TRACK, "{d}/n{bad}me.avi", "--max-frames", "2",
                                               "-o", "{d}/out.json", "--render",
                                               "{d}/out{bad}.mp4"),
         check=_all(_posetrack("out.json", 2), _video("out{bad}.mp4", 2)), warn=(MP4V_NOTE,),
         setup=_no_av),
    Case("track-newline-in-input-name", (*TRACK, "{d}/line\nbreak.avi", "--max-frames", "2",
                                         "-o", "{d}/out.json"), check=_posetrack("out.json", 2)),
    Case("track-missing-input-newline-name", (*TRACK, "{d}/no\nsuch{bad}.avi", "-o",
                                              "{d}/out.json"), code=2, match="no\\nsuch\\xff\\xfe"),
    Case("track-output-name-too-long", (*TRACK, "{d}/clip.avi", "-o", "{d}/{long}.json"), code=2,
         match="too long"),
    Case("track-input-name-too-long", (*TRACK, "{d}/{long}.avi", "-o", "{d}/out.json"), code=2,
         match="too long"),
    Case("track-render-name-too-long", (*TRACK, "{d}/clip.avi", "-o", "{d}/out.json", "--render",
                                        "{d}/{long}.mp4"), code=2, match="(--render)"),
    Case("track-csv-name-too-long", (*TRACK, "{d}/clip.avi", "-o", "{d}/out.json", "--csv",
                                     "{d}/{long}.csv"), code=2, match="(--csv)"),
    # --- damaged videos: every frame keeps its source index; lost ones written without people
    Case("track-avi-frames-undecodable", (*TRACK, "{d}/payload.avi", "-o", "{d}/out.json"),
         check=_all(_posetrack("out.json", N, LOST), _jsonl("out.jsonl", list(range(N)), LOST)),
         warn=(WARN_LOST,)),
    Case("track-avi-chunks-dropped", (*TRACK, "{d}/chunks.avi", "-o", "{d}/out.json"),
         check=_all(_posetrack("out.json", N, LOST), _jsonl("out.jsonl", list(range(N)), LOST)),
         warn=(WARN_LOST,), needs_av=True),
    Case("track-mp4-samples-zeroed", (*TRACK, "{d}/damaged.mp4", "-o", "{d}/out.json",
                                      "--format", "posetrack18"),
         check=_posetrack("out.json", N, LOST), warn=(WARN_LOST,), needs_av=True),
    Case("track-avi-frames-undecodable-opencv", (*TRACK, "{d}/payload.avi", "-o", "{d}/out.json"),
         check=_posetrack("out.json", N, LOST), warn=(WARN_LOST,), setup=_no_av),
    Case("track-damaged-stride-and-start", (*TRACK, "{d}/payload.avi", "-o", "{d}/out.json",
                                            "--start-frame", "2", "--stride", "2"),
         check=_jsonl("out.jsonl", [2, 4, 6], lost=(4,)), warn=(r"frame 4 could not be decoded",)),
    Case("track-avi-ended-early", (*TRACK, "{d}/cut.avi", "-o", "{d}/out.json"),
         check=_posetrack("out.json", 5), warn=(ENDED,)),
    # --- degenerate images and frame sizes
    Case("track-1px-wide", (*TRACK, "{d}/w1", "-o", "{d}/out.json"), check=_images("out.json", 3)),
    Case("track-1px-high", (*TRACK, "{d}/h1", "-o", "{d}/out.json"), check=_images("out.json", 3)),
    Case("track-1x1-rendered", (*TRACK, "{d}/p1", "-o", "{d}/out.json", "--render",
                                "{d}/out.mp4"),
         check=_all(_images("out.json", 3), _video("out.mp4", 3))),
    Case("track-1x2000-strip-alphapose", (*TRACK, "{d}/strip", "-o", "{d}/out.json", "--tracker",
                                          "alphapose"), check=_images("out.json", 3)),
    Case("track-mixed-sizes-rendered", (*TRACK, "{d}/mixed", "-o", "{d}/out.json", "--render",
                                        "{d}/out.mp4"),
         check=_all(_images("out.json", 3), _video("out.mp4", 3))),
    Case("track-huge-frame-rendered", (*TRACK, "{d}/huge.png", "-o", "{d}/out.json", "--render",
                                       "{d}/out.mp4"),
         check=_all(_images("out.json", 1), _video("out.mp4", 1, max_side=4096)),
         warn=(SCALED_NOTE,)),
    # --- render targets the writer cannot take: refused before any model loads
    Case("track-render-gif", (*TRACK, "{d}/clip.avi", "-o", "{d}/out.json", "--render",
                              "{d}/out.gif"), code=2, match="not .gif"),
    Case("track-render-no-suffix", (*TRACK, "{d}/clip.avi", "-o", "{d}/out.json", "--render",
                                    "{d}/out"), code=2, match="(--render)"),
    Case("track-render-webm", (*TRACK, "{d}/clip.avi", "-o", "{d}/out.json", "--render",
                               "{d}/out.webm"), code=2, match="not .webm"),
    Case("track-render-gif-without-pyav", (*TRACK, "{d}/clip.avi", "-o", "{d}/out.json",
                                           "--render", "{d}/out.gif"), code=2, match="not .gif",
         setup=_no_av),
    Case("track-render-into-new-folders", (*TRACK, "{d}/clip.avi", "--max-frames", "2", "-o",
                                           "{d}/out.json", "--render", "{d}/new/dir/out.mp4"),
         check=_video("new/dir/out.mp4", 2)),
    # --- settings and model cache
    Case("track-config-binary-file", (*TRACK, "{d}/clip.avi", "-o", "{d}/out.json", "--config",
                                      "{d}/bin.yaml"), code=2, match="not a YAML text file"),
    Case("track-tracker-config-binary-file", (*TRACK, "{d}/clip.avi", "-o", "{d}/out.json",
                                              "--tracker-config", "{d}/bin.yaml"), code=2,
         match="bin.yaml"),
    Case("track-model-cache-unwritable", ("track", "--device", "cpu", "--quiet", "{d}/clip.avi",
                                          "-o", "{d}/out.json"), code=2, match="cache",
         setup=_unwritable_cache),
    # --- named pipes without a writer as inputs: one line at once, never a hang
    Case("track-poses-fifo", ("track", "--poses", "{d}/fifo.json", "-o", "{d}/out.json"), code=2,
         match="fifo.json", setup=_fifos),
    Case("eval-coco-predictions-fifo", ("eval", "coco", "{d}/coco_gt.json", "{d}/fifo.json"),
         code=2, match="fifo.json", setup=_fifos),
    Case("eval-posetrack-prediction-fifo", ("eval", "posetrack", "{d}/pt_pred",
                                            "{d}/pt_fifo"), code=2, match="seq.json",
         setup=_fifos),
    Case("convert-jsonl-fifo", ("convert", "jsonl", "{d}/fifo.jsonl", "{d}/out.json"), code=2,
         match="fifo.jsonl", setup=_fifos),
    Case("models-list-cache-is-a-file", ("models", "list"), code=2,
         match="(set POSETRACKER_CACHE to a folder)", setup=_cache_is_a_file),
    Case("track-poses-frames-named-not-utf8", ("track", "--poses", "{d}/coco_preds.json",
                                               "--frames", "{d}/odd frames", "-o",
                                               "{d}/out.json"),
         check=_frame_count("out.json", 4),
         warn=(r"out\.json: 4 frames, \d+ poses, \d+ tracks",)),  # the summary line
    Case("track-poses-with-video", ("track", "--poses", "{d}/coco_preds.json", "{d}/clip.avi",
                                    "-o", "{d}/out.json"), code=2, match="VIDEO"),
    Case("track-poses-with-render", ("track", "--poses", "{d}/coco_preds.json", "-o",
                                     "{d}/out.json", "--render", "{d}/out.mp4"), code=2,
         match="--render"),
    # --- estimate
    Case("estimate-image-name-not-utf8", (*ESTIMATE, "{d}/image{bad}.jpg", "-o",
                                          "{d}/out{bad}.json"), check=_json_list("out{bad}.json")),
    Case("estimate-damaged-video", (*ESTIMATE, "{d}/payload.avi", "-o", "{d}/out.json",
                                    "--jsonl", "{d}/out.jsonl", "--max-frames", "4"),
         check=_all(_json_list("out.json"), _jsonl("out.jsonl", [0, 1, 2, 3, 4, 5], LOST)),
         warn=(WARN_LOST,)),
    Case("estimate-1x1-images", (*ESTIMATE, "{d}/p1", "-o", "{d}/out.json"),
         check=_json_list("out.json")),
    Case("estimate-jsonl-to-a-full-device", (*ESTIMATE, "{d}/p1", "-o", "{d}/out.json", "--jsonl",
                                              "/dev/full"), code=2,
         match="cannot write /dev/full: No space left on device"),
    Case("estimate-output-name-too-long", (*ESTIMATE, "{d}/p1", "-o", "{d}/{long}.json"), code=2,
         match="too long"),
    # --- eval
    Case("eval-coco-gt-without-people", ("eval", "coco", "{d}/coco_gt_nobody.json",
                                         "{d}/coco_preds.json"), code=2, match="no person"),
    Case("eval-coco-by-crowd-gt-without-people", ("eval", "coco", "--by-crowd",
                                                  "{d}/coco_gt_nobody.json",
                                                  "{d}/coco_preds.json"), code=2,
         match="no person"),
    Case("eval-crowdpose-gt-without-people", ("eval", "crowdpose", "{d}/crowd_gt_nobody.json",
                                              "{d}/coco_preds.json", "--pred-schema", "coco17"),
         code=2, match="no person"),
    Case("eval-posetrack-gt-without-people", ("eval", "posetrack", "{d}/pt_gt_nobody",
                                              "{d}/pt_pred"), code=2, match="no person"),
    Case("eval-coco-by-crowd-report-and-plot", ("eval", "coco", "--by-crowd", "{d}/coco_gt.json",
                                                "{d}/coco_preds.json", "--out", "{d}/report.md",
                                                "--plot", "{d}/plot.png"),
         check=_by_crowd_report),
    Case("eval-report-name-too-long", ("eval", "coco", "{d}/coco_gt.json", "{d}/coco_preds.json",
                                       "--out", "{d}/{long}.md"), code=2,
         match="too long"),
    # --- convert
    Case("convert-jsonl-names-not-utf8-and-lost-frame", ("convert", "jsonl", "{d}/run{bad}.jsonl",
                                                         "{d}/out{bad}.json"),
         check=_posetrack("out{bad}.json", 4, lost=(7,), first=5)),
    Case("convert-jsonl-with-a-byte-order-mark", ("convert", "jsonl", "{d}/bom.jsonl",
                                                   "{d}/out.json"),
         check=_posetrack("out.json", 4, lost=(7,), first=5)),
    Case("eval-coco-predictions-with-a-byte-order-mark", ("eval", "coco", "{d}/coco_gt.json",
                                                          "{d}/bom.json"), code=0),
    Case("convert-jsonl-output-name-too-long", ("convert", "jsonl", "{d}/run{bad}.jsonl",
                                                "{d}/{long}.json"), code=2,
         match="too long"),
    Case("convert-posetrack-to-long-folder", ("convert", "posetrack", "{d}/pt_pred",
                                              "{d}/{long}", "--to", "2017"), code=2,
         match="too long"),
    # --- track-dataset: a sequence named with odd bytes is tracked; a broken one fails alone
    Case("track-dataset-odd-names-and-a-broken-sequence",
         ("track-dataset", "{d}/ds", "-o", "{d}/out", "--device", "cpu", "--workers", "1",
          "--retries", "0", "--quiet", "--set", "estimator.detector.model={det}", "--set",
          "estimator.sppe.model={sppe}"), code=1, check=_dataset,
         warn=(r"^posetracker: broken\\xff\\xfe failed after 1 attempt\(s\): .*broken",)),
    Case("track-dataset-unreadable-sequence-folder",
         ("track-dataset", "{d}/dsu", "-o", "{d}/out", "--device", "cpu", "--workers", "1",
          "--quiet", "--set", "estimator.detector.model={det}", "--set",
          "estimator.sppe.model={sppe}"), code=2, match="cannot read {d}/dsu/locked",
         setup=_unreadable_sequence),
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("fault media inputs")
    _make_inputs(root, data_dir)
    return root


def test_the_matrix_covers_every_command():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES}
    assert {"track", "estimate", "eval", "convert", "track-dataset"} <= commands
    odd = [c for c in CASES if any("{bad}" in a for a in c.argv)]
    assert {c.argv[0] for c in odd} >= {"track", "estimate", "convert"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case, inputs, models_dir, shared_models, tmp_path, capsys, monkeypatch):
    if case.needs_av and not _have_av():
        pytest.skip("PyAV (the video extra) is not installed: OpenCV cannot see a dropped chunk")
    work = tmp_path
    for name in os.listdir(os.fsencode(inputs)):  # the inputs, beside this case's outputs
        p = Path(os.fsdecode(name))
        (work / p).symlink_to(inputs / p, target_is_directory=(inputs / p).is_dir())
    if case.setup is not None:
        case.setup(monkeypatch, work)
    fields = {"d": str(work), "bad": BAD, "long": LONG,
              "det": str(models_dir / "rtmdet-nano-person.onnx"),
              "sppe": str(models_dir / "tinypose-256x192.xml")}
    argv = [a.format(**fields) for a in case.argv]
    before = _hashes(inputs)
    listed = set(os.listdir(os.fsencode(work)))
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert _hashes(inputs) == before  # every input byte for byte, and nothing added
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == case.code, (code, err)
    if case.code == 2:
        assert len(lines) == 1 and lines[0].startswith("posetracker: error: "), err
        assert case.match.format(**fields) in lines[0], lines[0]
        assert set(os.listdir(os.fsencode(work))) == listed  # nothing left behind
        return
    import re

    # without the video extra every rendered video is mp4v, and the run says so once
    allowed = case.warn + (() if render.h264_available() else (MP4V_NOTE,))
    for line in lines:
        assert any(re.search(w, line) for w in allowed), (line, err)
    if case.check is not None:
        case.check(work, out, err)


# ---------------------------------------------------------------------------------------------
# the same behaviours, one level down


def test_trails_start_anew_at_a_new_frame_size(tmp_path):
    from posetracker.core.poses import FramePoses
    from posetracker.core.schemas import COCO17
    from posetracker.io.sources import SourceFrame

    def person(x: float) -> FramePoses:
        kp = np.full((1, 17, 2), x)
        return FramePoses(kp, np.ones((1, 17)), np.array([[x - 5, x - 5, x + 5, x + 5]]),
                          np.array([0.9]), COCO17, track_ids=np.array([1]))

    r = render.VideoRenderer(tmp_path / "v.mp4", 10.0, trail=5)
    r.write(SourceFrame(0, np.zeros((100, 200, 3), np.uint8), "a"), person(20.0))
    r.write(SourceFrame(1, np.zeros((100, 200, 3), np.uint8), "b"), person(30.0))
    assert len(r._trails[1]) == 2
    r.write(SourceFrame(2, np.zeros((300, 60, 3), np.uint8), "c"), person(40.0))
    assert len(r._trails[1]) == 1  # the other size's points are not this frame's pixels
    r.close()


def test_render_size_fits_the_encoder():
    assert render.render_size(10000, 10000) == (4096, 4096)
    assert render.render_size(1, 1) == (2, 2)
    assert render.render_size(641, 481) == (642, 482)


def test_by_crowd_plot_colours_the_figures_on_their_scale():
    import pandas as pd

    from posetracker.evaluation.report import report_figure

    df = pd.DataFrame({"AP": [0.9, 0.5, 0.1], "AR": [0.8, 0.4, 0.2], "images": [79, 50, 29]},
                      index=pd.Index(["overall", "easy", "hard"], name="set"))
    fig = report_figure(df)
    (image,) = fig.axes[0].get_images()
    assert image.norm.vmax == 1.0 and image.get_array().shape == (3, 2)


def test_estimate_shows_progress_on_a_terminal_only(inputs, models_dir, shared_models, tmp_path,
                                                    monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    argv = [a.format(d=inputs, det=models_dir / "rtmdet-nano-person.onnx",
                     sppe=models_dir / "tinypose-256x192.xml") for a in ESTIMATE if a != "--quiet"]
    for stream, bar in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr("sys.stderr", stream)
        assert main([*argv, str(inputs / "p1"), "-o", str(tmp_path / "out.json")]) == 0
        text = stream.getvalue()
        assert ("0/3 [" in text) is bar, text  # a tqdm bar of the 3 images
        assert "3 frames" in text.splitlines()[-1]  # the summary line, as before


def test_printable_names_are_one_line():
    from posetracker.core.paths import printable

    assert printable(f"a{BAD}\nb\tc") == "a\\xff\\xfe\\nb\\tc"
    assert printable("vidéo 映像.mp4") == "vidéo 映像.mp4"
