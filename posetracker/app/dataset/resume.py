"""Resuming a run: each sequence's job and its key, and the record a finished sequence leaves
in ``OUT_DIR/.track-dataset/<name>.json`` (see :mod:`posetracker.app.dataset`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from posetracker.app.dataset.discovery import Sequence, fingerprint
from posetracker.app.settings import AppConfig
from posetracker.io.formats.output_formats import OUTPUT_FORMATS

STATE_DIR = ".track-dataset"
#: Settings that change how fast a run goes, not what it writes: left out of the resume key.
RESOURCE_SETTINGS = (("pipeline", "threads"),)


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
    blob = json.dumps({"settings": settings, "models": models, "source": fingerprint(seq),
                       "max_frames": max_frames, "render": bool(render)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def job_files(seq: Sequence, out_dir: Path, fmt: str, render: bool) -> tuple[Path, Path | None]:
    """``seq``'s output ``OUT_DIR/<name>`` with the output format's suffix, and its video when
    rendering (``None`` otherwise)."""
    return (out_dir / f"{seq.name}{OUTPUT_FORMATS.get(fmt).suffixes[0]}",
            out_dir / f"{seq.name}.mp4" if render else None)


def job_for(seq: Sequence, out_dir: Path, fmt: str, settings: dict, models: dict,
            max_frames: int | None, render: bool) -> Job:
    """``seq``'s job: its files (:func:`job_files`) and its key."""
    return Job(seq, *job_files(seq, out_dir, fmt, render), max_frames,
               job_key(seq, settings, models, max_frames, render))


def record_path(out_dir: Path, name: str) -> Path:
    return out_dir / STATE_DIR / f"{name}.json"


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
    meta = OUTPUT_FORMATS.get(fmt).read_meta(job.output)  # what `track` wrote with it
    if meta is None or meta.get("models") != models:
        return None
    written = dict(meta.get("config") or {})
    for section, key in RESOURCE_SETTINGS:
        written.get(section, {}).pop(key, None)
    if json.dumps(written, sort_keys=True, default=str) != \
            json.dumps(settings, sort_keys=True, default=str):
        return None
    return rec
