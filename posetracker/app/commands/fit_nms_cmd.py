"""``posetracker fit-nms``: fit the parametric pose NMS parameters on COCO-layout validation data
(coordinate search, two parameters at a time, maximising keypoint AP) and write the settings with
them (``estimate.estimator.nms``), a file ``--config`` reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from posetracker.app.commands.estimate_cmd import (
    add_estimator_options,
    app_settings,
    estimate_coco_images,
)
from posetracker.app.commands.settings_args import config_files, dump
from posetracker.core.errors import InputError
from posetracker.core.outputs import POLICY


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-nms", help="fit the pose NMS parameters on validation images to maximise AP",
        description="Run the estimator once without pose NMS on the validation images, then search "
        "sigma1, sigma2, lam, eta (two at a time) for the highest COCO keypoint AP and write the "
        "settings with the fitted estimate.estimator.nms section (use them with --config).",
        epilog=POLICY)
    p.add_argument("--gt", metavar="COCO_JSON", help="validation ground truth (required)")
    p.add_argument("--images", metavar="DIR", help="folder with the GT's images (required)")
    p.add_argument("-o", "--output", metavar="YAML", help="settings file to write (required)")
    p.add_argument("--rounds", type=int, default=4, help="max rounds per grid (default 4)")
    add_estimator_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from posetracker.core.outputs import claim_outputs
    from posetracker.io.sources import IMAGE_SUFFIXES

    settings = app_settings(args)
    if args.dump_config:
        return dump(settings)
    if not (args.gt and args.images and args.output):
        raise InputError("fit-nms needs --gt COCO_JSON, --images DIR and -o YAML")
    images = Path(args.images)
    if not images.is_dir():
        raise InputError(f"--images {images}: not a folder")
    with claim_outputs({"-o": args.output}, [args.gt, images, *config_files(args)],
                       folder_suffixes=IMAGE_SUFFIXES):
        return _fit(args, settings, images)


def _fit(args: argparse.Namespace, settings, images: Path) -> int:
    """``fit-nms`` once its output is claimed."""
    from dataclasses import replace

    from posetracker.app.build import build_estimator
    from posetracker.app.pipeline import torch_threads
    from posetracker.app.settings import dump_app_config
    from posetracker.core.config import replace_path
    from posetracker.estimators.fit_nms import fit_nms
    from posetracker.evaluation.coco import evaluate_coco
    from posetracker.io.formats.coco import read_coco_gt
    from posetracker.io.sinks import atomic_write

    config = settings.estimate.estimator
    dataset = read_coco_gt(args.gt)
    estimator = build_estimator(replace(config, nms=replace(config.nms, mode="none")),
                                threads=settings.estimate.threads)
    with torch_threads(settings.estimate.threads):
        candidates = estimate_coco_images(estimator, dataset, images, config.frame_batch)

    def ap(frames: dict) -> float:
        return float(evaluate_coco(dataset, frames)["AP"].iloc[0])

    no_nms = ap(candidates)
    result = fit_nms(candidates, ap, config.nms, max_rounds=args.rounds,
                     log=lambda line: print("  " + line, file=sys.stderr))
    fitted = replace_path(settings, "estimate.estimator.nms", replace(result.config, mode="rmpe"))
    atomic_write(args.output, lambda tmp: tmp.write_text(dump_app_config(fitted)))
    print(f"AP without pose NMS {no_nms:.4f}; start {result.start_score:.4f}; fitted "
          f"{result.score:.4f} (sigma1={result.config.sigma1:.4g} sigma2={result.config.sigma2:.4g} "
          f"lam={result.config.lam:.4g} eta={result.config.eta:.4g}; {len(result.history)} "
          f"evaluations) -> {args.output}")
    return 0
