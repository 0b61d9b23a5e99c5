"""Checks on tracked output shared by the tracker tests."""

from __future__ import annotations

from collections.abc import Sequence

from posetracker.core.poses import FramePoses


def unique_ids_ok(frames: Sequence[FramePoses]) -> bool:
    """Every frame tracked, with ids unique within the frame."""
    return all(f.track_ids is not None and len(set(f.track_ids.tolist())) == len(f)
               for f in frames)
