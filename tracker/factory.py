"""Build the tracker a :class:`tracker.config.TrackerConfig` names."""

from __future__ import annotations

import dataclasses

from tracker.alphapose import AlphaPoseTracker
from tracker.base import Tracker
from tracker.baselines import IouTracker, NoTracker
from tracker.config import TrackerConfig
from tracker.poseflow import PoseFlowTracker


def make_tracker(config: TrackerConfig) -> Tracker:
    """A fresh tracker of ``config.kind`` with that kind's settings."""
    match config.kind:
        case "poseflow":
            return PoseFlowTracker(**dataclasses.asdict(config.poseflow))
        case "iou":
            return IouTracker(**dataclasses.asdict(config.iou))
        case "alphapose":
            return AlphaPoseTracker(**dataclasses.asdict(config.alphapose))
        case "none":
            return NoTracker()
    raise ValueError(f"unknown tracker kind {config.kind!r}")
