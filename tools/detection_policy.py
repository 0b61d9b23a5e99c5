"""Which detections should reach the pose model: the detector cuts of ``DetectorConfig``
(``conf_threshold``, ``min_box_size``, ``contain_threshold`` / ``contain_score_ratio``) measured at
once for many values, on COCO-mini keypoint AP or on a video's people and track ids.

A box's pose does not depend on the other boxes (its crop is its own, masked outside it), so:

1. Run the estimator once with every box the loosest cut passes (score >= 0.1, >= 4 px; pose NMS
   off): the per-box poses.
2. For each cut, pass the saved boxes through :class:`PersonDetector` with that cut (its steps
   2-3, the detector's own NMS being the same) and keep their poses.
3. Pose NMS; then COCO AP (``--coco``), or the ``pipeline.min_pose_score`` cut and PoseFlow with
   the video's frames (a video): boxes and people per frame, ids and their poses.

This gives what ``posetracker estimate`` + ``eval coco`` and ``posetracker track`` give with the
same cut, without running the pose model once per cut (figures: docs/models.md, "Which detections
reach the pose model").

Examples::

    python tools/detection_policy.py --coco --settings estimate \\
        --cuts conf_threshold=0.1 min_box_size=20 "conf_threshold=0.2 min_box_size=16"
    python tools/detection_policy.py ../shared/data/videos/street_crowd.avi --max-frames 40 \\
        --cuts conf_threshold=0.15 "conf_threshold=0.2 min_box_size=16"
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

COCO = Path("../shared/data/coco_mini_val2017")


class _Saved:
    """A detector that returns the saved boxes of the frames, in order, one call at a time."""

    def __init__(self, boxes: list[np.ndarray]):
        self.boxes = boxes

    def detect(self, images, conf, nms, max_detections):
        return [b[b[:, 4] >= conf][:max_detections] for b in self.boxes]


def cut(poses, detector_config):
    """The per-box poses of one frame whose boxes pass ``detector_config``'s cuts (step 2)."""
    from posetracker.estimators.rmpe import PersonDetector

    boxes = np.column_stack([poses.boxes, poses.box_scores]).reshape(-1, 5)
    # the saved boxes are the runs' fused boxes already: the cuts only (no second flip run)
    kept = PersonDetector(_Saved([boxes]), replace(detector_config, flip=False))(
        [np.zeros((1, 1, 3), np.uint8)])[0]
    rows: list[int] = []
    for k in kept:  # the saved row of each kept box (equal boxes: each row once)
        rows.append(next(int(r) for r in np.flatnonzero((boxes == k).all(1)) if r not in rows))
    return poses.subset(np.array(rows, dtype=np.int64))


def parse_cut(text: str, base) -> object:
    """``"conf_threshold=0.2 min_box_size=16"`` -> ``base`` with those fields replaced."""
    fields = dict(item.split("=", 1) for item in text.split())
    return replace(base, **{k: float(v) for k, v in fields.items()})


def loose_estimator(config):
    """Step 1's estimator: ``config`` with the loosest cut and no pose NMS, on the CPU."""
    from posetracker.app.build import build_estimator

    return build_estimator(replace(
        config, nms=replace(config.nms, mode="none"), device="cpu",
        detector=replace(config.detector, conf_threshold=0.1, min_box_size=4.0,
                         contain_threshold=0.0)))


def coco(args, config) -> None:
    from posetracker.app.commands.estimate_cmd import estimate_coco_images
    from posetracker.estimators.fit_nms import apply_nms
    from posetracker.evaluation.coco import evaluate_coco
    from posetracker.io.formats.coco import read_coco_gt

    dataset = read_coco_gt(COCO / "annotations/person_keypoints_val2017.json")
    saved = estimate_coco_images(loose_estimator(config), dataset, COCO / "val2017",
                                 config.frame_batch)
    for text in args.cuts:
        d = parse_cut(text, config.detector)
        kept = {i: cut(p, d) for i, p in saved.items()}
        ap = float(evaluate_coco(dataset, apply_nms(kept, config.nms))["AP"].iloc[0])
        boxes = np.mean([len(p) for p in kept.values()])
        print(f"{text}: keypoint AP {ap:.4f}, {boxes:.2f} boxes per image")


def video(args, settings) -> None:
    from posetracker.estimators.fit_nms import apply_nms
    from posetracker.io.sources import open_source
    from posetracker.tracker import make_tracker
    from posetracker.tracker.base import track_frames

    config = settings.estimator
    estimator = loose_estimator(config)
    images, saved = [], []
    for f in open_source(args.source, max_frames=args.max_frames):
        images.append(f.image[..., ::-1])  # the trackers' ORB expects BGR, as track passes it
        saved.extend(estimator.estimate([f.image]))
    for text in args.cuts:
        d = parse_cut(text, config.detector)
        kept = [cut(p, d) for p in saved]
        people = []
        for p in kept:
            q = apply_nms({0: p}, config.nms)[0]
            people.append(q.subset(np.flatnonzero(q.scores >= settings.pipeline.min_pose_score)))
        out = track_frames(make_tracker(settings.tracker), people, images)
        ids = Counter(int(i) for f in out for i in f.track_ids)
        print(f"{text}: {np.mean([len(p) for p in kept]):.2f} boxes and "
              f"{np.mean([len(f) for f in out]):.2f} people per frame, {len(ids)} ids "
              f"(poses per id {sorted(ids.values(), reverse=True)})")


def main() -> int:
    from posetracker.app.settings import AppConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", nargs="?", help="a video (default: --coco)")
    p.add_argument("--coco", action="store_true", help="COCO-mini keypoint AP")
    p.add_argument("--settings", choices=("track", "estimate"), default="track",
                   help="the estimator settings (default: track)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--cuts", nargs="+", required=True,
                   help='each a set of DetectorConfig fields, e.g. "conf_threshold=0.2 min_box_size=16"')
    args = p.parse_args()
    if args.coco == bool(args.source):
        p.error("give a video or --coco")
    settings = AppConfig()
    config = settings.estimator if args.settings == "track" else settings.estimate.estimator
    if args.coco:
        coco(args, config)
    else:
        video(args, settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
