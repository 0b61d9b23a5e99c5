"""Frozen-dataclass configs of the trackers; defaults are the documented ones.

``TrackerConfig.kind`` picks the tracker; :func:`posetracker.tracker.make_tracker` builds it from the config.
Load from YAML with ``posetracker.core.config.load_config(TrackerConfig, path, overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TrackerKind = Literal["poseflow", "iou", "alphapose", "none"]


@dataclass(frozen=True)
class PoseFlowConfig:
    """PoseFlow building and PoseFlow NMS (Xiu et al., BMVC 2018).

    Attributes:
        link_len: A flow not extended for more than this many frames closes (the released tracker
            uses 100; PF-NMS re-links longer gaps; measurements: docs/tracking.md, "Settings").
        window: Frames PF-NMS sees at once; final ids lag the newest frame by ``window - 1`` frames.
        gate: Minimum link similarity (the candidate set ``T(P)`` of the paper: a pose outside the
            gate is never linked). Higher gates score better on the Bonn benchmark but lose fast,
            small players (docs/tracking.md, "Tuning").
        sigma: Joint tolerance of the pose similarity, as a fraction of the person size.
        w_box, w_pose, w_orb: Weights of box IoU, pose similarity and ORB correspondence IoU in the
            link similarity (the ORB term only counts when images are given).
        orb_window: Half-size of the joint neighbourhood for ORB correspondences, as a fraction of
            the person size (AlphaPose: fixed 30 px).
        gap_decay: Link similarity of a flow last seen ``g`` frames ago is multiplied by
            ``gap_decay ** (g - 1)``, so recent flows win ties.
        use_motion: Predict a flow's pose at the new frame with its constant-velocity motion.
        stop_score: Stop criterion: a flow closes when its mean confidence ``s(Q)`` over the last
            ``window`` frames (missing frames count 0) falls below this; 0 disables.
        nms: Run PF-NMS (merge redundant flows, re-link disjoint ones, suppress short flows).
        merge_threshold: Flows whose median pose-flow distance over their overlapping frames is below
            this are merged (distance ``1 - (pose similarity + box IoU) / 2``).
        merge_min_overlap: Overlapping frames needed before two flows may merge.
        relink_threshold: Minimum similarity between the end of a flow and the start of a later
            flow for them to be re-linked into one.
        relink_gap: Largest gap in frames between the two flows of a re-link (60: 2 s at 30
            frames/s, long enough for a person hidden behind another; docs/tracking.md,
            "Settings").
        min_flow_len: PF-NMS suppresses flows with fewer poses than this once their first frame
            leaves the window (isolated false positives).
        min_flow_score: ... and flows whose mean confidence ``s(Q)`` is below this.
        orb_features: ORB features per frame when images are given.
        w_conf: How much the assignment weighs confidence (the paper's objective sums ``s(Q)``
            along a flow): a link's value is its similarity times
            ``1 - w_conf + w_conf * (s(flow) + s(pose)) / 6``; 0 ranks links by similarity alone.
        lookahead: Frames of look-ahead of PF-Builder's chain assignment (the paper's objective,
            solved jointly for all flows; see :mod:`posetracker.tracker.poseflow`); 0 builds online, one frame
            at a time. At most ``window`` (larger values act as ``window``): frame ``s`` is
            re-assigned when frame ``s + lookahead`` arrives, before it becomes final.
        lookahead_decay: Weight of the ``i``-th look-ahead frame in a chain's value,
            ``lookahead_decay ** i``.
        lookahead_margin: Hysteresis of the look-ahead step: the links already made count this
            much more in its assignment, so a re-assignment must be clearly better (fewer ID
            switches; docs/tracking.md, "Tuning").
        fill_gaps: Give a flow an interpolated pose in the frames where its person was missed,
            when the person is seen again within ``max_fill_gap`` frames (see :mod:`posetracker.tracker.fill`).
        max_fill_gap: Longest gap filled, in frames. A gap is filled only while its frames are not
            final, so gaps longer than ``window`` are filled at most in part.
        fill_decay: A filled joint's score is the interpolated score times ``fill_decay ** d``,
            ``d`` the frames to the nearer detection (so fills rank below detections).
        fill_joints: Also interpolate joints missing from a detected pose, between the flow's
            sightings of that joint before and after.
        w_app: Weight of the torso colour histograms' agreement in the link similarity (only with
            images; see :mod:`posetracker.tracker.appearance`); 0 turns it off.
        orb_max_side: ORB features are found on the frame downscaled so that its longer side is at
            most this many pixels (coordinates are scaled back); 0 keeps the full size. 960: on
            two_people.mp4 (1920x1080) the full size cost about twice as much per frame with the
            same ids (docs/tracking.md, "Appearance cost").
        orb_when: ``always`` computes ORB correspondences on every frame with poses to link;
            ``ambiguous`` only on the frames where they could change a link (the links made with
            the ORB term at 0 beat every other link even with the term at 1; see
            :meth:`posetracker.tracker.poseflow.PoseFlowTracker._links_settled`). The links, hence
            the ids, are the same as with ``always``: the look-ahead step and PF-NMS use no ORB
            (docs/tracking.md, "Appearance cost").
    """

    link_len: int = 10
    window: int = 8
    gate: float = 0.15
    sigma: float = 0.25
    w_box: float = 1.0
    w_pose: float = 2.0
    w_orb: float = 1.0
    orb_window: float = 0.1
    gap_decay: float = 0.9
    use_motion: bool = True
    stop_score: float = 0.5
    nms: bool = True
    merge_threshold: float = 0.35
    merge_min_overlap: int = 2
    relink_threshold: float = 0.3
    relink_gap: int = 60
    min_flow_len: int = 4
    min_flow_score: float = 0.0
    orb_features: int = 1000
    w_conf: float = 1.0
    lookahead: int = 7
    lookahead_decay: float = 0.8
    lookahead_margin: float = 0.2
    fill_gaps: bool = True
    max_fill_gap: int = 7
    fill_decay: float = 0.9
    fill_joints: bool = True
    w_app: float = 1.0
    orb_max_side: int = 960
    orb_when: Literal["always", "ambiguous"] = "ambiguous"

    def __post_init__(self) -> None:
        if self.orb_max_side < 0:
            raise ValueError("orb_max_side must be >= 0 (0: full size)")
        if self.orb_when not in ("always", "ambiguous"):
            raise ValueError(f"orb_when must be always or ambiguous, got {self.orb_when!r}")
        if self.window < 1 or self.link_len < 1:
            raise ValueError("window and link_len must be at least 1")
        if self.lookahead < 0 or self.max_fill_gap < 0:
            raise ValueError("lookahead and max_fill_gap must be at least 0")
        if not 0 < self.gap_decay <= 1:
            raise ValueError("gap_decay must be in (0, 1]")


@dataclass(frozen=True)
class IouConfig:
    """Greedy box-IoU baseline.

    Attributes:
        threshold: Minimum IoU between a track's last box and a new box.
        max_age: A track not matched for more than this many frames is dropped.
    """

    threshold: float = 0.3
    max_age: int = 1


@dataclass(frozen=True)
class AlphaPoseConfig:
    """The released AlphaPose ``PoseFlow/tracker-general.py`` scoring (its command-line defaults).

    Attributes:
        link_len: Frames looked back for a person's last appearance (``--link``).
        num: Joints whose IoUs are averaged, the best ones (``--num``).
        mag: Half-size in pixels of the square window around each joint (``--mag``: 60x60 px).
        match: A Hungarian pair is accepted above this grade (``--match``).
        weights: Grade weights of (dm_iou, box_iou, pose_iou_dm, pose_iou) for a person seen in the
            previous frame.
        weights_older: The same for people last seen in older frames.
        box_expand: Person boxes are the joints' box expanded by this fraction on each side.
        orb_features: ORB features per frame when images are given.
        orb_max_side: Longer side in pixels of the frame ORB sees (0: full size); as PoseFlow's.
    """

    link_len: int = 100
    num: int = 7
    mag: float = 30.0
    match: float = 0.2
    weights: tuple[float, float, float, float] = (1.0, 2.0, 1.0, 2.0)
    weights_older: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)
    box_expand: float = 0.1
    orb_features: int = 1000
    orb_max_side: int = 960

    def __post_init__(self) -> None:
        if self.orb_max_side < 0:
            raise ValueError("orb_max_side must be >= 0 (0: full size)")


@dataclass(frozen=True)
class TrackerConfig:
    """Which tracker to run, with every tracker's settings.

    Attributes:
        kind: ``poseflow`` (default), ``iou``, ``alphapose`` or ``none`` (a new id per pose).
    """

    kind: TrackerKind = "poseflow"
    poseflow: PoseFlowConfig = field(default_factory=PoseFlowConfig)
    iou: IouConfig = field(default_factory=IouConfig)
    alphapose: AlphaPoseConfig = field(default_factory=AlphaPoseConfig)
