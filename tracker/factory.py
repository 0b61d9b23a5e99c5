"""Build the tracker a :class:`posetracker.tracker.config.TrackerConfig` names."""

from __future__ import annotations

from posetracker.tracker.alphapose import AlphaPoseTracker
from posetracker.tracker.base import Tracker
from posetracker.tracker.baselines import IouTracker, NoTracker
from posetracker.tracker.config import TrackerConfig
from posetracker.tracker.poseflow import PoseFlowTracker


def make_tracker(config: TrackerConfig) -> Tracker:
    """A fresh tracker of ``config.kind`` with that kind's settings."""
    match config.kind:
        case "poseflow":
            return PoseFlowTracker(config.poseflow)
        case "iou":
            return IouTracker(config.iou)
        case "alphapose":
            return AlphaPoseTracker(config.alphapose)
        case "none":
            return NoTracker()
    raise ValueError(f"unknown tracker kind {config.kind!r}")
