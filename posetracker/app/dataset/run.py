"""The run of ``track-dataset``: its options, planning the jobs, the engines started, and the
summary files (``summary.json``, ``summary.csv``) rewritten as sequences finish."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from posetracker.app.dataset.discovery import Sequence, discover, frame_count, select
from posetracker.app.dataset.jobs import EventFn, JobQueue
from posetracker.app.dataset.local_engine import run_local
from posetracker.app.dataset.ray_engine import import_ray, run_ray
from posetracker.app.dataset.resume import Job, finished_record, job_for, model_checksums, settings_for_key
from posetracker.app.settings import AppConfig
from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write_text

ENGINES = ("local", "ray")
STATUSES = ("done", "skipped", "failed", "interrupted", "pending", "excluded")


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


def _jobs(sequences: list[Sequence], chosen: set[str], out: Path, fmt: str, settings: dict,
          models: dict, options: DatasetOptions) -> tuple[dict[str, dict], list[Job]]:
    """Every sequence's first record (``excluded``, ``skipped`` when its outputs are complete
    with the same key, settings and models, else ``pending``) and the jobs to run."""
    records: dict[str, dict] = {}
    todo: list[Job] = []
    for seq in sequences:
        job = job_for(seq, out, fmt, settings, models, options.max_frames, options.render)
        rec = {"name": seq.name, "source": seq.rel, "status": "pending", "frames": None,
               "people": None, "people_per_frame": None, "ids": None, "seconds": None,
               "wall_seconds": None, "attempts": 0, "error": "", "worker": "", "rss_mb": None}
        if seq.name not in chosen:
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
    return records, todo


def _run_engine(job_queue: JobQueue, config: AppConfig, options: DatasetOptions,
                timings: dict) -> None:
    """Run the jobs on the engine ``options`` names: local worker processes (``workers``, 0 =
    the CPU cores, at most one per job) sharing the cores, or Ray actors."""
    if options.engine == "local":
        cores = os.cpu_count() or 1
        workers = max(1, min(options.workers or cores, len(job_queue.jobs)))
        run_local(job_queue, config, workers, max(1, cores // workers), timings)
    else:
        run_ray(job_queue, config, options.workers, options.ray_address,
                options.gpus_per_task, timings)


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
    records, todo = _jobs(sequences, {s.name for s in chosen}, out, fmt, settings, models, options)
    workers_info: list[dict] = []
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

    job_queue = JobQueue(todo, options.retries, records, event, summary)
    for job in todo:
        event("queued", job.name, {"frames_hint": job.frames_hint})
    try:
        if todo:
            _run_engine(job_queue, config, options, timings)
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
