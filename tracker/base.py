"""The interface every tracker shares, and the loop that runs one over a video.

Trackers are online: :meth:`Tracker.update` labels the newest frame at once. A tracker that revises
recent frames (PoseFlow's PF-NMS re-links and merges flows inside its window) hands out *final*
frames later: :meth:`Tracker.pop_final` returns the frames that can no longer change, in order, and
:meth:`Tracker.finish` returns the rest at the end of a video. Trackers without a window make each
frame final as soon as it is updated.
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

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
    ids = OutputIds()
    out: list[FramePoses] = []
    image_iter = iter(images) if images is not None else None
    for poses in frames:
        image = next(image_iter, None) if image_iter is not None else None
        tracker.update(poses, image)
        out.extend(map(ids, tracker.pop_final()))
    out.extend(map(ids, tracker.finish()))
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


def unique_ids_ok(frames: Sequence[FramePoses]) -> bool:
    """Every frame tracked, with ids unique within the frame (a test helper)."""
    return all(f.track_ids is not None and len(set(f.track_ids.tolist())) == len(f)
               for f in frames)
