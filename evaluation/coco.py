"""COCO keypoint evaluation through pycocotools, as the official tool computes it.

Object keypoint similarity (OKS) between a prediction ``d`` and a ground-truth person ``g``::

    OKS = mean over g's labelled joints j of exp(-|d_j - g_j|^2 / (2 * s * (2 sigma_j)^2))

with ``s`` the person's segment area; AP is averaged over OKS thresholds 0.50:0.05:0.95 with 101
recall points, at most 20 predictions per image. The numbers here come from pycocotools itself;
this module validates the inputs (clear errors instead of assertions), silences its prints and
returns a :class:`pandas.DataFrame`.

pycocotools reports ``-1`` for a figure with no ground truth in its range (e.g. APm when no person
is of medium size); here that figure is NaN.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from posetracker.core.coco import CocoDataset, CocoResults, frames_to_coco_results, validate_coco_results
from posetracker.core.errors import InputError
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17

#: Column names of :func:`evaluate_coco`, in pycocotools' ``stats`` order.
COCO_COLUMNS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

#: Ground truth: a :class:`CocoDataset` (``posetracker.io.formats.coco.read_coco_gt`` reads a
#: file into one) or a parsed dict in the file layout.
GroundTruth = dict | CocoDataset
#: Predictions: a parsed results file (:class:`CocoResults`, from
#: ``posetracker.io.formats.coco.load_coco_results``), a results list, or ``{image_id: FramePoses}``.
Predictions = CocoResults | Sequence[dict] | Mapping[int, FramePoses]


def _not_a_path(value: object, what: str) -> None:
    if isinstance(value, (str, Path)):
        raise TypeError(f"{what} is a path ({value}); the evaluations take data in memory: read "
                        "the file first (posetracker.io.formats.coco), or call "
                        "posetracker.evaluate_coco / evaluate_crowdpose, which read files")


def as_dataset(gt: GroundTruth) -> CocoDataset:
    """A validated :class:`CocoDataset` from a parsed dict or a dataset."""
    _not_a_path(gt, "the ground truth")
    if isinstance(gt, CocoDataset):
        return gt
    return CocoDataset.from_dict(gt)


def results_entries(pred: CocoResults | Sequence[dict]) -> tuple[Any, str]:
    """The raw entries of a parsed results file or list, and their source for messages."""
    _not_a_path(pred, "the predictions")
    if isinstance(pred, CocoResults):
        return pred.entries, pred.source
    return list(pred), "<predictions>"


def as_results(pred: Predictions, dataset: CocoDataset, num_keypoints: int) -> list[dict]:
    """Validated results entries from a parsed results file, a results list, or
    ``{image_id: FramePoses}``.

    Entries for images the ground truth lacks, or with the wrong number of joints, raise
    :class:`InputError`.
    """
    if isinstance(pred, Mapping):
        raw, source = frames_to_coco_results(pred), "<predictions>"
    else:
        raw, source = results_entries(pred)
    return validate_coco_results(raw, source, num_keypoints, image_ids=dataset.image_ids)


def run_cocoeval(
    gt_dict: dict, results: list[dict], sigmas: np.ndarray | None = None,
    img_ids: Sequence[int] | None = None,
):
    """Run pycocotools' keypoint evaluation quietly; returns the summarized ``COCOeval``.

    Args:
        gt_dict: Ground truth in the file layout (it is modified: pass a copy).
        results: Validated results entries (copied here: pycocotools writes into them).
        sigmas: Per-joint OKS sigmas ``(k,)``; pycocotools' COCO-17 values when ``None``.
        img_ids: Restrict the evaluation to these images (all ground-truth images when ``None``).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
        else:  # loadRes cannot take an empty list; no predictions simply means nothing found
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt_dict["images"], "annotations": [],
                               "categories": gt_dict["categories"]}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if img_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def figures(stats: np.ndarray) -> list[float]:
    """pycocotools' summary values as floats, its -1 (no ground truth in range) as NaN."""
    return [float("nan") if v == -1 else float(v) for v in stats]


def check_area(ds: CocoDataset) -> None:
    """COCO's OKS scale is the segment ``area``: refuse ground truth without it."""
    for a in ds.annotations:
        if not isinstance(a.get("area"), (int, float)):
            raise InputError(f"{ds.source}: annotation {a['id']} has no 'area' (COCO OKS needs the "
                             "segment area; CrowdPose ground truth goes to 'eval crowdpose')")


def check_people(ds: CocoDataset) -> None:
    """Refuse ground truth without one person with a labelled joint: every AP and AR would be
    NaN (nothing to score against), which says nothing about the predictions."""
    for a in ds.annotations:
        kp = a.get("keypoints")
        if isinstance(kp, list) and any(isinstance(v, (int, float)) and v > 0 for v in kp[2::3]):
            return
    raise InputError(f"{ds.source}: the ground truth has no person with a labelled joint, so "
                     "there is nothing to score the predictions against")


def official_sigmas(sigmas: Sequence[float]) -> np.ndarray:
    """Sigmas as the official tools compute them (tenths divided by 10.0), bit for bit.

    ``0.026`` and ``.26 / 10.0`` differ in the last bit; OKS values, and so ties in matching,
    are reproduced exactly only with the tools' own arithmetic.
    """
    return np.round(np.asarray(sigmas, dtype=np.float64) * 10.0, 6) / 10.0


def coco_sigmas(ds: CocoDataset) -> np.ndarray:
    """OKS sigmas for the dataset's joints: its schema's, or COCO's for any 17-joint set."""
    schema = ds.schema
    if schema is None and ds.num_keypoints == COCO17.num_keypoints:
        schema = COCO17
    if schema is not None:
        return official_sigmas(schema.sigmas)
    raise InputError(f"{ds.source}: joint names {list(ds.keypoint_names)} match no known schema, "
                     "so no OKS sigmas are known for them")


def evaluate_coco(gt: GroundTruth, pred: Predictions) -> pd.DataFrame:
    """Standard COCO keypoint evaluation.

    Args:
        gt: Ground truth, parsed dict or :class:`CocoDataset` (needs ``area`` per person).
        pred: Parsed results file, results list, or ``{image_id: FramePoses}``.

    Returns:
        One row (index ``"all"``) with columns :data:`COCO_COLUMNS`: AP at OKS .50:.95, .50, .75,
        for medium and large people, and the same for AR.
    """
    ds = as_dataset(gt)
    check_area(ds)
    check_people(ds)
    sigmas = coco_sigmas(ds)
    results = as_results(pred, ds, len(sigmas))
    ev = run_cocoeval(ds.to_dict(), results, sigmas)
    return pd.DataFrame([figures(ev.stats[:10])], columns=list(COCO_COLUMNS),
                        index=pd.Index(["all"], name="set"))
