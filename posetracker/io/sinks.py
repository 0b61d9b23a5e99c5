"""Where tracked frames go: a JSON-lines stream, the final JSON file, a CSV table.

Every sink has the same three methods, called by the ``track`` command on the pipeline's writer
thread:

- ``write(frame, poses)`` once per frame, in order, while the pipeline runs;
- ``close(meta)`` after a successful run (``meta``: version, config, models, device, timings);
- ``abort()`` after a failed or interrupted run.

The JSON-lines stream (:class:`JsonlSink`) is the run's recovery record: it is written in place, one
whole line per frame in a single write, so whatever stops the run (``kill -9`` included) every
finished frame is on disk as a complete line; a run that read no frame leaves no stream. Every other
file is complete or absent: the CSV (:class:`CsvSink`) and the rendered video are streamed to a
temporary file beside the output (:class:`posetracker.core.fileio.PendingFile`) and renamed to it
when closed without error, also after an interrupted run (then they hold the finished frames); a
write error removes the temporary file. The final JSON (:class:`FinalJsonSink`) is written only by
``close``, to a temporary file that is then renamed over it (``os.replace`` is atomic on one file
system). Temporary files go beside the output only, never into the input folder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.fileio import (
    PendingFile,
    atomic_write,
    check_writable,
    read_input_text,
    write_error,
)
from posetracker.core.poses import Frame, FramePoses, VideoPoses
from posetracker.core.schemas import KeypointSchema, get_schema
from posetracker.io.formats.output_formats import OUTPUT_FORMATS, OutputFormatName
from posetracker.io.sources import SourceFrame

log = logging.getLogger(__name__)

class Sink(Protocol):
    def write(self, frame: SourceFrame, poses: FramePoses) -> None: ...

    def close(self, meta: dict) -> None: ...

    def abort(self) -> None: ...


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
        self._f = None  # opened by the first frame: a run that reads none leaves no stream
        self._size = 0  # bytes of whole lines written

    def write(self, frame: SourceFrame, poses: FramePoses) -> None:
        lines = [json.dumps({**frame_record(SourceFrame(index, frame.image, name),
                                            FramePoses.empty(poses.schema)), "lost": True},
                            separators=(",", ":")) + "\n"
                 for index, name in frame.lost]  # frames that could not be decoded: no people
        lines.append(json.dumps(frame_record(frame, poses), separators=(",", ":")) + "\n")
        if self._f is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # unbuffered: each line reaches the file in one write call, never half of one
                self._f = open(self.path, "wb", buffering=0)
            except OSError as e:
                raise write_error(self.path, e) from None
        for line in lines:
            self._write_line(line.encode("utf-8"))

    def _write_line(self, data: bytes) -> None:
        done = 0
        try:
            while done < len(data):  # a full disk may take part of a line, then fail
                done += self._f.write(data[done:]) or 0
        except OSError as e:
            if done:  # cut the part-line off: the stream keeps whole lines only
                with contextlib.suppress(OSError):
                    self._f.truncate(self._size)
            if not self._size and self.path.is_file():  # not one line fits: leave no empty stream
                self._f.close()
                self.path.unlink(missing_ok=True)
            raise write_error(self.path, e) from None  # one line for every caller, not just track
        self._size += done

    def close(self, meta: dict) -> None:
        if self._f is not None:
            self._f.close()

    def abort(self) -> None:
        self.close({})


def read_jsonl(path: str | Path, name: str | None = None) -> VideoPoses:
    """Read a JSON-lines stream back as :class:`VideoPoses` (e.g. to finish an interrupted run).

    A last line cut off mid-write (the process was killed while writing it) is ignored.
    """
    path = Path(path)
    frames: list[Frame] = []
    schema: KeypointSchema | None = None
    try:
        lines = read_input_text(path).splitlines()
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
    """A table with one row per frame x person x joint, flushed per frame to a temporary file that
    becomes ``path`` when the sink closes (complete or absent; see the module's docstring).

    Columns: ``frame, image, track_id, joint, x, y, score``; absent joints have empty ``x``/``y``.
    """

    COLUMNS = ("frame", "image", "track_id", "joint", "x", "y", "score")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file: PendingFile | None = None  # opened by the first frame, as the JSON lines
        self._failed = False

    def _open(self) -> None:
        file = PendingFile(self.path)
        try:
            self._f = open(file.tmp, "w", encoding="utf-8", newline="")
        except OSError as e:
            file.discard()
            raise write_error(self.path, e) from None
        self._file = file
        self._put([self.COLUMNS])

    def _put(self, rows: list[tuple]) -> None:
        """Append ``rows`` in one write (an interrupt never leaves half a frame) and flush (a full
        disk shows now, not at the end)."""
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        try:
            self._f.write(buf.getvalue())
            self._f.flush()
        except OSError:
            self._failed = True
            raise

    def write(self, frame: SourceFrame, poses: FramePoses) -> None:
        names = poses.schema.keypoints
        rows = []
        for i in range(len(poses)):
            tid = "" if poses.track_ids is None else int(poses.track_ids[i])
            for j, joint in enumerate(names):
                x, y = poses.keypoints[i, j]
                rows.append((frame.index, frame.name, tid, joint,
                             "" if not np.isfinite(x) else f"{x:.2f}",
                             "" if not np.isfinite(y) else f"{y:.2f}",
                             f"{poses.keypoint_scores[i, j]:.4f}"))
        if self._file is None:
            self._open()
        self._put(rows)

    def close(self, meta: dict) -> None:
        self._finish()

    def abort(self) -> None:
        # an interrupted run keeps the table of its finished frames; a failed write keeps none
        self._finish()

    def _finish(self) -> None:
        if self._file is None:  # no frame: no table
            return
        try:
            self._f.close()
        except OSError:
            self._file.discard()
            raise
        if self._failed:
            self._file.discard()
        else:
            self._file.commit()


def meta_path(output: str | Path) -> Path:
    """The metadata file that goes with a ``coco`` results file (``out.json`` ->
    ``out.meta.json``, as the format's table entry names it:
    :meth:`~posetracker.io.formats.output_formats.OutputFormat.meta_file`). It belongs to its
    output: written with it, removed when a PoseTrack file (which carries its metadata inside)
    replaces it."""
    return OUTPUT_FORMATS.get("coco").meta_file(Path(output))


class FinalJsonSink:
    """The whole video's tracked poses in an output format (PoseTrack 2018/2017 or COCO JSON:
    :data:`posetracker.io.formats.output_formats.OUTPUT_FORMATS`), written atomically once every
    stream closed whole (``final``, :class:`SinkSet`).

    Poses (not images) are kept in memory until ``close``: a few kilobytes per frame.

    Args:
        path: Output file.
        fmt: The output format's name (``posetrack18``, ``posetrack17``, ``coco``, ...).
        name: Sequence name (PoseTrack ``vid_id`` / file stem).
        keypoint_threshold: PoseTrack formats: joints scored below this are written as absent.
        derive_head: PoseTrack formats: fill ``head_bottom``/``head_top`` for COCO poses
            (:func:`posetracker.core.schemas.derive_head_joints`).
    """

    final = True

    def __init__(self, path: str | Path, fmt: OutputFormatName | str = "posetrack18",
                 name: str = "", keypoint_threshold: float = 0.0, derive_head: bool = False):
        self.format = OUTPUT_FORMATS.get(fmt)
        self.path = Path(path)
        self.fmt = fmt
        self.name = name or self.path.stem
        self.keypoint_threshold = keypoint_threshold
        self.derive_head = derive_head
        self._frames: list[Frame] = []
        # fail before the run, not after it (the folder is made when the file is written)
        check_writable(self.path)

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
        limit = self.format.max_track_id
        if limit is not None and top > limit:
            log.warning("%s: track ids reach %d; the official evaluation of %s accepts ids up "
                        "to %d only", self.path, top, self.fmt, limit)
        # A format with its metadata beside the file writes that sidecar first (inside the
        # callback, before the rename), so a results file never stands beside another run's.
        atomic_write(self.path, lambda tmp: self.format.write_final(
            video, tmp, self.path, derive_head=self.derive_head,
            min_score=self.keypoint_threshold))
        sidecar = meta_path(self.path)
        if self.format.meta_inside and sidecar.is_file():
            sidecar.unlink()  # an earlier coco run's metadata: this file carries its own

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
        # the final files (``final = True``) last, and only when every stream closed whole: a
        # run that ends with an error leaves no final file
        finals = [s for s in self.sinks if getattr(s, "final", False)]
        try:
            self._each(lambda s: s.close(meta), [s for s in self.sinks if s not in finals])
        except BaseException:
            self._each(lambda s: s.abort(), finals, quiet=OSError)
            raise
        self._each(lambda s: s.close(meta), finals)

    def abort(self) -> None:
        # after a failure: the first error is the one reported; a stream whose last flush fails
        # again here (the disk is still full) keeps what it had written
        self._each(lambda s: s.abort(), self.sinks, quiet=OSError)

    @staticmethod
    def _each(fn: Callable[[Sink], None], sinks: Sequence[Sink],
              quiet: type[BaseException] | tuple = ()) -> None:
        first: BaseException | None = None
        for s in sinks:
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
