"""``posetracker bench train``: the crowd-training experiment of RMPE / CrowdPose, end to end.

1. Crowd composites from a COCO folder (:func:`posetracker.estimators.training.crowds.make_crowds`,
   split by source image: the validation composites' images were never trained on).
2. The base SPPE, an MSE-fine-tuned copy and a joint-candidate (JC) fine-tuned copy (same steps,
   batch, learning rate and seed; trained on the train composites).
3. Each model on the validation composites and on the real COCO images, with the ground-truth
   person boxes (no detector, no flip test), grouped two ways from the same SPPE output: the
   estimator's parametric pose NMS, and the CrowdPose association (default settings, and the
   settings tuned on the validation composites: optimistic, shown apart).
4. COCO keypoint AP overall, on images with crowd index >= 0.2, and on the real images (all, and
   only those not used as a source of any training composite).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune base vs MSE vs joint-candidate on crowd composites; "
                       "AP with pose NMS and with the association",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--coco", required=True, metavar="DIR",
                   help="COCO folder (annotations/*.json with polygons, val2017/ images)")
    p.add_argument("--work", required=True, metavar="DIR", help="folder for composites and checkpoints")
    p.add_argument("--init", default="tinypose-256x192", metavar="MODEL",
                   help="base SPPE (default: %(default)s)")
    p.add_argument("--steps", type=int, default=60, help="fine-tuning steps per model (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="crops per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default: %(default)s)")
    p.add_argument("--mu", type=float, default=0.5, help="JC interference height (default: %(default)s)")
    p.add_argument("--per-image", type=int, default=3, help="composites per background (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of composites and training (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--no-tune", action="store_true", help="skip the association tuning")
    p.add_argument("--reuse", action="store_true", help="evaluate the checkpoints an earlier run "
                   "left in --work (mse.safetensors, jc.safetensors) instead of training again")
    p.add_argument("--out", metavar="FILE", help="also write the AP table (.csv, .json or .md)")
    p.set_defaults(func=run)


#: Association settings searched on the validation composites (one at a time from the default).
TUNING_GRID = {
    "candidate_threshold": (0.02, 0.05, 0.1, 0.2),
    "delta_scale": (1.0, 1.5, 2.0, 3.0),
    "fallback": ("keep", "next"),
    "prior_bias": (1.0, 1.8, 3.0),
}


def _intermediates(sppe, gt_path: Path, image_dir: Path, image_ids=None):
    """Per image id, the estimator's pre-NMS results on the ground-truth boxes (heatmaps kept)."""
    import dataclasses

    import numpy as np

    from posetracker.estimators.config import EstimatorConfig, SPPEConfig
    from posetracker.estimators.rmpe import RMPEEstimator
    from posetracker.estimators.training.data import ImageCache
    from posetracker.io.formats.coco import read_coco_gt

    ds = read_coco_gt(gt_path)
    cfg = EstimatorConfig(sppe=dataclasses.replace(SPPEConfig(), flip_test=False))
    sppe.flip_test = False
    est = RMPEEstimator(sppe, None, cfg)
    cache = ImageCache(capacity=2)
    out = {}
    for im in ds.images:
        iid = int(im["id"])
        if image_ids is not None and iid not in image_ids:
            continue
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                  a["bbox"][1] + a["bbox"][3], 1.0]
                 for a in ds.annotations_by_image()[iid] if not a.get("iscrowd")]
        if not boxes:
            out[iid] = None
            continue
        frame = cache(image_dir / im["file_name"])
        out[iid] = est.intermediates([frame], heatmaps=True, candidates=0,
                                     boxes=[np.array(boxes)])[0]
    return est, out


def _group(est, inters: dict, mode: str, config=None) -> dict:
    """Poses per image: ``nms`` (the estimator's pose NMS) or ``assoc`` (CrowdPose association)."""
    from posetracker.association.assign import associate_intermediates
    from posetracker.core.pose_nms import pose_nms
    from posetracker.core.poses import FramePoses
    from posetracker.core.schemas import COCO17

    preds = {}
    for iid, inter in inters.items():
        if inter is None:
            preds[iid] = FramePoses.empty(COCO17)
        elif mode == "nms":
            poses = FramePoses(inter.keypoints, inter.keypoint_scores, inter.boxes,
                               est.person_scores(inter.box_scores, inter.keypoint_scores), COCO17,
                               box_scores=inter.box_scores)
            preds[iid] = pose_nms(poses, est.config.nms)[0]
        else:
            preds[iid] = associate_intermediates(inter, COCO17, config, est.person_scores)[0]
    return preds


def _ap(gt, preds: dict, crowded: bool = False) -> float:
    from posetracker.evaluation.crowdpose import evaluate_coco_by_crowd

    if crowded:
        return float(evaluate_coco_by_crowd(gt, preds, thresholds=(0.2, 0.2)).loc["hard", "AP"])
    return float(evaluate_coco_by_crowd(gt, preds).loc["overall", "AP"])


def _subset(gt_path: Path, ids: set) -> dict:
    from posetracker.io.formats.coco import read_coco_gt

    d = read_coco_gt(gt_path).to_dict()
    d["images"] = [im for im in d["images"] if int(im["id"]) in ids]
    d["annotations"] = [a for a in d["annotations"] if int(a["image_id"]) in ids]
    return d


def tune_association(est, inters: dict, gt, base_config, log=lambda s: None):
    """Coordinate search over :data:`TUNING_GRID` (one pass, each setting from the best so far)
    maximising AP on crowd index >= 0.2 of ``gt``; returns ``(config, AP)``."""
    import dataclasses

    best = base_config
    best_ap = _ap(gt, _group(est, inters, "assoc", best), crowded=True)
    for key, values in TUNING_GRID.items():
        for v in values:
            if getattr(best, key) == v:
                continue
            cand = dataclasses.replace(best, **{key: v})
            ap = _ap(gt, _group(est, inters, "assoc", cand), crowded=True)
            if ap > best_ap + 1e-9:
                best, best_ap = cand, ap
                log(f"  tuning: {key}={v} -> AP(crowd>=0.2) {ap:.4f}")
    return best, best_ap


@dataclass(frozen=True)
class _EvalSets:
    """What each model is scored on: the validation composites and the real COCO images (all,
    and those held out of the training composites)."""

    val_json: Path
    val_images: Path
    val_doc: dict
    real_json: Path
    real_images: Path
    real_doc: dict
    held_out_gt: dict
    held_out: set

    def row(self, model: str, grouping: str, est, val_inter: dict, real_inter: dict, cfg) -> dict:
        """The table row of one model and grouping (``cfg`` ``None``: pose NMS)."""
        mode = "nms" if cfg is None else "assoc"
        v = _group(est, val_inter, mode, cfg)
        r = _group(est, real_inter, mode, cfg)
        return {
            "model": model, "grouping": grouping,
            "val composites AP": _ap(self.val_doc, v),
            "val composites AP crowd>=0.2": _ap(self.val_doc, v, crowded=True),
            "real COCO AP (all)": _ap(self.real_doc, r),
            "real COCO AP (held-out)": _ap(self.held_out_gt,
                                           {i: p for i, p in r.items() if i in self.held_out}),
        }


def run(args: argparse.Namespace) -> int:
    import json
    import os

    import pandas as pd
    import torch

    from posetracker.app.training import load_training_data
    from posetracker.association.config import AssociationConfig
    from posetracker.core.errors import InputError
    from posetracker.estimators.rmpe import pick_device
    from posetracker.estimators.training.crowds import CrowdSettings, make_crowds
    from posetracker.evaluation.report import format_table, save_report
    from posetracker.io.formats.coco import read_coco_gt

    torch.set_num_threads(args.threads)
    root, work = Path(args.coco), Path(args.work)
    anns = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    if not anns:
        raise InputError(f"--coco {root}: no annotations/*.json")
    real_json = anns[0]
    real_images = next((d for d in (root / "val2017", root / "images") if d.is_dir()), root)
    device = pick_device(args.device)

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    crowds = work / "crowds"
    summary = make_crowds(read_coco_gt(real_json), real_images, crowds,
                          CrowdSettings(per_image=args.per_image, seed=args.seed))
    for split, s in summary.items():
        log(f"{split} composites: {s['images']} images, {s['people']} people ({s['pasted']} "
            f"pasted), mean crowd index {s['crowd_index']:.3f}")
    val_json, train_json = crowds / "val.json", crowds / "train.json"
    val_doc = json.loads(val_json.read_text())
    train_doc = json.loads(train_json.read_text())
    train_sources = {s for im in train_doc["images"] for s in im["source_image_ids"]}
    real_doc = json.loads(real_json.read_text())
    held_out = {int(im["id"]) for im in real_doc["images"]} - train_sources
    sets = _EvalSets(val_json, crowds / "val", val_doc, real_json, real_images, real_doc,
                     _subset(real_json, held_out), held_out)
    models = _fine_tune(args, device, load_training_data(train_json, crowds / "train"), work, log)

    default = AssociationConfig()
    rows, tuned = _evaluate(models, sets, default, not args.no_tune, log)
    table = pd.DataFrame(rows).set_index(["model", "grouping"]).sort_index()
    n_crowded = sum(1 for im in val_doc["images"] if im["crowdIndex"] >= 0.2)
    print(f"crowd training, {args.init}, {args.steps} steps x batch {args.batch_size}, lr {args.lr}, "
          f"mu {args.mu}, seed {args.seed}, {device.type}, {args.threads} thread(s), load {load:.1f}; "
          f"val composites {len(val_doc['images'])} images ({n_crowded} with crowd index >= 0.2), "
          f"real COCO {len(real_doc['images'])} images ({len(held_out)} held out); ground-truth "
          f"boxes, no flip")
    for name in ("mse", "jc"):
        res = models[name][1]
        if res is None:
            continue
        print(f"  {name}: {res.steps_per_second:.3f} steps/s, {res.steps_per_second * args.batch_size:.2f} "
              f"crops/s, {res.seconds:.0f} s")
    if tuned is not None:
        diff = {k: getattr(tuned, k) for k in TUNING_GRID if getattr(tuned, k) != getattr(default, k)}
        print(f"  association tuned on the val composites (JC model): {diff or 'defaults kept'}")
    print(format_table(table))
    if args.out:
        save_report(table, args.out)
    return 0


def _fine_tune(args: argparse.Namespace, device, data, work: Path, log) -> dict:
    """The models compared: ``base`` (``--init``) and its fine-tunings with the ``mse`` and ``jc``
    losses (read back from ``work`` with ``--reuse``), each ``name -> (sppe, training result or
    None)``."""
    from posetracker.app.commands.train_cmd import load_init_sppe
    from posetracker.app.training import JOINT_CANDIDATE_LOSS
    from posetracker.core.errors import InputError
    from posetracker.estimators.training.config import TrainSettings
    from posetracker.estimators.training.loop import Trainer

    models = {}
    base_sppe, base = load_init_sppe(args.init, device, log)
    models["base"] = (base_sppe, None)
    for loss in ("mse", "jc"):
        ckpt = work / f"{loss}.safetensors"
        if args.reuse:
            if not ckpt.is_file():
                raise InputError(f"--reuse: {ckpt} does not exist")
            sppe, _ = load_init_sppe(str(ckpt), device, log)
            models[loss] = (sppe, None)
            continue
        sppe, _ = load_init_sppe(args.init, device, log)
        settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                 loss=loss, mu=args.mu, seed=args.seed, val_every=0,
                                 checkpoint_every=0, threads=args.threads)
        trainer = Trainer(sppe, base, data, settings, ckpt, JOINT_CANDIDATE_LOSS, log=log)
        log(f"fine-tuning {loss}: {args.steps} steps x {args.batch_size} crops on {device.type} ...")
        res = trainer.run(progress=sys.stderr.isatty())
        models[loss] = (sppe, res)
        log(f"{loss}: {res.steps_per_second:.3f} steps/s ({res.steps_per_second * args.batch_size:.2f} "
            f"crops/s), loss first 5 mean {sum(res.losses[:5]) / max(len(res.losses[:5]), 1):.5f} -> "
            f"last 5 mean {sum(res.losses[-5:]) / max(len(res.losses[-5:]), 1):.5f}; {ckpt}")
    return models


def _evaluate(models: dict, sets: _EvalSets, default, tune: bool, log) -> tuple[list[dict], object]:
    """The table rows of every model with pose NMS and the association (``default``; with
    ``tune``, also the settings tuned on the JC model, applied to every model); returns the rows
    and the tuned settings (``None`` without)."""
    tuned = None
    rows = []
    for name, (sppe, _res) in models.items():
        t0 = time.perf_counter()
        est, val_inter = _intermediates(sppe, sets.val_json, sets.val_images)
        _, real_inter = _intermediates(sppe, sets.real_json, sets.real_images)
        if name == "jc" and tune:
            tuned, _ = tune_association(est, val_inter, sets.val_doc, default, log)
        paths = [("nms", None), ("association", default)]
        if tuned is not None:
            paths.append(("association (tuned on val)", tuned))
        for path, cfg in paths:
            rows.append(sets.row(name, path, est, val_inter, real_inter, cfg))
        log(f"evaluated {name} in {time.perf_counter() - t0:.0f} s")
    # The tuned settings, applied to the other models too (after tuning on the JC model).
    if tuned is not None:
        for name in ("base", "mse"):
            sppe, _ = models[name]
            est, val_inter = _intermediates(sppe, sets.val_json, sets.val_images)
            _, real_inter = _intermediates(sppe, sets.real_json, sets.real_images)
            rows.append(sets.row(name, "association (tuned on val)", est, val_inter, real_inter, tuned))
    return rows, tuned
