"""CrowdPose evaluation, the crowd index, and crowded-scene splits of any COCO-format set.

CrowdPose (Li et al., CVPR 2019) scores keypoints like COCO with three changes, which the official
``crowdposetools`` makes and :func:`evaluate_crowdpose` reproduces on top of pycocotools:

1. 14 joints with their own OKS sigmas (COCO's body sigmas, 0.079 for head and neck);
2. the OKS scale is ``s = 0.53 * w * h`` of the ground-truth box (CrowdPose has no segment areas);
3. besides AP/AR over all images, AP on the images of each crowd-index bucket: easy
   (``crowdIndex < 0.2``), medium (``< 0.8``), hard (``>= 0.8``), each bucket evaluated on its own.

Predictions per image are capped at 20 (COCO's keypoint ``maxDets``).

The **crowd index** of an image (the CrowdPose paper, Sec. 3: the other people's joints inside
each person's box, relative to the person's own) is :func:`posetracker.core.coco.crowd_index`,
which reproduces the released ``crowdIndex`` values of CrowdPose val exactly.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping

import numpy as np
import pandas as pd

from posetracker.core.coco import (
    MIN_JOINTS_FOR_CROWD_INDEX,
    CocoDataset,
    check_crowdpose_gt,
    crowd_index,
    results_to_frames,
    validate_coco_results,
)
from posetracker.core.errors import InputError
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17, CROWDPOSE14, KeypointSchema, convert_keypoints
from posetracker.evaluation.coco import (
    COCO_COLUMNS,
    GroundTruth,
    Predictions,
    as_dataset,
    as_results,
    check_area,
    check_people,
    coco_sigmas,
    figures,
    official_sigmas,
    results_entries,
    run_cocoeval,
)

#: Crowd-index bucket limits: easy < 0.2 <= medium < 0.8 <= hard.
CROWD_THRESHOLDS: tuple[float, float] = (0.2, 0.8)
BUCKETS = ("easy", "medium", "hard")
#: CrowdPose's OKS scale: this fraction of the ground-truth box area stands in for the segment area.
BOX_AREA_FACTOR = 0.53

CROWDPOSE_COLUMNS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP easy", "AP medium", "AP hard")


# -- crowd index ------------------------------------------------------------------------------
def crowd_index_table(dataset: GroundTruth, min_joints: int = MIN_JOINTS_FOR_CROWD_INDEX
                      ) -> dict[int, float]:
    """Crowd index of every image of a COCO-format ground truth, ``{image_id: index}``."""
    ds = as_dataset(dataset)
    return {i: crowd_index(anns, min_joints) for i, anns in ds.annotations_by_image().items()}


def bucket(ci: float, thresholds: tuple[float, float] = CROWD_THRESHOLDS) -> str:
    """``"easy"`` below ``thresholds[0]``, ``"hard"`` from ``thresholds[1]``, else ``"medium"``."""
    if ci < thresholds[0]:
        return "easy"
    return "medium" if ci < thresholds[1] else "hard"


def split_by_crowd(crowd: Mapping[int, float], thresholds: tuple[float, float] = CROWD_THRESHOLDS
                   ) -> dict[str, list[int]]:
    """Image ids per bucket, ``{"easy": [...], "medium": [...], "hard": [...]}``."""
    out: dict[str, list[int]] = {b: [] for b in BUCKETS}
    for image_id, ci in crowd.items():
        out[bucket(ci, thresholds)].append(int(image_id))
    return out


# -- COCO-17 -> CrowdPose-14 ------------------------------------------------------------------
def coco_to_crowdpose(poses: FramePoses) -> FramePoses:
    """COCO-17 poses as CrowdPose-14 poses, so COCO-trained models can be scored on CrowdPose.

    The 12 body joints are copied; CrowdPose's ``head`` and ``neck`` come from the face and
    shoulders by the one head-joint derivation,
    :func:`posetracker.core.schemas.derive_head_joints`, at CrowdPose's positions
    (:data:`posetracker.core.schemas.HEAD_POINTS`; without a face the neck is the shoulders'
    midpoint). Boxes, person and box scores and track ids are kept.
    """
    if poses.schema is not COCO17:
        raise InputError(f"coco_to_crowdpose needs COCO-17 poses, got {poses.schema.name}")
    kp, sc = convert_keypoints(poses.keypoints, poses.keypoint_scores, COCO17, CROWDPOSE14,
                               derive_head=True)
    return FramePoses(kp, sc, poses.boxes, poses.scores, CROWDPOSE14,
                      track_ids=poses.track_ids, head_boxes=poses.head_boxes, box_scores=poses.box_scores)


# -- evaluation -------------------------------------------------------------------------------
def _crowdpose_results(pred: Predictions, ds: CocoDataset, pred_schema: KeypointSchema) -> list[dict]:
    """Validated CrowdPose-14 results; COCO-17 input (``pred_schema`` or frames) is converted."""
    if pred_schema not in (CROWDPOSE14, COCO17):
        raise InputError(f"CrowdPose evaluation takes crowdpose14 or coco17 predictions, "
                         f"not {pred_schema.name}")
    if isinstance(pred, Mapping):  # FramePoses know their schema
        frames = {}
        for image_id, poses in pred.items():
            if poses.schema is COCO17:
                poses = coco_to_crowdpose(poses)
            elif poses.schema is not CROWDPOSE14:
                raise InputError(f"predictions for image {image_id} use schema {poses.schema.name}; "
                                 "CrowdPose evaluation takes crowdpose14 or coco17 poses")
            frames[image_id] = poses
        return as_results(frames, ds, CROWDPOSE14.num_keypoints)

    raw, source = results_entries(pred)
    if pred_schema is COCO17:
        results = validate_coco_results(raw, source, COCO17.num_keypoints, image_ids=ds.image_ids)
        frames = results_to_frames(results, COCO17)
        return as_results({i: coco_to_crowdpose(p) for i, p in frames.items()}, ds,
                          CROWDPOSE14.num_keypoints)
    first = raw[0] if isinstance(raw, list) and raw and isinstance(raw[0], dict) else {}
    if isinstance(first.get("keypoints"), list) and len(first["keypoints"]) == 3 * COCO17.num_keypoints:
        raise InputError(f"{source}: results have COCO-17 keypoints (51 values, expected 42 for "
                         "CrowdPose-14); convert them with --pred-schema coco17 "
                         "(pred_schema=COCO17)")
    return validate_coco_results(raw, source, CROWDPOSE14.num_keypoints, image_ids=ds.image_ids)


def _bucket_ap(ev, img_ids: list[int]) -> float:
    """CrowdPose's per-bucket AP: the images of one bucket evaluated on their own.

    crowdposetools averages ``precision[:, :, :, 0, :]`` (every OKS threshold and recall point,
    area range "all"); a bucket without images or without ground truth gets NaN.
    """
    if not img_ids:
        return float("nan")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
    s = ev.eval["precision"][:, :, :, 0, :]
    s = s[s > -1]
    return float(np.mean(s)) if s.size else float("nan")


def evaluate_crowdpose(gt: GroundTruth, pred: Predictions, pred_schema: KeypointSchema = CROWDPOSE14
                       ) -> pd.DataFrame:
    """CrowdPose evaluation as ``crowdposetools`` computes it (module docstring).

    Args:
        gt: CrowdPose ground truth (file, parsed dict or :class:`CocoDataset`), 14 joints and a
            ``crowdIndex`` per image.
        pred: Results file, results list, or ``{image_id: FramePoses}`` (CrowdPose-14 or COCO-17
            poses; COCO-17 ones go through :func:`coco_to_crowdpose`).
        pred_schema: Joint layout of a results file or list: CROWDPOSE14, or COCO17 to convert.

    Returns:
        One row (index ``"all"``) with :data:`CROWDPOSE_COLUMNS`.
    """
    ds = as_dataset(gt)
    check_crowdpose_gt(ds)
    check_people(ds)
    results = _crowdpose_results(pred, ds, pred_schema)
    gt_dict = ds.to_dict()
    for a in gt_dict["annotations"]:  # the OKS scale and the area-range test both use it
        a["area"] = BOX_AREA_FACTOR * a["bbox"][2] * a["bbox"][3]
    ev = run_cocoeval(gt_dict, results, official_sigmas(CROWDPOSE14.sigmas))
    overall = figures(ev.stats[[0, 1, 2, 5, 6, 7]])
    groups = split_by_crowd(ds.stored_crowd_index())
    per_bucket = [_bucket_ap(ev, groups[b]) for b in BUCKETS]
    return pd.DataFrame([overall + per_bucket], columns=list(CROWDPOSE_COLUMNS),
                        index=pd.Index(["all"], name="set"))


def evaluate_coco_by_crowd(
    gt: GroundTruth, pred: Predictions, thresholds: tuple[float, float] = CROWD_THRESHOLDS
) -> pd.DataFrame:
    """COCO keypoint evaluation overall and on CrowdPose-style easy / medium / hard images.

    The crowd index of each image is computed from the ground truth (:func:`crowd_index`); each
    bucket's row is the standard COCO evaluation restricted to that bucket's images.

    Returns:
        Rows ``overall, easy, medium, hard``; columns :data:`COCO_COLUMNS` plus ``images`` (the
        bucket's image count). A bucket without images has NaN figures.
    """
    ds = as_dataset(gt)
    check_area(ds)
    check_people(ds)
    sigmas = coco_sigmas(ds)
    results = as_results(pred, ds, len(sigmas))
    groups = split_by_crowd(crowd_index_table(ds), thresholds)
    ev = run_cocoeval(ds.to_dict(), results, sigmas)
    rows = [figures(ev.stats[:10]) + [len(ds.images)]]
    for b in BUCKETS:
        if groups[b]:
            with contextlib.redirect_stdout(io.StringIO()):
                ev.params.imgIds = sorted(groups[b])
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            rows.append(figures(ev.stats[:10]) + [len(groups[b])])
        else:
            rows.append([float("nan")] * len(COCO_COLUMNS) + [0])
    df = pd.DataFrame(rows, columns=[*COCO_COLUMNS, "images"],
                      index=pd.Index(["overall", *BUCKETS], name="set"))
    df["images"] = df["images"].astype(int)
    return df
