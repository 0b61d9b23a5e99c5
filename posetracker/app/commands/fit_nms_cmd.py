"""``posetracker fit-nms``: fit the parametric pose NMS parameters on COCO-layout validation data
(coordinate search, two parameters at a time, maximising keypoint AP) and write them to a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from posetracker.app.commands.estimate_cmd import (add_estimator_options, estimate_coco_images,
                                                estimator_config, set_threads)
from posetracker.core.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-nms", help="fit the pose NMS parameters on validation images to maximise AP",
        description="Run the estimator once without pose NMS on the validation images, then search "
        "sigma1, sigma2, lam, eta (two at a time) for the highest COCO keypoint AP and write the "
        "estimator config with the fitted nms section.")
    p.add_argument("--gt", required=True, metavar="COCO_JSON", help="validation ground truth")
    p.add_argument("--images", required=True, metavar="DIR", help="folder with the GT's images")
    p.add_argument("-o", "--output", required=True, metavar="YAML", help="config file to write")
    p.add_argument("--rounds", type=int, default=4, help="max rounds per grid (default 4)")
    add_estimator_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from posetracker.estimators.fit_nms import fit_nms
    from posetracker.evaluation.coco import evaluate_coco
    from posetracker.app.build import build_estimator
    from posetracker.core.config import dump_config
    from posetracker.io.formats.coco import read_coco_gt
    from posetracker.io.sinks import atomic_write

    config = estimator_config(args)
    set_threads(args)
    dataset = read_coco_gt(args.gt)
    images = Path(args.images)
    if not images.is_dir():
        raise InputError(f"--images {images}: not a folder")
    estimator = build_estimator(replace(config, nms=replace(config.nms, mode="none")))
    candidates = estimate_coco_images(estimator, dataset, images, config.frame_batch)

    def ap(frames: dict) -> float:
        return float(evaluate_coco(dataset, frames)["AP"].iloc[0])

    no_nms = ap(candidates)
    result = fit_nms(candidates, ap, config.nms, max_rounds=args.rounds,
                     log=lambda line: print("  " + line, file=sys.stderr))
    fitted = replace(config, nms=replace(result.config, mode="rmpe"))
    atomic_write(args.output, lambda tmp: tmp.write_text(dump_config(fitted)))
    print(f"AP without pose NMS {no_nms:.4f}; start {result.start_score:.4f}; fitted "
          f"{result.score:.4f} (sigma1={result.config.sigma1:.4g} sigma2={result.config.sigma2:.4g} "
          f"lam={result.config.lam:.4g} eta={result.config.eta:.4g}; {len(result.history)} "
          f"evaluations) -> {args.output}")
    return 0
