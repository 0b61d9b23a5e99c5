"""The tracker AlphaPose released as ``PoseFlow/tracker-general.py``, reproduced for comparison.

Its rules, as the released scripts apply them (re-implemented here, vectorised):

- each person's box is the box of its joints expanded by 10 % on every side (clipped to the image
  when the image is known); box IoU counts pixels inclusively (``+1`` on widths);
- candidates are the people seen in the last ``link_len`` frames, each at its most recent
  appearance; people seen in the previous frame are graded
  ``dm_iou + 2 box_iou + pose_iou_dm + 2 pose_iou``, older ones ``box_iou + pose_iou``;
- ``pose_iou``: per joint, the IoU of 60x60 px windows (``mag`` 30) around the two joints, the mean
  of the best 7 joints; ``pose_iou_dm`` the same with ORB correspondences (matches with the previous
  point in the first window and the current point in the second, over those in either);
  ``dm_iou`` the same over the whole boxes;
- Hungarian assignment on the grades; a pair is linked when its grade is above 0.2; the rest get new
  ids; a frame without people carries the previous frame's people forward.

Without images the correspondence terms are 0, as the released script gives them with an empty
correspondence file. Ids start at 0 here (the script starts at 1).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from posetracker.core.config import configured
from posetracker.core.poses import FramePoses
from posetracker.tracker.base import ImmediateOutput
from posetracker.tracker.config import AlphaPoseConfig
from posetracker.tracker.similarity import top_mean


def expanded_boxes(keypoints: np.ndarray, ratio: float,
                   image_size: tuple[int, int] | None) -> np.ndarray:
    """Joint boxes expanded by ``ratio`` of their size per side, clipped to ``(w, h)`` and
    truncated to integers like the released script: ``(n, k, 2) -> (n, 4)`` xyxy."""
    kp = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros((len(kp), 4))
    if len(kp) == 0:
        return out
    with np.errstate(all="ignore"):
        lo = np.nanmin(kp, axis=1)
        hi = np.nanmax(kp, axis=1)
    lo, hi = np.nan_to_num(lo), np.nan_to_num(hi)
    size = hi - lo
    lo, hi = lo - ratio * size, hi + ratio * size
    if image_size is not None:
        w, h = image_size
        lo = np.clip(lo, 0, [w, h])
        hi = np.clip(hi, 0, [w, h])
    out[:, :2], out[:, 2:] = np.trunc(lo), np.trunc(hi)
    return out


def inclusive_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Box IoU with inclusive pixel counts (the script's ``+1``): ``(n, 4), (m, 4) -> (n, m)``."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = (iw + 1) * (ih + 1)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iou = inter / (area_a[:, None] + area_b[None, :] - inter + 1e-5)
    return np.where((iw > 0) & (ih > 0), iou, 0.0)


def joint_window_iou_inclusive(a: np.ndarray, b: np.ndarray, mag: float) -> np.ndarray:
    """Per-joint IoU of ``(2 mag)``-wide windows, inclusive pixels: ``-> (n, m, k)``; 0 for absent
    joints."""
    d = np.abs(np.asarray(a)[:, None] - np.asarray(b)[None, :])       # (n, m, k, 2)
    overlap = (d[..., 0] < 2 * mag) & (d[..., 1] < 2 * mag)
    inter = (2 * mag - d[..., 0] + 1) * (2 * mag - d[..., 1] + 1)
    area = (2 * mag + 1) ** 2
    iou = inter / (2 * area - inter + 1e-5)
    return np.where(overlap, np.nan_to_num(iou, nan=0.0), 0.0)


class AlphaPoseTracker(ImmediateOutput):
    """AlphaPose's released PoseFlow tracker (``tracker-general.py``) as an online tracker.

    Args:
        config: The settings (:class:`posetracker.tracker.config.AlphaPoseConfig`: the script's
            command-line defaults); ``None``: the defaults.
        **overrides: Fields of ``config`` to replace, checked by the config.
    """

    def __init__(self, config: AlphaPoseConfig | None = None, **overrides: Any) -> None:
        self.config = configured(AlphaPoseConfig, config, overrides)
        self.weights = np.asarray(self.config.weights, dtype=np.float64)
        self.weights_older = np.asarray(self.config.weights_older, dtype=np.float64)
        self._orb = None
        self.reset()

    def _clear(self) -> None:
        self._next_id = 0
        # Per past frame: (ids (n,), expanded boxes (n, 4), keypoints (n, k, 2)).
        self._history: deque = deque(maxlen=self.config.link_len)
        if self._orb is not None:
            self._orb.reset()

    def _candidates(self):
        """Each id's most recent appearance within ``link_len`` frames, newest frames first."""
        ids, boxes, kps, fff = [], [], [], []
        seen: set[int] = set()
        for age, (fid, fbox, fkp) in enumerate(reversed(self._history)):
            for i, pid in enumerate(fid.tolist()):
                if pid not in seen:
                    seen.add(pid)
                    ids.append(pid)
                    boxes.append(fbox[i])
                    kps.append(fkp[i])
                    fff.append(age == 0)
        return ids, boxes, kps, np.array(fff, dtype=bool)

    def update(self, poses: FramePoses, image: np.ndarray | None = None) -> FramePoses:
        corr = None
        if image is not None:
            if self._orb is None:
                from posetracker.tracker.orb import OrbMatcher

                self._orb = OrbMatcher(self.config.orb_features, self.config.orb_max_side)
            corr = self._orb.match(image)
        size = None if image is None else (image.shape[1], image.shape[0])
        n = len(poses)
        if n == 0:
            if self._history:  # the script copies the previous frame's people into an empty one
                self._history.append(self._history[-1])
            return self._emit(poses.with_track_ids(np.zeros(0, dtype=np.int64)))
        boxes = expanded_boxes(poses.keypoints, self.config.box_expand, size)
        kp = np.asarray(poses.keypoints)
        ids = np.full(n, -1, dtype=np.int64)
        cand_ids, cand_boxes, cand_kps, fff = self._candidates()
        if cand_ids:
            cb, ck = np.stack(cand_boxes), np.stack(cand_kps)
            terms = np.zeros((4, len(cand_ids), n))
            terms[1] = inclusive_box_iou(cb, boxes)
            terms[3] = top_mean(joint_window_iou_inclusive(ck, kp, self.config.mag), self.config.num)
            if corr is not None and len(corr):
                from posetracker.tracker.orb import box_correspondence_iou, joint_correspondence_iou

                terms[0] = box_correspondence_iou(corr, cb, boxes)
                terms[2] = top_mean(joint_correspondence_iou(corr, ck, kp, self.config.mag), self.config.num)
            w = np.where(fff[:, None], 1, 0)[None] * self.weights[:, None, None] + \
                np.where(fff[:, None], 0, 1)[None] * self.weights_older[:, None, None]
            grade = (terms * w).sum(0)
            rows, cols = linear_sum_assignment(-grade)
            for i, j in zip(rows, cols):
                if grade[i, j] > self.config.match:
                    ids[j] = cand_ids[i]
        new = ids < 0
        ids[new] = np.arange(self._next_id, self._next_id + new.sum())
        self._next_id += int(new.sum())
        self._history.append((ids.copy(), boxes, kp))
        return self._emit(poses.with_track_ids(ids))
