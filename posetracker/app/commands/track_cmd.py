"""``posetracker track``: track poses across frames and write the final JSON.

Two modes:

- ``posetracker track VIDEO -o out.json`` (the main job): estimate and track a video, an image
  folder, a glob or a webcam: a thin caller of :meth:`posetracker.app.api.PoseTracker.track_to`,
  which does the work (outputs checked before the source opens or a model loads; the streaming
  pipeline; ``<out>.jsonl`` per frame, the final JSON written atomically at the end with the
  run's metadata). This module adds the settings from the command line, the progress bar and
  the closing summary (:func:`run_video`).
- ``posetracker track --poses POSES.json [--frames DIR] -o tracked.json`` tracks per-frame poses
  given as COCO results, AlphaPose results or a PoseTrack file (its ids are dropped)
  (:func:`run_poses`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import get_args

from posetracker.app.commands.format_option import add_format_option
from posetracker.app.commands.settings_args import (
    add_config_options,
    config_files,
    default,
    dump,
    settings,
)
from posetracker.core.errors import InputError, PosetrackerError
from posetracker.core.outputs import POLICY
from posetracker.tracker.config import TrackerKind

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track", help="track people across frames and write PoseTrack JSON",
        description="Track poses across frames (PoseFlow by default) and write PoseTrack JSON. "
        "With --poses, the per-frame poses come from a file: COCO keypoint results, AlphaPose "
        "results, or a PoseTrack 2017/2018 file whose track ids are ignored.", epilog=POLICY)
    p.add_argument("video", nargs="?", metavar="VIDEO",
                   help="video file, image folder or webcam to estimate and track (pipeline)")
    p.add_argument("--poses", metavar="POSES.json",
                   help="per-frame poses to track instead of estimating them")
    p.add_argument("--frames", metavar="DIR",
                   help="the frames as images (matched by file name, else in name order); "
                   "enables the trackers' ORB correspondence terms")
    p.add_argument("-o", "--output", metavar="tracked.json",
                   help="output PoseTrack JSON file (required with --poses)")
    add_format_option(p, default=None, default_text=default("pipeline.output.format"),
                      setting="pipeline.output.format", video_mode=True)
    p.add_argument("--tracker", choices=get_args(TrackerKind), default=None,
                   help=f"tracker (tracker.kind, default: the config's kind, "
                   f"{default('tracker.kind')})")
    p.add_argument("--tracker-config", metavar="YAML",
                   help="the tracker section as its own file (TrackerConfig as YAML; over "
                   "--config, under the flags and --set; default: none)")
    _add_video_arguments(p)
    p.set_defaults(func=run)


def _add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The VIDEO-mode options (``-o``, ``--format``, ``--tracker``, ``--tracker-config`` are
    shared with ``--poses``: :func:`register` adds them)."""
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
    g.add_argument("--backend", choices=("auto", "torch", "openvino", "onnxruntime"),
                   help="what runs the models' graphs (estimator.backend, default: "
                   f"{default('estimator.backend')} = torch on CUDA, else the fastest installed "
                   "CPU runtime for each model)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="pose estimator arithmetic (estimator.precision, default: "
                   f"{default('estimator.precision')} = bf16 on CPUs with AMX, else fp32; fp16 on CUDA)")
    g.add_argument("--half", action="store_true", default=None,
                   help="the same as --precision fp16 (CUDA; default: off)")
    g.add_argument("--det-batch", type=int, metavar="N", help="frames per detector call "
                   f"(estimator.frame_batch, default: {default('estimator.frame_batch')})")
    g.add_argument("--pose-batch", type=int, metavar="N", help="people per pose-estimator call, "
                   "gathered across frames (estimator.sppe.batch_size, default: "
                   f"{default('estimator.sppe.batch_size')})")
    from posetracker.app.settings import ASSOCIATIONS

    g.add_argument("--association", choices=ASSOCIATIONS, help="remove duplicate poses "
                   "by RMPE pose NMS, CrowdPose joint-candidate association, or auto: the "
                   "association on frames whose proposals overlap, pose NMS elsewhere "
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
    return settings(args, "track", extra=extra)


def run(args) -> int:
    if args.poses:
        # --poses tracks the poses a file already holds; nothing of VIDEO mode would be read or
        # written, so a VIDEO (or a VIDEO-mode output) given with it is refused, not ignored
        extra = [what for what, given in (("VIDEO", args.video), ("--render", args.render),
                                          ("--csv", args.csv), ("--jsonl", args.jsonl)) if given]
        if extra:
            raise InputError(f"--poses tracks the poses in {args.poses}; {', '.join(extra)} "
                             "belong to VIDEO mode (estimate, then track) and are not used with "
                             "it: drop them, or drop --poses (images for --poses: --frames DIR)")
        return run_poses(args)
    if args.dump_config:
        return dump(load_settings(args))
    if args.video:
        return run_video(args)
    raise InputError("give a VIDEO to track, or --poses POSES.json with -o tracked.json")


def _progress(total: int | None, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", dynamic_ncols=True, leave=False,
                disable=quiet or not sys.stderr.isatty())


def run_video(args: argparse.Namespace) -> int:
    """The VIDEO mode: estimate and track a video through
    :meth:`posetracker.app.api.PoseTracker.track_to`; returns the exit status."""
    from posetracker.app.api import PoseTracker

    config = load_settings(args)
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

    started = time.time()
    try:
        summary = tracker.track_to(args.video, args.output, jsonl=jsonl, render=args.render,
                                   csv=args.csv, start=args.start_frame,
                                   max_frames=args.max_frames, stride=args.stride,
                                   progress=progress, inputs=config_files(args))
    except BaseException as e:
        if bar is not None:
            bar.close()
            jl = tracker.jsonl_path(args.output, jsonl)
            # offered to a stopped run (an error is its one line) that streamed frames (a run
            # that read none writes no stream)
            if isinstance(e, KeyboardInterrupt) and jl is not None and not args.quiet \
                    and jl.is_file() and jl.stat().st_mtime >= started and jl.stat().st_size:
                print(f"posetracker: stopped; finished frames are in {jl} "
                      f"(posetracker convert jsonl {jl} {args.output} writes them as "
                      f"{Path(args.output).name})", file=sys.stderr)
        raise
    bar.close()
    if not args.quiet:
        print(f"{summary.output}: {summary.text()}", file=sys.stderr)
    return 0


def read_poses_file(path: str):
    """A :class:`VideoPoses` without track ids from a results list or a PoseTrack file."""
    from posetracker.io.formats.alphapose import read_results_video
    from posetracker.io.formats.coco import load_json
    from posetracker.io.formats.posetrack import read_posetrack

    p = Path(path)
    data = load_json(p)
    if isinstance(data, list):
        video = read_results_video(p)
    elif isinstance(data, dict):
        video = read_posetrack(p)
    else:
        raise InputError(f"{p}: expected a results list or a PoseTrack object")
    frames = [dataclasses.replace(f, poses=f.poses.with_track_ids(None)) for f in video.frames]
    return dataclasses.replace(video, frames=frames)


def frame_images(video, frames_dir: str) -> list[Path]:
    """One image path per frame of ``video``: by file name when frames name their images, else the
    folder's images in name order (their count must match)."""
    from posetracker.io.sources import natural_key

    d = Path(frames_dir)
    if not d.is_dir():
        raise InputError(f"{d}: no such folder")
    files = sorted((f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda f: natural_key(f.name))
    if all(f.image for f in video.frames):
        by_name = {f.name: f for f in files}
        out = []
        for fr in video.frames:
            hit = by_name.get(Path(fr.image).name)
            if hit is None:
                raise InputError(f"{d}: no image {Path(fr.image).name} for frame {fr.index}")
            out.append(hit)
        return out
    if len(files) != len(video.frames):
        raise InputError(f"{d}: {len(files)} images for {len(video.frames)} frames")
    return files


def _read_images(paths: list[Path]):
    """BGR frames, as the trackers' ORB terms take them (any file name: read_image decodes bytes
    that Python read; OpenCV's own imread crashes on a name that is not UTF-8)."""
    import numpy as np

    from posetracker.io.sources import read_image

    for p in paths:
        yield np.ascontiguousarray(read_image(p)[..., ::-1])


def run_poses(args) -> int:
    """The ``--poses`` mode: track the poses of a file and write them in ``--format`` (default:
    the default of ``pipeline.output.format``), without the run's metadata."""
    from posetracker.core.outputs import claim_outputs
    from posetracker.io.formats.output_formats import OUTPUT_FORMATS
    from posetracker.io.sinks import meta_path

    if not args.output:
        raise InputError("--poses needs -o tracked.json")
    fmt = OUTPUT_FORMATS.get(args.format or default("pipeline.output.format"))
    if fmt.video_only:
        writable = " or ".join(f.name for f in OUTPUT_FORMATS if not f.video_only)
        raise InputError(f"--format {fmt.name} is for VIDEO mode; --poses writes {writable}")
    claim = claim_outputs({"-o": args.output, "-o metadata": meta_path(args.output)},
                          [args.poses, args.frames, *config_files(args)],
                          folder_suffixes=IMAGE_SUFFIXES)
    with claim:
        return _track_poses(args, fmt)


def _track_poses(args, fmt) -> int:
    """``track --poses`` once its output is claimed."""
    from posetracker.io.sinks import meta_path
    from posetracker.tracker import make_tracker, track_frames

    # the ``tracker`` section of the same settings as VIDEO mode (``--config`` <
    # ``--tracker-config`` < ``--tracker`` < ``--set``)
    cfg = load_settings(args).tracker
    video = read_poses_file(args.poses)
    images = _read_images(frame_images(video, args.frames)) if args.frames else None
    tracker = make_tracker(cfg)
    start = time.perf_counter()
    tracked = track_frames(tracker, (f.poses for f in video.frames), images)
    seconds = time.perf_counter() - start
    if len(tracked) != len(video.frames):
        raise PosetrackerError(f"tracker returned {len(tracked)} frames for {len(video.frames)}")
    frames = [dataclasses.replace(f, poses=t) for f, t in zip(video.frames, tracked)]
    out = dataclasses.replace(video, frames=frames,
                              meta={**video.meta, "tracker": cfg.kind})
    fmt.write(out, Path(args.output), derive_head=False, min_score=0.0)
    meta_path(args.output).unlink(missing_ok=True)  # an earlier coco run's, stale now
    ids = {int(i) for t in tracked for i in t.track_ids}
    print(f"{args.output}: {len(frames)} frames, {sum(len(t) for t in tracked)} poses, "
          f"{len(ids)} tracks ({cfg.kind}, {len(frames) / max(seconds, 1e-9):.0f} frames/s"
          f"{' with images' if args.frames else ''})", file=sys.stderr)
    return 0
