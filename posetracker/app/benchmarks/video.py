"""``posetracker bench video``: video mode (proposals, keyframe detection) against every-frame
detection, without ground truth.

For each video, ``track`` runs (threaded, models loaded once) in each mode:

- ``frame``: every frame handled as the first (no proposals; the reference);
- ``1``, ``2``, ``4``: proposals, the detector every 1, 2, 4 frames (``pipeline.detect_every``);
- ``adaptive``: proposals, adaptive keyframes, the detector every ``--adaptive-every`` frames at
  the latest.

and reports

(a) frames/s and people per frame of each mode, and the work behind them, which the load of
    the machine does not change: detector calls and pose crops per frame, and the process's
    CPU milliseconds per frame (all its threads);
(b) agreement with the ``frame`` run: the share of its poses matched (one-to-one, greedily by
    OKS, per frame) at OKS >= 0.5 and >= 0.9, its poses the mode lacks, and the mode's poses
    left over, as a share of the ``frame`` run's poses: *misplaced* (paired one-to-one with a
    left-over reference pose by keypoint-extent IoU >= 0.5: the same person, another pose,
    already counted as lacking) and *extra* (a person the reference has not: a ghost, a
    duplicate, or someone the reference dropped); the track ids and frames per id;
(c) detector dropout: a wrapper around the detector (here, never in the product) removes a
    seeded random 20 % or 40 % of its boxes on every frame, or all of its boxes in 5-frame bursts
    (frames 5-9, 25-29, 45-49, ...: a quarter of the frames); for each mode, the share of that
    mode's intact run's poses the run with dropout recovers (OKS >= 0.5), its misplaced and its
    extra poses.

OKS: the COCO formula over the reference pose's joints scored >= 0.5 (``output.keypoint_threshold``;
all its joints when none is), the area from the reference pose's joint extent.

Each mode runs on models loaded with the threads per call that ``track`` gives that mode
(:meth:`posetracker.app.settings.PipelineConfig.torch_threads`: one per call when the pose workers
and the detector share the cores, every core when the video loop runs most crops): a native
runtime's threads are fixed when a model loads, so one set of models for every mode would time
some modes with the wrong threads. Modes of the same setting share one loaded set.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from posetracker.app.benchmarks import int_list, shared_videos
from posetracker.app.benchmarks.pipeline import DEFAULT_VIDEOS
from posetracker.core.boxes import box_iou, greedy_pairs
from posetracker.core.coco import oks_terms
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
    p.add_argument("--seeds", default="0",
                   help="comma-separated dropout seeds; each dropout run is made once per seed "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, metavar="N", help="one seed (same as --seeds N)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="settings override for every run, e.g. --set tracker.kind=iou")
    p.add_argument("--out", metavar="FILE.json", help="also write the rows as JSON")
    p.set_defaults(func=run)


# -- the detector dropout (benchmark only) -----------------------------------------------------------

class DropoutStages:
    """Pipeline stages whose detector loses boxes: ``rate`` (a share, each box dropped at random,
    seeded by ``seed`` and the frame's index) or ``"burst"`` (every box, in 5-frame bursts on a
    quarter of the frames; ``seed`` s moves them s bursts earlier, so seeds 0-3 together cover
    every frame once).
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
                # seed s shifts the bursts by s bursts: seeds 0-3 together cover every frame
                shifted = i + self.seed * _BURST
                drop = np.full(len(boxes), (shifted // _BURST) % (_BURST_PERIOD // _BURST) == 1)
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
    e = np.nan_to_num(oks_terms(ref.keypoints, other.keypoints, area, ref.schema.sigma_array()),
                      nan=0.0)                                                  # (n, m, k)
    vis = (ref.keypoint_scores >= min_score) & ref.present
    vis = np.where(vis.any(1, keepdims=True), vis, ref.present)  # no joint that sure: all joints
    return (e * vis[:, None]).sum(-1) / np.maximum(vis.sum(1), 1)[:, None]


def match_counts(ref: list[FramePoses], other: list[FramePoses]) -> dict[str, int]:
    """Reference poses matched at OKS >= 0.5 and >= 0.9 (one-to-one, greedily by OKS, per
    frame), all reference poses, ``other``'s poses matched at 0.5, and of ``other``'s poses left
    over those ``misplaced`` (paired one-to-one, greedily, with a left-over reference pose at
    keypoint-extent IoU >= 0.5: the same person with another pose)."""
    n = m50 = m90 = misplaced = 0
    for r, o in zip(ref, other):
        oks = oks_matrix(r, o)
        pairs = greedy_pairs(oks, 0.5)
        n += len(r)
        m50 += len(pairs)
        m90 += sum(oks[i, j] >= 0.9 for i, j in pairs)
        left_r = np.setdiff1d(np.arange(len(r)), [i for i, _ in pairs])
        left_o = np.setdiff1d(np.arange(len(o)), [j for _, j in pairs])
        if len(left_r) and len(left_o):
            misplaced += len(greedy_pairs(box_iou(keypoint_boxes(r.keypoints[left_r]),
                                                  keypoint_boxes(o.keypoints[left_o])), 0.5))
    return {"ref": n, "m50": m50, "m90": int(m90), "other": sum(len(o) for o in other),
            "other50": m50, "misplaced": misplaced}


def _shares(c: dict[str, int], recovered: bool) -> dict[str, float]:
    """The percentages of a row from :func:`match_counts`, as shares of the reference poses."""
    pct = lambda k: 100 * k / max(c["ref"], 1)  # noqa: E731 - local shorthand
    left = c["other"] - c["other50"]
    head = ({"recovered %": pct(c["m50"])} if recovered else
            {"agree@.5 %": pct(c["m50"]), "agree@.9 %": pct(c["m90"]),
             "lacks %": pct(c["ref"] - c["m50"])})
    return {**head, "misplaced %": pct(c["misplaced"]), "extra %": pct(left - c["misplaced"])}


class CountingStages:
    """Pipeline stages that count the work (benchmark only): frames the detector ran on, boxes
    the pose model cropped. Everything else is the wrapped stages'."""

    def __init__(self, stages):
        self.stages, self.detected, self.crops = stages, 0, 0

    def __getattr__(self, name: str):
        return getattr(self.stages, name)

    def detect(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.detected += len(images)
        return self.stages.detect(images)

    def estimate(self, images: Sequence[np.ndarray], detections: Sequence[np.ndarray]) -> list:
        self.crops += sum(len(d) for d in detections)
        return self.stages.estimate(images, detections)


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
             ) -> tuple[list[FramePoses], dict[str, float]]:
    """One tracked run: every frame's poses, and frames/s, detector calls, pose crops and
    process CPU milliseconds per frame."""
    from posetracker.app.pipeline import PipelineOptions, iter_pipeline
    from posetracker.io.sources import open_source
    from posetracker.tracker.factory import make_tracker

    src = open_source(str(video), start_frame=start, max_frames=max_frames)
    index = getattr(stages, "frame_index", None)
    counting = CountingStages(stages)
    t0, c0 = time.perf_counter(), time.process_time()
    out = [p for _, p in iter_pipeline(indexed(src, index), counting,
                                       make_tracker(config.tracker),
                                       PipelineOptions.from_config(config))]
    n = max(len(out), 1)
    return out, {"fps": len(out) / max(time.perf_counter() - t0, 1e-9),
                 "det/frame": counting.detected / n, "crops/frame": counting.crops / n,
                 "cpu ms/frame": 1000 * (time.process_time() - c0) / n}


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


class ModeStages:
    """The loaded models of each thread setting (``track``'s per mode), loaded on first use and
    warmed up on one frame, as ``bench pipeline`` does: a model's first calls pay one-off costs
    (compiling for the input size, kernel selection) that belong to loading, not to frames/s."""

    def __init__(self, build: Callable[[Any], Any]):
        self.build, self.loaded = build, {}
        self.device = ""

    def __call__(self, config, video: Path, start: int) -> Any:
        from posetracker.app.pipeline import PipelineOptions

        threads = PipelineOptions.from_config(config).torch_threads
        if threads not in self.loaded:
            self.loaded[threads], self.device = self.build(config)
            run_once(video, self.loaded[threads], config, start, 1)
        return self.loaded[threads]


def video_rows(video: Path, stages_for: ModeStages, config, args, seeds: list[int]
               ) -> list[dict]:
    """The rows of one video: each mode intact, then the dropout runs, once per seed of
    ``seeds`` (against the one intact run of their mode). ``stages_for``: the stages to run a
    mode's settings with (:class:`ModeStages`)."""
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    intact: dict[str, list[FramePoses]] = {}
    rows = []
    for mode in modes:
        cfg = mode_config(config, mode, args.adaptive_every)
        poses, work = run_once(video, stages_for(cfg, video, args.start), cfg, args.start,
                               args.max_frames)
        intact[mode] = poses
        rows.append({"video": video.name, "mode": mode, "dropout": "none", "seed": None, **work,
                     "people/frame": sum(map(len, poses)) / max(len(poses), 1),
                     "ids": ids_text(poses)})
    ref = intact.get("frame")
    for row in rows:
        if ref is not None:
            row.update(_shares(match_counts(ref, intact[row["mode"]]), recovered=False))
    for drop in [d.strip() for d in args.dropouts.split(",") if d.strip()]:
        for mode in [m.strip() for m in args.dropout_modes.split(",") if m.strip()]:
            if mode not in intact:
                continue
            cfg = mode_config(config, mode, args.adaptive_every)
            for seed in seeds:
                dropping = DropoutStages(stages_for(cfg, video, args.start), _rate(drop), seed)
                poses, work = run_once(video, dropping, cfg, args.start, args.max_frames)
                rows.append({"video": video.name, "mode": mode, "dropout": drop, "seed": seed,
                             **work, "people/frame": sum(map(len, poses)) / max(len(poses), 1),
                             "ids": ids_text(poses),
                             **_shares(match_counts(intact[mode], poses), recovered=True)})
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
    seeds = [args.seed] if args.seed is not None else int_list("--seeds", args.seeds)
    config = load_app_config(None, args.set)
    videos = [Path(v) for v in args.videos] or shared_videos(DEFAULT_VIDEOS)
    for v in videos:
        if not v.is_file():
            raise InputError(f"{v}: no such video")
    stages_for = ModeStages(build_stages)
    rows = []
    for v in videos:
        rows += video_rows(v, stages_for, config, args, seeds)
        df = pd.DataFrame(rows).astype({"seed": "Int64"})  # intact rows: no seed
        print(f"\n{v.name}: frames {args.start}-{args.start + args.max_frames - 1}, "
              f"{stages_for.device}, "
              f"tracker {config.tracker.kind}; agreement against mode 'frame', recovery "
              "against the same mode without dropout")
        print(format_table(df[df.video == v.name].drop(columns="video"), digits=2))
    if args.out:
        save_report(df, args.out)  # the last video's table holds every video's rows
    return 0
