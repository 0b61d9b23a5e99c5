"""The application's settings: one frozen :class:`AppConfig` composing every domain's config.

Sections (each a frozen dataclass owned by its package; unknown keys are rejected):

- ``estimator``: EstimatorConfig (detector, SPPE, pose NMS, device) as ``track`` and the Python
  API's ``PoseTracker.track`` run it (see :func:`track_estimator`);
- ``association``: AssociationConfig (CrowdPose joint-candidate association);
- ``tracker``: TrackerConfig (which tracker, and each tracker's settings);
- ``pipeline``: :class:`PipelineConfig` below (grouping method, queues, outputs of ``track``);
- ``estimate``: :class:`EstimateConfig` below (what ``estimate``, ``fit-nms`` and the estimator
  benchmarks run: the estimator at its accuracy settings).

The dataclasses hold every default; nothing is read from files unless asked.
:func:`load_app_config` starts from ``AppConfig()``, then the user's ``--config FILE``, then
``--set key=value`` overrides (keys rooted at the whole config, e.g.
``tracker.poseflow.link_len=20`` or ``estimate.estimator.nms.mode=alphapose``); each later source
overrides keys of the earlier ones and leaves the others alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from posetracker.association.config import AssociationConfig
from posetracker.core.config import (
    apply_overrides,
    dump_config,
    load_yaml,
    update_config,
)
from posetracker.core.errors import ConfigError
from posetracker.core.pose_nms import PoseNMSConfig
from posetracker.estimators.config import (
    DetectorConfig,
    EstimatorConfig,
    ScreenConfig,
    SPPEConfig,
)
from posetracker.io.formats.output_formats import OUTPUT_FORMATS
from posetracker.tracker.config import TrackerConfig

#: How a frame's per-box poses become its people (``--association``): see ``PipelineConfig``.
Association = Literal["auto", "nms", "crowdpose"]
#: Its choices, for the command lines.
ASSOCIATIONS: tuple[str, ...] = get_args(Association)


@dataclass(frozen=True)
class OutputConfig:
    """What ``posetracker track`` writes. The joints are decided once per frame, before any output
    sees them (:class:`posetracker.app.output.OutputPolicy`), so the final JSON, the JSON lines, the
    CSV and the video hold the same joints.

    Attributes:
        format: Final JSON format, a name in
            :data:`posetracker.io.formats.output_formats.OUTPUT_FORMATS` (checked against it as
            it is when the settings are made, so a format registered at run time is accepted):
            ``posetrack18`` (default; the official evaluation's), ``posetrack17`` or ``coco`` (a
            keypoint results list; metadata then goes to ``<out>.meta.json``).
        jsonl: Also stream every frame to ``<out>.jsonl`` while running (kept when a run is
            interrupted; :func:`posetracker.io.sinks.read_jsonl` reads it back).
        render_boxes: Draw person boxes in the rendered video.
        render_trail: Frames of trail drawn behind each track (0: none).
        render_threshold: Joints scored below this are not drawn (on top of
            ``keypoint_threshold``; the ``coco`` format keeps every joint, the video then draws
            those above this).
        keypoint_threshold: With a PoseTrack format, joints scored below this are written as
            absent (``[0, 0, 0]``) in every output. The MOT metrics count every written joint
            that matches no ground truth as a false positive whatever its score, so a joint is
            worth writing when it is right more often than wrong (figures: ``docs/models.md``,
            "Thresholds of track"). 0 writes every joint.
        derive_head: With a PoseTrack format, fill ``head_bottom`` and ``head_top`` (which COCO
            models lack and PoseTrack scores) from the eyes, ears and shoulders
            (:func:`posetracker.core.schemas.derive_head_joints`).
    """

    format: str = "posetrack18"
    jsonl: bool = True
    render_boxes: bool = False
    render_trail: int = 15
    render_threshold: float = 0.5
    keypoint_threshold: float = 0.5
    derive_head: bool = True

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise ValueError(f"format {self.format!r} is not one of "
                             f"{', '.join(map(repr, OUTPUT_FORMATS.names()))}")
        if self.render_trail < 0:
            raise ValueError("render_trail must be >= 0")
        if not 0 <= self.keypoint_threshold <= 1:
            raise ValueError("keypoint_threshold must be in [0, 1]")


@dataclass(frozen=True)
class ProposalConfig:
    """Video mode's predicted proposals: each pose of frame t proposes a box for frame t + 1 to the
    pose estimator, beside (or, between keyframes, instead of) the detector's boxes (see
    :mod:`posetracker.app.video`).

    Attributes:
        enabled: Feed the previous frame's poses back as proposals. Off with ``detect_every`` 1 is
            frame-by-frame estimation (every frame handled as the first).
        min_keypoint_score: Joints scored below this do not count in the extent of the joints
            (whose centre's shift is the person's motion).
        score_decay: A proposal from a pose the detector missed on a keyframe (a pose made
            from a proposal) has that pose's box score times this: the score decays with every
            keyframe on which the detector missed the person, so that a person the detector
            keeps missing fades under ``min_pose_score`` and pose NMS ranks a fresh detection
            above them; a pose from a detector box keeps its score, and between keyframes it
            holds (the detector did not look).
        min_joint_score: A proposal's pose survives only if the SPPE's mean joint score (of the
            joints above ``estimator.kpt_threshold``) reaches this; a proposal over background
            or over a person who has left the frame dies there. Measured on the demo videos
            on real frames (``docs/video.md``): the two people of two_people.mp4 0.76-0.92, the
            motion-blurred players of basketball_crossing.mp4 0.24-0.44, the same boxes moved
            onto the background of two_people.mp4 0.04-0.25 (median 0.05).
        overlap: Proposals and the same frame's detector boxes are paired one to one at IoU >=
            this; a paired proposal is not estimated (the detector already proposed that person;
            saves an SPPE call), an unpaired one is, even beside an overlapping box (two people
            crossing, the detector saw one).
        memory: A proposal whose person was not found on its frame (no pose of that frame
            proposes an overlapping box) is carried on, moved by its motion, for up to this many
            frames (0: never); one whose pose died is not.
        motion_level: Adaptive keyframes: a grey-level change (0-255) above which a cell of the
            frame counts as moving.
        motion_share: Adaptive keyframes: the detector runs when the moving cells outside every
            proposal box exceed this share of the frame (a new person could be there), after the
            whole-frame shift (a camera pan) that changes the fewest cells. Measured
            (``docs/video.md``): the static camera of two_people.mp4 moves <= 0.4 % of the cells
            per frame, the panning camera of basketball_crossing.mp4 (frames 240-299, players
            and crowd included) 1-9 %; at 0.01 the adaptive run there detected nearly every
            frame (no faster than every-frame detection), at 0.05 it agreed at OKS 0.5 on 100 %
            of the poses with the same ids.
    """

    enabled: bool = True
    min_keypoint_score: float = 0.2
    score_decay: float = 0.9
    min_joint_score: float = 0.3
    overlap: float = 0.5
    memory: int = 2
    motion_level: float = 30.0
    motion_share: float = 0.05

    def __post_init__(self) -> None:
        for name in ("min_keypoint_score", "min_joint_score", "memory",
                     "motion_level", "motion_share"):
            if getattr(self, name) < 0:
                raise ValueError(f"proposals.{name} must be >= 0")
        if not 0 < self.score_decay <= 1 or not 0 < self.overlap <= 1:
            raise ValueError("proposals.score_decay and proposals.overlap must be in (0, 1]")


@dataclass(frozen=True)
class PipelineConfig:
    """How frames flow through the stages (see :mod:`posetracker.app.pipeline`).

    Batch sizes and device live in the ``estimator`` section (``frame_batch``, ``sppe.batch_size``,
    ``device``, ``precision``), where the estimator reads them; the pipeline uses the same numbers
    for its detector batches and its batches of people across frames.

    Attributes:
        association: How redundant poses of one frame are removed: ``nms`` (RMPE's parametric pose
            NMS, from ``estimator.nms``), ``crowdpose`` (joint-candidate association, from the
            ``association`` section) or ``auto`` (the association on frames whose proposals
            overlap, pose NMS elsewhere; the rule: ``association.auto``). Tracking keeps pose
            NMS: the association keeps merged-away poses at a low score
            (``association.redundant_score``), which a tracker could follow as ghost tracks;
            it is not measured on tracking.
        mode: ``threaded`` (stages overlap, the default) or ``sequential`` (one thread; for
            comparison and debugging).
        queue_size: Capacity of each queue between stages, in frames; memory use is bounded by
            about ``5 x queue_size`` frames plus one batch per stage.
        pose_max_frames: Most frames gathered into one batch of people for the pose estimator.
        pose_workers: Pose-estimator threads working on successive batches at once (threaded
            mode); on a CPU the pose estimator is the slowest stage, so it gets more than one.
        threads: Torch CPU threads per call; 0 = automatic: in threaded mode the CPU cores shared
            out among the pose workers and the detector (at least 1), also in video mode with
            every frame detected (the pose workers estimate the detector's boxes ahead, the video
            loop only the proposals); in video mode with fewer keyframes every core for each
            call (the one video loop runs most crops); in sequential mode torch's default (all
            cores).
        min_pose_score: Poses whose person score (detector score x mean joint score) is below
            this are dropped before tracking, as PoseFlow drops low-scored poses: the detector's
            low-scored boxes (furniture, hands, far background) otherwise start ghost tracks and
            pull real tracks off their people (figures: ``docs/models.md``, "Settings of track").
        detect_every: Video mode: the detector runs on every ``detect_every``-th frame (1: every
            frame); between these keyframes the pose estimator runs on the proposals only
            (needs ``proposals.enabled``).
        keyframes: ``fixed`` (every ``detect_every`` frames) or ``adaptive``: also when a
            track was lost on the previous frame or something moves outside every proposal box
            (``proposals.motion_*``), and every ``detect_every`` frames at the latest.
        proposals: Video mode's predicted proposals (:class:`ProposalConfig`).
        output: What is written.
    """

    association: Association = "nms"
    mode: Literal["threaded", "sequential"] = "threaded"
    queue_size: int = 4
    pose_max_frames: int = 8
    pose_workers: int = 2
    threads: int = 0
    min_pose_score: float = 0.15
    detect_every: int = 1
    keyframes: Literal["fixed", "adaptive"] = "fixed"
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def torch_threads(self, cpu_count: int) -> int:
        """Torch threads per call for this mode (see ``threads``); 0 = torch's default."""
        if self.threads or self.mode == "sequential":
            return self.threads
        if self.video_mode and (self.detect_every > 1 or self.keyframes == "adaptive"):
            # most frames' crops are the one video loop's: its calls get every core
            return max(1, cpu_count)
        return max(1, cpu_count // (self.pose_workers + 1))

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.pose_max_frames < 1 or self.pose_workers < 1:
            raise ValueError("queue_size, pose_max_frames and pose_workers must be >= 1")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        if self.min_pose_score < 0:
            raise ValueError("min_pose_score must be >= 0")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.keyframes not in ("fixed", "adaptive"):
            raise ValueError(f"keyframes must be fixed or adaptive, got {self.keyframes!r}")
        if not self.proposals.enabled and (self.detect_every > 1 or self.keyframes == "adaptive"):
            raise ValueError("detect_every > 1 and adaptive keyframes need proposals.enabled "
                             "(between keyframes the pose estimator runs on proposals only)")

    @property
    def video_mode(self) -> bool:
        """Whether frames are estimated with the previous frame's proposals (see
        :mod:`posetracker.app.video`); otherwise every frame is handled as the first."""
        return self.proposals.enabled


def track_estimator() -> EstimatorConfig:
    """The estimator as ``track`` runs it: ``EstimatorConfig``'s defaults (``estimate``'s, tuned
    for COCO AP) except where tracking a video trades the last AP point for speed or tracking.

    - ``detector.conf_threshold`` 0.2 (``estimate``: 0.1): the boxes between the two hold almost
      none of the poses ``pipeline.min_pose_score`` keeps (street_crowd.avi: 18 instead of 29
      boxes a frame reach the pose model, the same people and ids);
    - ``detector.min_box_size`` 16 (``estimate``: 20): basketball_crossing.mp4's small players
      lose poses from 20 px on, none at 16;
    - ``detector.flip`` off (``estimate``: on): the mirrored detector run costs 13-19 % of the
      frame time, over the 10 % ``track`` allows for it;
    - ``sppe.flip_test`` off (``estimate``: on): twice the pose work;
    - ``sppe.batch_size`` 16 (``estimate``: 64): smaller batches suit a CPU; on a GPU use 64;
    - ``nms.eta`` 9 (``estimate``: 6): keeps the poses of two people close together;
    - ``screen.model`` ``tinypose-128x96`` (``estimate``: off): the boxes scored under 0.25 reach
      the pose model only if the small model finds a person in them (street_crowd.avi: 16 instead
      of 23 pose-model calls a frame, 1.16x the frames/s, 99 % of the poses the same; the other
      two videos unchanged).

    The figures behind each are in ``docs/models.md``, "Settings of track".
    """
    return EstimatorConfig(detector=DetectorConfig(conf_threshold=0.2, min_box_size=16.0,
                                                   flip=False),
                           sppe=SPPEConfig(flip_test=False, batch_size=16),
                           nms=PoseNMSConfig(eta=9.0),
                           screen=ScreenConfig(model="tinypose-128x96"))


@dataclass(frozen=True)
class EstimateConfig:
    """What ``posetracker estimate`` (and ``fit-nms``, ``bench estimate``, ``bench models``, and the
    Python API's ``PoseTracker.estimate``) run: per-image poses, no tracking.

    Attributes:
        estimator: The estimator at its accuracy settings (EstimatorConfig's own defaults).
        association: How redundant poses of one image are removed: ``nms`` (pose NMS, from
            ``estimator.nms``), ``crowdpose`` (joint-candidate association, from the top-level
            ``association`` section) or ``auto`` (the association on images whose proposals
            overlap, pose NMS elsewhere; the rule: ``association.auto``). ``auto`` by the
            figures of docs/association.md: higher AP than pose NMS on crowded composites,
            within 0.001 of it on the COCO subset.
        threads: Torch CPU threads for the model calls; 0 = torch's default (all cores).
    """

    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    association: Association = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError("threads must be >= 0")


@dataclass(frozen=True)
class AppConfig:
    """Every setting of the application. See the module docstring for the sections."""

    estimator: EstimatorConfig = field(default_factory=track_estimator)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)


def load_app_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                    extra: Mapping[str, Any] | None = None,
                    base: AppConfig | None = None) -> AppConfig:
    """Settings: ``base`` (default ``AppConfig()``), then the YAML file ``path``, then the nested
    mapping ``extra`` (e.g. a tracker-only file as ``{"tracker": ...}``), then ``overrides``
    (``key.sub=value``, keys rooted at :class:`AppConfig`).

    Raises:
        ConfigError: a file cannot be read, or a key or value does not fit :class:`AppConfig`
            (the message names the file and the key).
    """
    config = base if base is not None else AppConfig()
    if path is not None:
        config = update_config(config, load_yaml(path), str(path))
    if extra:
        config = update_config(config, dict(extra), "config")
    return apply_overrides(config, overrides)


def dump_app_config(config: AppConfig) -> str:
    """YAML of every setting, loadable again with ``--config``."""
    return dump_config(config)


def load_section(section: str, overrides: Sequence[str] = ()) -> Any:
    """One section of :class:`AppConfig` (e.g. ``"tracker"``) with ``overrides`` applied, for the
    commands that use only that section (the benchmarks of one stage). The keys are rooted at the
    whole settings as in every other command (``tracker.poseflow.window=12``).

    Raises:
        ConfigError: a key outside ``section``, or one that does not fit it.
    """
    for text in overrides:
        if not text.startswith(section + "."):
            raise ConfigError(f"--set {text}: this command uses only the {section} settings "
                              f"(keys {section}.*)")
    return getattr(load_app_config(None, overrides), section)

