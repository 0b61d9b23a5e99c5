"""``posetracker bench association``: cost of the CrowdPose association, and its AP against pose NMS.

Speed: synthetic crowded frames (:mod:`posetracker.association.synthetic`: every proposal's heatmaps show all the
people inside its crop) at several people counts; milliseconds per frame of candidate extraction
(torch, CPU), graph building, matching + poses, and the association total (graph + matching + poses
from the candidates, what replaces pose NMS), each the fastest of ``--repeat`` runs, median over frames.
One torch thread.

Accuracy (``--coco DIR``): on a COCO-format set, each image's ground-truth person boxes are cropped
(the estimator's symmetric spatial transformer) and run through MoveNet once; both paths share those
heads. The *nms* path decodes MoveNet's single person per crop and applies parametric pose NMS; the
*crowdpose* path takes joint candidates from the same heatmaps (each proposal's heatmaps
weighted by a prior around MoveNet's own single-person answer, refined by MoveNet's sub-cell
offsets as the estimator's intermediates carry them, or without them for comparison) and
associates them (:func:`posetracker.association.assign.associate_intermediates`). Both rank
poses by box score x mean joint score above a threshold (the estimator's and the association config's thresholds are
both shown). COCO keypoint AP overall and per crowd-index bucket (easy < 0.2 <= medium
< 0.8 <= hard) and on all images with crowd index >= 0.2.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "association", help="CrowdPose association: ms/frame at N people; AP vs pose NMS per crowd "
        "bucket", description=__doc__.split("\n\n")[1])
    p.add_argument("--people", default="1,5,15,30", help="people counts of the synthetic frames "
                   "(default: %(default)s)")
    p.add_argument("--frames", type=int, default=20, help="synthetic frames per people count "
                   "(default: %(default)s)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per frame, the fastest kept "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--coco", metavar="DIR", help="also compare AP on a COCO-format folder "
                   "(annotations/*.json + images), e.g. ../shared/data/coco_mini_val2017")
    p.add_argument("--model", default="movenet-thunder", metavar="NAME|PATH",
                   help="MoveNet model for --coco: registry name or model.json (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an association setting, e.g. --set association.delta_scale=3")
    p.add_argument("--out", metavar="FILE", help="also write the tables (.csv, .json or .md; the AP "
                   "table gets the suffix _ap)")
    p.set_defaults(func=run)


# -- speed ----------------------------------------------------------------------------------------
def speed_table(people: list[int], frames: int, seed: int, config, repeat: int = 5):
    """Milliseconds per frame of each association step on synthetic frames, one row per people count.

    Each frame is timed ``repeat`` times and the fastest run kept (on a shared machine the slower
    runs measure the neighbours); the table gives the median and 90th percentile over frames.
    """
    import numpy as np
    import pandas as pd

    from posetracker.association.assign import assign, assignment_poses
    from posetracker.association.candidates import extract_candidates
    from posetracker.association.graph import build_graph
    from posetracker.association.synthetic import make_scene
    from posetracker.core.schemas import COCO17

    def best(fn):
        times, result = [], None
        for _ in range(max(repeat, 1)):
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        return 1000.0 * min(times), result

    rng = np.random.default_rng(seed)
    sigmas = COCO17.sigma_array()
    rows = []
    for n in people:
        t_cand, t_graph, t_assign, t_total, cands = [], [], [], [], []
        for _ in range(frames):
            scene = make_scene(n, rng)
            ms, cand = best(lambda: extract_candidates(scene.heatmaps, scene.heatmap_to_image, config))
            t_cand.append(ms)
            ms, graph = best(lambda: build_graph(cand, sigmas, config))
            t_graph.append(ms)
            ms, _ = best(lambda: assignment_poses(graph, assign(graph, config), scene.boxes,
                                                  np.ones(n), COCO17, config))
            t_assign.append(ms)

            def whole():
                g = build_graph(cand, sigmas, config)
                return assignment_poses(g, assign(g, config), scene.boxes, np.ones(n), COCO17, config)
            t_total.append(best(whole)[0])
            cands.append(graph.in_graph.sum() / max(n, 1) / COCO17.num_keypoints)
        rows.append({"people": n, "candidates/joint": float(np.mean(cands)),
                     "extract ms": float(np.median(t_cand)), "graph ms": float(np.median(t_graph)),
                     "match+poses ms": float(np.median(t_assign)),
                     "association ms": float(np.median(t_total)),
                     "association p90 ms": float(np.percentile(t_total, 90))})
    return pd.DataFrame(rows).set_index("people")


def _pose_scores(box_scores, kp_scores, threshold: float):
    """Box score x mean joint score above ``threshold`` (all joints when none is): the estimator's
    ``box_x_kpt`` rule, applied to both paths."""
    import numpy as np

    above = kp_scores > threshold
    kmean = np.where(above.any(1), (kp_scores * above).sum(1) / np.maximum(above.sum(1), 1),
                     kp_scores.mean(1) if kp_scores.size else 0.0)
    return box_scores * kmean


def coco_comparison(coco_dir: str, model: str, config, threads: int = 1):
    """Both paths on every image of a COCO-format folder with ground-truth boxes.

    Returns ``(table, timing)``: AP per path and set, and ms per frame of the association.
    """
    import cv2
    import numpy as np
    import torch

    from posetracker.core.errors import InputError
    from posetracker.core.poses import FramePoses
    from posetracker.core.schemas import COCO17
    from posetracker.estimators.config import EstimatorConfig

    torch.set_num_threads(threads)
    gt, image_dir, net = _coco_inputs(coco_dir, model)
    est = EstimatorConfig()
    boxes_by_image: dict[int, list] = {}
    for a in gt.annotations:
        if not a.get("iscrowd") and "bbox" in a:
            x, y, w, h = a["bbox"]
            boxes_by_image.setdefault(int(a["image_id"]), []).append([x, y, x + w, y + h])
    nms_preds: dict = {}
    crowd_preds: dict = {"crowdpose": {}, "crowdpose, no offsets": {}}
    assoc_s, frames = 0.0, 0
    for im in gt.images:
        iid = int(im["id"])
        boxes = np.array(boxes_by_image.get(iid, []), dtype=np.float64).reshape(-1, 4)
        if not len(boxes):
            nms_preds[iid] = FramePoses.empty(COCO17)
            for preds in crowd_preds.values():
                preds[iid] = FramePoses.empty(COCO17)
            continue
        bgr = cv2.imread(str(image_dir / im["file_name"]))
        if bgr is None:
            raise InputError(f"cannot read image {image_dir / im['file_name']}")
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        nms_preds[iid], crowd, seconds = _both_paths(img, boxes, net, est, config)
        for name, poses in crowd.items():
            crowd_preds[name][iid] = poses
        assoc_s += seconds
        frames += 1
    return _ap_table(gt, nms_preds, crowd_preds, est, config), 1000.0 * assoc_s / max(2 * frames, 1)


def _coco_inputs(coco_dir: str, model: str):
    """The ground truth (the first ``annotations/*.json``), the image folder and the MoveNet."""
    from pathlib import Path

    from posetracker.core.errors import InputError
    from posetracker.estimators.movenet import MoveNet
    from posetracker.io.formats.coco import read_coco_gt

    root = Path(coco_dir)
    ann = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    if not ann:
        raise InputError(f"{root}: no annotations/*.json")
    gt = read_coco_gt(ann[0])
    image_dir = next((d for d in (root / "val2017", root / "images", root) if d.is_dir()), root)
    path = Path(model)
    if not path.exists():
        from posetracker.app.models.resolve import resolve_model
        path = Path(resolve_model(model))
    return gt, image_dir, MoveNet.from_tfjs(path)


def _both_paths(img, boxes, net, est, config):
    """One RGB image's poses in the ``(n, 4)`` ground-truth ``boxes`` by both paths: the nms
    path's poses, the crowdpose paths' poses by name, and the seconds the association took."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from posetracker.association.assign import associate_intermediates
    from posetracker.core.pose_nms import pose_nms
    from posetracker.core.poses import FramePoses
    from posetracker.core.schemas import COCO17
    from posetracker.estimators.transform import box_regions, crop_affines, crop_boxes, crop_to_image, frames_to_tensor

    size = (net.input_size, net.input_size)
    A = crop_affines(box_regions(boxes, size, est.sppe.scale_factor), size)
    crops = crop_boxes(frames_to_tensor([img]), np.zeros(len(boxes), dtype=np.int64), A, size,
                       frame_sizes=np.array([img.shape[:2]]))
    with torch.inference_mode():
        single = net.decode(net.heads(crops), return_maps=True)
    ones = np.ones(len(boxes))
    # What the estimator's MoveNet SPPE reports (estimators.sppe.MoveNetNet): keypoints in
    # pixel-index crop coordinates (MoveNet's fractions of the crop side x side - 0.5).
    kp = crop_to_image(single.keypoints - 0.5, A).numpy()
    sc = single.scores.double().numpy()
    # nms path: the single-person answers, parametric pose NMS
    poses = FramePoses(kp, sc, boxes, _pose_scores(ones, sc, est.kpt_threshold), COCO17)
    nms_poses, _ = pose_nms(poses, est.nms)
    # crowdpose paths: the same heads, associated (with and without MoveNet's sub-cell offsets)
    inter = SimpleNamespace(
        boxes=boxes, box_scores=ones, affines=A, keypoints=kp, keypoint_scores=sc,
        heatmaps=single.heatmaps, heatmap_stride=net.input_size / single.heatmaps.shape[-1],
        offsets=single.offsets.permute(0, 1, 3, 4, 2))
    crowd, seconds = {}, 0.0
    for name, with_offsets in (("crowdpose", True), ("crowdpose, no offsets", False)):
        if not with_offsets:
            inter.offsets = None
        t0 = time.perf_counter()
        crowd[name], _ = associate_intermediates(inter, COCO17, config)
        seconds += time.perf_counter() - t0
    return nms_poses, crowd, seconds


def _ap_table(gt, nms_preds: dict, crowd_preds: dict, est, config):
    """AP per path and crowd set, and AR, with the number of images of each set in the headers."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from posetracker.evaluation.crowdpose import evaluate_coco_by_crowd

    # Each path ranks poses by box score x mean joint score above a threshold: the estimator's
    # threshold and the association config's, both shown (the ranking moves AP on small sets).
    rows, images = [], {}
    for thr in sorted({float(est.kpt_threshold), float(config.kpt_threshold)}):
        for name, preds in (("nms", nms_preds), *crowd_preds.items()):
            scored = {i: dataclasses.replace(p, scores=_pose_scores(
                np.ones(len(p)), p.keypoint_scores, thr)) for i, p in preds.items()}
            by = evaluate_coco_by_crowd(gt, scored)
            crowded = evaluate_coco_by_crowd(gt, scored, thresholds=(0.2, 0.2)).loc["hard"]
            row = {"path": name, "kpt thr": thr}
            for s_ in by.index:
                row[f"AP {s_}"] = by.loc[s_, "AP"]
                images[s_] = int(by.loc[s_, "images"])
            row["AP crowd>=0.2"] = crowded["AP"]
            images["crowd>=0.2"] = int(crowded["images"])
            row["AR overall"] = by.loc["overall", "AR"]
            rows.append(row)
    table = pd.DataFrame(rows).set_index(["path", "kpt thr"])
    table.columns = [f"{c} ({images[c[3:]]})" if c[3:] in images else c for c in table.columns]
    return table


def run(args: argparse.Namespace) -> int:
    import torch

    from posetracker.app.settings import load_section
    from posetracker.core.errors import InputError
    from posetracker.evaluation.report import format_table, save_report

    torch.set_num_threads(args.threads)
    config = load_section("association", args.overrides)
    try:
        people = [int(v) for v in args.people.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--people expects comma-separated integers, got {args.people!r}") from None
    speed = speed_table(people, args.frames, args.seed, config, args.repeat)
    print(f"association on synthetic crowded frames, CPU, {args.threads} thread(s), fastest of "
          f"{args.repeat} runs per frame, median (and p90) over {args.frames} frames:")
    print(format_table(speed))
    if args.out:
        save_report(speed, args.out)
    if args.coco:
        table, ms = coco_comparison(args.coco, args.model, config, args.threads)
        print(f"\nCOCO keypoint AP with ground-truth boxes, {args.model}; association "
              f"{ms:.2f} ms/frame on real frames:", file=sys.stdout)
        print(format_table(table))
        if args.out:
            from pathlib import Path
            p = Path(args.out)
            save_report(table, p.with_name(p.stem + "_ap" + p.suffix))
    return 0
