"""Which of the detector's low-scored boxes the screen (``EstimatorConfig.screen``) should drop:
the pose model's and the small model's person score of every box, and what each rule would cost
and lose; then, with ``--track``, ``posetracker track``'s output with and without the screen.

1. Run the ``track`` estimator without pose NMS and without the screen on every frame, once with
   the pose model and once with the small model in its place: the same boxes (the detector is
   deterministic), two person scores per box (detector score x mean joint score).
2. For each rule (``--below`` x ``--min-score``): boxes screened and passed per frame, the boxes
   whose pose-model person score reaches ``pipeline.min_pose_score`` that the rule would drop
   ("lost"), and the pose-model work per frame in crop-equivalents (a screened box costs the
   small model's share of a pose-model crop, measured in step 1 as process CPU time).
3. ``--track``: the video tracked end to end (``track``'s settings, the default video mode) with
   the screen off and with ``--screen``: pose-model calls and people per frame, ids, and the
   screened run's poses matched to the other's at OKS >= 0.5 / 0.9 (``bench video``'s matching).

Example (figures: docs/models.md, "Screening low-scored boxes")::

    python tools/screen_policy.py ../shared/data/videos/street_crowd.avi --below 0.22,0.25,0.3 \\
        --min-score 0.06,0.08,0.1 --track 0.25,0.1
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def scores(source: str, small: str, max_frames: int | None) -> tuple[np.ndarray, int, float]:
    """Step 1: per box ``(box score, pose-model person score, small-model person score)``, the
    frames, and the small model's CPU time per crop as a share of the pose model's."""
    from posetracker.app.build import build_estimator
    from posetracker.app.settings import AppConfig
    from posetracker.io.sources import open_source

    config = AppConfig().estimator
    config = replace(config, nms=replace(config.nms, mode="none"), device="cpu",
                     screen=replace(config.screen, model=""))
    big = build_estimator(config, threads=1)
    little = build_estimator(replace(config, sppe=replace(config.sppe, model=small)), threads=1)
    rows, cpu = [], {"big": 0.0, "small": 0.0}
    for f in open_source(source, max_frames=max_frames):
        boxes = big.detect([f.image])
        person = {}
        for name, est in (("big", big), ("small", little)):
            t = time.process_time()
            (inter,) = est.estimate_people([f.image], boxes, heatmaps=False)
            cpu[name] += time.process_time() - t
            person[name] = est.person_scores(inter.box_scores, inter.keypoint_scores)
        rows.append(np.column_stack([boxes[0][:, 4], person["big"], person["small"]]))
    return np.concatenate(rows), len(rows), cpu["small"] / max(cpu["big"], 1e-9)


def rules(a: np.ndarray, frames: int, share: float, below: list[float], min_scores: list[float],
          min_pose_score: float) -> None:
    """Step 2's table."""
    kept = a[:, 1] >= min_pose_score
    print(f"{frames} frames: {len(a) / frames:.2f} boxes a frame, {kept.sum() / frames:.2f} with a "
          f"person score >= {min_pose_score}; a small-model crop costs {share:.2f} of a pose-model crop")
    print("below  min_score  screened/frame  passed/frame  lost (of kept)  pose-model work/frame")
    for b in below:
        for m in min_scores:
            low = a[:, 0] < b
            passed = low & (a[:, 2] >= m)
            work = (len(a) - low.sum() + passed.sum() + share * low.sum()) / frames
            print(f"{b:5.2f}  {m:9.2f}  {low.sum() / frames:14.2f}  {passed.sum() / frames:12.2f}  "
                  f"{(low & kept & ~passed).sum():5d} ({kept.sum()})  {work:10.2f} "
                  f"(unscreened {len(a) / frames:.2f})")


def track(source: Path, small: str, below: float, min_score: float) -> None:
    """Step 3."""
    from posetracker.app.api import build_stages
    from posetracker.app.benchmarks.video import ids_text, match_counts, run_once
    from posetracker.app.settings import AppConfig

    base = AppConfig()
    runs = {}
    for name, model in (("off", ""), ("on", small)):
        screen = replace(base.estimator.screen, model=model, below=below, min_score=min_score)
        config = replace(base, estimator=replace(base.estimator, screen=screen))
        stages, _ = build_stages(config)
        poses, work = run_once(source, stages, config, 0, 10**9)
        runs[name] = poses
        print(f"screen {name}: {work['crops/frame']:.2f} pose-model calls and "
              f"{sum(map(len, poses)) / len(poses):.3f} people a frame, ids {ids_text(poses)}")
    c = match_counts(runs["off"], runs["on"])
    print(f"screened run against the other: {c['m50']} / {c['m90']} of {c['ref']} poses matched at "
          f"OKS 0.5 / 0.9; {c['other'] - c['other50']} poses of its {c['other']} unmatched")


def main() -> int:
    from posetracker.app.settings import AppConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a video")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--screen", default="tinypose-128x96", help="the small pose model")
    p.add_argument("--below", default="0.22,0.25,0.3")
    p.add_argument("--min-score", default="0.06,0.08,0.1")
    p.add_argument("--track", metavar="BELOW,MIN_SCORE", help="also step 3 with this rule")
    args = p.parse_args()
    floats = lambda text: [float(x) for x in text.split(",")]  # noqa: E731 - local shorthand
    a, frames, share = scores(args.source, args.screen, args.max_frames)
    rules(a, frames, share, floats(args.below), floats(args.min_score),
          AppConfig().pipeline.min_pose_score)
    if args.track:
        below, min_score = floats(args.track)
        track(Path(args.source), args.screen, below, min_score)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
