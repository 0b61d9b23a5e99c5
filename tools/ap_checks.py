"""Two checks behind the estimator's settings on COCO-layout data (figures: docs/models.md, "More
people found in crowds").

``splits GT A.json B.json``: is B's keypoint AP above A's beyond the noise of a small set? Both
results are scored on many random halves of the images (the same halves for both), and the
share of halves on which B wins is printed with the mean and spread of the difference.

``grouping GT IMAGES``: the pose side's cheap settings (how the person score ranks the poses,
pose NMS ``eta``) without rerunning the pose model: the per-box poses are computed once with
``estimate``'s settings and pose NMS off, as ``tools/detection_policy.py`` does, then each
score and ``eta`` is applied to them and scored.

Examples::

    python tools/ap_checks.py splits $GT base.json flip.json
    python tools/ap_checks.py grouping $GT $G/val2017
"""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import replace

import numpy as np

# The person scores compared: detector score b and mean joint score k (the setting's is b * k).
SCORES = {"box_x_kpt": lambda b, k: b * k, "box_x_kpt^2": lambda b, k: b * k ** 2,
          "box^2_x_kpt": lambda b, k: b ** 2 * k}


def _keypoint_ap(gt, results, image_ids) -> float:
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, results, "keypoints")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def splits(args: argparse.Namespace) -> None:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(args.gt)
        a, b = gt.loadRes(args.a), gt.loadRes(args.b)
    ids = gt.getImgIds()
    rng = np.random.default_rng(args.seed)
    diff = []
    for _ in range(args.rounds):
        half = rng.choice(ids, len(ids) // 2, replace=False)
        diff.append(_keypoint_ap(gt, b, half) - _keypoint_ap(gt, a, half))
    d = np.array(diff)
    print(f"AP {args.b} - {args.a}: all images {_keypoint_ap(gt, b, ids) - _keypoint_ap(gt, a, ids):+.4f}; "
          f"{args.rounds} halves: mean {d.mean():+.4f}, sd {d.std():.4f}, B ahead on {(d > 0).mean():.0%}")


def grouping(args: argparse.Namespace) -> None:
    from posetracker.app.build import build_estimator
    from posetracker.app.commands.estimate_cmd import estimate_coco_images
    from posetracker.app.settings import AppConfig
    from posetracker.estimators.fit_nms import apply_nms
    from posetracker.evaluation.coco import evaluate_coco
    from posetracker.io.formats.coco import read_coco_gt

    config = replace(AppConfig().estimate.estimator, device="cpu")
    estimator = build_estimator(replace(config, nms=replace(config.nms, mode="none")))
    dataset = read_coco_gt(args.gt)
    saved = estimate_coco_images(estimator, dataset, args.images, config.frame_batch)
    for name, score in SCORES.items():
        rescored = {i: replace(p, scores=score(p.box_scores, estimator.joint_scores(
            p.keypoint_scores))) for i, p in saved.items()}
        for eta in args.eta:
            nms = replace(config.nms, eta=eta)
            ap = float(evaluate_coco(dataset, apply_nms(rescored, nms))["AP"].iloc[0])
            print(f"score {name}, eta {eta}: keypoint AP {ap:.4f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="check", required=True)
    s = sub.add_parser("splits", help="B's keypoint AP against A's on random halves")
    s.add_argument("gt")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--rounds", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=splits)
    g = sub.add_parser("grouping", help="person scores and pose NMS eta on saved per-box poses")
    g.add_argument("gt")
    g.add_argument("images")
    g.add_argument("--eta", type=float, nargs="+", default=[4.0, 6.0, 9.0])
    g.set_defaults(func=grouping)
    args = p.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
