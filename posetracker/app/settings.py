"""The application's settings: one frozen :class:`AppConfig` composing every domain's config.

Sections (each a frozen dataclass owned by its package; unknown keys are rejected):

- ``estimator``: :class:`posetracker.estimators.config.EstimatorConfig` (detector, SPPE, pose NMS, device);
- ``association``: :class:`posetracker.association.config.AssociationConfig` (CrowdPose association);
- ``tracker``: :class:`posetracker.tracker.config.TrackerConfig` (which tracker, and each tracker's settings);
- ``pipeline``: :class:`PipelineConfig` below (grouping method, queues, outputs).

:func:`load_app_config` reads ``configs/default.yaml`` (beside the package, when present), then the
user's ``--config FILE``, then ``--set key=value`` overrides, in that order; each later source
overrides keys of the earlier ones and leaves the others alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from posetracker.association.config import AssociationConfig
from posetracker.estimators.config import EstimatorConfig
from posetracker.core.config import dump_config, from_dict, load_yaml, merge_overrides
from posetracker.tracker.config import TrackerConfig

#: The project's default settings file (``configs/default.yaml`` at the repository root).
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


@dataclass(frozen=True)
class OutputConfig:
    """What ``posetracker track`` writes besides the stream.

    Attributes:
        format: Final JSON format: ``posetrack18`` (default; the official evaluation's), ``posetrack17``
            or ``coco`` (a keypoint results list; metadata then goes to ``<out>.meta.json``).
        jsonl: Also stream every frame to ``<out>.jsonl`` while running (kept when a run is
            interrupted; :func:`posetracker.io.sinks.read_jsonl` reads it back).
        render_boxes: Draw person boxes in the rendered video.
        render_trail: Frames of trail drawn behind each track (0: none).
        render_threshold: Joints scored below this are not drawn (as ``keypoint_threshold``: the
            video shows what the PoseTrack file holds).
        keypoint_threshold: In the PoseTrack files, joints scored below this are written as
            absent (``[0, 0, 0]``; the JSON lines keep every joint). The MOT metrics count every
            written joint that matches no ground truth as a false positive whatever its score, so
            a joint is worth writing when it adds more right joints than wrong ones. TinyPose's
            joint scores (heatmap peaks) run higher than MoveNet's: on the COCO subset behind
            RTMDet (people scored >= 0.075, per-joint OKS >= 0.5 = right, people on unannotated
            or crowd regions ignored) they were right 27 % of the time at 0.5-0.6, 44 % at
            0.6-0.7 and 60 % at 0.7-0.8 (MoveNet Thunder: 35 % at 0.2-0.3, 59 % at 0.3-0.4, where
            0.3 was its threshold). With ``min_pose_score`` 0.2, a per-joint MOTA-like count
            (right - wrong) / annotated was 0.377 / 0.379 / 0.373 at 0.4 / 0.5 / 0.6.
            0 writes every joint. ``docs/models.md`` has the command.
        derive_head: In the PoseTrack files, fill ``head_bottom`` and ``head_top`` (which COCO
            models lack and PoseTrack scores) from the eyes, ears and shoulders
            (:func:`posetracker.core.schemas.derive_head_joints`).
    """

    format: Literal["posetrack18", "posetrack17", "coco"] = "posetrack18"
    jsonl: bool = True
    render_boxes: bool = False
    render_trail: int = 15
    render_threshold: float = 0.5
    keypoint_threshold: float = 0.5
    derive_head: bool = True

    def __post_init__(self) -> None:
        if self.render_trail < 0:
            raise ValueError("render_trail must be >= 0")
        if not 0 <= self.keypoint_threshold <= 1:
            raise ValueError("keypoint_threshold must be in [0, 1]")


@dataclass(frozen=True)
class PipelineConfig:
    """How frames flow through the stages (see :mod:`posetracker.app.pipeline`).

    Batch sizes and device live in the ``estimator`` section (``frame_batch``, ``sppe.batch_size``,
    ``device``, ``sppe.half``), where the estimator reads them; the pipeline uses the same numbers
    for its detector batches and its batches of people across frames.

    Attributes:
        association: How redundant poses of one frame are removed: ``nms`` (RMPE's parametric pose
            NMS, from ``estimator.nms``) or ``crowdpose`` (joint-candidate association, from the
            ``association`` section).
        mode: ``threaded`` (stages overlap, the default) or ``sequential`` (one thread; for
            comparison and debugging).
        queue_size: Capacity of each queue between stages, in frames; memory use is bounded by
            about ``5 x queue_size`` frames plus one batch per stage.
        pose_max_frames: Most frames gathered into one batch of people for the pose estimator.
        pose_workers: Pose-estimator threads working on successive batches at once (threaded
            mode); on a CPU the pose estimator is the slowest stage, so it gets more than one.
        threads: Torch CPU threads per call; 0 = automatic: in threaded mode the CPU cores shared
            out among the pose workers and the detector (at least 1), in sequential mode torch's
            default (all cores).
        min_pose_score: Poses whose person score (detector score x mean joint score) is below
            this are dropped before tracking, as PoseFlow drops low-scored poses: the detector's
            low-scored boxes (furniture, hands, far background) otherwise start ghost tracks and
            pull real tracks off their people. On the COCO subset (TinyPose behind RTMDet, joints
            written >= 0.5), 0.1 / 0.15 / 0.2 / 0.25 / 0.3 gave a per-joint MOTA-like count of
            0.21 / 0.30 / 0.38 / 0.36 / 0.35 (MoveNet behind CenterNet had its best, 0.38, at
            0.075 with joints >= 0.3); but in the demo video ``street_crowd.avi`` blurred and
            half-hidden real people score 0.11-0.2 (people per frame at 0.1 / 0.15 / 0.2: 17 / 8.0
            / 5.1), so 0.15.
        output: What is written.
    """

    association: Literal["nms", "crowdpose"] = "nms"
    mode: Literal["threaded", "sequential"] = "threaded"
    queue_size: int = 4
    pose_max_frames: int = 8
    pose_workers: int = 2
    threads: int = 0
    min_pose_score: float = 0.15
    output: OutputConfig = field(default_factory=OutputConfig)

    def torch_threads(self, cpu_count: int) -> int:
        """Torch threads per call for this mode (see ``threads``); 0 = torch's default."""
        if self.threads or self.mode == "sequential":
            return self.threads
        return max(1, cpu_count // (self.pose_workers + 1))

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.pose_max_frames < 1 or self.pose_workers < 1:
            raise ValueError("queue_size, pose_max_frames and pose_workers must be >= 1")
        if self.threads < 0:
            raise ValueError("threads must be >= 0")
        if self.min_pose_score < 0:
            raise ValueError("min_pose_score must be >= 0")


@dataclass(frozen=True)
class AppConfig:
    """Every setting of a ``posetracker track`` run. See the module docstring for the sections."""

    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def load_app_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                    defaults: str | Path | None = DEFAULT_CONFIG,
                    extra: Mapping[str, Any] | None = None) -> AppConfig:
    """Settings from ``defaults`` (if the file exists), then ``path``, then the nested mapping
    ``extra`` (e.g. a tracker-only file as ``{"tracker": ...}``), then ``overrides``.

    Raises:
        ConfigError: a file cannot be read, or a key or value does not fit :class:`AppConfig`
            (the message names the file and the key).
    """
    data: dict[str, Any] = {}
    where = "config"
    if defaults is not None and Path(defaults).is_file():
        data = load_yaml(defaults)
        from_dict(AppConfig, data, str(defaults))  # name the defaults file if it is the bad one
        where = str(defaults)
    if path is not None:
        data = _deep_merge(data, load_yaml(path))
        where = str(path)
    if extra:
        data = _deep_merge(data, dict(extra))
    if overrides:
        data = merge_overrides(data, overrides)
        where = f"{where} + --set"
    return from_dict(AppConfig, data, where)


def dump_app_config(config: AppConfig) -> str:
    """YAML of every setting, loadable again with ``--config``."""
    return dump_config(config)
