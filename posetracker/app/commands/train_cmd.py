"""``posetracker train ...``: fine-tune the pose estimator for crowds (RMPE / CrowdPose training).

- ``train sppe``: fine-tune a heatmap SPPE (PP-TinyPose, or a checkpoint of one) on COCO- or
  CrowdPose-format annotations with the joint-candidate (``jc``) or plain (``mse``) target, PGPG
  crop boxes and an STN with the parallel SPPE; writes a ``.safetensors`` checkpoint that
  ``estimate``/``track`` take as ``--pose-model``.
- ``train make-crowds``: composite crowded training/validation sets from annotated images.
- ``train pgpg``: fit the pose-guided proposal generator (atomic poses, box-offset distributions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from posetracker.core.errors import InputError
from posetracker.core.outputs import POLICY, claim_outputs, claiming
from posetracker.io.sources import IMAGE_SUFFIXES

#: The files a training command reads: no output may be one of them (``--resume`` may be
#: ``--out``: the checkpoint is read whole before the first step, and written atomically).
TRAIN_INPUTS = ("annotations", "images", "val_annotations", "val_images", "pgpg_file")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune the pose estimator for crowds (SPPE, PGPG, "
                       "crowd composites)", description=__doc__.split("\n\n")[0], epilog=POLICY)
    kinds = p.add_subparsers(dest="train_kind", metavar="KIND", required=True)
    _register_sppe(kinds)
    _register_crowds(kinds)
    _register_pgpg(kinds)


def _register_sppe(kinds) -> None:
    from posetracker.estimators.training.config import TrainSettings

    d = TrainSettings()
    p = kinds.add_parser(
        "sppe", help="fine-tune a heatmap SPPE (joint-candidate loss, PGPG, STN)",
        description="Fine-tune a heatmap pose estimator on person crops of annotated images; the "
        "checkpoint (.safetensors) loads with --pose-model in estimate and track.", epilog=POLICY)
    p.add_argument("--annotations", required=True, metavar="JSON",
                   help="training annotations, COCO (17 joints) or CrowdPose (14 joints) format")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of the training images")
    p.add_argument("--init", default="tinypose-256x192", metavar="MODEL",
                   help="network to start from: registry name, IR .xml, or a checkpoint "
                   "(default: %(default)s)")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.safetensors)")
    p.add_argument("--val-annotations", metavar="JSON", help="validation annotations")
    p.add_argument("--val-images", metavar="DIR", help="folder of the validation images")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="crops per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: %(default)s)")
    p.add_argument("--loss", choices=("jc", "mse"), default=d.loss,
                   help="jc: joint-candidate target; mse: own joints only (default: %(default)s)")
    p.add_argument("--mu", type=float, default=d.mu,
                   help="height of the interference peaks in the jc target (default: %(default)s)")
    p.add_argument("--pgpg", action="store_true", help="sample crop boxes from PGPG")
    p.add_argument("--pgpg-file", default=d.pgpg_file, metavar="JSON",
                   help="fitted PGPG (train pgpg); default: fit from the training annotations")
    p.add_argument("--stn", action="store_true",
                   help="train an STN in front of the SPPE with the frozen parallel SPPE")
    p.add_argument("--val-every", type=int, default=d.val_every,
                   help="validate every N steps (default: %(default)s)")
    p.add_argument("--val-images-max", type=int, default=d.val_images, metavar="N",
                   help="validate on the first N images only (default: all)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="write the checkpoint every N steps (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0: default)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train (default: %(default)s)")
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_sppe)


def _register_crowds(kinds) -> None:
    p = kinds.add_parser(
        "make-crowds", help="composite crowded train/validation sets from annotated images",
        description="Cut annotated people out by their segmentation polygons and paste them over "
        "other images so that they overlap real people; pasted joints and boxes join the ground "
        "truth, covered joints are marked occluded. Source images are split into train and "
        "validation first, so no image (pasted person or background) is in both.", epilog=POLICY)
    p.add_argument("--annotations", required=True, metavar="JSON", help="COCO annotations with "
                   "person keypoints and segmentation polygons")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of their images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (train/, val/, "
                   "train.json, val.json)")
    p.add_argument("--per-image", type=int, default=3, help="composites per background image "
                   "(default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=0.3,
                   help="fraction of the source images kept for validation (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.set_defaults(func=run_crowds)


def _register_pgpg(kinds) -> None:
    p = kinds.add_parser(
        "pgpg", help="fit the pose-guided proposal generator (atomic poses, box offsets)",
        description="Align the annotated poses by torso, cluster them into atomic poses (k-means) "
        "and record, per atomic pose, the offsets between the detector's boxes and the "
        "ground-truth boxes; train sppe --pgpg --pgpg-file samples its crops from them.",
        epilog=POLICY)
    p.add_argument("--annotations", required=True, metavar="JSON", help="training annotations")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of the images")
    p.add_argument("--out", required=True, metavar="JSON", help="PGPG model to write")
    p.add_argument("--clusters", type=int, default=8, help="atomic poses (default: %(default)s)")
    p.add_argument("--detector", default="rtmdet-nano", metavar="NAME|PATH",
                   help="person detector run on the images (default: %(default)s)")
    p.add_argument("--no-detector", action="store_true", help="use jittered ground-truth boxes "
                   "as detections (no detector run)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.set_defaults(func=run_pgpg)


# -- train sppe ------------------------------------------------------------------------------------
def load_init_sppe(init: str, device, log=lambda s: None):
    """The SPPE to start from and its :class:`BaseModel`: a registry name, an IR ``.xml`` or a
    training checkpoint (its weights on its own base network)."""
    from posetracker.app.build import sppe_files
    from posetracker.estimators.checkpoint import checkpoint_metadata
    from posetracker.estimators.sppe import load_sppe
    from posetracker.estimators.training.loop import BaseModel

    topology, weights = sppe_files(init, log)
    if topology is None or topology.suffix.lower() != ".xml":
        raise InputError(f"--init {init}: training takes a heatmap network in OpenVINO IR "
                         "(PP-TinyPose) or a checkpoint of one")
    name = init
    if weights is not None and weights.suffix.lower() == ".safetensors":
        meta = checkpoint_metadata(weights) or {}
        name = meta.get("base_model", init)
    sppe = load_sppe(topology, weights=weights, device=device, flip_test=False)
    return sppe, BaseModel(name, topology)


@claiming({"--out": "out"}, TRAIN_INPUTS, folder_suffixes=IMAGE_SUFFIXES)
def run_sppe(args: argparse.Namespace) -> int:
    from posetracker.app.pipeline import torch_threads
    from posetracker.app.training import JOINT_CANDIDATE_LOSS, load_training_data, validation_ap
    from posetracker.estimators.rmpe import pick_device
    from posetracker.estimators.training.config import TrainSettings
    from posetracker.estimators.training.loop import Trainer

    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise InputError(f"--out {out}: the checkpoint must be a .safetensors file")
    if (args.val_annotations is None) != (args.val_images is None):
        raise InputError("--val-annotations and --val-images go together")
    try:
        settings = TrainSettings(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, loss=args.loss, mu=args.mu,
            pgpg=args.pgpg, pgpg_file=args.pgpg_file or "", stn=args.stn,
            val_every=args.val_every, val_images=args.val_images_max,
            checkpoint_every=args.checkpoint_every, seed=args.seed, threads=args.threads)
    except ValueError as e:
        raise InputError(str(e)) from None
    if args.resume:
        from posetracker.estimators.checkpoint import checkpoint_metadata

        if not Path(args.resume).is_file():
            raise InputError(f"--resume {args.resume}: no such file")
        if checkpoint_metadata(args.resume) is None:  # unreadable files raise ModelError here
            raise InputError(f"--resume {args.resume}: not a posetracker SPPE checkpoint")
    data = load_training_data(args.annotations, args.images, settings.min_joints)
    val = None
    if args.val_annotations:
        val = load_training_data(args.val_annotations, args.val_images)
    device = pick_device(args.device)

    def log(s: str) -> None:
        print(s, file=sys.stderr)

    sppe, base = load_init_sppe(args.init, device, log)

    sampler = None
    if settings.pgpg:
        from posetracker.estimators.training.pgpg import PGPG, fit_pgpg_from_ground_truth

        if settings.pgpg_file:
            pg = PGPG.load(settings.pgpg_file)
        else:
            pg = fit_pgpg_from_ground_truth(data, seed=settings.seed)
            log(f"PGPG fitted from jittered ground-truth boxes: {len(pg.centres)} atomic poses")
        sampler = pg.sampler()
    stn = None
    if settings.stn:
        from posetracker.estimators.training.stn import STNTrainer

        stn = STNTrainer(sppe, settings, JOINT_CANDIDATE_LOSS)
    trainer = Trainer(sppe, base, data, settings, out, JOINT_CANDIDATE_LOSS, val=val,
                      score=validation_ap, box_sampler=sampler, stn=stn, log=log)
    if args.resume:
        trainer.resume(args.resume)
        log(f"resumed from {args.resume} at step {trainer.step}")
    # the thread count holds for the run only (torch's own setting back after it)
    with torch_threads(settings.threads if device.type == "cpu" else 0):
        result = trainer.run(progress=not args.quiet and sys.stderr.isatty())
    first = result.losses[0] if result.losses else float("nan")
    last = result.losses[-1] if result.losses else float("nan")
    ap = f"; validation AP {result.validations[-1][1]:.4f}" if result.validations else ""
    print(f"trained steps {result.start_step}..{result.steps} ({result.steps_per_second:.3f} "
          f"steps/s, batch {settings.batch_size}, {device.type}); loss {first:.5f} -> {last:.5f}"
          f"{ap} -> {out}")
    return 0


def run_crowds(args: argparse.Namespace) -> int:
    from posetracker.estimators.training.crowds import CrowdSettings, make_crowds
    from posetracker.io.formats.coco import read_coco_gt

    try:
        settings = CrowdSettings(per_image=args.per_image, val_fraction=args.val_fraction,
                                 seed=args.seed)
    except ValueError as e:
        raise InputError(str(e)) from None
    out = Path(args.out)
    with claim_outputs({f"--out {s}.json": out / f"{s}.json" for s in ("train", "val")},
                       [args.annotations]):
        summary = make_crowds(read_coco_gt(args.annotations), args.images, args.out, settings)
    for split, s in summary.items():
        print(f"{split}: {s['images']} images, {s['people']} people ({s['pasted']} pasted), "
              f"{s['sources']} source images, mean crowd index {s['crowd_index']:.3f}")
    return 0


@claiming({"--out": "out"}, TRAIN_INPUTS, folder_suffixes=IMAGE_SUFFIXES)
def run_pgpg(args: argparse.Namespace) -> int:
    from posetracker.app.training import load_training_data
    from posetracker.estimators.training.pgpg import detector_boxes, fit_pgpg, fit_pgpg_from_ground_truth

    data = load_training_data(args.annotations, args.images)
    if args.no_detector:
        pg = fit_pgpg_from_ground_truth(data, clusters=args.clusters, seed=args.seed)
    else:
        from posetracker.app.build import build_estimator
        from posetracker.estimators.config import DetectorConfig, EstimatorConfig

        est = build_estimator(EstimatorConfig(detector=DetectorConfig(model=args.detector),
                                              device=args.device))
        boxes = detector_boxes(est.detector, data)
        pg = fit_pgpg(data, boxes, clusters=args.clusters, seed=args.seed)
    pg.save(args.out)
    print(f"PGPG: {len(pg.centres)} atomic poses from {pg.people} people, "
          f"{pg.matched} matched detections -> {args.out}")
    return 0
