"""Parametric pose NMS (RMPE, Fang et al. ICCV 2017, section 3.3), and AlphaPose's released variant.

It serves the estimator (its grouping step) and the CrowdPose association (its last step) alike,
so it lives in ``core``, where both may import it.

Both modes are greedy and follow the same numbered steps:

1. pick the most confident remaining pose as the reference P_i;
2. compute its similarity to every remaining pose P_j (vectorised over j);
3. eliminate (assign to P_i's cluster) every pose close enough to P_i, P_i included;
4. merge the cluster into one pose: each joint is the score-weighted mean of the cluster's joints
   that lie in the reference joint's neighbourhood;
5. repeat until no pose remains; drop merged poses whose best joint is below a score threshold.

``rmpe`` (the paper): similarity ``K_sim + lam * H_sim`` with

- ``K_sim = sum_n tanh(c_i^n / sigma1) tanh(c_j^n / sigma1)`` over joints n where k_j^n lies in the
  box of ``neighbourhood`` x the reference box, centred on k_i^n (the soft confidence match);
- ``H_sim = sum_n exp(-(|k_i^n - k_j^n| / s_i)^2 / sigma2)``, s_i = ``max(w, h)`` of P_i's box, so
  the parameters do not depend on the person's size in pixels;

and P_j is eliminated when the similarity is at least ``eta``. (The paper writes the test as
``d(P_i, P_j | Lambda) <= eta`` with d built from these same similarity sums; read as a distance,
``-similarity <= -eta`` is the same test.)

``alphapose``: ``pPose_nms.py`` of AlphaPose (MVIG-SJTU): pixel (unnormalized) distances, a soft
match only within 1 pixel, ``exp(-d / delta2)``, elimination when the similarity exceeds ``gamma``
or at least ``match_threds`` joints lie within ``min(alpha * max(w, h), 7)`` pixels, merging within
``min(alpha * max(w, h), 15)`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from posetracker.core.poses import FramePoses


@dataclass(frozen=True)
class PoseNMSConfig:
    """Parametric pose NMS (RMPE, Fang et al. 2017, section 3.3).

    ``mode="rmpe"``: the paper's criterion with distances normalized by box scale. A pose P_j is
    eliminated by the kept pose P_i when the pose similarity
    ``K_sim(sigma1) + lam * H_sim(sigma2)`` reaches ``eta`` (the paper writes the same test as a
    distance "d <= eta"; its d is built from these similarity terms, so larger means closer).

    ``mode="alphapose"``: AlphaPose's released ``pPose_nms.py`` rule and constants (pixel distances,
    not normalized), for side-by-side comparison.

    ``mode="none"``: keep every pose.

    The ``rmpe`` defaults were set by hand before fitting: two detections of one person score close
    to the maximum ``17 tanh(c/sigma1)^2 + 17 lam`` (about 30 for confident joints), while distinct
    people, even with overlapping boxes, rarely get 6 (measurements: docs/models.md).

    Attributes:
        mode: ``rmpe``, ``alphapose`` or ``none``.
        sigma1: Soft-match temperature of joint confidences, ``tanh(c / sigma1)``.
        sigma2: Spatial falloff, ``exp(-(d / scale)^2 / sigma2)`` with d in pixels, scale = the kept
            pose's box size ``max(w, h)``.
        lam: Weight of the spatial term.
        eta: Elimination threshold on the similarity.
        neighbourhood: A joint matches when it lies in the box of this fraction of the kept pose's
            box, centred on the kept joint (the paper's 1/10 box).
        score_threshold: Kept poses whose best joint score is below this are dropped.
        delta1, mu, delta2, gamma, score_threds, match_threds, alpha: AlphaPose's constants
            (``pPose_nms.py``: 1, 1.7, 2.65, 22.48, 0.3, 5, 0.1).
    """

    mode: Literal["rmpe", "alphapose", "none"] = "rmpe"
    sigma1: float = 0.3
    sigma2: float = 0.01
    lam: float = 1.0
    eta: float = 6.0
    neighbourhood: float = 0.1
    score_threshold: float = 0.0
    delta1: float = 1.0
    mu: float = 1.7
    delta2: float = 2.65
    gamma: float = 22.48
    score_threds: float = 0.3
    match_threds: float = 5.0
    alpha: float = 0.1

    def __post_init__(self) -> None:
        for name in ("sigma1", "sigma2", "neighbourhood", "delta1", "delta2", "alpha"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass(frozen=True)
class NMSResult:
    """Output of pose NMS over n input poses.

    Attributes:
        keep: ``(p,)`` int indices of the kept (reference) poses in the input, in pick order.
        keypoints: ``(p, k, 2)`` merged joint coordinates, pixels (NaN where no pose had the joint).
        keypoint_scores: ``(p, k)`` merged joint scores.
        clusters: For each kept pose, the ``(c,)`` input indices merged into it (itself included).
    """

    keep: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    clusters: tuple[np.ndarray, ...]


def _box_wh(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.maximum(b[:, 2] - b[:, 0], 1e-6), np.maximum(b[:, 3] - b[:, 1], 1e-6)


def _merge(ref: np.ndarray, preds: np.ndarray, scores: np.ndarray, near: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Score-weighted merge of a cluster. ``near`` ``(c, k)``: joint lies in the reference joint's
    neighbourhood. Returns ``(k, 2)`` coordinates and ``(k,)`` scores ``sum(c^2) / sum(c)``."""
    w = scores * near
    tot = w.sum(0)
    safe = np.where(tot > 0, tot, 1.0)
    pose = np.einsum("ck,ckd->kd", w, np.nan_to_num(preds)) / safe[:, None]
    score = (w * scores).sum(0) / safe
    pose = np.where((tot > 0)[:, None], pose, ref)
    return pose, np.where(tot > 0, score, 0.0)


def rmpe_pose_nms(keypoints: np.ndarray, keypoint_scores: np.ndarray, boxes: np.ndarray,
                  pose_scores: np.ndarray | None = None,
                  config: PoseNMSConfig = PoseNMSConfig()) -> NMSResult:
    """The paper's parametric pose NMS with box-normalized distances (see the module docstring).

    Args:
        keypoints: ``(n, k, 2)`` pixels; NaN joints never match.
        keypoint_scores: ``(n, k)`` joint confidences.
        boxes: ``(n, 4)`` xyxy person boxes (the detector's), which set each pose's scale.
        pose_scores: ``(n,)`` confidences that order the greedy picks; default: mean joint score.
        config: ``sigma1``, ``sigma2``, ``lam``, ``eta``, ``neighbourhood``, ``score_threshold``.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    n, k = kp.shape[:2]
    sc = np.where(np.isfinite(kp).all(-1), np.asarray(keypoint_scores, dtype=np.float64), 0.0)
    order_score = sc.mean(1) if pose_scores is None else np.asarray(pose_scores, dtype=np.float64)
    w, h = _box_wh(boxes)
    soft = np.tanh(sc / config.sigma1)  # (n, k)
    remaining = np.ones(n, dtype=bool)
    keep, poses, scores, clusters = [], [], [], []
    with np.errstate(invalid="ignore"):
        while remaining.any():
            # 1. the most confident remaining pose
            idx = np.flatnonzero(remaining)
            i = idx[np.argmax(order_score[idx])]
            # 2. similarity to every remaining pose
            diff = kp[idx] - kp[i]  # (r, k, 2), NaN where either joint is absent
            near = ((np.abs(diff[..., 0]) <= config.neighbourhood * w[i] / 2)
                    & (np.abs(diff[..., 1]) <= config.neighbourhood * h[i] / 2))
            k_sim = (near * soft[i] * soft[idx]).sum(1)
            d2 = (diff ** 2).sum(-1) / max(w[i], h[i]) ** 2
            h_sim = np.nan_to_num(np.exp(-d2 / config.sigma2)).sum(1)
            # 3. eliminate the close ones (the reference itself always)
            gone = (k_sim + config.lam * h_sim >= config.eta) | (idx == i)
            members = idx[gone]
            remaining[members] = False
            # 4. merge the cluster
            pose, score = _merge(kp[i], kp[members], sc[members], near[gone])
            if score.max(initial=0.0) < config.score_threshold:
                continue
            keep.append(i)
            poses.append(pose)
            scores.append(score)
            clusters.append(members)
    return _result(keep, poses, scores, clusters, k)


def alphapose_pose_nms(keypoints: np.ndarray, keypoint_scores: np.ndarray, boxes: np.ndarray,
                       config: PoseNMSConfig = PoseNMSConfig(mode="alphapose")) -> NMSResult:
    """AlphaPose's released parametric pose NMS (``pose_nms_body`` of ``pPose_nms.py``).

    Same inputs as :func:`rmpe_pose_nms`; uses ``delta1, mu, delta2, gamma, score_threds,
    match_threds, alpha`` of ``config``. Poses are ordered by their mean joint score, as there.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    n, k = kp.shape[:2]
    present = np.isfinite(kp).all(-1)
    sc = np.asarray(keypoint_scores, dtype=np.float64).copy()
    sc[(sc == 0) | ~present] = 1e-5  # AlphaPose floors zero scores
    kp = np.where(present[..., None], kp, 1e9)  # absent joints: far away, never match
    w, h = _box_wh(boxes)
    ref_dists = config.alpha * np.maximum(w, h)
    human_scores = sc.mean(1)
    soft = np.tanh(sc / config.delta1)
    remaining = np.ones(n, dtype=bool)
    keep, poses, scores, clusters = [], [], [], []
    while remaining.any():
        idx = np.flatnonzero(remaining)
        i = idx[np.argmax(human_scores[idx])]
        dist = np.sqrt(((kp[idx] - kp[i]) ** 2).sum(-1))  # (r, k) pixels
        # Similarity: soft score match of joints within 1 pixel + mu * sum exp(-d / delta2).
        simi = ((dist <= 1) * soft[i] * soft[idx]).sum(1) + config.mu * np.exp(-dist / config.delta2).sum(1)
        num_match = (dist / min(ref_dists[i], 7.0) <= 1).sum(1)
        gone = (simi > config.gamma) | (num_match >= config.match_threds) | (idx == i)
        members = idx[gone]
        remaining[members] = False
        if sc[i].max() < config.score_threds:
            continue
        near = dist[gone] <= min(ref_dists[i], 15.0)
        pose, score = _merge(kp[i], kp[members], sc[members], near)
        if score.max() < config.score_threds:
            continue
        keep.append(i)
        poses.append(pose)
        scores.append(score)
        clusters.append(members)
    res = _result(keep, poses, scores, clusters, k)
    # Joints absent in every cluster member stay absent.
    absent = np.ones(res.keypoint_scores.shape, dtype=bool)
    for c, members in enumerate(res.clusters):
        absent[c] = ~present[members].any(0)
    kp_out = np.where(absent[..., None], np.nan, res.keypoints)
    return NMSResult(res.keep, kp_out, np.where(absent, 0.0, res.keypoint_scores), res.clusters)


def _result(keep, poses, scores, clusters, k) -> NMSResult:
    if not keep:
        return NMSResult(np.zeros(0, dtype=np.int64), np.zeros((0, k, 2)), np.zeros((0, k)), ())
    return NMSResult(np.asarray(keep, dtype=np.int64), np.stack(poses), np.stack(scores),
                     tuple(clusters))


def pose_nms(poses: FramePoses, config: PoseNMSConfig = PoseNMSConfig()) -> tuple[FramePoses, NMSResult]:
    """Pose NMS on one frame's poses; the kept poses keep their detector boxes and box scores.

    Returns the merged :class:`FramePoses` (in pick order) and the :class:`NMSResult`.
    """
    n = len(poses)
    if config.mode == "none" or n == 0:
        res = NMSResult(np.arange(n), np.array(poses.keypoints), np.array(poses.keypoint_scores),
                        tuple(np.array([i]) for i in range(n)))
        return poses, res
    if config.mode == "alphapose":
        res = alphapose_pose_nms(poses.keypoints, poses.keypoint_scores, poses.boxes, config)
    else:
        res = rmpe_pose_nms(poses.keypoints, poses.keypoint_scores, poses.boxes,
                            pose_scores=poses.scores, config=config)
    kept = poses.subset(res.keep)
    out = FramePoses(res.keypoints, res.keypoint_scores, kept.boxes, kept.scores, poses.schema,
                     track_ids=kept.track_ids, head_boxes=kept.head_boxes, box_scores=kept.box_scores)
    return out, res
