"""Global joint association of CrowdPose (Li et al., CVPR 2019, Sec. 3.2, "graph optimization").

The paper maximizes the total edge weight of the person-joint graph subject to: each person owns at
most one joint node of each type, and each joint node belongs to at most one person. Edges never join
different joint types, so the problem splits exactly into one maximum-weight bipartite matching per
joint type. Steps:

1. per joint type, solve the matching with ``scipy.optimize.linear_sum_assignment(maximize=True)``
   (the paper uses an updated Kuhn-Munkres algorithm; the optimum is the same); pairs without an
   edge (weight 0) are not owned. An edge weighs the candidate's response, times the person node's
   confidence when ``person_weights`` are given (``person_weight="score"``: the proposal's person
   score, as CrowdPose's released matching weighs a joint by ``human score x joint score``), so a
   weak duplicate box does not take joints from the strong box of the same person;
2. fallback for a proposal that owns no node of a joint type. If it saw that joint only faintly (no
   candidate reached ``candidate_threshold``), its strongest faint peak, the SPPE's own best guess.
   If it lost its nodes to other proposals: with ``fallback="next"`` its strongest faint candidate
   outside every owned node's radius, else nothing; with ``"keep"`` its strongest candidate even
   though another proposal owns it, at ``fallback_factor`` x its response. ``"drop"`` leaves every
   such joint absent, as the paper does; COCO-style evaluation scores a missing joint like a wrong
   one, and on the shared COCO subset "keep" scores best;
3. proposals owning fewer than ``min_joints`` joint nodes are redundant and removed (the paper's
   removal of person nodes without joints, ``min_joints = 1``);
4. the remaining proposals become :class:`posetracker.core.poses.FramePoses`: each owned joint at the
   owner's own candidate (or the node's mean, ``node_position``) with its response as joint score,
   the proposal's box, and a pose score from the proposal score and the joint scores;
5. redundant proposals that survive step 3 are merged by RMPE's parametric pose NMS
   (``config.nms``, the estimator's defaults). Two boxes on one person rarely yield candidates
   within one joint node's radius (a few pixels) for every joint, so each keeps some nodes of its
   own; the pose NMS compares whole poses at the person's scale and merges them. A merged-away
   pose is not dropped but ranked last: kept at ``config.redundant_score`` x its person score
   (COCO AP ranks people, so a pose that is a second person after all adds recall at the end of
   the ranking, and one that is a duplicate costs little precision there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from posetracker.association.candidates import JointCandidates, distance_prior, extract_candidates
from posetracker.association.config import AssociationConfig
from posetracker.association.graph import PersonJointGraph, build_graph
from posetracker.core.intermediates import FrameIntermediates
from posetracker.core.pose_nms import pose_nms
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import KeypointSchema


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


def assign(graph: PersonJointGraph, config: AssociationConfig = AssociationConfig(),
           person_weights: np.ndarray | None = None) -> Assignment:
    """Steps 1-3 on a built graph.

    Args:
        person_weights: Optional ``(n,)`` confidence of each person node; an edge's weight in the
            matching is then the candidate's response times its proposal's confidence.
    """
    cand = graph.candidates
    n, k, m = cand.score.shape
    node = np.full((n, k), -1, dtype=np.int64)
    slot = np.full((n, k), -1, dtype=np.int64)
    fallback = np.zeros((n, k), dtype=bool)
    shared = np.zeros((n, k), dtype=bool)
    pw = np.ones(n) if person_weights is None else np.asarray(person_weights, dtype=np.float64)

    for t, jt in enumerate(graph.joints):
        rows, cols = match_max_weight(jt.weights * pw[:, None])
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
                      pose_score[kept], schema,
                      box_scores=np.asarray(box_scores, dtype=np.float64).reshape(n)[kept])


def associate(
    candidates: JointCandidates,
    boxes: np.ndarray,
    box_scores: np.ndarray,
    schema: KeypointSchema,
    config: AssociationConfig = AssociationConfig(),
    person_weights: np.ndarray | None = None,
    pose_scores: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[FramePoses, np.ndarray]:
    """Candidates of ``n`` proposals -> final poses, by the whole CrowdPose association (steps 1-5).

    Args:
        person_weights: Optional ``(n,)`` person-node confidences that scale the edge weights (see
            :func:`assign`).
        pose_scores: Optional ``(box_scores (m,), keypoint_scores (m, k)) -> (m,)`` rule that
            replaces ``config.pose_score`` for the output poses' scores (and the order of step 5).

    Returns:
        The poses and the indices ``(n_kept,)`` of the proposals they come from, in proposal order
        (a merged pose names the proposal the others were merged into).
    """
    if candidates.num_joints != schema.num_keypoints:
        raise ValueError(f"candidates have {candidates.num_joints} joint types, schema "
                         f"{schema.name} has {schema.num_keypoints}")
    graph = build_graph(candidates, schema.sigma_array(), config)
    result = assign(graph, config, person_weights)
    poses = assignment_poses(graph, result, boxes, box_scores, schema, config)
    kept = np.flatnonzero(result.kept)
    if pose_scores is not None:
        poses = replace(poses, scores=pose_scores(np.asarray(box_scores, np.float64)[kept],
                                                      poses.keypoint_scores))
    # Step 5: merge the redundant proposals that kept joint nodes of their own; the merged-away
    # poses stay, unmerged, at ``redundant_score`` x their score (see AssociationConfig).
    merged, nms = pose_nms(poses, config.nms)
    source = nms.keep
    if config.redundant_score > 0:
        rest = np.setdiff1d(np.arange(len(poses)), nms.keep)
        demoted = poses.subset(rest)
        merged = FramePoses.concatenate(
            [merged, replace(demoted, scores=demoted.scores * config.redundant_score)])
        source = np.concatenate([nms.keep, rest])
    order = np.argsort(source, kind="stable")            # back to proposal order
    return merged.subset(order), kept[source[order]]


def associate_heatmaps(
    heatmaps: torch.Tensor | np.ndarray,
    heatmap_to_image: np.ndarray,
    boxes: np.ndarray,
    box_scores: np.ndarray,
    schema: KeypointSchema,
    config: AssociationConfig = AssociationConfig(),
    offsets: torch.Tensor | np.ndarray | None = None,
    expected: torch.Tensor | np.ndarray | None = None,
    person_weights: np.ndarray | None = None,
    pose_scores: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[FramePoses, np.ndarray]:
    """One frame's SPPE heatmaps -> final poses: candidates, graph, matching, poses.

    Args:
        heatmaps: ``(n, k, h, w)`` per-proposal heatmaps in [0, 1].
        heatmap_to_image: ``(n, 2, 3)`` heatmap-cell -> image-pixel affines (SDTN o cell scaling).
        boxes, box_scores: ``(n, 4)`` xyxy proposals and ``(n,)`` their scores.
        offsets: Optional ``(n, k, h, w, 2)`` sub-cell offsets (cells, x first).
        expected: Optional ``(n, k, 2)`` joint positions (cells) where the SPPE expects this
            proposal's person (MoveNet: regressed from its centre); they weight the heatmaps with
            :func:`posetracker.association.candidates.distance_prior`.
        person_weights, pose_scores: See :func:`associate`.

    Returns:
        The poses and the indices of the proposals they come from.
    """
    hm = torch.as_tensor(heatmaps)
    prior = None
    if expected is not None:
        prior = distance_prior(torch.as_tensor(expected, device=hm.device), tuple(hm.shape[-2:]),
                               config.prior_bias)
    cand = extract_candidates(hm, heatmap_to_image, config, offsets=offsets, prior=prior)
    return associate(cand, boxes, box_scores, schema, config, person_weights, pose_scores)


def heatmap_affines(crop_to_image: np.ndarray, stride: float, offset: float = -0.5) -> np.ndarray:
    """Heatmap-cell -> image-pixel affines ``(n, 2, 3)`` from the SDTN's crop -> image affines.

    Heatmap cell ``i`` lies at crop pixel ``i * stride + offset`` (pixel-index coordinates):
    ``offset`` -0.5 is the convention of MoveNet's decode (fractions of the crop side) and of
    AlphaPose's FastPose decode, 0 that of PP-TinyPose (targets centred at ``joint / stride``).
    """
    a = np.asarray(crop_to_image, dtype=np.float64).reshape(-1, 2, 3)
    out = a.copy()
    out[:, :, :2] *= stride
    out[:, :, 2] += offset * a[:, :, :2].sum(axis=2)
    return out


def answer_cells(
    answer: np.ndarray, size: tuple[int, int], offsets: torch.Tensor | np.ndarray | None = None
) -> np.ndarray:
    """The heatmap cell each single-person answer was read from: ``(n, k, 2)`` cells -> ``(n, k, 2)``.

    An SPPE reads a joint as a cell plus a sub-cell offset. Centring the person prior on that
    *cell* (not on the refined point, which can lie a cell or more away) makes the answer's cell a
    local maximum of the weighted heatmap at its own height, so the answer is always one of the
    proposal's candidates, at the position and score the pose-NMS path uses: where proposals do
    not compete, both paths return the same joints. With MoveNet the prior centred there is also
    exactly as strong as MoveNet's own (``b / (d + b)``), so no neighbour cell outweighs it.

    Args:
        answer: ``(n, k, 2)`` answers in heatmap cells (x, y); NaN = no answer.
        size: ``(h, w)`` of the heatmaps.
        offsets: Optional ``(n, k, h, w, 2)`` sub-cell offsets (cells, x first): the cell is the one
            whose ``cell + offset`` is nearest the answer. Without offsets: the nearest cell.
    """
    a = np.asarray(answer, dtype=np.float64)
    h, w = size
    if offsets is None or a.size == 0:
        cell = np.round(a)
    else:
        off = torch.as_tensor(offsets).float()
        ys = torch.arange(h, dtype=off.dtype, device=off.device).reshape(h, 1)
        xs = torch.arange(w, dtype=off.dtype, device=off.device).reshape(1, w)
        t = torch.as_tensor(np.nan_to_num(a, nan=-1e4), dtype=off.dtype, device=off.device)
        d2 = ((xs + off[..., 0] - t[..., 0, None, None]) ** 2
              + (ys + off[..., 1] - t[..., 1, None, None]) ** 2)        # (n, k, h, w)
        flat = d2.reshape(*d2.shape[:2], h * w).argmin(-1).cpu().numpy()
        cell = np.stack([flat % w, flat // w], axis=-1).astype(np.float64)
    cell[..., 0] = np.clip(cell[..., 0], 0, w - 1)
    cell[..., 1] = np.clip(cell[..., 1], 0, h - 1)
    return np.where(np.isfinite(a), cell, np.nan)


def associate_intermediates(
    inter: FrameIntermediates,
    schema: KeypointSchema,
    config: AssociationConfig = AssociationConfig(),
    pose_scores: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[FramePoses, np.ndarray]:
    """CrowdPose association of one frame's per-box SPPE results, instead of pose NMS.

    ``inter`` is the estimator's per-frame result before NMS
    (:class:`posetracker.core.intermediates.FrameIntermediates`, read by attribute): ``boxes`` ``(n, 4)``,
    ``box_scores`` ``(n,)``, ``affines`` ``(n, 2, 3)`` crop -> image, ``heatmaps`` ``(n, k, h, w)`` in
    [0, 1], ``heatmap_stride``, ``keypoints`` ``(n, k, 2)`` the SPPE's single-person answer in image
    pixels, and optionally ``offsets`` ``(n, k, h, w, 2)`` sub-cell offsets (cells, x first).

    The single-person answer is where the SPPE expects each proposal's person; it weights that
    proposal's heatmaps with the person prior centred on the answer's cell (see
    :func:`answer_cells` and :func:`associate_heatmaps`). With ``config.person_weight="score"`` each
    person node's confidence is the person score of its single-person answer (``pose_scores``, else
    box score x mean joint score).

    Args:
        pose_scores: Optional ``(box_scores (n,), keypoint_scores (n, k)) -> (n,)`` rule that
            replaces ``config.pose_score`` for the output poses' scores, so that the association
            ranks poses exactly as the pose-NMS path does (the product passes the estimator's
            :meth:`~posetracker.estimators.rmpe.RMPEEstimator.person_scores`); it also orders step 5's pose NMS.

    Returns:
        The poses and the indices of the proposals they come from.
    """
    n = len(inter.boxes)
    if n == 0 or inter.heatmaps is None:
        return FramePoses.empty(schema), np.zeros(0, dtype=np.int64)
    cand = frame_candidates(inter, config)
    box_scores = np.asarray(inter.box_scores, dtype=np.float64)
    person_weights = None
    if config.person_weight == "score":
        kp_scores = np.asarray(inter.keypoint_scores, dtype=np.float64)
        person_weights = (pose_scores(box_scores, kp_scores) if pose_scores is not None
                          else box_scores * kp_scores.mean(axis=1))
    return associate(cand, np.asarray(inter.boxes), box_scores, schema, config, person_weights,
                     pose_scores)


def frame_candidates(inter: FrameIntermediates,
                     config: AssociationConfig = AssociationConfig()) -> JointCandidates:
    """The joint candidates of one frame's proposals as :func:`associate_intermediates` takes
    them: each proposal's heatmaps weighted by the person prior centred on the cell of its
    single-person answer, peaks refined (by the SPPE's offsets when it has them), in image pixels."""
    aff = inter.affines
    aff = aff.double().cpu().numpy() if isinstance(aff, torch.Tensor) else np.asarray(aff, np.float64)
    cells_to_image = heatmap_affines(aff, float(inter.heatmap_stride),
                                     float(getattr(inter, "heatmap_offset", -0.5)))
    # image -> cells: invert each affine
    inv = np.linalg.inv(cells_to_image[:, :, :2])
    kp = np.asarray(inter.keypoints, dtype=np.float64)
    expected = np.einsum("nij,nkj->nki", inv, kp - cells_to_image[:, None, :, 2])
    heatmaps = torch.as_tensor(inter.heatmaps).float().clamp(0.0, 1.0)
    offsets = getattr(inter, "offsets", None)
    expected = answer_cells(expected, tuple(heatmaps.shape[-2:]), offsets)
    expected = np.nan_to_num(expected, nan=-1e4)     # a joint without an answer: no prior peak
    prior = distance_prior(torch.as_tensor(expected, device=heatmaps.device),
                           tuple(heatmaps.shape[-2:]), config.prior_bias)
    return extract_candidates(heatmaps, cells_to_image, config, offsets=offsets, prior=prior)


@dataclass(frozen=True)
class AssociationGrouping:
    """The CrowdPose association as the RMPE estimator's grouping (in place of pose NMS): passed
    to :class:`posetracker.estimators.rmpe.RMPEEstimator` (``grouping=``), which then keeps the
    SPPE heatmaps it needs and calls it per frame."""

    config: AssociationConfig = field(default_factory=AssociationConfig)
    heatmaps: bool = True

    def __call__(self, inter: FrameIntermediates, schema: KeypointSchema,
                 person_scores: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                 ) -> FramePoses:
        return associate_intermediates(inter, schema, self.config, person_scores)[0]

