"""``posetracker bench video``: video mode (proposals, keyframe detection) against every-frame
detection, without ground truth.

For each video, ``track`` runs (threaded, models loaded once) in each mode:

- ``frame``: every frame handled as the first (no proposals; the reference);
- ``1``, ``2``, ``4``: proposals, the detector every 1, 2, 4 frames (``pipeline.detect_every``);
- ``adaptive``: proposals, adaptive keyframes, the detector every ``--adaptive-every`` frames at
  the latest.

and reports

(a) frames/s and people per frame of each mode;
(b) agreement with the ``frame`` run: the share of its poses matched (one-to-one, greedily by
    OKS, per frame) at OKS >= 0.5 and >= 0.9, its poses the mode lacks, and the mode's extra
    poses (unmatched at 0.5), both as a share of the ``frame`` run's poses; the track ids and
    frames per id;
(c) detector dropout: a wrapper around the detector (here, never in the product) removes a
    seeded random 20 % or 40 % of its boxes on every frame, or all of its boxes in 5-frame bursts
    (frames 5-9, 25-29, 45-49, ...: a quarter of the frames); for each mode, the share of that
    mode's intact run's poses the run with dropout recovers (OKS >= 0.5) and its extra poses.

OKS: the COCO formula over the reference pose's joints scored >= 0.5 (``output.keypoint_threshold``;
all its joints when none is), the area from the reference pose's joint extent.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from posetracker.app.benchmarks import shared_videos
from posetracker.app.benchmarks.pipeline import DEFAULT_VIDEOS
from posetracker.core.poses import FramePoses, keypoint_boxes

MODES = ("frame", "1", "2", "4", "adaptive")
DROPOUTS = ("none", "20%", "40%", "burst")
_BURST, _BURST_PERIOD = 5, 20  # frames without any box, and how often


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "video", help="video mode: frames/s, agreement with every-frame detection, recovery "
        "under detector dropout",
        description="Track videos with predicted proposals and keyframe detection against "
        "every-frame detection: frames/s, agreement (OKS), recovery of poses when the detector "
        "drops boxes, ids per person. No ground truth needed.")
    p.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="videos (default: the three in ../shared/data/videos)")
    p.add_argument("--start", type=int, default=0, metavar="F", help="first frame (default: 0)")
    p.add_argument("--max-frames", type=int, default=60, metavar="N",
                   help="frames per video (default: %(default)s)")
    p.add_argument("--modes", default=",".join(MODES),
                   help="comma-separated modes (default: %(default)s)")
    p.add_argument("--dropout-modes", default="frame,1,adaptive",
                   help="modes also run with detector dropout (default: %(default)s)")
    p.add_argument("--dropouts", default="20%,40%,burst",
                   help="dropouts (20%%, 40%%, any share, burst; default: %(default)s)")
    p.add_argument("--adaptive-every", type=int, default=8, metavar="N",
                   help="adaptive mode: the detector every N frames at the latest "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="dropout seed (default: %(default)s)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="settings override for every run, e.g. --set tracker.kind=iou")
    p.add_argument("--out", metavar="FILE.json", help="also write the rows as JSON")
    p.set_defaults(func=run)


# -- the detector dropout (benchmark only) -----------------------------------------------------------

class DropoutStages:
    """Pipeline stages whose detector loses boxes: ``rate`` (a share, each box dropped at random,
    seeded by ``seed`` and the frame's index) or ``"burst"`` (every box, in 5-frame bursts).
    Everything else is the wrapped stages'. ``frame_index`` maps ``id(image)`` to the frame's index
    (filled by :func:`indexed`, while the image is alive)."""

    def __init__(self, stages, rate: float | str, seed: int):
        self.stages, self.rate, self.seed = stages, rate, seed
        self.frame_index: dict[int, int] = {}

    def __getattr__(self, name: str):
        return getattr(self.stages, name)

    def detect(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for image, boxes in zip(images, self.stages.detect(images)):
            i = self.frame_index[id(image)]
            if self.rate == "burst":
                drop = np.full(len(boxes), (i // _BURST) % (_BURST_PERIOD // _BURST) == 1)
            else:
                drop = np.random.default_rng([self.seed, i]).random(len(boxes)) < self.rate
            out.append(boxes[~drop])
        return out


def indexed(frames, index: dict[int, int] | None) -> Iterator:
    """The frames of ``frames``, recording each image's frame index in ``index``."""
    for f in frames:
        if index is not None:
            index[id(f.image)] = f.index
        yield f


# -- comparing two runs ----------------------------------------------------------------------------------

def oks_matrix(ref: FramePoses, other: FramePoses, min_score: float = 0.5) -> np.ndarray:
    """``(n, m)`` OKS of each ``other`` pose against each ``ref`` pose (COCO's formula over the
    reference's joints scored >= ``min_score``, or all its joints when none is; area: the
    reference's joint extent)."""
    if not len(ref) or not len(other):
        return np.zeros((len(ref), len(other)))
    b = keypoint_boxes(ref.keypoints)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1.0)
    var = (2 * ref.schema.sigma_array()) ** 2
    d2 = ((ref.keypoints[:, None] - other.keypoints[None]) ** 2).sum(-1)  # (n, m, k)
    with np.errstate(invalid="ignore"):
        e = np.where(np.isfinite(d2), np.exp(-d2 / (2 * var * area[:, None, None])), 0.0)
    vis = (ref.keypoint_scores >= min_score) & ref.present
    vis = np.where(vis.any(1, keepdims=True), vis, ref.present)  # no joint that sure: all joints
    return (e * vis[:, None]).sum(-1) / np.maximum(vis.sum(1), 1)[:, None]


def match_counts(ref: list[FramePoses], other: list[FramePoses]) -> dict[str, int]:
    """Reference poses matched at OKS >= 0.5 and >= 0.9 (one-to-one, greedily by OKS, per
    frame), all reference poses, and ``other``'s poses matched at 0.5."""
    n = m50 = m90 = o50 = 0
    for r, o in zip(ref, other):
        oks = oks_matrix(r, o)
        n += len(r)
        while oks.size and oks.max() >= 0.5:
            i, j = np.unravel_index(np.argmax(oks), oks.shape)
            m50 += 1
            m90 += oks[i, j] >= 0.9
            o50 += 1
            oks[i, :], oks[:, j] = -1, -1
    return {"ref": n, "m50": m50, "m90": int(m90), "other": sum(len(o) for o in other),
            "other50": o50}


# -- the runs ------------------------------------------------------------------------------------------------

def mode_config(config, mode: str, adaptive_every: int):
    """The ``pipeline`` settings of a mode."""
    pc = config.pipeline
    if mode == "frame":
        pc = replace(pc, detect_every=1, keyframes="fixed",
                     proposals=replace(pc.proposals, enabled=False))
    elif mode == "adaptive":
        pc = replace(pc, detect_every=adaptive_every, keyframes="adaptive",
                     proposals=replace(pc.proposals, enabled=True))
    else:
        pc = replace(pc, detect_every=int(mode), keyframes="fixed",
                     proposals=replace(pc.proposals, enabled=True))
    return replace(config, pipeline=pc)


def run_once(video: Path, stages, config, start: int, max_frames: int
             ) -> tuple[list[FramePoses], float]:
    """One tracked run: every frame's poses, and frames/s."""
    from posetracker.app.pipeline import PipelineOptions, iter_pipeline
    from posetracker.io.sources import open_source
    from posetracker.tracker.factory import make_tracker

    src = open_source(str(video), start_frame=start, max_frames=max_frames)
    index = getattr(stages, "frame_index", None)
    t0 = time.perf_counter()
    out = [p for _, p in iter_pipeline(indexed(src, index), stages, make_tracker(config.tracker),
                                       PipelineOptions.from_config(config))]
    return out, len(out) / max(time.perf_counter() - t0, 1e-9)


def ids_text(frames: list[FramePoses]) -> str:
    """``{id: frames}`` of a tracked run."""
    ids, counts = np.unique(np.concatenate([f.track_ids for f in frames] or [np.zeros(0)]),
                            return_counts=True)
    return "{" + ",".join(f"{int(i)}:{int(c)}" for i, c in zip(ids, counts)) + "}"


def _rate(text: str) -> float | str:
    from posetracker.core.errors import InputError

    if text == "burst":
        return text
    try:
        return float(text.rstrip("%")) / 100
    except ValueError:
        raise InputError(f"--dropouts {text!r}: a share such as 40%, or burst") from None


def video_rows(video: Path, stages, config, args) -> list[dict]:
    """The rows of one video: each mode intact, then the dropout runs."""
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    intact: dict[str, list[FramePoses]] = {}
    rows = []
    for mode in modes:
        poses, fps = run_once(video, stages, mode_config(config, mode, args.adaptive_every),
                              args.start, args.max_frames)
        intact[mode] = poses
        rows.append({"video": video.name, "mode": mode, "dropout": "none", "fps": fps,
                     "people/frame": sum(map(len, poses)) / max(len(poses), 1),
                     "ids": ids_text(poses)})
    ref = intact.get("frame")
    for row in rows:
        if ref is not None:
            c = match_counts(ref, intact[row["mode"]])
            row.update({"agree@.5 %": 100 * c["m50"] / max(c["ref"], 1),
                        "agree@.9 %": 100 * c["m90"] / max(c["ref"], 1),
                        "lacks %": 100 * (c["ref"] - c["m50"]) / max(c["ref"], 1),
                        "extra %": 100 * (c["other"] - c["other50"]) / max(c["ref"], 1)})
    for drop in [d.strip() for d in args.dropouts.split(",") if d.strip()]:
        for mode in [m.strip() for m in args.dropout_modes.split(",") if m.strip()]:
            if mode not in intact:
                continue
            poses, fps = run_once(video, DropoutStages(stages, _rate(drop), args.seed),
                                  mode_config(config, mode, args.adaptive_every), args.start,
                                  args.max_frames)
            c = match_counts(intact[mode], poses)
            rows.append({"video": video.name, "mode": mode, "dropout": drop, "fps": fps,
                         "people/frame": sum(map(len, poses)) / max(len(poses), 1),
                         "ids": ids_text(poses),
                         "recovered %": 100 * c["m50"] / max(c["ref"], 1),
                         "extra %": 100 * (c["other"] - c["other50"]) / max(c["ref"], 1)})
    return rows


def run(args) -> int:
    import pandas as pd

    from posetracker.app.api import build_stages
    from posetracker.app.settings import load_app_config
    from posetracker.core.errors import InputError
    from posetracker.evaluation.report import format_table, save_report

    for m in args.modes.split(","):
        if m.strip() and m.strip() not in MODES:
            raise InputError(f"--modes: unknown mode {m!r} (known: {', '.join(MODES)})")
    config = load_app_config(None, args.set)
    videos = [Path(v) for v in args.videos] or shared_videos(DEFAULT_VIDEOS)
    for v in videos:
        if not v.is_file():
            raise InputError(f"{v}: no such video")
    stages, device = build_stages(config)
    rows = []
    for v in videos:
        rows += video_rows(v, stages, config, args)
        df = pd.DataFrame(rows)
        print(f"\n{v.name}: frames {args.start}-{args.start + args.max_frames - 1}, {device}, "
              f"tracker {config.tracker.kind}; agreement against mode 'frame', recovery "
              "against the same mode without dropout")
        print(format_table(df[df.video == v.name].drop(columns="video"), digits=1))
    if args.out:
        save_report(pd.DataFrame(rows), args.out)
    return 0
