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

Modules, by job: :mod:`.discovery` (finding the sequences), :mod:`.resume` (jobs, their keys
and the finished-sequence records), :mod:`.worker` (the per-sequence job in a worker),
:mod:`.jobs` (waiting jobs, attempts, records), :mod:`.local_engine` and :mod:`.ray_engine`,
:mod:`.run` (:func:`track_dataset`, its options and summary). This package's namespace is their
public API.
"""

from posetracker.app.dataset.discovery import VIDEO_SUFFIXES, Sequence, discover, frame_count, select
from posetracker.app.dataset.resume import (
    STATE_DIR,
    Job,
    finished_record,
    job_files,
    job_for,
    job_key,
    model_checksums,
    record_path,
    settings_for_key,
)
from posetracker.app.dataset.run import ENGINES, STATUSES, DatasetOptions, DatasetRun, plan, track_dataset
from posetracker.app.dataset.worker import SequenceRunner, track_sequence

__all__ = [
    "ENGINES",
    "STATE_DIR",
    "STATUSES",
    "VIDEO_SUFFIXES",
    "DatasetOptions",
    "DatasetRun",
    "Job",
    "Sequence",
    "SequenceRunner",
    "discover",
    "finished_record",
    "frame_count",
    "job_files",
    "job_for",
    "job_key",
    "model_checksums",
    "plan",
    "record_path",
    "select",
    "settings_for_key",
    "track_dataset",
    "track_sequence",
]
