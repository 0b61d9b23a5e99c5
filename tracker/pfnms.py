"""PoseFlow NMS (PF-NMS): pose flows, not single poses, are the units of suppression.

Pure functions over the tracker's window; :class:`posetracker.tracker.poseflow.PoseFlowTracker` applies them.

1. *Flow distance* (paper, Sec. 3.4): the distance of two flows is the median of their intra-frame
   pose distances over the frames where both have a pose. Here the per-frame distance is
   ``1 - (pose similarity + box IoU) / 2`` (the paper uses RMPE's pose distance; ours stays in
   [0, 1] and shares the building stage's similarity, so one threshold scale serves both).
2. *Merge*: flows closer than a threshold are one person seen twice; their poses in the overlapping
   frames are merged into one, joint coordinates weighted by joint scores (paper: the merged pose is
   the score-weighted combination of the flows' poses).
3. *Re-link*: a flow that starts after another one ended (a person lost to occlusion or missed
   detections) continues it when the end of the first and the start of the second agree in pose and
   box.
"""

from __future__ import annotations

import numpy as np

from posetracker.core.boxes import box_iou
from posetracker.tracker.similarity import person_scale, pose_similarity


def intra_frame_distance(keypoints: np.ndarray, boxes: np.ndarray, sigma: float) -> np.ndarray:
    """Pairwise pose distance within one frame: ``(n, k, 2), (n, 4) -> (n, n)`` in [0, 1].

    ``1 - (pose similarity + box IoU) / 2``; the scale of a pair is the smaller person's, so a
    small pose inside a big one is not called redundant.
    """
    scale = person_scale(boxes)
    pair_scale = np.minimum(scale[:, None], scale[None, :])
    psim = pose_similarity(keypoints, keypoints, pair_scale, sigma)
    return 1.0 - 0.5 * (psim + box_iou(boxes, boxes))


def merge_pair(kp_a: np.ndarray, sc_a: np.ndarray, box_a: np.ndarray, bs_a: float,
               kp_b: np.ndarray, sc_b: np.ndarray, box_b: np.ndarray, bs_b: float):
    """Score-weighted merge of two poses of one person in one frame.

    Args:
        kp_a, kp_b: ``(k, 2)`` joints (NaN absent); sc_a, sc_b: ``(k,)`` joint scores;
        box_a, box_b: ``(4,)`` xyxy; bs_a, bs_b: person scores.

    Returns:
        ``(keypoints (k, 2), scores (k,), box (4,), person_score)``: per joint the score-weighted
        mean of the present coordinates (one present: that one), the larger joint score, the
        person-score-weighted box and the larger person score.
    """
    pa, pb = np.isfinite(kp_a).all(-1), np.isfinite(kp_b).all(-1)
    wa = np.where(pa, np.maximum(sc_a, 1e-6), 0.0)
    wb = np.where(pb, np.maximum(sc_b, 1e-6), 0.0)
    tot = wa + wb
    with np.errstate(invalid="ignore", divide="ignore"):
        kp = (np.nan_to_num(kp_a) * wa[:, None] + np.nan_to_num(kp_b) * wb[:, None]) / tot[:, None]
    kp[tot == 0] = np.nan
    sc = np.where(tot > 0, np.maximum(np.where(pa, sc_a, 0), np.where(pb, sc_b, 0)), 0.0)
    wba, wbb = max(bs_a, 1e-6), max(bs_b, 1e-6)
    box = (box_a * wba + box_b * wbb) / (wba + wbb)
    return kp, sc, box, max(bs_a, bs_b)


def relink_similarity(end_kp: np.ndarray, end_box: np.ndarray, start_kp: np.ndarray,
                      start_box: np.ndarray, gap: np.ndarray, sigma: float) -> np.ndarray:
    """Agreement of flow ends with flow starts: ``(a, k, 2), (a, 4), (b, k, 2), (b, 4)`` and the
    ``(a, b)`` gaps in frames -> ``(a, b)`` similarity in [0, 1].

    The mean of pose similarity and box IoU; the joint tolerance grows with the square root of the
    gap, as a random walk's spread does.
    """
    scale = person_scale(end_box)[:, None] * np.sqrt(np.maximum(gap, 1))
    psim = pose_similarity(end_kp, start_kp, scale, sigma)
    return 0.5 * (psim + box_iou(end_box, start_box))
