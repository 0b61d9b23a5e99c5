"""Global joint association of CrowdPose (Li et al., CVPR 2019, Sec. 3.2, "graph optimization").

The paper maximizes the total edge weight of the person-joint graph subject to: each person owns at
most one joint node of each type, and each joint node belongs to at most one person. Edges never join
different joint types, so the problem splits exactly into one maximum-weight bipartite matching per
joint type. Steps:

1. per joint type, solve the matching with ``scipy.optimize.linear_sum_assignment(maximize=True)``
   (the paper uses an updated Kuhn-Munkres algorithm; the optimum is the same); pairs without an
   edge (weight 0) are not owned;
2. fallback for a proposal that owns no node of a joint type. If it saw that joint only faintly (no
   candidate reached ``candidate_threshold``), its strongest faint peak, the SPPE's own best guess.
   If it lost its nodes to other proposals: with ``fallback="next"`` its strongest faint candidate
   outside every owned node's radius, else nothing; with ``"keep"`` its strongest candidate even
   though another proposal owns it, at ``fallback_factor`` x its response. ``"drop"`` leaves every
   such joint absent, as the paper does; COCO-style evaluation scores a missing joint like a wrong
   one, and on the shared COCO subset "keep" scores best;
3. proposals owning fewer than ``min_joints`` joint nodes are redundant and removed (the paper's
   removal of person nodes without joints, ``min_joints = 1``);
4. the remaining proposals become :class:`posetracker.poses.FramePoses`: each owned joint at the
   owner's own candidate (or the node's mean, ``node_position``) with its response as joint score,
   the proposal's box, and a pose score from the proposal score and the joint scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

import torch

from association.candidates import JointCandidates, distance_prior, extract_candidates
from association.config import AssociationConfig
from association.graph import PersonJointGraph, build_graph
from posetracker.poses import FramePoses
from posetracker.schemas import KeypointSchema


@dataclass(frozen=True, eq=False)
class Assignment:
    """Which candidate each proposal keeps for each joint type.

    Attributes:
        node: ``(n, k)`` int, the joint node the proposal owns; -1 = none.
        slot: ``(n, k)`` int, the candidate (index into ``m``) that gives the joint's position; -1 =
            the joint is absent.
        fallback: ``(n, k)`` bool, the joint was placed by the fallback (step 2), not owned.
        shared: ``(n, k)`` bool, the fallback placed it at a candidate whose node another proposal
            owns (``fallback="keep"``); its score is scaled by ``fallback_factor``.
        kept: ``(n,)`` bool, the proposal survives the redundancy removal (step 3).
    """

    node: np.ndarray
    slot: np.ndarray
    fallback: np.ndarray
    shared: np.ndarray
    kept: np.ndarray


def match_max_weight(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: maximum-weight matching of an ``(n, q)`` bipartite weight matrix (0 = no edge).

    Returns row and column indices of the matched pairs that are real edges (weight > 0).
    """
    if weights.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    real = weights[rows, cols] > 0
    return rows[real], cols[real]


def assign(graph: PersonJointGraph, config: AssociationConfig = AssociationConfig()) -> Assignment:
    """Steps 1-3 on a built graph."""
    cand = graph.candidates
    n, k, m = cand.score.shape
    node = np.full((n, k), -1, dtype=np.int64)
    slot = np.full((n, k), -1, dtype=np.int64)
    fallback = np.zeros((n, k), dtype=bool)
    shared = np.zeros((n, k), dtype=bool)

    for t, jt in enumerate(graph.joints):
        rows, cols = match_max_weight(jt.weights)
        node[rows, t] = cols
        slot[rows, t] = jt.slot[rows, cols]

    # Step 2: fallback for joint types a proposal owns no node of.
    if config.fallback != "drop":
        lost = (node < 0) & graph.in_graph.any(axis=2)        # its nodes all went to others
        unseen = (node < 0) & ~graph.in_graph.any(axis=2) & cand.valid[:, :, 0]
        # only faint peaks: the strongest one is the SPPE's own best guess
        slot[unseen] = 0
        fallback[unseen] = True
        for p, t in zip(*np.nonzero(lost)):
            jt = graph.joints[t]
            owned = node[:, t][node[:, t] >= 0]
            weak = cand.valid[p, t] & ~graph.in_graph[p, t]
            if config.fallback == "next" and weak.any():
                d = np.linalg.norm(cand.xy[p, t][:, None, :] - jt.position[owned][None], axis=-1)
                weak &= (d > jt.radius[owned][None]).all(axis=1)
                if weak.any():
                    slot[p, t] = int(np.flatnonzero(weak)[0])  # slots are sorted strongest first
                    fallback[p, t] = True
            elif config.fallback == "keep":
                slot[p, t] = 0
                fallback[p, t] = True
                shared[p, t] = True

    # Step 3: redundant proposals own (almost) no joints.
    kept = (node >= 0).sum(axis=1) >= config.min_joints
    return Assignment(node=node, slot=slot, fallback=fallback, shared=shared, kept=kept)


def assignment_poses(
    graph: PersonJointGraph,
    assignment: Assignment,
    boxes: np.ndarray,
    box_scores: np.ndarray,
    schema: KeypointSchema,
    config: AssociationConfig = AssociationConfig(),
) -> FramePoses:
    """Step 4: the kept proposals' poses as :class:`FramePoses`.

    Args:
        boxes: ``(n, 4)`` proposal boxes, xyxy pixels.
        box_scores: ``(n,)`` proposal (detection) scores.
    """
    cand = graph.candidates
    n, k, _ = cand.score.shape
    has = assignment.slot >= 0
    sl = np.where(has, assignment.slot, 0)
    pi, ti = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    xy = np.where(has[..., None], cand.xy[pi, ti, sl], np.nan)
    score = np.where(has, cand.value[pi, ti, sl], 0.0)
    score = np.where(assignment.shared, score * config.fallback_factor, score)
    if config.node_position == "mean":
        for t, jt in enumerate(graph.joints):
            own = assignment.node[:, t] >= 0
            xy[own, t] = jt.position[assignment.node[own, t]]
    if config.pose_score == "mean":
        above = score > config.kpt_threshold
        use = np.where(above.any(1, keepdims=True), above, has)
        joint_term = (score * use).sum(1) / np.maximum(use.sum(1), 1)
    else:
        joint_term = score.sum(1) / max(k, 1)
    pose_score = np.asarray(box_scores, dtype=np.float64) * joint_term
    kept = assignment.kept
    return FramePoses(xy[kept], score[kept], np.asarray(boxes, dtype=np.float64).reshape(n, 4)[kept],
                      pose_score[kept], schema)


def associate(
    candidates: JointCandidates,
    boxes: np.ndarray,
    box_scores: np.ndarray,
    schema: KeypointSchema,
    config: AssociationConfig = AssociationConfig(),
) -> tuple[FramePoses, np.ndarray]:
    """Candidates of ``n`` proposals -> final poses, by the whole CrowdPose association.

    Returns the poses and the indices ``(n_kept,)`` of the proposals they come from.
    """
    if candidates.num_joints != schema.num_keypoints:
        raise ValueError(f"candidates have {candidates.num_joints} joint types, schema "
                         f"{schema.name} has {schema.num_keypoints}")
    graph = build_graph(candidates, schema.sigma_array(), config)
    result = assign(graph, config)
    poses = assignment_poses(graph, result, boxes, box_scores, schema, config)
    return poses, np.flatnonzero(result.kept)


def associate_heatmaps(
    heatmaps: torch.Tensor | np.ndarray,
    heatmap_to_image: np.ndarray,
    boxes: np.ndarray,
    box_scores: np.ndarray,
    schema: KeypointSchema,
    config: AssociationConfig = AssociationConfig(),
    offsets: torch.Tensor | np.ndarray | None = None,
    expected: torch.Tensor | np.ndarray | None = None,
) -> tuple[FramePoses, np.ndarray]:
    """One frame's SPPE heatmaps -> final poses: candidates, graph, matching, poses.

    Args:
        heatmaps: ``(n, k, h, w)`` per-proposal heatmaps in [0, 1].
        heatmap_to_image: ``(n, 2, 3)`` heatmap-cell -> image-pixel affines (SDTN o cell scaling).
        boxes, box_scores: ``(n, 4)`` xyxy proposals and ``(n,)`` their scores.
        offsets: Optional ``(n, k, h, w, 2)`` sub-cell offsets (cells, x first).
        expected: Optional ``(n, k, 2)`` joint positions (cells) where the SPPE expects this
            proposal's person (MoveNet: regressed from its centre); they weight the heatmaps with
            :func:`association.candidates.distance_prior`.

    Returns:
        The poses and the indices of the proposals they come from.
    """
    hm = torch.as_tensor(heatmaps)
    prior = None
    if expected is not None:
        prior = distance_prior(torch.as_tensor(expected, device=hm.device), tuple(hm.shape[-2:]),
                               config.prior_bias)
    cand = extract_candidates(hm, heatmap_to_image, config, offsets=offsets, prior=prior)
    return associate(cand, boxes, box_scores, schema, config)


def heatmap_affines(crop_to_image: np.ndarray, stride: float) -> np.ndarray:
    """Heatmap-cell -> image-pixel affines ``(n, 2, 3)`` from the SDTN's crop -> image affines.

    Heatmap cell ``i`` lies at crop pixel ``i * stride - 0.5`` (pixel-index coordinates), the
    convention of MoveNet's decode (fractions of the crop side) and of AlphaPose's FastPose decode.
    """
    a = np.asarray(crop_to_image, dtype=np.float64).reshape(-1, 2, 3)
    out = a.copy()
    out[:, :, :2] *= stride
    out[:, :, 2] -= 0.5 * a[:, :, :2].sum(axis=2)
    return out


def associate_intermediates(
    inter, schema: KeypointSchema, config: AssociationConfig = AssociationConfig()
) -> tuple[FramePoses, np.ndarray]:
    """CrowdPose association of one frame's per-box SPPE results, instead of pose NMS.

    ``inter`` is the estimator's per-frame result before NMS
    (:class:`estimators.rmpe.FrameIntermediates`, read by attribute): ``boxes`` ``(n, 4)``,
    ``box_scores`` ``(n,)``, ``affines`` ``(n, 2, 3)`` crop -> image, ``heatmaps`` ``(n, k, h, w)`` in
    [0, 1], ``heatmap_stride``, ``keypoints`` ``(n, k, 2)`` the SPPE's single-person answer in image
    pixels, and optionally ``offsets`` ``(n, k, h, w, 2)`` sub-cell offsets (cells, x first).

    The single-person answer is where the SPPE expects each proposal's person; it weights that
    proposal's heatmaps with the person prior (see :func:`associate_heatmaps`).
    """
    n = len(inter.boxes)
    if n == 0 or inter.heatmaps is None:
        return FramePoses.empty(schema), np.zeros(0, dtype=np.int64)
    aff = inter.affines
    aff = aff.double().cpu().numpy() if isinstance(aff, torch.Tensor) else np.asarray(aff, np.float64)
    cells_to_image = heatmap_affines(aff, float(inter.heatmap_stride))
    # image -> cells: invert each affine
    lin = cells_to_image[:, :, :2]
    inv = np.linalg.inv(lin)
    kp = np.asarray(inter.keypoints, dtype=np.float64)
    expected = np.einsum("nij,nkj->nki", inv, kp - cells_to_image[:, None, :, 2])
    expected = np.nan_to_num(expected, nan=-1e4)     # a joint without an answer: no prior peak
    heatmaps = torch.as_tensor(inter.heatmaps).float().clamp(0.0, 1.0)
    offsets = getattr(inter, "offsets", None)
    return associate_heatmaps(heatmaps, cells_to_image, np.asarray(inter.boxes),
                              np.asarray(inter.box_scores), schema, config, offsets=offsets,
                              expected=torch.as_tensor(expected, device=heatmaps.device))


class AssociatingEstimator:
    """An RMPE estimator whose per-frame grouping is the CrowdPose association instead of pose NMS.

    Wraps any object with ``intermediates(frames, heatmaps=..., candidates=..., boxes=...)`` and a
    ``sppe.schema`` (:class:`estimators.rmpe.RMPEEstimator`); :meth:`estimate` has the estimator's
    signature, so command code can swap one for the other. Other attributes (``device``, ``times``)
    are the wrapped estimator's.

    Args:
        estimator: The RMPE estimator.
        config: Association settings.
    """

    def __init__(self, estimator, config: AssociationConfig = AssociationConfig()):
        self.estimator = estimator
        self.config = config

    def __getattr__(self, name: str):
        return getattr(self.estimator, name)

    def estimate(self, frames, boxes=None) -> list[FramePoses]:
        """Poses of every frame, one :class:`FramePoses` each, associated per frame."""
        schema = self.estimator.sppe.schema
        out = []
        for inter in self.estimator.intermediates(frames, heatmaps=True, candidates=0, boxes=boxes):
            poses, _ = associate_intermediates(inter, schema, self.config)
            out.append(poses)
        return out
