"""Video mode: the previous frame's poses propose boxes to the pose estimator, and the detector
runs on keyframes only.

Top-down estimation handles every frame as if it were the first: a person the detector misses
for a frame (motion blur, occlusion, a crowd) is missing from that frame, though the frame
before showed where they were. As in the box propagation of Simple Baselines and the keyframe
detection of LightTrack, each pose of frame t proposes a box for frame t + 1:

1. **predict** (:func:`predict_boxes`): the extent of the pose's joints (those scored at least
   ``proposals.min_keypoint_score``), grown by ``proposals.margin`` on each side, moved by the
   person's motion (the change of the extent's centre from frame t - 1 to t, the poses of the
   two frames paired greedily by extent IoU), clipped to the image; its box score is the pose's
   box score, times ``proposals.score_decay`` when frame t was a keyframe (the detector looked,
   and a proposal-made pose is one it missed);
2. **merge** with the detector's boxes when frame t + 1 is a keyframe: a proposal overlapping a
   detector box (IoU >= ``proposals.overlap``) is dropped, the detector saw that person;
3. **estimate** the detector's boxes and the proposals together (crops, SPPE);
4. **survive**: a proposal's pose is kept only if the SPPE's own mean joint score reaches
   ``proposals.min_joint_score`` (a proposal over background, or over a person who has left the
   frame, dies there: no ghost walks on);
5. **group**: duplicates are removed as always (pose NMS or the CrowdPose association), the
   proposals ranked below fresh detections by their decayed box score;
6. the frame's poses become the proposals of frame t + 2 (step 1).

Keyframes (:class:`Keyframes`): ``detect_every`` N runs the detector on frames 0, N, 2N, ...;
``adaptive`` also runs it on a frame when a track was lost on the frame before (a proposal died,
or grouping left fewer people than were proposed) or when the frame moved, against the frame
before, outside every proposal box (``proposals.motion_*``: a new person could be there).

Order of the stages (:mod:`posetracker.app.pipeline`): reader -> detector -> *video loop* ->
tracker -> writer. The detector thread runs ahead on the scheduled keyframes (it knows them from
the frame numbers), so detection and decoding overlap the pose work; the video loop
(:class:`VideoLoop`) is one thread that takes the frames in order and runs steps 1-6 for each
(pose -> group -> proposals is a per-frame loop: frame t + 1's crops need frame t's poses). An
adaptive keyframe is detected inside the loop, on its thread, when the loop decides it from
frame t - 1's state and frame t's pixels: the decision never depends on thread timing, so the
output is the same in threaded and sequential mode. The proposals come from the grouped poses,
before tracking, so every tracker (``iou``, ``alphapose``, ``poseflow``) gets them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from posetracker.app.settings import PipelineConfig, ProposalConfig
from posetracker.core.poses import FramePoses
from posetracker.core.timing import StageTimes
from posetracker.tracker.similarity import box_iou

_MOTION_STRIDE = 8  # pixels per cell of the motion test (a person is many cells wide)


class VideoStages(Protocol):
    """The estimator steps video mode needs (:class:`posetracker.app.pipeline.RMPEStages`):
    boxes are ``(m, 5)`` xyxy + score arrays in image pixels."""

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]: ...

    def estimate(self, images: list[np.ndarray], detections: list[np.ndarray]) -> list[Any]: ...

    def group(self, estimate: Any, image: np.ndarray) -> FramePoses: ...

    def joint_scores(self, estimate: Any) -> np.ndarray:
        """``(m,)`` mean joint score of each box's pose (the SPPE's own person evidence)."""

    def keep(self, estimate: Any, index: np.ndarray) -> Any:
        """The per-box estimates at ``index`` only."""


def keypoint_extents(poses: FramePoses, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(n, 4)`` xyxy around each pose's joints scored at least ``min_score``, and ``(n,)``
    whether a pose has two such joints (a box at all)."""
    ok = poses.present & (poses.keypoint_scores >= min_score)
    valid = ok.sum(1) >= 2
    kp = np.where(ok[..., None], poses.keypoints, np.nan)
    boxes = np.zeros((len(poses), 4))
    if valid.any():
        v = kp[valid]
        boxes[valid] = np.concatenate([np.nanmin(v, 1), np.nanmax(v, 1)], 1)
    return boxes, valid


def _motion(current: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """``(n, 2)`` centre shift of each current box from its previous box, paired greedily by IoU
    (>= 0.3; unpaired: no shift)."""
    shift = np.zeros((len(current), 2))
    if previous is None or not len(previous) or not len(current):
        return shift
    iou = box_iou(current, previous)
    centre = lambda b: (b[..., :2] + b[..., 2:]) / 2  # noqa: E731 - local shorthand
    while iou.size and iou.max() >= 0.3:
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        shift[i] = centre(current[i]) - centre(previous[j])
        iou[i, :], iou[:, j] = -1, -1
    return shift


def predict_boxes(poses: FramePoses, previous: np.ndarray | None, cfg: ProposalConfig,
                  image_size: tuple[int, int], keyframe: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: the proposals of the next frame from this frame's poses.

    Args:
        poses: This frame's grouped poses (with ``box_scores``).
        previous: The previous frame's keypoint extents ``(p, 4)`` (for the motion), or ``None``.
        cfg: The proposal settings.
        image_size: ``(H, W)`` in pixels.
        keyframe: Whether the detector saw this frame: only then do the scores decay (a frame
            the detector did not look at is no evidence against anyone).

    Returns:
        ``(q, 5)`` proposals xyxy + box score for the next frame, and this frame's keypoint
        extents ``(n', 4)`` (the ``previous`` of the next call).
    """
    extents, valid = keypoint_extents(poses, cfg.min_keypoint_score)
    extents = extents[valid]
    scores = np.asarray(poses.box_scores)[valid] * (cfg.score_decay if keyframe else 1.0)
    size = extents[:, 2:] - extents[:, :2]
    moved = np.tile(_motion(extents, previous), 2)
    boxes = extents + np.concatenate([-size, size], 1) * cfg.margin + moved
    h, w = image_size
    inside = np.clip(boxes, 0, [w, h, w, h])
    area = lambda b: np.prod(np.maximum(b[:, 2:] - b[:, :2], 0), 1)  # noqa: E731
    # a box mostly beyond the border: the person is leaving the frame; the SPPE would only see
    # a sliver, so the proposal is not made
    keep = area(inside) >= 0.5 * np.maximum(area(boxes), 1e-9)
    keep &= np.min(inside[:, 2:] - inside[:, :2], 1) >= 4
    return np.column_stack([inside[keep], scores[keep]]), extents


def merge_proposals(detections: np.ndarray | None, proposals: np.ndarray, overlap: float
                    ) -> tuple[np.ndarray, int]:
    """Step 2: the detector's boxes, then the proposals no detector box covers (IoU < ``overlap``).
    Returns ``(m, 5)`` boxes and how many of them (the first) are the detector's."""
    dets = np.zeros((0, 5)) if detections is None else np.asarray(detections, float).reshape(-1, 5)
    if len(dets) and len(proposals):
        proposals = proposals[box_iou(proposals[:, :4], dets[:, :4]).max(1) < overlap]
    return np.concatenate([dets, proposals]), len(dets)


class Keyframes:
    """Which frames the detector sees: every ``detect_every``-th (:meth:`scheduled`, known ahead
    to the detector thread), and with ``adaptive`` also those :meth:`wanted` by the video loop."""

    def __init__(self, config: PipelineConfig):
        self.every = config.detect_every
        self.adaptive = config.keyframes == "adaptive"
        self.level = config.proposals.motion_level
        self.share = config.proposals.motion_share

    def scheduled(self, seq: int) -> bool:
        return seq % self.every == 0

    def wanted(self, lost: bool, grey: np.ndarray, previous: np.ndarray | None,
               proposals: np.ndarray) -> bool:
        """Adaptive: a track was lost on the frame before, or the frame moved outside every
        proposal box. ``grey``/``previous``: this and the previous frame's cells (:func:`cells`)."""
        if not self.adaptive:
            return False
        if lost or previous is None or previous.shape != grey.shape:
            return True
        moving = _aligned_change(grey, previous) > self.level
        for x0, y0, x1, y1 in (proposals[:, :4] / _MOTION_STRIDE).astype(int):
            moving[max(y0, 0): y1 + 1, max(x0, 0): x1 + 1] = False
        return bool(moving.mean() > self.share)


def _aligned_change(grey: np.ndarray, previous: np.ndarray, reach: int = 2) -> np.ndarray:
    """``|grey - previous|`` per cell after the whole-frame shift of up to ``reach`` cells that
    changes the fewest cells (a camera pan moves everything; it is no new person). Cells the
    shift brings in from outside count as unchanged."""
    best, out = np.inf, np.zeros_like(grey)
    h, w = grey.shape
    shifts = sorted(((dy, dx) for dy in range(-reach, reach + 1)
                     for dx in range(-reach, reach + 1)), key=lambda s: abs(s[0]) + abs(s[1]))
    for dy, dx in shifts:  # no shift first: a shift must do strictly better
        d = np.zeros_like(grey)
        ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
        yp, xp = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
        d[ys, xs] = np.abs(grey[ys, xs] - previous[yp, xp])
        score = float(np.median(d[ys, xs])) if d[ys, xs].size else np.inf
        if score < best:
            best, out = score, d
    return out


def cells(image: np.ndarray) -> np.ndarray:
    """The frame's grey level on a coarse grid of ``_MOTION_STRIDE`` pixels (motion test)."""
    return image[::_MOTION_STRIDE, ::_MOTION_STRIDE].mean(-1, dtype=np.float32)


class VideoLoop:
    """Steps 1-6 for one video, a frame at a time and in order (one thread).

    Args:
        stages: The estimator steps (:class:`VideoStages`).
        config: ``detect_every``, ``keyframes`` and ``proposals``.
        times: Where the detect (adaptive keyframes), pose and group work is timed.
    """

    def __init__(self, stages: VideoStages, config: PipelineConfig, times: StageTimes):
        for method in ("joint_scores", "keep"):
            if not callable(getattr(stages, method, None)):
                raise TypeError(f"video mode needs stages with {method}() "
                                f"({type(stages).__name__} has none)")
        self.stages, self.cfg, self.times = stages, config.proposals, times
        self.keyframes = Keyframes(config)
        self.proposals = np.zeros((0, 5))
        self.extents: np.ndarray | None = None
        self.grey: np.ndarray | None = None
        self.lost = False
        self.detected = 0  # frames the detector saw so far (scheduled or adaptive keyframes)

    def _timed(self, stage: str, fn: Callable[[], Any], frames: int = 1) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.times.add(stage, time.perf_counter() - t0, frames)
        return out

    def __call__(self, image: np.ndarray, detections: np.ndarray | None) -> FramePoses:
        """Frame t's poses: ``detections`` are the detector's boxes on a scheduled keyframe,
        else ``None`` (the loop may then detect itself, adaptive keyframes)."""
        grey = cells(image) if self.keyframes.adaptive else None
        if detections is None and self.keyframes.wanted(self.lost, grey, self.grey,
                                                        self.proposals):
            # the detector stage already counted this frame: its time adds, its count does not
            detections = self._timed("detect", lambda: self.stages.detect([image])[0], 0)
        self.detected += detections is not None
        boxes, n_det = merge_proposals(detections, self.proposals, self.cfg.overlap)
        est = self._timed("pose", lambda: self.stages.estimate([image], [boxes])[0])
        alive = self.stages.joint_scores(est)[n_det:] >= self.cfg.min_joint_score
        if not alive.all():  # step 4: dead proposals leave before grouping
            est = self.stages.keep(est, np.concatenate(
                [np.arange(n_det), n_det + np.flatnonzero(alive)]))
        poses = self._timed("group", lambda: self.stages.group(est, image))
        self.lost = not alive.all() or len(poses) < len(self.proposals)
        self.proposals, self.extents = predict_boxes(poses, self.extents, self.cfg,
                                                     image.shape[:2], detections is not None)
        self.grey = grey
        return poses
