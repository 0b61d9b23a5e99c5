"""Where tracked frames go: a JSON-lines stream, the final JSON file, a CSV table.

Every sink has the same three methods, called by the ``track`` command on the pipeline's writer
thread:

- ``write(frame, poses)`` once per frame, in order, while the pipeline runs;
- ``close(meta)`` after a successful run (``meta``: version, config, models, device, timings);
- ``abort()`` after a failed or interrupted run.

Streams (:class:`JsonlSink`, :class:`CsvSink`) flush every frame, so whatever stops the run, every
finished frame is on disk. The final JSON (:class:`FinalJsonSink`) is written only by ``close``, to a
temporary file beside the output that is then renamed over it (``os.replace`` is atomic on one file
system): a reader sees either no file or a complete one, never half of one. ``abort`` leaves no
temporary file behind. Temporary files go beside the output only, never into the input folder.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write, write_error
from posetracker.core.poses import Frame, FramePoses, VideoPoses
from posetracker.core.schemas import COCO17, KeypointSchema, get_schema
from posetracker.io.formats.coco import write_coco_results
from posetracker.io.sources import SourceFrame

log = logging.getLogger(__name__)

#: Final JSON formats that ``--format`` accepts.
FORMATS = ("posetrack18", "posetrack17", "coco")


class Sink(Protocol):
    def write(self, frame: SourceFrame, poses: FramePoses) -> None: ...

    def close(self, meta: dict) -> None: ...

    def abort(self) -> None: ...


def _open_output(path: Path, newline: str | None = None) -> io.TextIOWrapper:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", newline=newline)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None


def _num(x: float) -> float | None:
    """A JSON number, or ``None`` for NaN (JSON has no NaN)."""
    return None if not math.isfinite(x) else round(float(x), 3)


def frame_record(frame: SourceFrame, poses: FramePoses) -> dict:
    """One frame's poses as a JSON-able mapping (the JSON-lines record).

    ``{"frame": 12, "image": "...", "schema": "coco17", "people": [{"track_id": 3, "score": 0.9,
    "box": [x1, y1, x2, y2], "keypoints": [[x, y, score], ...]}]}``; absent joints are
    ``[null, null, 0]``; ``track_id`` is ``null`` for untracked poses. A frame of the source
    that could not be decoded is a record with no people and ``"lost": true``
    (:attr:`SourceFrame.lost`).
    """
    people = []
    for i in range(len(poses)):
        kp = poses.keypoints[i]
        sc = poses.keypoint_scores[i]
        people.append({
            "track_id": None if poses.track_ids is None else int(poses.track_ids[i]),
            "score": _num(poses.scores[i]),
            "box": [_num(v) for v in poses.boxes[i]],
            "keypoints": [[_num(kp[j, 0]), _num(kp[j, 1]), round(float(sc[j]), 4)]
                          for j in range(kp.shape[0])],
        })
    return {"frame": int(frame.index), "image": frame.name, "schema": poses.schema.name,
            "people": people}


class JsonlSink:
    """One JSON line per frame (:func:`frame_record`), flushed as it is written.

    An interrupted run keeps every finished frame; :func:`read_jsonl` reads the file back.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = _open_output(self.path)

    def write(self, frame: SourceFrame, poses: FramePoses) -> None:
        for index, name in frame.lost:  # frames that could not be decoded: no people
            record = frame_record(SourceFrame(index, frame.image, name),
                                  FramePoses.empty(poses.schema))
            self._f.write(json.dumps({**record, "lost": True}, separators=(",", ":")) + "\n")
        self._f.write(json.dumps(frame_record(frame, poses), separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self, meta: dict) -> None:
        self._f.close()

    def abort(self) -> None:
        self._f.close()


def read_jsonl(path: str | Path, name: str | None = None) -> VideoPoses:
    """Read a JSON-lines stream back as :class:`VideoPoses` (e.g. to finish an interrupted run).

    A last line cut off mid-write (the process was killed while writing it) is ignored.
    """
    path = Path(path)
    frames: list[Frame] = []
    schema: KeypointSchema | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a JSON-lines text file ({e.reason} at byte {e.start})") \
            from None
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):
                log.warning("%s: ignored the cut-off last line %d", path, n)
                break
            raise InputError(f"{path}: line {n} is not JSON") from None
        try:  # a record of the wrong shape at any level: one line naming the line
            if not isinstance(rec, dict) or not isinstance(rec.get("frame"), int) \
                    or isinstance(rec["frame"], bool) or not isinstance(rec.get("people"), list):
                raise ValueError("expected {\"frame\": int, \"people\": [...], ...}")
            schema = schema or get_schema(rec["schema"])
            people = rec["people"]
            k = schema.num_keypoints
            kp = np.array([[[np.nan if v is None else v for v in j[:2]] for j in p["keypoints"]]
                           for p in people], dtype=np.float64).reshape(len(people), k, 2)
            sc = np.array([[j[2] for j in p["keypoints"]] for p in people],
                          dtype=np.float64).reshape(len(people), k)
            ids = [p["track_id"] for p in people]
            poses = FramePoses(kp, sc, np.array([[np.nan if v is None else v for v in p["box"]]
                                                 for p in people]).reshape(len(people), 4),
                               np.array([p["score"] or 0.0 for p in people]), schema,
                               track_ids=None if any(i is None for i in ids) else np.array(ids))
            frames.append(Frame(rec["frame"], poses, image=str(rec["image"])))
        except InputError as e:
            raise InputError(f"{path}: line {n}: {e}") from None
        except (KeyError, TypeError, ValueError, IndexError) as e:
            what = f"no {e}" if isinstance(e, KeyError) else str(e)
            raise InputError(f"{path}: line {n} is not a frame record ({what})") from None
    if schema is None:
        raise InputError(f"{path}: no frames")
    return VideoPoses(name or path.stem, frames, schema)


class CsvSink:
    """A table with one row per frame x person x joint, flushed per frame.

    Columns: ``frame, image, track_id, joint, x, y, score``; absent joints have empty ``x``/``y``.
    """

    COLUMNS = ("frame", "image", "track_id", "joint", "x", "y", "score")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = _open_output(self.path, newline="")
        self._w = csv.writer(self._f)
        self._w.writerow(self.COLUMNS)

    def write(self, frame: SourceFrame, poses: FramePoses) -> None:
        names = poses.schema.keypoints
        for i in range(len(poses)):
            tid = "" if poses.track_ids is None else int(poses.track_ids[i])
            for j, joint in enumerate(names):
                x, y = poses.keypoints[i, j]
                self._w.writerow((frame.index, frame.name, tid, joint,
                                  "" if not np.isfinite(x) else f"{x:.2f}",
                                  "" if not np.isfinite(y) else f"{y:.2f}",
                                  f"{poses.keypoint_scores[i, j]:.4f}"))
        self._f.flush()

    def close(self, meta: dict) -> None:
        self._f.close()

    def abort(self) -> None:
        self._f.close()


class FinalJsonSink:
    """The whole video's tracked poses as PoseTrack 2018/2017 or COCO JSON, written atomically.

    Poses (not images) are kept in memory until ``close``: a few kilobytes per frame.

    Args:
        path: Output file.
        fmt: ``posetrack18``, ``posetrack17`` or ``coco``.
        name: Sequence name (PoseTrack ``vid_id`` / file stem).
        keypoint_threshold: PoseTrack formats: joints scored below this are written as absent.
        derive_head: PoseTrack formats: fill ``head_bottom``/``head_top`` for COCO poses
            (:func:`posetracker.core.schemas.derive_head_joints`).
    """

    def __init__(self, path: str | Path, fmt: str = "posetrack18", name: str = "",
                 keypoint_threshold: float = 0.0, derive_head: bool = False):
        if fmt not in FORMATS:
            raise InputError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})")
        self.path = Path(path)
        self.fmt = fmt
        self.name = name or self.path.stem
        self.keypoint_threshold = keypoint_threshold
        self.derive_head = derive_head
        self._frames: list[Frame] = []
        # Fail before the run, not after it, when the output folder cannot be written.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot write {self.path}: {e.strerror or e}") from None
        if not os.access(self.path.parent, os.W_OK):
            raise InputError(f"cannot write {self.path}: folder not writable")

    def write(self, frame: SourceFrame, poses: FramePoses) -> None:
        for index, name in frame.lost:  # one entry per source frame, as ground truth has
            self._frames.append(Frame(index, FramePoses.empty(poses.schema), image=name))
        self._frames.append(Frame(frame.index, poses, image=frame.name))

    def close(self, meta: dict) -> None:
        if not self._frames:
            raise InputError(f"no frames were read, {self.path} not written")
        video = VideoPoses(self.name, self._frames, self._frames[0].poses.schema, dict(meta))
        top = max((int(f.poses.track_ids.max()) for f in self._frames
                   if f.poses.track_ids is not None and len(f.poses)), default=-1)
        if self.fmt != "coco" and top >= 1000:
            log.warning("%s: track ids reach %d; the official PoseTrack evaluation accepts ids "
                        "up to 999 only", self.path, top)
        atomic_write(self.path, lambda tmp: self._write(video, tmp))

    def _write(self, video: VideoPoses, tmp: Path) -> None:
        if self.fmt == "coco":
            # A results file is a bare list: the run's metadata goes beside it.
            write_coco_results(video, tmp, schema=COCO17)
            atomic_write(self.path.with_name(self.path.name.removesuffix(".json") + ".meta.json"),
                         lambda m: m.write_text(json.dumps(video.meta, indent=1, default=str)))
            return
        from posetracker.io.formats import posetrack

        writer = posetrack.write_posetrack18 if self.fmt == "posetrack18" else \
            posetrack.write_posetrack17
        writer(video, tmp, derive_head=self.derive_head, min_score=self.keypoint_threshold)
        if video.meta:
            # The run's metadata rides along under a top-level "meta" key, which the PoseTrack
            # evaluation ignores (it reads "images"/"annotations" or "annolist").
            data = json.loads(tmp.read_text(encoding="utf-8"))
            data["meta"] = video.meta
            tmp.write_text(json.dumps(data, separators=(",", ":"), default=str), encoding="utf-8")

    def abort(self) -> None:
        self._frames.clear()


class SinkSet:
    """Several sinks as one: each call goes to every sink, and every sink is closed even when
    one of them fails (the first failure is re-raised after all are closed)."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def write(self, frame: SourceFrame, poses: FramePoses) -> None:
        for s in self.sinks:
            try:
                s.write(frame, poses)
            except OSError as e:  # a full disk, a failing device: one line naming the file
                raise write_error(getattr(s, "path", "an output"), e) from None

    def close(self, meta: dict) -> None:
        self._each(lambda s: s.close(meta))

    def abort(self) -> None:
        # after a failure: the first error is the one reported; a stream whose last flush fails
        # again here (the disk is still full) keeps what it had written
        self._each(lambda s: s.abort(), quiet=OSError)

    def _each(self, fn: Callable[[Sink], None], quiet: type[BaseException] | tuple = ()) -> None:
        first: BaseException | None = None
        for s in self.sinks:
            try:
                fn(s)
            except quiet:
                pass
            except OSError as e:
                first = first or write_error(getattr(s, "path", "an output"), e)
            except BaseException as e:  # noqa: BLE001 - re-raised after the other sinks closed
                first = first or e
        if first is not None:
            raise first
