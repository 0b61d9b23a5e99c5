"""``posetracker track``: track poses across frames and write PoseTrack JSON.

``posetracker track --poses POSES.json [--frames DIR] -o tracked.json`` tracks per-frame poses given
as COCO results, AlphaPose results or a PoseTrack file (its ids are dropped). The ``VIDEO`` form
(estimate poses, then track) belongs to the pipeline and is wired through :func:`run_video`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from posetracker.app.commands import track_video
from posetracker.app.commands.settings_args import default
from posetracker.core.errors import InputError, PosetrackerError
from posetracker.core.fileio import check_writable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track", help="track people across frames and write PoseTrack JSON",
        description="Track poses across frames (PoseFlow by default) and write PoseTrack JSON. "
        "With --poses, the per-frame poses come from a file: COCO keypoint results, AlphaPose "
        "results, or a PoseTrack 2017/2018 file whose track ids are ignored.")
    p.add_argument("video", nargs="?", metavar="VIDEO",
                   help="video file, image folder or webcam to estimate and track (pipeline)")
    p.add_argument("--poses", metavar="POSES.json",
                   help="per-frame poses to track instead of estimating them")
    p.add_argument("--frames", metavar="DIR",
                   help="the frames as images (matched by file name, else in name order); "
                   "enables the trackers' ORB correspondence terms")
    p.add_argument("-o", "--output", metavar="tracked.json",
                   help="output PoseTrack JSON file (required with --poses)")
    p.add_argument("--format", choices=("posetrack18", "posetrack17", "coco"), default=None,
                   help="output format (pipeline.output.format, default: "
                   f"{default('pipeline.output.format')}; coco: VIDEO mode only)")
    p.add_argument("--tracker", choices=("poseflow", "iou", "alphapose", "none"), default=None,
                   help=f"tracker (tracker.kind, default: the config's kind, "
                   f"{default('tracker.kind')})")
    p.add_argument("--tracker-config", metavar="YAML",
                   help="the tracker section as its own file (TrackerConfig as YAML; over "
                   "--config, under the flags and --set; default: none)")
    track_video.add_arguments(p)
    p.set_defaults(func=run)


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
        return track_video.dump(track_video.load_settings(args))
    if args.video:
        return run_video(args)
    raise InputError("give a VIDEO to track, or --poses POSES.json with -o tracked.json")


def run_video(args) -> int:
    """Estimate and track a video (the pipeline's part of this command)."""
    return track_video.run(args)


def load_tracker_config(args):
    """The :class:`posetracker.tracker.config.TrackerConfig` of a ``--poses`` run: the ``tracker``
    section of the same settings as VIDEO mode (``--config`` < ``--tracker-config`` < ``--tracker``
    < ``--set``, keys rooted at the whole settings, e.g. ``tracker.poseflow.link_len=20``)."""
    return track_video.load_settings(args).tracker


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
    from posetracker.io.formats.posetrack import write_posetrack17, write_posetrack18
    from posetracker.tracker import make_tracker, track_frames

    if not args.output:
        raise InputError("--poses needs -o tracked.json")
    if args.format == "coco":
        raise InputError("--format coco is for VIDEO mode; --poses writes PoseTrack files")
    check_writable(args.output, "-o")
    cfg = load_tracker_config(args)
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
    (write_posetrack17 if args.format == "posetrack17" else write_posetrack18)(out, args.output)
    ids = {int(i) for t in tracked for i in t.track_ids}
    print(f"{args.output}: {len(frames)} frames, {sum(len(t) for t in tracked)} poses, "
          f"{len(ids)} tracks ({cfg.kind}, {len(frames) / max(seconds, 1e-9):.0f} frames/s"
          f"{' with images' if args.frames else ''})", file=sys.stderr)
    return 0
