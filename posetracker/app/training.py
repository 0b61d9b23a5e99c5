"""What the application hands SPPE fine-tuning (:mod:`posetracker.estimators.training`): the
joint-candidate targets and loss of the association, the annotation files read, and validation
scored with the COCO or CrowdPose evaluation. ``posetracker train`` and ``posetracker bench
train`` use it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from posetracker.association.loss import candidate_targets, joint_candidate_loss
from posetracker.core.errors import InputError
from posetracker.estimators.training.data import TrainingData, training_data
from posetracker.estimators.training.objective import TrainingLoss

#: CrowdPose's joint-candidate target (own joints at height 1, other people's at ``mu``) and its
#: weighted heatmap MSE (:mod:`posetracker.association.loss`).
JOINT_CANDIDATE_LOSS = TrainingLoss(targets=candidate_targets, loss=joint_candidate_loss)


def load_training_data(annotations: str | Path, images: str | Path, min_joints: int = 1
                       ) -> TrainingData:
    """Read a training (or validation) annotation file and check it with its image folder
    (:func:`posetracker.estimators.training.data.training_data`).

    Raises:
        InputError: a missing, unreadable or malformed file, or what ``training_data`` refuses.
    """
    from posetracker.core.fileio import sha256_file
    from posetracker.io.formats.coco import read_coco_gt

    annotations = Path(annotations)
    if not annotations.is_file():
        raise InputError(f"annotations {annotations}: no such file")
    ds = read_coco_gt(annotations)
    return training_data(ds, images, sha256_file(annotations), min_joints)


def validation_ap(sppe, data: TrainingData, max_images: int = 0, config=None) -> float:
    """COCO keypoint AP of the product's estimator on ``data`` with its ground-truth boxes
    (no flip test: the training network as it is), on the first ``max_images`` images (0: all).

    COCO-17 files are scored with COCO's evaluation (needs ``area``), CrowdPose files with
    CrowdPose's (the COCO-17 poses converted). ``config``: an ``EstimatorConfig`` (default: the
    defaults without flip test). The :data:`~posetracker.estimators.training.loop.ValidationScore`
    the app passes to the trainer.
    """
    from posetracker.core.poses import FramePoses
    from posetracker.core.schemas import COCO17
    from posetracker.estimators.config import EstimatorConfig, SPPEConfig
    from posetracker.estimators.rmpe import RMPEEstimator
    from posetracker.estimators.training.data import ImageCache
    from posetracker.evaluation.coco import evaluate_coco
    from posetracker.evaluation.crowdpose import evaluate_crowdpose
    from posetracker.io.formats.coco import read_coco_gt

    cfg = config or EstimatorConfig(sppe=dataclasses.replace(SPPEConfig(), flip_test=False))
    was_flip = sppe.flip_test
    sppe.flip_test = cfg.sppe.flip_test
    est = RMPEEstimator(sppe, None, cfg)
    gt = read_coco_gt(data.source).to_dict()
    ids = [int(im["id"]) for im in gt["images"]]
    if max_images:
        ids = ids[:max_images]
    boxes_of: dict[int, list] = {i: [] for i in ids}
    for a in gt["annotations"]:
        if int(a["image_id"]) in boxes_of and not a.get("iscrowd") and a.get("num_keypoints", 1):
            x, y, w, h = a["bbox"]
            boxes_of[int(a["image_id"])].append([x, y, x + w, y + h, 1.0])
    cache = ImageCache(capacity=4)
    preds: dict[int, FramePoses] = {}
    try:
        for i in ids:
            if not boxes_of[i]:
                preds[i] = FramePoses.empty(COCO17)
                continue
            frame = cache(data.image_path(i))
            preds[i] = est.estimate([frame], [np.array(boxes_of[i])])[0]
    finally:
        sppe.flip_test = was_flip
    keep = set(ids)
    gt["images"] = [im for im in gt["images"] if int(im["id"]) in keep]
    gt["annotations"] = [a for a in gt["annotations"] if int(a["image_id"]) in keep]
    if data.schema_name == "crowdpose14":
        return float(evaluate_crowdpose(gt, preds, COCO17).iloc[0]["AP"])
    return float(evaluate_coco(gt, preds).loc["all", "AP"])
