"""Baseline trackers: ``none`` (a new id for every pose) and ``iou`` (greedy box IoU)."""

from __future__ import annotations

from typing import Any

import numpy as np

from posetracker.core.boxes import box_iou, greedy_pairs
from posetracker.core.config import configured
from posetracker.core.poses import FramePoses
from posetracker.tracker.base import ImmediateOutput
from posetracker.tracker.config import IouConfig


class NoTracker(ImmediateOutput):
    """Gives every pose of every frame a new id (0, 1, 2, ...): the floor of any tracker."""

    def __init__(self) -> None:
        self.reset()

    def _clear(self) -> None:
        self._next_id = 0

    def update(self, poses: FramePoses, image: np.ndarray | None = None) -> FramePoses:
        ids = np.arange(self._next_id, self._next_id + len(poses), dtype=np.int64)
        self._next_id += len(poses)
        return self._emit(poses.with_track_ids(ids))


class IouTracker(ImmediateOutput):
    """Greedy box-IoU tracking: the highest-IoU (track, pose) pair is linked first.

    Args:
        config: The settings (:class:`posetracker.tracker.config.IouConfig`: ``threshold``, the
            minimum IoU of a track's last box and a new box; ``max_age``); ``None``: the defaults.
        **overrides: Fields of ``config`` to replace, checked by the config.

    Ids start at 0 and restart on :meth:`reset`.
    """

    def __init__(self, config: IouConfig | None = None, **overrides: Any) -> None:
        self.config = configured(IouConfig, config, overrides)
        self.reset()

    def _clear(self) -> None:
        self._next_id = 0
        self._frames_seen = 0
        self._ids = np.zeros(0, dtype=np.int64)
        self._boxes = np.zeros((0, 4))
        self._last = np.zeros(0, dtype=np.int64)

    def update(self, poses: FramePoses, image: np.ndarray | None = None) -> FramePoses:
        t = self._frames_seen
        self._frames_seen += 1
        alive = t - self._last <= self.config.max_age
        self._ids, self._boxes, self._last = self._ids[alive], self._boxes[alive], self._last[alive]
        n = len(poses)
        ids = np.full(n, -1, dtype=np.int64)
        if n and len(self._ids):
            for i, j in greedy_pairs(box_iou(self._boxes, poses.boxes), self.config.threshold):
                ids[j] = self._ids[i]
                self._boxes[i] = poses.boxes[j]
                self._last[i] = t
        new = ids < 0
        ids[new] = np.arange(self._next_id, self._next_id + new.sum())
        self._next_id += int(new.sum())
        self._ids = np.concatenate([self._ids, ids[new]])
        self._boxes = np.concatenate([self._boxes, poses.boxes[new]])
        self._last = np.concatenate([self._last, np.full(int(new.sum()), t, dtype=np.int64)])
        return self._emit(poses.with_track_ids(ids))
