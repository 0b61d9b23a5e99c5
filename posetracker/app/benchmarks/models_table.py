"""``posetracker bench models``: choose the default models by measurement on COCO-layout data.

For each detector candidate: person-box AP at IoU 0.5 and over IoU 0.5:0.95 (pycocotools, all
non-crowd people), over IoU 0.5:0.95 on the keypoint-annotated people alone (the others ignored),
and the recall at IoU 0.5 of the keypoint-annotated people, at the detector's confidence
threshold, and its ms per image. For each pose model and crop scale factor: keypoint
AP with ground-truth boxes. Then the whole estimator, each pose model behind each detector (the
detections computed once per detector; the pose model's best scale with ground-truth boxes; pose
NMS per config), with detected boxes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DETECTORS = ("rtmdet-nano", "picodet-s-320", "centernet", "nanodet", "yolo-fastest-xl",
                     "yolo-fastest-body")
DEFAULT_POSE_MODELS = ("tinypose-256x192", "tinypose-128x96", "movenet-thunder",
                       "movenet-lightning")


def register(sub: argparse._SubParsersAction) -> None:
    from posetracker.app.commands.estimate_cmd import add_estimator_options

    p = sub.add_parser("models", help="detector box AP/recall and pose-model keypoint AP on COCO data",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--gt", required=True, metavar="COCO_JSON",
                   help="COCO keypoint ground truth, e.g. coco_mini_val2017/annotations/...json")
    p.add_argument("--images", required=True, metavar="DIR", help="folder with the GT's images")
    p.add_argument("--detectors", nargs="*", default=list(DEFAULT_DETECTORS), metavar="NAME|PATH",
                   help="person detectors: registry names or model files (default: "
                   + " ".join(DEFAULT_DETECTORS) + ")")
    p.add_argument("--pose-models", nargs="*", default=list(DEFAULT_POSE_MODELS),
                   metavar="NAME|PATH", help="pose estimators: registry names or model files "
                   "(default: " + " ".join(DEFAULT_POSE_MODELS) + ")")
    p.add_argument("--scales", nargs="+", type=float, default=[1.0, 1.25],
                   help="crop scale factors tried with GT boxes (default 1.0 1.25)")
    p.add_argument("--variant", action="append", default=[], metavar="'KEY=VALUE ...'",
                   help="also run each detector with these detector settings (keys under "
                   "estimate.estimator.detector, space-separated), e.g. --variant 'flip=true' "
                   "--variant 'ensemble=[picodet-s-320]' (repeatable; each adds a detector row "
                   "and its detector + pose rows)")
    p.add_argument("--save", metavar="PATH", help="also write the table (.md, .csv or .json)")
    add_estimator_options(p, threads=1)
    p.set_defaults(func=run)


def recall_at(dets: dict[int, np.ndarray], gts: dict[int, np.ndarray], iou: float = 0.5) -> float:
    """Fraction of GT boxes matched (greedy, best score first, one-to-one) at IoU >= ``iou``."""
    from posetracker.core.boxes import box_iou

    found = total = 0
    for image_id, g in gts.items():
        total += len(g)
        d = dets.get(image_id, np.zeros((0, 5)))
        if not len(g) or not len(d):
            continue
        ious = box_iou(d[np.argsort(-d[:, 4]), :4], g)
        free = np.ones(len(g), dtype=bool)
        for row in ious:
            j = np.argmax(np.where(free, row, -1))
            if free[j] and row[j] >= iou:
                free[j] = False
                found += 1
    return found / max(total, 1)


def box_ap(dataset, dets: dict[int, np.ndarray], keypoint_people: bool = False
           ) -> tuple[float, float]:
    """Person-box AP at IoU 0.5 and over IoU 0.5:0.95 with pycocotools (crowd regions ignored
    as COCO does). With ``keypoint_people``, only the people with annotated keypoints (those the
    pose estimator is scored on) count: the others become ignore regions, so that a box on a
    person without keypoints is neither a hit nor a false positive."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = [{"image_id": int(i), "category_id": 1, "score": float(r[4]),
                "bbox": [float(r[0]), float(r[1]), float(r[2] - r[0]), float(r[3] - r[1])]}
               for i, d in dets.items() for r in d]
    if not results:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset.to_dict()
        if keypoint_people:
            gt.dataset = {**gt.dataset, "annotations": [
                {**a, "iscrowd": 1} if a.get("num_keypoints", 0) == 0 else a
                for a in gt.dataset["annotations"]]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0])


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from posetracker.app.commands.estimate_cmd import estimator_config, set_threads
    from posetracker.estimators.rmpe import pick_device
    from posetracker.evaluation.report import format_table, save_report
    from posetracker.io.formats.coco import read_coco_gt
    from posetracker.io.sources import read_image

    if args.dump_config:  # the estimator options' --dump-config
        from posetracker.app.commands.estimate_cmd import app_settings
        from posetracker.app.commands.settings_args import dump

        return dump(app_settings(args))
    set_threads(args)
    config = estimator_config(args)
    device = pick_device(config.device)
    dataset = read_coco_gt(args.gt)
    images = {int(im["id"]): read_image(Path(args.images) / Path(im["file_name"]).name)
              for im in dataset.images}
    kp_people: dict[int, list] = {i: [] for i in images}
    for a in dataset.annotations:
        if not a["iscrowd"] and a.get("num_keypoints", 0) > 0:
            x, y, w, h = a["bbox"]
            kp_people[int(a["image_id"])].append([x, y, x + w, y + h])
    kp_boxes = {i: np.array(v, dtype=np.float64).reshape(-1, 4) for i, v in kp_people.items()}
    rows, detections = _detector_rows(args.detectors, config, device, dataset, images, kp_boxes,
                                      args.threads, args.variant)
    for name in args.pose_models:
        rows += _pose_rows(name, args, config, device, dataset, len(images), detections)
    df = pd.DataFrame(rows).set_index(["stage", "model", "setting"])
    print(format_table(df, 3))
    print(f"({len(images)} images, {sum(len(v) for v in kp_boxes.values())} keypoint-annotated "
          f"people; {device}, {args.threads} thread(s); detector + pose ms/image without the "
          f"detector)")
    if args.save:
        save_report(df.reset_index().set_index("stage"), args.save)
    return 0


def detector_variants(base, variants: list[str]) -> dict[str, object]:
    """``base`` (a ``DetectorConfig``) and each ``--variant`` (space-separated ``KEY=VALUE``
    overrides of it), by label (``""`` for ``base``)."""
    from posetracker.core.config import apply_overrides

    out = {"": base}
    for text in variants:
        out[text] = apply_overrides(base, text.split(), where="--variant")
    return out


def _detector_rows(detectors: list[str], config, device, dataset, images: dict[int, np.ndarray],
                   kp_boxes: dict[int, np.ndarray], threads: int, variants: list[str]
                   ) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """Each detector's table row (box AP, recall, ms per image) for the settings and each
    ``variants`` entry (:func:`detector_variants`), and its detections (row label -> image file
    name -> ``(m, 5)`` boxes and scores), computed once for the pose rows (``threads``: CPU
    threads per call of a native backend)."""
    from dataclasses import replace

    from posetracker.app.build import detector_files
    from posetracker.estimators.rmpe import load_person_detector

    names = {int(im["id"]): Path(im["file_name"]).name for im in dataset.images}
    rows = []
    detections: dict[str, dict[str, np.ndarray]] = {}  # label -> file name -> (m, 5)
    for name in detectors:
        for variant, d in detector_variants(replace(config.detector, model=name),
                                            variants).items():
            det = load_person_detector(d, detector_files(name),
                                       [detector_files(m) for m in d.ensemble], device,
                                       config.backend, threads)
            det([next(iter(images.values()))])  # warm-up: first-call costs out of ms/image
            t0 = time.perf_counter()
            dets = {i: det([im])[0] for i, im in images.items()}
            ms = 1000 * (time.perf_counter() - t0) / len(images)
            label = f"{name} {variant}".strip()
            detections[label] = {names[i]: v for i, v in dets.items()}
            ap50, ap = box_ap(dataset, dets)
            ap_kp = box_ap(dataset, dets, keypoint_people=True)[1]
            rows.append({"stage": "detector", "model": Path(name).stem,
                         "setting": f"{det.detector.input_size[0]}px conf {d.conf_threshold}"
                                    + (f", {variant}" if variant else ""),
                         "box AP50": ap50, "box AP": ap, "box AP kpt people": ap_kp,
                         "recall@0.5": recall_at(dets, kp_boxes), "kpt AP": np.nan,
                         "ms/image": ms})
            print(f"detector {label}: box AP {ap:.3f}, AP50 {ap50:.3f}", file=sys.stderr)
    return rows, detections


def _pose_rows(name: str, args: argparse.Namespace, config, device, dataset, num_images: int,
               detections: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """One pose model's rows: keypoint AP with ground-truth boxes per crop scale, then at its
    best scale behind each detector's ``detections``."""
    from dataclasses import replace

    from posetracker.app.build import sppe_files
    from posetracker.app.commands.estimate_cmd import estimate_coco_images
    from posetracker.estimators.rmpe import RMPEEstimator
    from posetracker.estimators.sppe import load_sppe
    from posetracker.evaluation.coco import evaluate_coco

    rows = []
    s = config.sppe
    path, weights = sppe_files(name)
    sppe = load_sppe(path, weights=weights, device=device, flip_test=s.flip_test,
                     precision=config.precision, backend=config.backend, threads=args.threads,
                     batch_size=s.batch_size, refine=s.refine)
    best = (-1.0, s.scale_factor)
    for scale in args.scales:
        cfg = replace(config, sppe=replace(s, scale_factor=scale))
        est = RMPEEstimator(sppe, None, cfg)
        t0 = time.perf_counter()
        preds = estimate_coco_images(est, dataset, args.images, cfg.frame_batch, gt_boxes=True)
        ms = 1000 * (time.perf_counter() - t0) / num_images
        ap = float(evaluate_coco(dataset, preds)["AP"].iloc[0])
        best = max(best, (ap, scale))
        rows.append({"stage": "pose (GT boxes)", "model": Path(name).stem,
                     "setting": f"scale {scale}{', flip' if s.flip_test else ''}",
                     "box AP50": np.nan, "box AP": np.nan, "box AP kpt people": np.nan,
                     "recall@0.5": np.nan,
                     "kpt AP": ap, "ms/image": ms})
        print(f"pose {name} x{scale}: AP {ap:.4f}", file=sys.stderr)
    cfg = replace(config, sppe=replace(s, scale_factor=best[1]))
    est = RMPEEstimator(sppe, None, cfg)
    for dname, found in detections.items():
        t0 = time.perf_counter()
        preds = estimate_coco_images(est, dataset, args.images, cfg.frame_batch,
                                     boxes=found.get)
        ms = 1000 * (time.perf_counter() - t0) / num_images
        ap = float(evaluate_coco(dataset, preds)["AP"].iloc[0])
        rows.append({"stage": "detector + pose",
                     "model": f"{Path(dname.split()[0]).stem} + {Path(name).stem}",
                     "setting": f"scale {best[1]}, nms {config.nms.mode}"
                                + "".join(f", {v}" for v in dname.split(" ", 1)[1:]),
                     "box AP50": np.nan, "box AP": np.nan, "box AP kpt people": np.nan,
                     "recall@0.5": np.nan,
                     "kpt AP": ap, "ms/image": ms})
        print(f"{dname} + {name}: AP {ap:.4f}", file=sys.stderr)
    return rows

