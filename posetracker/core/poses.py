"""Value types for poses: one frame's people (:class:`FramePoses`) and a video's frames (:class:`Frame`,
:class:`VideoPoses`).

Conventions, everywhere in the project:

- coordinates are pixels in the original image, x right, y down, as float64;
- a joint that is absent (not annotated, not predicted) has NaN coordinates and score 0;
- boxes are ``x1, y1, x2, y2`` (xyxy), pixels;
- track ids are non-negative integers, unique within a frame; ``None`` means "not tracked yet".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.schemas import KeypointSchema


def _as_float(name: str, value, shape: tuple) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name} has shape {arr.shape}, expected {want}")
    return arr


@dataclass(frozen=True, eq=False)
class FramePoses:
    """All people in one frame.

    Attributes:
        keypoints: ``(n, k, 2)`` float64 joint coordinates in pixels; NaN for absent joints.
        keypoint_scores: ``(n, k)`` float64 per-joint confidences in [0, 1]; 0 for absent joints.
        boxes: ``(n, 4)`` float64 person boxes, xyxy pixels.
        scores: ``(n,)`` float64 person scores: how sure the estimator is of the whole pose (for
            RMPE the detector score times the mean confident joint score; for files, the score
            they store). Ranking, thresholds, output files and tracking read this one.
        schema: The keypoint schema; ``k == schema.num_keypoints``.
        track_ids: ``(n,)`` int64 track ids unique within the frame, or ``None`` when untracked.
        head_boxes: ``(n, 4)`` float64 head boxes xyxy (PoseTrack ground truth), or ``None``.
        box_scores: ``(n,)`` float64 the person detector's box scores. A source without a
            detector score (ground truth, result files, ``from_keypoints``) passes ``None`` and
            gets a copy of ``scores``, so the field is always an array after construction;
            ``dataclasses.replace(p, scores=...)`` keeps the detector's scores.

    Arrays are validated and copied to read-only float64/int64 arrays on construction, so an
    instance can be shared between pipeline stages without defensive copies.
    """

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    schema: KeypointSchema
    track_ids: np.ndarray | None = None
    head_boxes: np.ndarray | None = None
    box_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.schema, KeypointSchema):
            raise InputError(f"schema must be a KeypointSchema, got {type(self.schema).__name__}")
        k = self.schema.num_keypoints
        kp = np.asarray(self.keypoints, dtype=np.float64)
        if kp.size == 0 and kp.ndim < 3:
            kp = kp.reshape(0, k, 2)
        kp = _as_float("keypoints", kp, (None, k, 2))
        n = kp.shape[0]
        sc = _as_float("keypoint_scores", np.reshape(self.keypoint_scores, (n, k))
                       if np.size(self.keypoint_scores) == n * k else self.keypoint_scores, (n, k))
        bx = _as_float("boxes", np.reshape(self.boxes, (n, 4)) if np.size(self.boxes) == n * 4
                       else self.boxes, (n, 4))
        ps = _as_float("scores", self.scores, (n,))
        bs = ps if self.box_scores is None else _as_float("box_scores", self.box_scores, (n,))
        fields = {"keypoints": kp, "keypoint_scores": sc, "boxes": bx, "scores": ps,
                  "box_scores": bs}
        if self.track_ids is not None:
            ids = np.asarray(self.track_ids)
            if ids.shape != (n,):
                raise InputError(f"track_ids has shape {ids.shape}, expected ({n},)")
            if n and not np.issubdtype(ids.dtype, np.integer):
                if not np.all(np.isfinite(ids.astype(float))) or np.any(ids != np.round(ids)):
                    raise InputError("track_ids must be integers")
            ids = ids.astype(np.int64)
            if np.any(ids < 0):
                raise InputError("track_ids must be non-negative")
            if len(np.unique(ids)) != n:
                dup = [int(i) for i in np.unique(ids) if np.sum(ids == i) > 1]
                raise InputError(f"duplicate track ids in one frame: {dup}")
            fields["track_ids"] = ids
        if self.head_boxes is not None:
            fields["head_boxes"] = _as_float(
                "head_boxes", np.reshape(self.head_boxes, (n, 4))
                if np.size(self.head_boxes) == n * 4 else self.head_boxes, (n, 4))
        for name, arr in fields.items():
            arr = np.array(arr, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    # -- construction helpers -------------------------------------------------------------
    @classmethod
    def empty(cls, schema: KeypointSchema, tracked: bool = False) -> FramePoses:
        """A frame without people."""
        k = schema.num_keypoints
        return cls(np.zeros((0, k, 2)), np.zeros((0, k)), np.zeros((0, 4)), np.zeros(0), schema,
                   track_ids=np.zeros(0, dtype=np.int64) if tracked else None)

    @classmethod
    def from_keypoints(
        cls,
        keypoints: np.ndarray,
        keypoint_scores: np.ndarray,
        schema: KeypointSchema,
        scores: np.ndarray | None = None,
        track_ids: np.ndarray | None = None,
    ) -> FramePoses:
        """Build poses whose boxes are the tight boxes of their present joints.

        ``scores`` defaults to the mean score of the present joints (:func:`mean_joint_scores`);
        ``box_scores`` are a copy of ``scores`` (there is no detector).
        """
        kp = np.asarray(keypoints, dtype=np.float64)
        sc = np.asarray(keypoint_scores, dtype=np.float64)
        if scores is None:
            scores = mean_joint_scores(kp, sc)
        return cls(kp, sc, keypoint_boxes(kp), scores, schema, track_ids=track_ids)

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_keypoints(self) -> int:
        return self.schema.num_keypoints

    @property
    def present(self) -> np.ndarray:
        """``(n, k)`` bool: the joint has finite coordinates."""
        return np.isfinite(self.keypoints).all(axis=-1)

    @property
    def is_tracked(self) -> bool:
        return self.track_ids is not None

    def subset(self, index) -> FramePoses:
        """The people selected by a boolean mask or an index array, in that order."""
        idx = np.arange(len(self))[index] if len(self) else np.zeros(0, dtype=np.int64)
        return FramePoses(
            self.keypoints[idx], self.keypoint_scores[idx], self.boxes[idx], self.scores[idx],
            self.schema,
            track_ids=None if self.track_ids is None else self.track_ids[idx],
            head_boxes=None if self.head_boxes is None else self.head_boxes[idx],
            box_scores=self.box_scores[idx],
        )

    def with_track_ids(self, track_ids: np.ndarray | Sequence[int] | None) -> FramePoses:
        """A copy with the given track ids (``None`` removes them)."""
        return replace(self, track_ids=None if track_ids is None else np.asarray(track_ids))

    @staticmethod
    def concatenate(parts: Sequence[FramePoses]) -> FramePoses:
        """People of several :class:`FramePoses` of one schema, in order."""
        if not parts:
            raise ValueError("concatenate needs at least one FramePoses")
        schema = parts[0].schema
        if any(p.schema is not schema for p in parts):
            raise InputError("cannot concatenate poses of different schemas")
        tracked = all(p.track_ids is not None for p in parts)
        heads = all(p.head_boxes is not None for p in parts)
        return FramePoses(
            np.concatenate([p.keypoints for p in parts]),
            np.concatenate([p.keypoint_scores for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            schema,
            track_ids=np.concatenate([p.track_ids for p in parts]) if tracked else None,
            head_boxes=np.concatenate([p.head_boxes for p in parts]) if heads else None,
            box_scores=np.concatenate([p.box_scores for p in parts]),
        )


def mean_joint_scores(keypoints: np.ndarray, keypoint_scores: np.ndarray) -> np.ndarray:
    """Mean score of each pose's present joints: ``(n, k, 2), (n, k) -> (n,)``; 0 without joints.

    The person score of sources that store none (ground truth, Bonn annotation files).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    sc = np.asarray(keypoint_scores, dtype=np.float64)
    present = np.isfinite(kp).all(axis=-1)
    with np.errstate(invalid="ignore"):
        return np.where(present.any(1), (sc * present).sum(1) / np.maximum(present.sum(1), 1), 0.0)


def keypoint_boxes(keypoints: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes around the present joints of each pose: ``(n, k, 2) -> (n, 4)``.

    Poses without any present joint get a zero box.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros((kp.shape[0], 4))
    present = np.isfinite(kp).all(axis=-1)
    for i in np.flatnonzero(present.any(axis=1)):
        p = kp[i, present[i]]
        out[i] = (*p.min(0), *p.max(0))
    return out


@dataclass(frozen=True, eq=False)
class Frame:
    """One video frame's poses and the facts about the frame that formats and evaluation need.

    Attributes:
        index: 0-based frame number within its video.
        poses: The people in this frame.
        image: Image file name as the annotation file names it (``""`` when unknown).
        labeled: Whether the frame carries ground truth (PoseTrack labels a subset of frames).
        ignore_regions: Polygons, each an ``(m, 2)`` float array of xy pixels, where unannotated
            people may stand; evaluation drops points inside them on both sides.
        image_id: The dataset's image or frame id (PoseTrack18 ``frame_id``/``image_id``), if any.
    """

    index: int
    poses: FramePoses
    image: str = ""
    labeled: bool = True
    ignore_regions: tuple[np.ndarray, ...] = ()
    image_id: int | None = None


@dataclass(eq=False)
class VideoPoses:
    """A video's frames in order, with its name (the file stem a PoseTrack file is named by).

    Attributes:
        name: Sequence name, e.g. ``"003418_mpii_test"``.
        frames: One :class:`Frame` per video frame, ``frames[i].index == i`` not required (PoseTrack
            files may start later), but indices must increase.
        schema: Keypoint schema shared by every frame.
        meta: Free-form metadata carried into written files (version, config, models, timings).
    """

    name: str
    frames: list[Frame]
    schema: KeypointSchema
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in self.frames:
            if f.poses.schema is not self.schema:
                raise InputError(
                    f"{self.name}: frame {f.index} uses schema {f.poses.schema.name}, "
                    f"expected {self.schema.name}")
        idx = [f.index for f in self.frames]
        if any(b <= a for a, b in zip(idx, idx[1:])):
            raise InputError(f"{self.name}: frame indices must increase")

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)
