"""Across-frame tracking: PoseFlow building and PoseFlow NMS, plus baseline trackers.

``make_tracker(TrackerConfig(kind=...))`` builds one; ``track_frames(tracker, frames)`` runs it over
a video. Every tracker follows :class:`posetracker.tracker.base.Tracker` (update / pop_final / finish / reset).
"""

from posetracker.tracker.base import Tracker, track_frames
from posetracker.tracker.config import AlphaPoseConfig, IouConfig, PoseFlowConfig, TrackerConfig
from posetracker.tracker.factory import make_tracker

__all__ = ["Tracker", "track_frames", "make_tracker", "TrackerConfig", "PoseFlowConfig",
           "IouConfig", "AlphaPoseConfig"]
