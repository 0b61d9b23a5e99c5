"""Whole datasets: track every sequence under a folder, resumably, in local worker processes or on
a Ray cluster (``posetracker track-dataset``).

A *sequence* is a video file or a folder of frames (found recursively, PoseTrack's
``images/<split>/<sequence>/000000.jpg`` included). Each becomes ``OUT_DIR/<name>.json`` (named
like PoseTrack's ground truth, ``<sequence>.json``, so ``posetracker eval posetrack GT_DIR
OUT_DIR`` pairs them), its ``<name>.jsonl`` stream and, asked for, ``<name>.mp4``. The
per-sequence job is :meth:`posetracker.app.api.PoseTracker.track_to`, the code ``posetracker
track`` runs (:func:`track_sequence`).

Resuming: when a sequence finishes, its worker writes ``OUT_DIR/.track-dataset/<name>.json``
holding the job's key (a SHA-256 of the settings, the model files' SHA-256, the source's
fingerprint, the frame limit and whether it is rendered) and the sequence's figures. A later run
skips a sequence whose record has the same key, whose final file exists and whose metadata (the
settings and model checksums ``track`` writes into it) match. The record is removed before a
sequence starts and written after its final files are in place (each written atomically), so a
run stopped at any point (Ctrl-C, a killed worker, a lost machine) loses no finished sequence and
never takes a half-written one for done.

Engines: ``local`` runs N worker processes (spawned; each loads the models once and then takes
one sequence after another); ``ray`` runs N Ray actors (each loads the models once; one Ray task
per sequence), on a local Ray started for the run or on a cluster at ``ray_address``. A failed
sequence (an error, or its worker dying) is retried up to ``retries`` times, then reported; the
other sequences go on either way.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posetracker.app.settings import AppConfig
from posetracker.core.errors import InputError, PosetrackerError
from posetracker.core.fileio import atomic_write_text

#: Video files a sequence can be (frame folders: :data:`posetracker.io.sources.IMAGE_SUFFIXES`).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                            ".wmv", ".flv", ".mts", ".ts"})
#: Folder in OUT_DIR holding one finished-sequence record each (the resume state).
STATE_DIR = ".track-dataset"
#: Settings that change how fast a run goes, not what it writes: left out of the resume key.
RESOURCE_SETTINGS = (("pipeline", "threads"),)
RAY_MISSING = ("--engine ray needs Ray, an optional extra: pip install -e \".[ray]\" "
               "(or pip install \"ray>=2.9\")")
ENGINES = ("local", "ray")
STATUSES = ("done", "skipped", "failed", "interrupted", "pending", "excluded")


# ----------------------------------------------------------------------------------------------
# discovery


@dataclass(frozen=True)
class Sequence:
    """One sequence of a dataset.

    Attributes:
        name: Output stem: ``OUT_DIR/<name>.json``. The folder's name (frames) or the file's stem
            (videos); where two sequences would share one, the path under ROOT instead, with
            ``__`` for ``/`` (and ``_<suffix>`` for videos that differ only by suffix).
        path: The video file or the frame folder.
        kind: ``video`` or ``frames``.
        rel: ``path`` relative to ROOT (POSIX; ``.`` when ROOT is the sequence).
    """

    name: str
    path: Path
    kind: str
    rel: str


def _images_in(folder: Path) -> list[str]:
    from posetracker.io.sources import IMAGE_SUFFIXES

    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [e.name for e in entries if not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()]


def _without_masks(found: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """``found`` less PoseTrack's ignore-region masks: a frame folder ``.../mask/<split>/<seq>``
    when ``.../images/<split>/<seq>`` is found too (the masks of its frames, no sequence)."""
    folders = {p for p, k in found if k == "frames"}

    def is_mask(p: Path) -> bool:
        parts = p.parts
        return any(part in ("mask", "masks") and Path(*parts[:i], "images", *parts[i + 1:])
                   in folders for i, part in enumerate(parts))

    return [(p, k) for p, k in found if k != "frames" or not is_mask(p)]


def discover(root: str | Path, exclude: Iterable[str | Path] = ()) -> list[Sequence]:
    """Every sequence under ``root``, sorted by name: video files and folders that hold images,
    at any depth (hidden files and folders, the folders in ``exclude``, and PoseTrack's
    ``mask/<split>/<seq>`` beside ``images/<split>/<seq>`` left out; symbolic links followed
    once). ``root`` itself may be a video file or a frame folder.

    Names are unique and depend only on the tree: the folder name or video stem, and for
    sequences that would share one (compared case-insensitively), their path under ``root``.

    Raises:
        InputError: ``root`` does not exist, or holds no sequence.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    found: list[tuple[Path, str]] = []
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"{root}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or a "
                             "folder")
        found.append((root, "video"))
        root_dir = root.parent
    else:
        root_dir = root
        skip = {os.path.realpath(p) for p in exclude}
        seen: set[str] = set()
        for here, dirs, files in os.walk(root, followlinks=True):
            real = os.path.realpath(here)
            if real in seen or real in skip:  # a link cycle, or the output folder
                dirs[:] = []
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if _images_in(Path(here)):
                found.append((Path(here), "frames"))
            found += [(Path(here) / f, "video") for f in sorted(files)
                      if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES]
    found = _without_masks(found)
    if not found:
        raise InputError(f"{root}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) and no folders "
                         "of images found")
    rels = [p.relative_to(root_dir).as_posix() if p != root_dir else "." for p, _ in found]
    base = [(p.resolve().name if r == "." else p.name) if k == "frames" else p.stem
            for (p, k), r in zip(found, rels)]
    counts: dict[str, int] = {}
    for b in base:
        counts[b.casefold()] = counts.get(b.casefold(), 0) + 1
    names = []
    for (_p, kind), rel, b in zip(found, rels, base):
        if counts[b.casefold()] == 1:
            names.append(b)
            continue
        parts = Path(rel).parts if rel != "." else (b,)
        if kind == "video":  # the suffix too: a.mp4 and a.avi in one folder
            parts = (*parts[:-1], Path(parts[-1]).stem + "_" + Path(parts[-1]).suffix[1:])
        names.append("__".join(parts))
    if len({n.casefold() for n in names}) != len(names):  # e.g. a folder named "x__a" beside x/a
        dup = sorted({n for n in names if sum(m.casefold() == n.casefold() for m in names) > 1})
        raise InputError(f"{root}: sequences {', '.join(dup)} would write the same output file; "
                         "rename one")
    return sorted((Sequence(n, p, k, r) for n, (p, k), r in zip(names, found, rels)),
                  key=lambda s: s.name)


def select(sequences: list[Sequence], patterns: Iterable[str]) -> list[Sequence]:
    """The sequences whose name or path under ROOT matches one of ``patterns`` (shell
    wildcards, ``fnmatch``); all of them when there are no patterns."""
    patterns = list(patterns)
    if not patterns:
        return list(sequences)
    return [s for s in sequences
            if any(fnmatch.fnmatchcase(s.name, p) or fnmatch.fnmatchcase(s.rel, p)
                   for p in patterns)]


def frame_count(seq: Sequence, max_frames: int | None = None) -> int | None:
    """Frames the sequence should give (images in the folder, or the video header's count;
    ``None`` when unknown), capped at ``max_frames``."""
    if seq.kind == "frames":
        n: int | None = len(_images_in(seq.path))
    else:  # any file name (OpenCV given a name that is not UTF-8 would crash the run)
        from posetracker.io.sources import video_frame_count

        n = video_frame_count(seq.path)
    if n is not None and max_frames is not None:
        n = min(n, max_frames)
    return n


def _fingerprint(seq: Sequence) -> dict:
    """What identifies a sequence's input, independent of where ROOT is and of file times (a
    copied dataset keeps its outputs)."""
    if seq.kind == "frames":
        names = sorted(_images_in(seq.path))
        return {"kind": "frames", "rel": seq.rel, "images": len(names),
                "names": hashlib.sha256("\n".join(names).encode()).hexdigest()}
    return {"kind": "video", "rel": seq.rel, "bytes": seq.path.stat().st_size}


# ----------------------------------------------------------------------------------------------
# jobs and their keys


@dataclass(frozen=True)
class Job:
    """One sequence to track, as sent to a worker.

    Attributes:
        seq: The sequence.
        output: ``OUT_DIR/<name>.json``.
        render: ``OUT_DIR/<name>.mp4`` when rendering, else ``None``.
        max_frames: Read at most this many frames (``None``: all).
        key: The job's resume key (:func:`job_key`).
        frames_hint: Frames expected (for the progress bar; ``None``: unknown).
    """

    seq: Sequence
    output: Path
    render: Path | None
    max_frames: int | None
    key: str
    frames_hint: int | None = None

    @property
    def name(self) -> str:
        return self.seq.name


def settings_for_key(config: AppConfig) -> dict:
    """The settings as ``track`` writes them into its metadata, less :data:`RESOURCE_SETTINGS`."""
    from posetracker.core.config import to_dict

    d = to_dict(config)
    for section, key in RESOURCE_SETTINGS:
        d.get(section, {}).pop(key, None)
    return d


def model_checksums(config: AppConfig) -> dict[str, dict[str, str]]:
    """The SHA-256 of the detector's and pose model's files, as ``track`` writes them into its
    metadata; registry models missing from the cache are fetched first (once, here, rather than
    by every worker at once).

    Raises:
        ModelError: a model cannot be found or fetched.
    """
    from posetracker.app.api import model_files
    from posetracker.app.models import REGISTRY, resolve_model

    names = (config.estimator.detector.model, config.estimator.sppe.model)
    for n in names:
        if n in REGISTRY:
            resolve_model(n)
    return {n: model_files(n) for n in names}


def job_key(seq: Sequence, settings: dict, models: dict, max_frames: int | None,
            render: bool) -> str:
    """SHA-256 of everything that decides a sequence's output files."""
    blob = json.dumps({"settings": settings, "models": models, "source": _fingerprint(seq),
                       "max_frames": max_frames, "render": bool(render)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def record_path(out_dir: Path, name: str) -> Path:
    return out_dir / STATE_DIR / f"{name}.json"


def _meta_of(output: Path, fmt: str) -> dict | None:
    """The metadata ``track`` wrote with ``output`` (``None``: missing or unreadable)."""
    path = output.with_name(output.name.removesuffix(".json") + ".meta.json") \
        if fmt == "coco" else output
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    meta = data if fmt == "coco" else (data.get("meta") if isinstance(data, dict) else None)
    return meta if isinstance(meta, dict) else None


def finished_record(job: Job, out_dir: Path, fmt: str, settings: dict, models: dict
                    ) -> dict | None:
    """The record of ``job`` when its outputs are complete and were made with the same key,
    settings and models; else ``None`` (the sequence must be tracked)."""
    try:
        rec = json.loads(record_path(out_dir, job.name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("key") != job.key or not job.output.is_file():
        return None
    if job.render is not None and not job.render.is_file():
        return None
    meta = _meta_of(job.output, fmt)
    if meta is None or meta.get("models") != models:
        return None
    written = dict(meta.get("config") or {})
    for section, key in RESOURCE_SETTINGS:
        written.get(section, {}).pop(key, None)
    if json.dumps(written, sort_keys=True, default=str) != \
            json.dumps(settings, sort_keys=True, default=str):
        return None
    return rec


# ----------------------------------------------------------------------------------------------
# the per-sequence job, in a worker


def rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux ``/proc``; else the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def track_sequence(tracker, job: Job, render: Path | None,
                   progress: Callable[[int, int | None], None] | None):
    """The per-sequence job: what ``posetracker track SOURCE -o OUT --render R`` does, through
    the Python API (:meth:`~posetracker.app.api.PoseTracker.track_to`). Returns its
    ``TrackSummary``."""
    return tracker.track_to(str(job.seq.path), job.output, jsonl=True, render=render,
                            max_frames=job.max_frames, progress=progress)


def _count_ids(output: Path, jsonl: Path | None, fmt: str) -> int | None:
    """Distinct track ids in a finished sequence's outputs."""
    from posetracker.io.formats.posetrack import read_posetrack
    from posetracker.io.sinks import read_jsonl

    if fmt != "coco":
        video = read_posetrack(output)
    elif jsonl is not None and jsonl.is_file():
        video = read_jsonl(jsonl)
    else:
        return None
    return len({int(t) for f in video.frames if f.poses.track_ids is not None
                for t in f.poses.track_ids})


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and message (the last frame's place for bugs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, PosetrackerError):
        return text
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {text}{where}"


class SequenceRunner:
    """A worker's state: the models, loaded once, and the sequences run one after another.

    Args:
        config: The run's settings.
        threads: CPU cores this worker may use: torch's threads for the process, and the
            pipeline's threads per model call (``pipeline.threads``, unless the settings fix it:
            in threaded mode shared among the pose workers and the detector, as the pipeline's
            automatic choice does with all cores).
    """

    def __init__(self, config: AppConfig, threads: int):
        import torch

        from posetracker.app.api import PoseTracker
        from posetracker.core.config import replace_path

        t0 = time.perf_counter()
        threads = max(1, int(threads))
        torch.set_num_threads(threads)  # this process is the worker's own
        pc = config.pipeline
        if pc.threads == 0:
            per_call = threads if pc.mode == "sequential" else \
                max(1, threads // (pc.pose_workers + 1))
            config = replace_path(config, "pipeline.threads", per_call)
        self.threads = threads
        self.fmt = config.pipeline.output.format
        self.tracker = PoseTracker(config)
        self.tracker.load()  # the models now, once for every sequence
        self.load_seconds = time.perf_counter() - t0
        self.device = self.tracker.device

    def run(self, job: Job, progress: Callable[[int, int | None], None] | None = None
            ) -> tuple[str, dict]:
        """Track ``job``'s sequence: ``("done", figures)`` or ``("failed", {"error": line})``."""
        t0 = time.perf_counter()
        out_dir = job.output.parent
        rec_file = record_path(out_dir, job.name)
        part = None
        try:
            rec_file.unlink(missing_ok=True)  # it describes the files about to be replaced
            if job.render is not None:
                # rendered beside the final name, renamed when complete (a partial video is
                # never taken for a finished one)
                part = job.render.with_name(f".{job.render.stem}.partial{job.render.suffix}")
            summary = track_sequence(self.tracker, job, part, progress)
            if part is not None:
                os.replace(part, job.render)
            ids = _count_ids(job.output, summary.jsonl, self.fmt)
            figures = {"frames": summary.frames, "people": summary.people,
                       "people_per_frame": round(summary.people_per_frame, 3), "ids": ids,
                       "seconds": round(time.perf_counter() - t0, 3),
                       "fps": round(summary.fps, 3), "device": summary.device,
                       "ms_per_frame": {k: round(v, 2) for k, v in summary.ms_per_frame.items()}}
            atomic_write_text(rec_file, json.dumps({"key": job.key, "name": job.name,
                                                    "source": job.seq.rel, **figures}, indent=1))
            return "done", figures
        except Exception as e:  # reported and retried by the engine; the worker goes on
            if part is not None:
                part.unlink(missing_ok=True)
            return "failed", {"error": one_line(e), "seconds": round(time.perf_counter() - t0, 3)}


def _worker_info(runner: SequenceRunner) -> dict:
    import socket

    return {"pid": os.getpid(), "host": socket.gethostname(), "threads": runner.threads,
            "load_seconds": round(runner.load_seconds, 3), "device": runner.device,
            "rss_mb": round(rss_mb(), 1)}


# ----------------------------------------------------------------------------------------------
# bookkeeping (engine-independent)


#: ``on_event(kind, name, data)``: ``ready`` (a worker's info), ``start``, ``frames``
#: (``{"n", "total"}``), ``done``/``failed``/``retry`` (the record).
EventFn = Callable[[str, str, dict], None]


@dataclass
class _Book:
    """Which jobs wait, their attempts, and every sequence's record."""

    jobs: list[Job]
    retries: int
    records: dict[str, dict]
    on_event: EventFn
    write_summary: Callable[[], None]
    waiting: deque = field(default_factory=deque)
    attempts: dict[str, int] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    open: int = 0

    def __post_init__(self) -> None:
        self.waiting.extend(self.jobs)
        self.open = len(self.jobs)

    def next(self) -> Job | None:
        return self.waiting.popleft() if self.waiting else None

    def start(self, job: Job, worker: str) -> None:
        self.attempts[job.name] = self.attempts.get(job.name, 0) + 1
        self.started[job.name] = time.perf_counter()
        self.records[job.name].update(status="running", worker=worker,
                                      attempts=self.attempts[job.name])
        self.on_event("start", job.name, self.records[job.name])
        self.write_summary()  # a live status: which worker runs what

    def finish(self, job: Job, status: str, data: dict, rss: float | None = None) -> None:
        rec = self.records[job.name]
        rec["wall_seconds"] = round(time.perf_counter() - self.started.get(job.name, 0.0), 3)
        rec["finished_at"] = round(time.time(), 3)
        if rss is not None:
            rec["rss_mb"] = round(rss, 1)
        if status == "done":
            rec.update(status="done", error="", **data)
            self.open -= 1
            self.on_event("done", job.name, rec)
        elif self.attempts.get(job.name, 0) <= self.retries:
            rec.update(status="pending", error=data.get("error", ""))
            self.waiting.append(job)  # retried after the others waiting
            self.on_event("retry", job.name, rec)
        else:
            rec.update(status="failed", error=data.get("error", ""),
                       seconds=data.get("seconds"))
            self.open -= 1
            self.on_event("failed", job.name, rec)
        self.write_summary()


# ----------------------------------------------------------------------------------------------
# local engine: spawned worker processes, one pipe each


def _local_worker(conn, config: AppConfig, threads: int) -> None:
    """A local worker process: load the models, then run the jobs the parent sends."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C reaches the whole process group; the parent stops the workers itself, by SIGTERM,
    # which unwinds the sequence in hand as Ctrl-C unwinds `track` (temporary files removed).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    try:
        try:
            runner = SequenceRunner(config, threads)
        except Exception as e:
            conn.send(("fatal", "", {"error": one_line(e)}))
            return
        conn.send(("ready", "", _worker_info(runner)))
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            name = job.name

            def progress(n: int, total: int | None) -> None:
                conn.send(("frames", name, {"n": n, "total": total}))

            status, data = runner.run(job, progress)
            conn.send((status, name, {**data, "rss_mb": rss_mb()}))
    except (KeyboardInterrupt, BrokenPipeError):
        return


@dataclass
class _Proc:
    proc: Any
    conn: Any
    job: Job | None = None
    ready: bool = False
    info: dict = field(default_factory=dict)


def _run_local(book: _Book, config: AppConfig, workers: int, threads: int,
               timings: dict) -> None:
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # no fork of a parent holding threads and models
    procs: list[_Proc] = []
    init_deaths = 0

    def spawn() -> None:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_local_worker, args=(child, config, threads),
                        name="posetracker-dataset-worker", daemon=True)
        p.start()
        child.close()
        procs.append(_Proc(p, parent))

    def stop(w: _Proc, dead: str | None) -> None:
        procs.remove(w)
        if w.job is not None:
            book.finish(w.job, "failed", {"error": dead or "worker stopped"})
        w.conn.close()
        w.proc.join(timeout=5)

    for _ in range(workers):
        spawn()
    try:
        while book.open:
            for w in procs:
                if w.ready and w.job is None:
                    job = book.next()
                    if job is None:
                        break
                    w.job = job
                    book.start(job, f"{w.info.get('host', '')}:{w.proc.pid}")
                    w.conn.send(job)
            busy = sum(w.job is not None for w in procs)
            # a replacement for a lost worker, while there is work it could take
            if len(procs) < min(workers, busy + len(book.waiting)):
                spawn()
            ready = wait([w.conn for w in procs] + [w.proc.sentinel for w in procs], timeout=1.0)
            for w in list(procs):
                if w.conn not in ready and w.proc.sentinel not in ready:
                    continue
                try:
                    while w.conn.poll():
                        kind, name, data = w.conn.recv()
                        if kind == "ready":
                            w.ready, w.info = True, data
                            init_deaths = 0
                            timings.setdefault("first_ready", time.perf_counter())
                            book.on_event("ready", "", data)
                        elif kind == "fatal":
                            raise PosetrackerError(f"a worker could not start: {data['error']}")
                        elif kind == "frames":
                            book.on_event("frames", name, data)
                        elif w.job is not None and name == w.job.name:
                            job, w.job = w.job, None
                            book.finish(job, kind, data, rss=data.pop("rss_mb", None))
                except (EOFError, OSError):
                    pass
                if not w.proc.is_alive():
                    w.proc.join(timeout=5)
                    code = w.proc.exitcode
                    if not w.ready:
                        init_deaths += 1
                        if init_deaths > 3:
                            raise PosetrackerError(f"worker processes die while loading the "
                                                   f"models (exit code {code})")
                    stop(w, f"worker process died (exit code {code})")
    except BaseException:
        for w in procs:  # stopped (Ctrl-C, an error): the sequences in hand stop too
            w.proc.terminate()
        raise
    finally:
        for w in procs:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in procs:
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            w.conn.close()


# ----------------------------------------------------------------------------------------------
# Ray engine: one actor per worker holding the models, one task per sequence


class RayWorker:
    """What each Ray actor holds (made a Ray actor class at run time: Ray is optional).

    Progress goes through a ``ray.util.queue.Queue`` given with each task (not to the
    constructor: a restarted actor would need it again), at most a few messages a second."""

    def __init__(self, config: AppConfig, threads: int):
        self.runner = SequenceRunner(config, threads)

    def info(self) -> dict:
        return _worker_info(self.runner)

    def run(self, job: Job, queue) -> tuple[str, dict]:
        last = [0.0]

        def progress(n: int, total: int | None) -> None:
            now = time.perf_counter()
            if n == 0 or now - last[0] >= 0.25 or (total is not None and n >= total):
                last[0] = now
                try:
                    queue.put_nowait((job.name, {"n": n, "total": total}))
                except Exception:  # progress only; a full or lost queue must not fail the job
                    pass

        status, data = self.runner.run(job, progress)
        return status, {**data, "rss_mb": rss_mb()}


def import_ray():
    """The ``ray`` module, or :class:`InputError` with how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


def _run_ray(book: _Book, config: AppConfig, workers: int, address: str | None,
             gpus_per_task: float, timings: dict) -> None:
    ray = import_ray()
    from ray.exceptions import RayActorError, RayError
    from ray.util.queue import Empty, Queue

    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address:
            # the models folder travels to the cluster's workers (paths must exist there)
            env = {k: os.environ[k] for k in ("POSETRACKER_MODELS", "POSETRACKER_CACHE")
                   if k in os.environ}
            ray.init(address=address, runtime_env={"env_vars": env} if env else None, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    try:
        timings["engine_started"] = time.perf_counter()
        resources = ray.cluster_resources()
        cpus = float(resources.get("CPU", 1))
        if workers <= 0:
            workers = int(resources.get("GPU", 0) // gpus_per_task) if gpus_per_task > 0 \
                else int(cpus)
            workers = max(1, min(workers, len(book.jobs)))
        per_worker = max(1, int(cpus // workers))
        queue = Queue(maxsize=10000, actor_options={"num_cpus": 0})
        actor_cls = ray.remote(RayWorker).options(
            num_cpus=per_worker, num_gpus=gpus_per_task or 0,
            max_restarts=-1, max_task_retries=0)  # a lost actor comes back; its task is ours
        actors = [actor_cls.remote(config, per_worker) for _ in range(workers)]
        try:
            infos = ray.get([a.info.remote() for a in actors])
        except RayError as e:
            raise PosetrackerError(f"a Ray worker could not start: "
                                   f"{' '.join(str(e).split())[-400:]}") from None
        timings["first_ready"] = time.perf_counter()
        hosts = {}
        for a, info in zip(actors, infos):
            hosts[a] = f"{info['host']}:{info['pid']}"
            book.on_event("ready", "", info)
        idle = list(actors)
        inflight: dict[Any, tuple[Any, Job]] = {}
        while book.open:
            while idle:
                job = book.next()
                if job is None:
                    break
                actor = idle.pop()
                book.start(job, hosts[actor])
                inflight[actor.run.remote(job, queue)] = (actor, job)
            done, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25) \
                if inflight else ([], [])
            try:
                for name, data in queue.get_nowait_batch(queue.qsize()):
                    book.on_event("frames", name, data)
            except Empty:
                pass
            for ref in done:
                actor, job = inflight.pop(ref)
                idle.append(actor)
                try:
                    status, data = ray.get(ref)
                except RayActorError as e:
                    status, data = "failed", {"error": "Ray worker died: "
                                              + " ".join(str(e).split())[:300]}
                except RayError as e:
                    status, data = "failed", {"error": " ".join(str(e).split())[-300:]}
                book.finish(job, status, data, rss=data.pop("rss_mb", None))
    finally:
        if started_here:
            ray.shutdown()


# ----------------------------------------------------------------------------------------------
# the run


@dataclass(frozen=True)
class DatasetOptions:
    """How ``track-dataset`` runs (the tracking settings themselves are the ``AppConfig``).

    Attributes:
        engine: ``local`` (worker processes here) or ``ray``.
        workers: Worker processes or Ray actors; 0 = automatic (local: the CPU cores; Ray: the
            cluster's CPUs, or its GPUs / ``gpus_per_task``), at most one per sequence to run.
        retries: Further attempts of a failed sequence.
        render: Also write ``<name>.mp4``.
        max_frames: Read at most this many frames of each sequence (``None``: all; the
            PoseTrack evaluation needs all).
        only: Shell patterns; only sequences whose name or path under ROOT matches one run.
        ray_address: An existing Ray cluster (``None``: a local Ray started for the run).
        gpus_per_task: GPUs (or a fraction of one) each Ray actor holds.
    """

    engine: str = "local"
    workers: int = 0
    retries: int = 1
    render: bool = False
    max_frames: int | None = None
    only: tuple[str, ...] = ()
    ray_address: str | None = None
    gpus_per_task: float = 0.0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.workers < 0:
            raise InputError(f"--workers must be >= 0, got {self.workers}")
        if self.retries < 0:
            raise InputError(f"--retries must be >= 0, got {self.retries}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.gpus_per_task < 0:
            raise InputError(f"--gpus-per-task must be >= 0, got {self.gpus_per_task}")
        if self.gpus_per_task and self.engine != "ray":
            raise InputError("--gpus-per-task is for --engine ray (local workers use "
                             "--device)")
        if self.ray_address and self.engine != "ray":
            raise InputError("--ray-address is for --engine ray")


@dataclass
class DatasetRun:
    """What :func:`track_dataset` did.

    Attributes:
        records: One per sequence found (name order): ``name``, ``source``, ``status``
            (:data:`STATUSES`), ``frames``, ``people``, ``people_per_frame``, ``ids`` (distinct
            track ids), ``seconds`` (in the worker), ``wall_seconds`` (sent to finished, as the
            engine saw it), ``attempts``, ``error``, ``worker`` (``host:pid``), ``rss_mb`` (the
            worker's resident memory after the sequence).
        workers: Each worker's info when it became ready (pid, host, threads, load_seconds,
            device, rss_mb).
        timings: ``perf_counter`` marks: ``start``, ``first_ready`` (a worker's models loaded),
            ``end``; and ``wall_seconds``.
        summary_json, summary_csv: The summary files.
    """

    records: list[dict]
    workers: list[dict]
    timings: dict
    summary_json: Path
    summary_csv: Path

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)


SUMMARY_FIELDS = ("name", "status", "frames", "people", "people_per_frame", "ids", "seconds",
                  "wall_seconds", "attempts", "error", "source", "worker", "rss_mb")


def printable_lines(text: str) -> str:
    """``text`` with each line made :func:`~posetracker.core.paths.printable`."""
    from posetracker.core.paths import printable

    return "".join(printable(line) + "\n" for line in text.splitlines())


def _write_summary(out_dir: Path, head: dict, records: list[dict]) -> None:
    atomic_write_text(out_dir / "summary.json",
                      json.dumps({**head, "sequences": records}, indent=1, default=str))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore",
                       lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in SUMMARY_FIELDS})
    # a file name that is not UTF-8 is written with its odd bytes as \xNN: the table stays text
    atomic_write_text(out_dir / "summary.csv", printable_lines(buf.getvalue()))


def plan(root: str | Path, out_dir: str | Path, config: AppConfig, options: DatasetOptions
         ) -> tuple[list[Sequence], list[Sequence]]:
    """The sequences under ``root`` (all, and those ``options.only`` selects)."""
    sequences = discover(root, exclude=[out_dir])
    return sequences, select(sequences, options.only)


def track_dataset(root: str | Path, out_dir: str | Path, config: AppConfig | None = None,
                  options: DatasetOptions | None = None,
                  on_event: EventFn | None = None) -> DatasetRun:
    """Track every sequence under ``root`` into ``out_dir`` (see the module docstring).

    Args:
        root: A folder of videos and/or frame folders (or one video).
        out_dir: Where ``<name>.json``, ``<name>.jsonl``, ``<name>.mp4``, ``summary.json`` and
            ``summary.csv`` go.
        config: The tracking settings (``None``: the defaults), as ``posetracker track`` takes.
        options: Engine, workers, retries, ... (:class:`DatasetOptions`).
        on_event: Called in this process as sequences start, advance and finish (progress bars).

    Returns:
        The :class:`DatasetRun`; failed sequences are in its records (the caller decides the
        exit status). ``summary.json``/``summary.csv`` are rewritten after every sequence.

    Raises:
        InputError: ``root`` holds no sequence, ``out_dir`` cannot be written, Ray is missing.
        ModelError: a model cannot be found.
        KeyboardInterrupt: the run was stopped; finished sequences are kept, the summary says
            which ones are interrupted or pending.
    """
    from posetracker.core.fileio import check_writable

    config = config or AppConfig()
    options = options or DatasetOptions()
    out = Path(out_dir).absolute()  # workers (Ray's too) may run in another folder
    root = Path(root).absolute()
    if options.engine == "ray":
        import_ray()  # before anything else: one line saying how to install it
    check_writable(out / "summary.json", "-o")
    sequences, chosen = plan(root, out, config, options)
    if not chosen:
        raise InputError(f"--only {' '.join(options.only)}: matches none of the "
                         f"{len(sequences)} sequences under {root}")
    fmt = config.pipeline.output.format
    settings = settings_for_key(config)
    models = model_checksums(config)
    timings: dict = {"start": time.perf_counter()}
    started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    chosen_names = {s.name for s in chosen}
    records: dict[str, dict] = {}
    todo: list[Job] = []
    for seq in sequences:
        job = Job(seq, out / f"{seq.name}.json",
                  out / f"{seq.name}.mp4" if options.render else None, options.max_frames,
                  job_key(seq, settings, models, options.max_frames, options.render))
        rec = {"name": seq.name, "source": seq.rel, "status": "pending", "frames": None,
               "people": None, "people_per_frame": None, "ids": None, "seconds": None,
               "wall_seconds": None, "attempts": 0, "error": "", "worker": "", "rss_mb": None}
        if seq.name not in chosen_names:
            rec["status"] = "excluded"
        else:
            done = finished_record(job, out, fmt, settings, models)
            if done is not None:
                rec.update({k: done.get(k) for k in ("frames", "people", "people_per_frame",
                                                     "ids", "seconds")}, status="skipped")
            else:
                todo.append(dataclasses.replace(job, frames_hint=frame_count(seq,
                                                                               options.max_frames)))
        records[seq.name] = rec
    workers_info: list[dict] = []
    workers = options.workers or (os.cpu_count() or 1)
    if options.engine == "local":
        workers = max(1, min(workers, len(todo)))
    head = {"root": str(root), "out_dir": str(out), "engine": options.engine, "format": fmt,
            "started": started_utc,
            "max_frames": options.max_frames, "retries": options.retries, "models": models}

    def summary() -> None:
        _write_summary(out, {**head, "workers": len(workers_info), "wall_seconds":
                             round(time.perf_counter() - timings["start"], 3)},
                       [records[s.name] for s in sequences])

    def event(kind: str, name: str, data: dict) -> None:
        if kind == "ready":
            workers_info.append(data)
        if on_event is not None:
            on_event(kind, name, data)

    book = _Book(todo, options.retries, records, event, summary)
    for job in todo:
        event("queued", job.name, {"frames_hint": job.frames_hint})
    try:
        if todo:
            cores = os.cpu_count() or 1
            if options.engine == "local":
                _run_local(book, config, workers, max(1, cores // workers), timings)
            else:
                _run_ray(book, config, options.workers, options.ray_address,
                         options.gpus_per_task, timings)
    except BaseException:
        for rec in records.values():
            if rec["status"] == "running":
                rec.update(status="interrupted", error="the run was stopped")
        summary()
        raise
    timings["end"] = time.perf_counter()
    timings["wall_seconds"] = timings["end"] - timings["start"]
    summary()
    return DatasetRun([records[s.name] for s in sequences], workers_info, timings,
                      out / "summary.json", out / "summary.csv")


__all__ = [
    "DatasetOptions",
    "DatasetRun",
    "Job",
    "Sequence",
    "SequenceRunner",
    "discover",
    "select",
    "track_dataset",
    "track_sequence",
]
