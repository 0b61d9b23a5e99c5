"""Settings of the CrowdPose joint-candidate association (Li et al., CVPR 2019), as a frozen dataclass.

Every field has one default (measured with TinyPose-256 heatmaps: docs/association.md); YAML
configs and ``--set association.x=...`` overrides are read with
:func:`posetracker.core.config.load_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from posetracker.core.coco import MIN_JOINTS_FOR_CROWD_INDEX
from posetracker.core.pose_nms import PoseNMSConfig


@dataclass(frozen=True)
class AutoConfig:
    """When ``--association auto`` uses the association instead of pose NMS, frame by frame.

    The frame's proposals (boxes with the SPPE's single-person answers) are checked first: where
    they overlap (the CrowdPose crowd index of their answers and boxes,
    :func:`posetracker.core.coco.crowd_index_of`, reaches ``crowd_threshold``), proposals compete
    for joints and the association decides who owns which; elsewhere the frame gets pose NMS's
    result unchanged, so uncrowded frames cannot lose.

    Attributes:
        crowd_threshold: Crowd index of the NMS people from which the association is used.
        joint_threshold: Joint score from which a joint counts in the crowd index (as a
            labelled joint of the ground truth does).
        min_joints: People with fewer counted joints are not averaged over (the crowd index's
            own rule: 4, :data:`posetracker.core.coco.MIN_JOINTS_FOR_CROWD_INDEX`).
    """

    crowd_threshold: float = 0.2
    joint_threshold: float = 0.3
    min_joints: int = MIN_JOINTS_FOR_CROWD_INDEX

    def __post_init__(self) -> None:
        if self.crowd_threshold < 0:
            raise ValueError(f"crowd_threshold must be >= 0, got {self.crowd_threshold}")
        if not 0.0 <= self.joint_threshold <= 1.0:
            raise ValueError(f"joint_threshold must be in [0, 1], got {self.joint_threshold}")
        if self.min_joints < 0:
            raise ValueError(f"min_joints must be >= 0, got {self.min_joints}")


@dataclass(frozen=True)
class AssociationConfig:
    """Parameters of candidate extraction, the person-joint graph and the per-joint matching.

    Candidates (paper Sec. 3.1, "joint-candidate SPPE"):

    Attributes:
        candidate_threshold: Minimum response (heatmap value in [0, 1], after the estimator's sigmoid
            and any person prior) for a local maximum to take part in the person-joint graph.
        fallback_threshold: Minimum response for a local maximum to be kept at all; candidates between
            this and ``candidate_threshold`` stay out of the graph and serve the fallback (a faint
            peak of an occluded joint is still a better guess than none; COCO's OKS scores a missing
            joint like a wrong one).
        max_candidates: Most candidates kept per proposal and joint type (highest responses first).
        peak_window: Side of the square window, in heatmap cells, in which a candidate must be the
            maximum (odd; 3 = the 8-neighbourhood).
        refine: Sub-pixel refinement of each peak: ``"gaussian"`` fits a parabola to the log of the
            3-cell neighbourhood in x and y (exact for a Gaussian peak, and it measures the peak's width
            too); ``"quadratic"`` fits the parabola to the raw responses; ``"none"`` keeps the cell.
            Offsets given by the estimator (MoveNet's sub-cell offsets) replace the fit when passed.
        response_size: Width (standard deviation) of the heatmap's Gaussian response, in heatmap cells,
            used as the candidate size ``u`` when the peak's own width cannot be measured; with
            ``measure_size`` false it is used for every candidate.
        measure_size: Measure ``u`` per candidate from the peak's curvature (``"gaussian"`` refine);
            clamped to ``[0.5, 3] x response_size``.

    Graph (paper Sec. 3.2, "joint node building" and "person-joint connection"):

    Attributes:
        delta_scale: Candidates of joint type ``k`` from different proposals form one joint node when
            they lie within ``min(u1, u2) * delta_k`` pixels, with
            ``delta_k = delta_scale * sigma_k / mean(sigma)`` (``sigma``: the schema's OKS sigmas), so
            loosely annotated joints (hips) merge from farther apart than precise ones (eyes).
            3 is measured on the crowd composites' train split (TinyPose-256): of the pairs of
            two proposals' candidates on one ground-truth joint, 91 % merge (84 % at 2), of the
            pairs on two different people's joints 1.9 % do (0.7 % at 2); the fewest wrong pairs
            of 1, 2, 3, 4, 6, 8 (docs/association.md).
        node_position: Where an assigned joint is placed: ``"own"`` = the owner's own candidate in the
            node; ``"mean"`` = the response-weighted mean of all the node's candidates.

    Assignment (paper Sec. 3.2, "graph optimization"):

    Attributes:
        fallback: What a proposal gets for a joint type in which it won no joint node (see
            :mod:`posetracker.association.assign`, step 2): a joint seen only faintly takes its strongest faint
            peak unless ``"drop"``; a joint whose nodes all went to other proposals takes
            ``"next"``: its strongest faint candidate outside the owned nodes, else nothing;
            ``"keep"``: its strongest candidate although another proposal owns it, scored
            ``fallback_factor`` x its response; ``"drop"``: nothing (NaN joint, score 0).
        fallback_factor: Score multiplier for joints placed by the ``"keep"`` fallback. 1 keeps the
            SPPE's own confidence: on the shared COCO subset every discount tried (0.5, 0.25, 0,
            1e-5 as CrowdPose's released code) lowered AP on crowded images, with detected and with
            ground-truth boxes, because it also demotes true people whose joints a neighbour's box
            claims.
        min_joints: Proposals that own fewer joints than this after matching are redundant and removed.
        pose_score: The output poses' person score when the association is used on its own: ``"mean"`` =
            proposal score x mean score of the joints above ``kpt_threshold`` (of all present joints
            when none is), the form of the RMPE estimator's ``box_x_kpt`` rule; ``"sum"`` = proposal
            score x mean over all joint types (absent ones count 0), which ranks a pose that lost
            joints lower. In the product (``estimate``/``track --association crowdpose``) the
            estimator's own rule (``EstimatorConfig.pose_score``, ``kpt_threshold``) scores the
            associated poses instead, so both grouping methods rank people alike.
        kpt_threshold: See ``pose_score`` (not used by the product; see above).
        person_weight: ``"score"``: an edge's weight in the matching is the candidate's response
            times its proposal's person score (the same rule that ranks people: detector score x
            mean joint score of its single-person answer), as CrowdPose's released matching weighs
            joints by ``human score x joint score``; a weak duplicate box then loses contested joints
            to the strong box of the same person. ``"none"``: the response alone.
        nms: Step 5, RMPE's parametric pose NMS over the associated poses (the estimator's
            defaults; ``mode: none`` turns it off): boxes of one person that each kept joint nodes of
            their own are merged, ordered by the person score.
        redundant_score: Step 5 keeps the poses its pose NMS merges into a stronger one, unmerged,
            at this fraction of their person score (0: removed, as pose NMS alone does). Two
            overlapping people's poses look alike to the pose NMS; ranked low, a second person
            adds recall and a duplicate costs little precision. Measured on the crowd composites'
            train split (AP on crowd index >= 0.2; 0 = removed: 0.3973): 0.1, 0.2, 0.3, 0.4, 0.5
            give 0.4051, 0.4078, 0.4105, 0.4110, 0.4111; 0.3 is the smallest within 0.001 of the
            best, the one that ranks merged-away poses lowest at no cost on train (0.4 and 0.5 lose
            on the validation composites and on the COCO subset's crowded image:
            docs/association.md).
        prior_bias: The ``b`` of the person prior ``b / (distance + b)`` (cells) that turns a
            person-agnostic heatmap into this proposal's response when the SPPE gives the expected
            joint positions (:func:`posetracker.association.candidates.distance_prior`); 1.8 is MoveNet's.
        auto: The rule of ``--association auto`` (:class:`AutoConfig`).
    """

    candidate_threshold: float = 0.05
    fallback_threshold: float = 0.0
    max_candidates: int = 4
    peak_window: int = 3
    refine: Literal["gaussian", "quadratic", "none"] = "gaussian"
    response_size: float = 1.5
    measure_size: bool = True
    delta_scale: float = 3.0
    node_position: Literal["own", "mean"] = "own"
    fallback: Literal["next", "keep", "drop"] = "keep"
    fallback_factor: float = 1.0
    min_joints: int = 1
    pose_score: Literal["mean", "sum"] = "mean"
    kpt_threshold: float = 0.2
    prior_bias: float = 1.8
    person_weight: Literal["score", "none"] = "score"
    redundant_score: float = 0.3
    nms: PoseNMSConfig = field(default_factory=PoseNMSConfig)
    auto: AutoConfig = field(default_factory=AutoConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.candidate_threshold < 1.0:
            raise ValueError(f"candidate_threshold must be in [0, 1), got {self.candidate_threshold}")
        if not 0.0 <= self.fallback_threshold <= self.candidate_threshold:
            raise ValueError("fallback_threshold must be in [0, candidate_threshold], got "
                             f"{self.fallback_threshold}")
        if self.max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {self.max_candidates}")
        if self.peak_window < 1 or self.peak_window % 2 == 0:
            raise ValueError(f"peak_window must be odd and >= 1, got {self.peak_window}")
        if self.response_size <= 0:
            raise ValueError(f"response_size must be > 0, got {self.response_size}")
        if self.delta_scale <= 0:
            raise ValueError(f"delta_scale must be > 0, got {self.delta_scale}")
        if not 0.0 <= self.fallback_factor <= 1.0:
            raise ValueError(f"fallback_factor must be in [0, 1], got {self.fallback_factor}")
        if not 0.0 <= self.redundant_score <= 1.0:
            raise ValueError(f"redundant_score must be in [0, 1], got {self.redundant_score}")
        if self.prior_bias <= 0:
            raise ValueError(f"prior_bias must be > 0, got {self.prior_bias}")
        if self.min_joints < 0:
            raise ValueError(f"min_joints must be >= 0, got {self.min_joints}")
