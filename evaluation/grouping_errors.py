"""Per-person grouping errors of one image's predictions against its ground truth.

AP says *that* one grouping (pose NMS, the CrowdPose association) beats another; this module says
*where*, counting the three ways a grouping goes wrong in a crowd:

- **lost**: a ground-truth person no prediction matches (OKS < 0.5 with every free prediction);
  ``lost_no_box`` of them had no proposal box at all (IoU < 0.5 with every detector box), which
  no grouping can repair;
- **duplicate**: a prediction that matches no person although its OKS with an already matched
  person is >= 0.5 (a second pose of someone found);
- **wrong joint**: a joint of a matched prediction that lies nearer (by the joint's OKS term) the
  same joint of *another* ground-truth person than its own person's, with that term >= 0.5.

Matching as COCO's: predictions by decreasing score, each to the free person of highest OKS
(scale: the annotation's ``area``), at OKS >= 0.5. Only non-crowd people with labelled joints take
part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from posetracker.core.boxes import box_iou
from posetracker.core.coco import oks_terms
from posetracker.core.poses import FramePoses

#: Error kinds counted per image, in table order.
ERROR_KINDS = ("people", "found", "lost", "lost_no_box", "duplicate", "wrong_joint")


@dataclass(frozen=True)
class GroundTruthPeople:
    """One image's ground-truth people: ``keypoints`` ``(g, k, 2)`` (NaN unlabelled), ``area``
    ``(g,)`` the OKS scale in squared pixels and ``boxes`` ``(g, 4)`` xyxy."""

    keypoints: np.ndarray
    area: np.ndarray
    boxes: np.ndarray

    @classmethod
    def from_annotations(cls, anns: list[dict], num_keypoints: int) -> GroundTruthPeople:
        """From COCO annotation dicts (crowd regions and people without labelled joints dropped)."""
        keep = [a for a in anns if not a.get("iscrowd") and "keypoints" in a
                and np.any(np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)[:, 2] > 0)]
        kp = np.array([a["keypoints"] for a in keep], dtype=np.float64).reshape(-1, num_keypoints, 3)
        xy = np.where(kp[..., 2:] > 0, kp[..., :2], np.nan)
        box = np.array([a["bbox"] for a in keep], dtype=np.float64).reshape(-1, 4)
        box[:, 2:] += box[:, :2]
        area = np.array([a.get("area", (a["bbox"][2] * a["bbox"][3])) for a in keep],
                        dtype=np.float64)
        return cls(xy, area, box)


def joint_similarity(gt: GroundTruthPeople, pred: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """``(g, p, k)`` COCO's per-joint OKS term ``exp(-d^2 / (2 s^2 (2 sigma)^2))`` of each
    prediction ``(p, k, 2)`` against each person; NaN where the person's joint is unlabelled,
    0 where the prediction has none."""
    e = np.nan_to_num(oks_terms(gt.keypoints, pred, np.maximum(gt.area, 1.0), sigmas), nan=0.0)
    return np.where(np.isnan(gt.keypoints[:, None, :, 0]), np.nan, e)


@dataclass(frozen=True)
class PoseMatch:
    """How one image's predictions meet its ground-truth people (COCO's matching, module
    docstring); every array is in the predictions' own order.

    Attributes:
        owner: ``(p,)`` the index of the person each prediction matched, -1 for none.
        duplicate: ``(p,)`` an unmatched prediction at OKS >= 0.5 with a person already found.
        wrong_joint: ``(p, k)`` a matched prediction's joint nearer (OKS term >= 0.5, and above
            its own person's) the same joint of another person.
    """

    owner: np.ndarray
    duplicate: np.ndarray
    wrong_joint: np.ndarray


def match_poses(gt: GroundTruthPeople, pred: FramePoses, sigmas: np.ndarray) -> PoseMatch:
    """Match ``pred`` to the people of ``gt`` as COCO does: by decreasing score, each prediction
    to the free person of highest OKS, at OKS >= 0.5."""
    g, p = len(gt.area), len(pred)
    kp = np.asarray(pred.keypoints, dtype=np.float64)                      # (p, k, 2)
    sim = joint_similarity(gt, kp, sigmas)                                  # (g, p, k)
    labelled = (~np.isnan(sim)).sum(-1)
    oks = np.nansum(sim, -1) / np.maximum(labelled, 1)                     # (g, p)
    owner = np.full(p, -1)
    duplicate = np.zeros(p, dtype=bool)
    wrong = np.zeros(kp.shape[:2], dtype=bool)
    taken = np.zeros(g, dtype=bool)
    for j in np.argsort(-np.asarray(pred.scores, dtype=np.float64), kind="stable"):
        free = np.where(taken, -1.0, oks[:, j]) if g else np.zeros(0)
        if g and free.max() >= 0.5:
            owner[j] = int(free.argmax())
            taken[owner[j]] = True
        elif g and oks[:, j].max() >= 0.5:
            duplicate[j] = True
    for j in np.flatnonzero(owner >= 0):
        own = np.nan_to_num(sim[owner[j], j], nan=0.0)
        others = np.delete(np.nan_to_num(sim[:, j], nan=0.0), owner[j], axis=0)
        if len(others):
            best = others.max(0)
            wrong[j] = (best > own) & (best >= 0.5)
    return PoseMatch(owner, duplicate, wrong)


def grouping_errors(gt: GroundTruthPeople, pred: FramePoses, sigmas: np.ndarray,
                    proposals: np.ndarray | None = None) -> dict[str, int]:
    """The counts of :data:`ERROR_KINDS` for one image (from :func:`match_poses`).

    Args:
        gt: The image's people.
        pred: The grouping's poses (``scores`` rank them).
        sigmas: ``(k,)`` OKS sigmas.
        proposals: Optional ``(n, 4)`` xyxy proposal boxes (the detector's); without them
            ``lost_no_box`` is 0.
    """
    g = len(gt.area)
    m = match_poses(gt, pred, sigmas)
    lost = np.ones(g, dtype=bool)
    lost[m.owner[m.owner >= 0]] = False
    no_box = 0
    if proposals is not None and g:
        covered = (box_iou(gt.boxes, np.asarray(proposals, dtype=np.float64).reshape(-1, 4)) >= 0.5
                   ).any(1) if len(proposals) else np.zeros(g, dtype=bool)
        no_box = int((lost & ~covered).sum())
    return {"people": g, "found": int(g - lost.sum()), "lost": int(lost.sum()),
            "lost_no_box": no_box, "duplicate": int(m.duplicate.sum()),
            "wrong_joint": int(m.wrong_joint.sum())}


def error_table(people: Mapping[int, GroundTruthPeople], preds: Mapping[int, FramePoses],
                sigmas: np.ndarray, proposals: Mapping[int, np.ndarray] | None = None
                ) -> dict[int, dict[str, int]]:
    """:func:`grouping_errors` of every image of ``people`` (``{image_id: counts}``); an image
    without predictions counts every person lost."""
    out = {}
    for iid, gt in people.items():
        pred = preds.get(iid)
        if pred is None:
            out[iid] = {"people": len(gt.area), "found": 0, "lost": len(gt.area),
                        "lost_no_box": 0, "duplicate": 0, "wrong_joint": 0}
            continue
        out[iid] = grouping_errors(gt, pred, sigmas, None if proposals is None else proposals.get(iid))
    return out
