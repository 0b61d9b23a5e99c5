"""``posetracker bench tracking``: trackers on perturbed Bonn ground truth, scored like poseval.

For every noise level, each ground-truth video loses its track ids and is perturbed as a detector
would (:mod:`tracker.perturb`); each tracker tracks the same perturbed poses; the PoseTrack
evaluation scores MOTA, MOTP and counts ID switches against the original annotations. Deterministic
for a given ``--seed``. Tracker speed is the CPU time of the tracking calls alone (one thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

TRACKERS = ("poseflow", "poseflow-nonms", "iou", "alphapose", "none")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tracking", help="trackers on perturbed Bonn PoseTrack ground truth: MOTA, MOTP, frames/s",
        description="Track perturbed Bonn PoseTrack ground truth with each tracker and score it "
        "with the PoseTrack evaluation (MOTA, MOTP, ID switches), per noise level.")
    p.add_argument("--bonn", required=True, metavar="annolist.mat",
                   help="Bonn PoseTrack annotation file, e.g. "
                   "../shared/data/bonn_posetrack/annolist/test/annolist.mat")
    p.add_argument("--noise", default="low,moderate,high",
                   help="comma-separated noise levels: none, low, moderate, high "
                   "(default: %(default)s)")
    p.add_argument("--trackers", default=",".join(TRACKERS),
                   help="comma-separated trackers (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--videos", type=int, default=0, metavar="N",
                   help="use the first N videos only (default: all)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a tracker setting, e.g. --set poseflow.window=12")
    p.add_argument("--speed-video", metavar="VIDEO",
                   help="also time the trackers with ORB on this video's frames resized to "
                   "960x540 (e.g. ../shared/data/videos/two_people.mp4)")
    p.add_argument("--speed-frames", type=int, default=100, metavar="N",
                   help="frames for the speed runs with images (default: %(default)s)")
    p.add_argument("--out", metavar="FILE", help="also write the table: .csv, .json or .md")
    p.set_defaults(func=run)


def tracker_config(name: str, overrides=()):
    """The :class:`TrackerConfig` of a benchmark row (``poseflow-nonms``: PF-NMS off)."""
    from posetracker.config import load_config
    from tracker.config import TrackerConfig

    cfg = load_config(TrackerConfig, None, overrides)
    if name == "poseflow-nonms":
        return dataclasses.replace(cfg, kind="poseflow",
                                   poseflow=dataclasses.replace(cfg.poseflow, nms=False))
    return dataclasses.replace(cfg, kind=name)


def run_benchmark(gt_videos, levels: list[str], trackers: list[str], seed: int,
                  overrides=()):
    """Rows ``{noise, tracker, MOTA, MOTP, AP, ID switches, frames/s}`` for each pair."""
    import pandas as pd

    from evaluation.posetrack import evaluate_videos_per_joint
    from tracker import make_tracker, track_frames
    from tracker.perturb import NOISE_LEVELS, perturb_video

    rows = []
    for level in levels:
        noisy = [perturb_video(v, NOISE_LEVELS[level], seed + i) for i, v in enumerate(gt_videos)]
        for name in trackers:
            tracker = make_tracker(tracker_config(name, overrides))
            preds, seconds, frames = [], 0.0, 0
            for v in noisy:
                start = time.process_time()  # CPU time: steadier than wall time on a busy machine
                out = track_frames(tracker, [f.poses for f in v.frames])
                seconds += time.process_time() - start
                frames += len(out)
                preds.append(dataclasses.replace(
                    v, frames=[dataclasses.replace(f, poses=o) for f, o in zip(v.frames, out)]))
            joints = evaluate_videos_per_joint(gt_videos, preds)
            rows.append({"noise": level, "tracker": name,
                         "MOTA": float(joints["MOTA"].mean()),
                         "MOTP": float(joints["MOTP"].mean()),
                         "AP": float(joints["AP"].mean()),
                         "ID switches": int(joints["ID switches"].sum()),
                         "frames/s": frames / max(seconds, 1e-9)})
    return pd.DataFrame(rows).set_index(["noise", "tracker"])


def walking_people(n_frames: int, n_people: int = 5, width: float = 960.0):
    """Synthetic frames: ``n_people`` walking people (PoseTrack 2017 joints), for speed runs."""
    import numpy as np

    from posetracker.poses import FramePoses
    from posetracker.schemas import POSETRACK17

    rng = np.random.default_rng(0)
    template = rng.normal(0, 40, (POSETRACK17.num_keypoints, 2)) * (0.5, 1.5)
    frames = []
    for t in range(n_frames):
        kp = np.stack([template + (60 + (width - 120) * (i + 0.5) / n_people + 1.5 * t
                                   * (-1) ** i, 270) for i in range(n_people)])
        kp = kp + rng.normal(0, 2, kp.shape)
        frames.append(FramePoses.from_keypoints(kp, np.full(kp.shape[:2], 0.9), POSETRACK17))
    return frames


def speed_rows(trackers: list[str], n_frames: int = 1000, images=None, overrides=()):
    """CPU frames/s of each tracker on 5 walking people per frame (with ``images``: one per frame,
    ORB on)."""
    from tracker import make_tracker, track_frames

    frames = walking_people(len(images) if images is not None else n_frames)
    rows = []
    for name in trackers:
        tracker = make_tracker(tracker_config(name, overrides))
        start = time.process_time()
        track_frames(tracker, frames, images)
        rows.append({"tracker": name, "images": "960x540 + ORB" if images is not None else "none",
                     "frames": len(frames),
                     "frames/s": len(frames) / max(time.process_time() - start, 1e-9)})
    return rows


def read_speed_frames(path: str, n: int, size=(960, 540)):
    """The first ``n`` frames of a video resized to ``size`` (BGR uint8)."""
    import cv2

    from posetracker.errors import InputError

    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        raise InputError(f"{path}: cannot read video frames")
    return frames


def run(args) -> int:
    from evaluation.report import format_table, save_report
    from posetracker.errors import InputError
    from posetracker.formats.bonn import read_bonn_mat
    from tracker.perturb import NOISE_LEVELS

    levels = [s.strip() for s in args.noise.split(",") if s.strip()]
    trackers = [s.strip() for s in args.trackers.split(",") if s.strip()]
    for lv in levels:
        if lv not in NOISE_LEVELS:
            raise InputError(f"unknown noise level {lv!r} (known: {', '.join(NOISE_LEVELS)})")
    for tr in trackers:
        if tr not in TRACKERS:
            raise InputError(f"unknown tracker {tr!r} (known: {', '.join(TRACKERS)})")
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # one core: ORB timings are not spread over threads
    videos = read_bonn_mat(args.bonn)
    if args.videos > 0:
        videos = videos[:args.videos]
    df = run_benchmark(videos, levels, trackers, args.seed, args.set)
    n_frames = sum(len(v) for v in videos)
    print(f"{len(videos)} videos, {n_frames} frames, seed {args.seed}; MOTA/MOTP/AP in percent "
          f"(PoseTrack evaluation, mean over joints); ID switches summed over joints")
    print(format_table(df.reset_index()))
    sys.stdout.flush()
    if args.out:
        save_report(df.reset_index(), args.out)
    import pandas as pd

    speed = speed_rows(trackers, overrides=args.set)
    if args.speed_video:
        images = read_speed_frames(args.speed_video, args.speed_frames)
        speed += speed_rows([t for t in trackers if t in ("poseflow", "alphapose")],
                            images=images, overrides=args.set)
    print("\nSpeed: 5 walking people per frame, CPU time of the tracking calls, one thread")
    print(format_table(pd.DataFrame(speed), digits=1))
    return 0
