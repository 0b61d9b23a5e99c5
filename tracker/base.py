"""The interface every tracker shares, and the loop that runs one over a video.

Trackers are online: :meth:`Tracker.update` labels the newest frame at once. A tracker that revises
recent frames (PoseFlow's PF-NMS re-links and merges flows inside its window) hands out *final*
frames later: :meth:`Tracker.pop_final` returns the frames that can no longer change, in order, and
:meth:`Tracker.finish` returns the rest at the end of a video. Trackers without a window make each
frame final as soon as it is updated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

import numpy as np

from posetracker.core.poses import FramePoses


class Tracker(Protocol):
    """What ``posetracker track`` and the benchmark need of a tracker."""

    def update(self, poses: FramePoses, image: np.ndarray | None = None) -> FramePoses:
        """Track one frame; returns its poses with (provisional) track ids."""

    def pop_final(self) -> list[FramePoses]:
        """Frames whose ids are final, oldest first, not returned before."""

    def finish(self) -> list[FramePoses]:
        """End of the video: every frame not yet final, with final ids; then :meth:`reset`."""

    def reset(self) -> None:
        """Forget everything; ids restart (the next video)."""


def track_frames(tracker: Tracker, frames: Iterable[FramePoses],
                 images: Iterable[np.ndarray | None] | None = None) -> list[FramePoses]:
    """Run ``tracker`` over one video and return every frame with its final track ids.

    Args:
        tracker: Any :class:`Tracker`; it is reset before and after.
        frames: Each frame's poses, in order.
        images: Matching frames as ``(h, w, 3)`` BGR arrays (or ``None`` entries), optional.

    Returns:
        One tracked :class:`FramePoses` per input frame, in order.
    """
    tracker.reset()
    loop: TrackingLoop[None] = TrackingLoop(tracker)
    out: list[FramePoses] = []
    image_iter = iter(images) if images is not None else None
    for poses in frames:
        image = next(image_iter, None) if image_iter is not None else None
        out.extend(p for _, p in loop.push(poses, image))
    out.extend(p for _, p in loop.finish())
    return out


T = TypeVar("T")


class TrackingLoop(Generic[T]):
    """The one loop that runs a tracker over a video: frames in, in order; frames out, in order,
    once their ids are final, renumbered by :class:`OutputIds`.

    A windowed tracker finalises frame ``t`` only after seeing later frames, so each frame's
    ``payload`` (whatever the caller keeps with it: the image, the source frame) waits here until
    the tracker releases the frame. ``track_frames`` and the streaming pipeline both use it.
    """

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.ids = OutputIds()
        self.waiting: deque[T] = deque()

    def _release(self, final: list[FramePoses]) -> list[tuple[T, FramePoses]]:
        if len(final) > len(self.waiting):
            raise RuntimeError(f"tracker returned {len(final)} final frames, only "
                               f"{len(self.waiting)} were waiting")
        return [(self.waiting.popleft(), self.ids(poses)) for poses in final]

    def push(self, poses: FramePoses, image: np.ndarray | None = None, payload: T = None
             ) -> list[tuple[T, FramePoses]]:
        """Track the next frame (``image``: ``(h, w, 3)`` BGR or ``None``); returns the frames
        now final with their payloads (possibly none, possibly several), oldest first."""
        self.tracker.update(poses, image)
        self.waiting.append(payload)
        return self._release(self.tracker.pop_final())

    def finish(self) -> list[tuple[T, FramePoses]]:
        """End of the video: every waiting frame with its final ids."""
        out = self._release(self.tracker.finish())
        if self.waiting:
            raise RuntimeError(f"tracker kept {len(self.waiting)} frames after finish()")
        return out


class OutputIds:
    """Renumbers final track ids 0, 1, 2, ... in the order they first appear in the output.

    A tracker draws ids from a counter for every track it starts, including the ones it later
    suppresses (PoseFlow NMS drops short flows, merges redundant ones): written as they are, the
    ids of a video would have gaps and could pass 999, the largest id the PoseTrack evaluation
    accepts. One instance per video; the mapping is one-to-one, so scores do not change.
    """

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}

    def __call__(self, frame: FramePoses) -> FramePoses:
        if frame.track_ids is None:
            return frame
        out = [self._ids.setdefault(int(t), len(self._ids)) for t in frame.track_ids]
        return frame.with_track_ids(out)


class ImmediateOutput:
    """Mixin for trackers whose ids are final at once: keeps ``update``'s results for
    :meth:`pop_final`. Subclasses call ``self._emit(frame)`` and implement ``_clear()``."""

    _ready: list[FramePoses]

    def _emit(self, frame: FramePoses) -> FramePoses:
        self._ready.append(frame)
        return frame

    def pop_final(self) -> list[FramePoses]:
        ready, self._ready = self._ready, []
        return ready

    def finish(self) -> list[FramePoses]:
        ready = self.pop_final()
        self.reset()
        return ready

    def reset(self) -> None:
        self._ready = []
        self._clear()

    def _clear(self) -> None:
        raise NotImplementedError

