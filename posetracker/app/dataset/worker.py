"""The per-sequence job, in a worker: the models loaded once (:class:`SequenceRunner`), then one
sequence after another, each leaving its resume record when its files are in place."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from posetracker.app.dataset.resume import Job, record_path
from posetracker.app.settings import AppConfig
from posetracker.core.errors import PosetrackerError
from posetracker.core.fileio import atomic_write_text
from posetracker.io.formats.output_formats import OUTPUT_FORMATS


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
    """Distinct track ids in a finished sequence's outputs: the final file when its format
    reads back with ids, else the JSON lines."""
    from posetracker.io.sinks import read_jsonl

    read = OUTPUT_FORMATS.get(fmt).read
    if read is not None:
        video = read(output)
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


def worker_info(runner: SequenceRunner) -> dict:
    import socket

    return {"pid": os.getpid(), "host": socket.gethostname(), "threads": runner.threads,
            "load_seconds": round(runner.load_seconds, 3), "device": runner.device,
            "rss_mb": round(rss_mb(), 1)}
