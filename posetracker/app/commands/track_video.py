"""``posetracker track VIDEO -o out.json``: the main job, video in, tracked PoseTrack JSON out.

:func:`add_arguments` adds the VIDEO-mode options to the ``track`` parser (built in
:mod:`posetracker.app.commands.track_cmd`); :func:`run` is that mode, a thin caller of
:meth:`posetracker.app.api.PoseTracker.track_to`, which does the work: outputs checked before the
source opens or a model loads; the streaming pipeline; ``<out>.jsonl`` per frame, the final JSON
written atomically at the end with the run's metadata. This module adds the settings from the
command line, the progress bar and the closing summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from posetracker.app.commands.settings_args import (
    Flag,
    add_config_options,
    default,
    dump,
    settings,
)
from posetracker.core.errors import InputError

#: VIDEO-mode flags -> settings (``track --poses`` reads ``tracker`` only).
FLAGS: tuple[Flag, ...] = (
    ("device", "estimator.device", None),
    ("half", "estimator.sppe.half", True),
    ("det_batch", "estimator.frame_batch", None),
    ("pose_batch", "estimator.sppe.batch_size", None),
    ("association", "pipeline.association", None),
    ("sequential", "pipeline.mode", "sequential"),
    ("render_boxes", "pipeline.output.render_boxes", True),
    ("tracker", "tracker.kind", None),
    ("format", "pipeline.output.format", None),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The VIDEO-mode options (``-o``, ``--format``, ``--tracker``, ``--tracker-config`` are
    shared with ``--poses`` and defined by the ``track`` command itself)."""
    g = p.add_argument_group(
        "VIDEO mode", "estimate and track VIDEO (a video file, an image folder, a glob such as "
        "'frames/*.jpg', a single image, or a webcam index such as 0); -o is the final JSON, "
        "<out>.jsonl is streamed per frame while running.")
    g.add_argument("--render", metavar="OUT.mp4", help="also draw the tracked skeletons into "
                   "this video: .mp4, .m4v, .mov, .mkv or .avi, tried on a dummy frame before "
                   "any model loads; frames over 4096 pixels a side are scaled down (H.264 with "
                   "PyAV, pip install -e \".[video]\"; else mp4v; default: none)")
    g.add_argument("--render-boxes", action="store_true", default=None,
                   help="draw person boxes in the rendered video (pipeline.output.render_boxes, "
                   f"default: {default('pipeline.output.render_boxes')})")
    g.add_argument("--csv", metavar="OUT.csv", help="also write one row per frame x track x "
                   "joint (default: none)")
    g.add_argument("--jsonl", metavar="PATH", help="the per-frame stream (default: the output "
                   "with suffix .jsonl; pipeline.output.jsonl=false turns it off)")
    g.add_argument("--device", metavar="auto|cpu|cuda[:N]", help="where the models run "
                   f"(estimator.device, default: {default('estimator.device')} = CUDA when "
                   "available)")
    g.add_argument("--half", action="store_true", default=None, help="float16 pose estimator on "
                   f"CUDA (estimator.sppe.half, default: {default('estimator.sppe.half')})")
    g.add_argument("--det-batch", type=int, metavar="N", help="frames per detector call "
                   f"(estimator.frame_batch, default: {default('estimator.frame_batch')})")
    g.add_argument("--pose-batch", type=int, metavar="N", help="people per pose-estimator call, "
                   "gathered across frames (estimator.sppe.batch_size, default: "
                   f"{default('estimator.sppe.batch_size')})")
    g.add_argument("--association", choices=("nms", "crowdpose"), help="remove duplicate poses "
                   "by RMPE pose NMS or CrowdPose joint-candidate association "
                   f"(pipeline.association, default: {default('pipeline.association')})")
    g.add_argument("--sequential", action="store_true", default=None, help="run the stages one "
                   "after the other on one thread (pipeline.mode=sequential; default: "
                   f"{default('pipeline.mode')})")
    add_config_options(g)
    g.add_argument("--start-frame", type=int, default=0, metavar="N",
                   help="first frame to read (default: %(default)s)")
    g.add_argument("--max-frames", type=int, metavar="N", help="read at most N frames "
                   "(default: all)")
    g.add_argument("--stride", type=int, default=1, metavar="N",
                   help="read every N-th frame (default: %(default)s)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary "
                   "(default: off)")


def load_settings(args: argparse.Namespace):
    """The run's :class:`~posetracker.app.settings.AppConfig` (``--config`` <
    ``--tracker-config`` < flags < ``--set``)."""
    from posetracker.core.config import load_yaml

    extra = {"tracker": load_yaml(args.tracker_config)} \
        if getattr(args, "tracker_config", None) else None
    return settings(args, FLAGS, extra=extra)


def _progress(total: int | None, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", dynamic_ncols=True, leave=False,
                disable=quiet or not sys.stderr.isatty())


def run(args: argparse.Namespace) -> int:
    """The VIDEO mode of ``posetracker track``; returns the exit status."""
    from posetracker.app.api import PoseTracker

    config = load_settings(args)
    if args.dump_config:
        return dump(config)
    if not args.output:
        raise InputError("VIDEO mode needs -o out.json")
    tracker = PoseTracker(config)
    jsonl = args.jsonl if args.jsonl else None
    bar = None

    def progress(n: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:  # the run has started: outputs checked, source open, models loaded
            bar = _progress(total, args.quiet)
        if n:
            bar.update(1)

    try:
        summary = tracker.track_to(args.video, args.output, jsonl=jsonl, render=args.render,
                                   csv=args.csv, start=args.start_frame,
                                   max_frames=args.max_frames, stride=args.stride,
                                   progress=progress)
    except BaseException:
        if bar is not None:
            bar.close()
            jl = tracker.jsonl_path(args.output, jsonl)
            if jl is not None and not args.quiet:
                print(f"posetracker: stopped; finished frames are in {jl} "
                      f"(posetracker convert jsonl {jl} {args.output} writes them as "
                      f"{Path(args.output).name})", file=sys.stderr)
        raise
    bar.close()
    if not args.quiet:
        print(f"{summary.output}: {summary.text()}", file=sys.stderr)
    return 0
