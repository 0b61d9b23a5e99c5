"""Video mode: the previous frame's poses propose boxes to the pose estimator, and the detector
runs on keyframes only.

Top-down estimation handles every frame as if it were the first: a person the detector misses
for a frame (motion blur, occlusion, a crowd) is missing from that frame, though the frame
before showed where they were. As in the box propagation of Simple Baselines and the keyframe
detection of LightTrack, each pose of frame t proposes a box for frame t + 1:

1. **predict** (:func:`predict_boxes`): the box the pose was estimated from, moved by the
   person's motion (the change of the centre of the extent of the joints scored at least
   ``proposals.min_keypoint_score`` from frame t - 1 to t, the poses of the two frames paired
   greedily by extent IoU), clipped to the image; its box score is the pose's
   box score, times ``proposals.score_decay`` when frame t was a keyframe on which the
   detector missed the person (the pose was made from a proposal): a person the detector keeps
   missing fades out, one it saw keeps its score;
2. **merge** with the detector's boxes when frame t + 1 is a keyframe: proposals and detector
   boxes are paired one to one by IoU (>= ``proposals.overlap``); a paired proposal is dropped
   (the detector saw that person), an unpaired one is estimated even when it overlaps a box
   (two people crossing, the detector saw one);
3. **estimate** the detector's boxes and the proposals together (crops, SPPE);
4. **survive**: a proposal's pose is kept only if the SPPE's own mean joint score reaches
   ``proposals.min_joint_score`` (a proposal over background, or over a person who has left the
   frame, dies there: no ghost walks on);
5. **group**: duplicates are removed as always (pose NMS or the CrowdPose association), then
   the poses under ``pipeline.min_pose_score``;
6. the frame's poses become the proposals of frame t + 2 (step 1);
7. **carry** (:func:`carry_proposals`): a proposal whose person was not found (no pose of the
   frame proposes an overlapping box) and whose pose did not die moves on by its motion, for up
   to ``proposals.memory`` frames: a person lost for a frame (the detector missed them again,
   their crop's pose went to a neighbour) can be found again without the detector.

Keyframes (:class:`Keyframes`): ``detect_every`` N runs the detector on frames 0, N, 2N, ...;
``adaptive`` also runs it on a frame when a track was lost on the frame before (a proposal from
a pose died, or grouping left fewer people than those proposals) or when the frame moved,
against the frame before, outside every proposal box (``proposals.motion_*``: a new person could
be there).

Order of the stages (:mod:`posetracker.app.pipeline`): reader -> detector -> pose workers ->
*video loop* -> tracker -> writer. The detector thread runs ahead on the scheduled keyframes (it
knows them from the frame numbers), and the pose workers estimate the detector's boxes ahead,
batched across frames as frame by frame (step 3 for those boxes does not need frame t - 1), so
decoding, detection and most crops overlap the loop; the video loop (:class:`VideoLoop`) is one
thread that takes the frames in order and runs steps 1-7 for each, estimating there only the
proposals the detector's boxes left (pose -> group -> proposals is a per-frame loop: frame
t + 1's proposals need frame t's poses). An adaptive keyframe is detected inside the loop, on its
thread, when the loop decides it from frame t - 1's state and frame t's pixels: the decision
never depends on thread timing, so the output is the same in threaded and sequential mode. The
proposals come from the grouped poses, before tracking, so every tracker (``iou``,
``alphapose``, ``poseflow``) gets them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from posetracker.app.settings import PipelineConfig, ProposalConfig
from posetracker.core.boxes import box_iou, greedy_pairs
from posetracker.core.poses import FramePoses
from posetracker.core.timing import StageTimes

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

    def join(self, first: Any, second: Any) -> Any:
        """One frame's per-box estimates: ``first``'s boxes, then ``second``'s."""


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
    centre = lambda b: (b[..., :2] + b[..., 2:]) / 2  # noqa: E731 - local shorthand
    for i, j in greedy_pairs(box_iou(current, previous), 0.3):
        shift[i] = centre(current[i]) - centre(previous[j])
    return shift


def predict_boxes(poses: FramePoses, previous: np.ndarray | None, cfg: ProposalConfig,
                  image_size: tuple[int, int], missed: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 1: the proposals of the next frame from this frame's poses.

    A pose's proposal is the box it was estimated from (the detector's, or the proposal it came
    from), moved by the person's motion: the crop the SPPE sees keeps a detector box's framing
    (a box around the joints cuts off a person whose head or feet the SPPE was unsure of, and
    the crop then holds more of a neighbour). The motion is the shift of the centre of the
    joints' extent (joints scored at least ``proposals.min_keypoint_score``) from the previous
    frame; a pose with fewer than two such joints proposes nothing.

    Args:
        poses: This frame's grouped poses (with ``boxes`` and ``box_scores``).
        previous: The previous frame's keypoint extents ``(p, 4)`` (for the motion), or ``None``.
        cfg: The proposal settings.
        image_size: ``(H, W)`` in pixels.
        missed: ``(n,)`` whether the detector missed each pose's person on this frame (a pose
            made from a proposal on a keyframe): only these scores decay. A pose from a
            detector box is fresh evidence, and a frame the detector did not look at is no
            evidence against anyone. ``None``: no pose was missed.

    Returns:
        ``(q, 5)`` proposals xyxy + box score for the next frame, ``(q, 2)`` the motion each
        was moved by (pixels per frame), and this frame's keypoint extents ``(n', 4)`` (the
        ``previous`` of the next call).
    """
    extents, valid = keypoint_extents(poses, cfg.min_keypoint_score)
    extents = extents[valid]
    decay = np.where(np.zeros(len(poses), bool) if missed is None else missed, cfg.score_decay, 1.0)
    scores = (np.asarray(poses.box_scores) * decay)[valid]
    motion = _motion(extents, previous)
    boxes = np.asarray(poses.boxes, float).reshape(-1, 4)[valid] + np.tile(motion, 2)
    inside, keep = _in_image(boxes, image_size)
    return np.column_stack([inside[keep], scores[keep]]), motion[keep], extents


def _in_image(boxes: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(q, 4)`` boxes clipped to the image ``(H, W)``, and ``(q,)`` whether each is worth a
    crop: a box mostly beyond the border is a person leaving the frame (the SPPE would only
    see a sliver)."""
    h, w = image_size
    inside = np.clip(boxes, 0, [w, h, w, h])
    area = lambda b: np.prod(np.maximum(b[:, 2:] - b[:, :2], 0), 1)  # noqa: E731
    keep = area(inside) >= 0.5 * np.maximum(area(boxes), 1e-9)
    keep &= np.min(inside[:, 2:] - inside[:, :2], 1) >= 4
    return inside, keep


def carry_proposals(proposals: np.ndarray, motion: np.ndarray, age: np.ndarray,
                    died: np.ndarray, following: np.ndarray, cfg: ProposalConfig,
                    image_size: tuple[int, int], keyframe: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 7: the proposals of this frame whose person was not found, carried to the next frame.

    A person lost for a frame (the detector missed them again, their crop's pose went to a
    neighbour or fell under ``min_pose_score``) has no pose to propose from; their proposal
    moves on by its motion for up to ``proposals.memory`` frames, so the person can be found
    again without the detector. A proposal whose pose died (step 4: background, a person who
    left) is not carried: no ghost walks on.

    Args:
        proposals: ``(q, 5)`` this frame's proposals (fresh and carried), xyxy + box score.
        motion: ``(q, 2)`` their motion, pixels per frame.
        age: ``(q,)`` frames each has been carried (0: fresh, from a pose).
        died: ``(q,)`` whether each was estimated and died.
        following: ``(f, 5)`` the next frame's proposals from this frame's poses: a proposal
            one of them overlaps (IoU >= ``proposals.overlap``) found its person.
        cfg: The proposal settings.
        image_size: ``(H, W)`` in pixels.
        keyframe: Whether the detector saw this frame (then the box score decays: it missed
            the person).

    Returns:
        The carried proposals ``(c, 5)``, their motion ``(c, 2)`` and ages ``(c,)``.
    """
    keep = (age < cfg.memory) & ~died
    if len(following) and keep.any():
        keep &= box_iou(proposals[:, :4], following[:, :4]).max(1) < cfg.overlap
    inside, fits = _in_image(proposals[keep, :4] + np.tile(motion[keep], 2), image_size)
    scores = proposals[keep, 4] * (cfg.score_decay if keyframe else 1.0)
    return (np.column_stack([inside, scores])[fits], motion[keep][fits], age[keep][fits] + 1)


def merge_proposals(detections: np.ndarray | None, proposals: np.ndarray, overlap: float
                    ) -> tuple[np.ndarray, int, np.ndarray]:
    """Step 2: the detector's boxes, then the proposals no detector box accounts for.

    Each detector box accounts for one person: proposals and detector boxes are paired one to
    one, greedily by IoU (>= ``overlap``), and only the paired proposals are dropped. A proposal
    left over beside a box that also overlaps it is a second person there (two people crossing,
    the detector saw one of them), and is estimated.

    Returns ``(m, 5)`` boxes, how many of them (the first) are the detector's, and the index in
    ``proposals`` of the rest."""
    dets = np.zeros((0, 5)) if detections is None else np.asarray(detections, float).reshape(-1, 5)
    kept = np.arange(len(proposals))
    if len(dets) and len(proposals):
        paired = [i for i, _ in greedy_pairs(box_iou(proposals[:, :4], dets[:, :4]), overlap)]
        kept = np.delete(kept, paired)
    return np.concatenate([dets, proposals[kept, :5]]), len(dets), kept


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
        # a whole-frame shift can only explain change away (a camera pan): when the frame did
        # not change outside the known people as it is, no shift is searched for
        return (self._moving(np.abs(grey - previous), proposals) > self.share
                and self._moving(_aligned_change(grey, previous), proposals) > self.share)

    def _moving(self, change: np.ndarray, proposals: np.ndarray) -> float:
        """The share of the frame's cells whose ``change`` exceeds the level, outside every
        proposal box."""
        moving = change > self.level
        for x0, y0, x1, y1 in (proposals[:, :4] / _MOTION_STRIDE).astype(int):
            moving[max(y0, 0): y1 + 1, max(x0, 0): x1 + 1] = False
        return float(moving.mean())


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
    """The frame's grey level (mean of the channels) on a coarse grid of ``_MOTION_STRIDE``
    pixels (motion test): ``(H, W, 3)`` uint8 -> ``(ceil(H / s), ceil(W / s))`` float32."""
    # the grid's pixels copied first, then summed channel by channel: the same values as a
    # mean over the channel axis, which NumPy reduces three elements at a time (3x the time)
    grid = np.ascontiguousarray(image[::_MOTION_STRIDE, ::_MOTION_STRIDE]).astype(np.float32)
    return (grid[..., 0] + grid[..., 1] + grid[..., 2]) / np.float32(3)


def _made_from(pose_boxes: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(n,)`` whether each grouped pose's box is one of ``boxes`` ``(q, 4+)`` (the grouping
    keeps each pose's box: pose NMS and the CrowdPose association alike)."""
    pose_boxes = np.asarray(pose_boxes, float).reshape(-1, 4)
    if not len(boxes) or not len(pose_boxes):
        return np.zeros(len(pose_boxes), bool)
    return (np.abs(pose_boxes[:, None] - boxes[None, :, :4]) < 1e-6).all(-1).any(1)


class VideoLoop:
    """Steps 1-7 for one video, a frame at a time and in order (one thread).

    Args:
        stages: The estimator steps (:class:`VideoStages`).
        config: ``detect_every``, ``keyframes`` and ``proposals``.
        times: Where the detect (adaptive keyframes), pose and group work is timed.
    """

    def __init__(self, stages: VideoStages, config: PipelineConfig, times: StageTimes):
        for method in ("joint_scores", "keep", "join"):
            if not callable(getattr(stages, method, None)):
                raise TypeError(f"video mode needs stages with {method}() "
                                f"({type(stages).__name__} has none)")
        self.stages, self.cfg, self.times = stages, config.proposals, times
        self.keyframes = Keyframes(config)
        self.proposals = np.zeros((0, 5))  # the next frame's, from this frame's poses
        self.motion = np.zeros((0, 2))  # theirs, pixels per frame
        # proposals whose person was not found, carried on (step 7): boxes, motion, age
        self.carried = (np.zeros((0, 5)), np.zeros((0, 2)), np.zeros(0, int))
        self.extents: np.ndarray | None = None
        self.grey: np.ndarray | None = None
        self.lost = False
        self.detected = 0  # frames the detector saw so far (scheduled or adaptive keyframes)

    def _estimate(self, image: np.ndarray, boxes: np.ndarray, n_det: int, estimated: Any) -> Any:
        """Step 3 on ``boxes`` ``(m, 5)``, the first ``n_det`` the detector's: all of them, or
        with ``estimated`` (theirs, made ahead) the proposals only. A box's pose depends on its
        own crop alone, so both ways give the same poses."""
        if estimated is None:
            return self._timed("pose", lambda: self.stages.estimate([image], [boxes])[0])
        if len(boxes) == n_det:
            return estimated
        # the pose stage already counted this frame: its time adds, its count does not
        rest = self._timed("pose", lambda: self.stages.estimate([image], [boxes[n_det:]])[0], 0)
        return self.stages.join(estimated, rest)

    def _timed(self, stage: str, fn: Callable[[], Any], frames: int = 1) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.times.add(stage, time.perf_counter() - t0, frames)
        return out

    def __call__(self, image: np.ndarray, detections: np.ndarray | None,
                 estimated: Any = None, motion: np.ndarray | None = None) -> FramePoses:
        """Frame t's poses: ``detections`` are the detector's boxes on a scheduled keyframe,
        else ``None`` (the loop may then detect itself, adaptive keyframes). ``estimated``: the
        pose estimator's output for ``detections``, when the caller already has it (the
        pipeline estimates the detector's boxes ahead, batched across frames: they do not
        depend on frame t - 1's poses); only the proposals are then estimated here.
        ``motion``: :func:`cells` of ``image``, when the caller made them (the pipeline's
        reader does, while the frame is in its cache); else they are made here."""
        if estimated is not None and detections is None:
            raise ValueError("an estimate without the detections it was made from")
        grey = None
        if self.keyframes.adaptive:
            grey = cells(image) if motion is None else motion
        if detections is None and self.keyframes.wanted(self.lost, grey, self.grey,
                                                        self.proposals):
            # the detector stage already counted this frame: its time adds, its count does not
            detections = self._timed("detect", lambda: self.stages.detect([image])[0], 0)
        self.detected += detections is not None
        fresh = len(self.proposals)
        proposals = np.concatenate([self.proposals, self.carried[0]])
        boxes, n_det, kept = merge_proposals(detections, proposals, self.cfg.overlap)
        est = self._estimate(image, boxes, n_det, estimated)
        alive = self.stages.joint_scores(est)[n_det:] >= self.cfg.min_joint_score
        if not alive.all():  # step 4: dead proposals leave before grouping
            est = self.stages.keep(est, np.concatenate(
                [np.arange(n_det), n_det + np.flatnonzero(alive)]))
        poses = self._timed("group", lambda: self.stages.group(est, image))
        # a track lost here (not one carried already): an adaptive run detects the next frame
        self.lost = not alive[kept < fresh].all() or len(poses) < fresh
        keyframe = detections is not None
        missed = _made_from(poses.boxes, boxes[n_det:]) & keyframe
        motion = np.concatenate([self.motion, self.carried[1]])
        age = np.concatenate([np.zeros(fresh, int), self.carried[2]])
        died = np.zeros(len(proposals), bool)
        died[kept[~alive]] = True
        self.proposals, self.motion, self.extents = predict_boxes(
            poses, self.extents, self.cfg, image.shape[:2], missed)
        self.carried = carry_proposals(proposals, motion, age, died, self.proposals, self.cfg,
                                       image.shape[:2], keyframe)
        self.grey = grey
        return poses
