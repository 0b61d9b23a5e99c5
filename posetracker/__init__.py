"""posetracker: multi-person 2D pose estimation and tracking.

The Python API (:mod:`posetracker.app.api`)::

    from posetracker import PoseTracker, evaluate_posetrack

    tracker = PoseTracker(device="cpu")
    for frame in tracker.track("video.mp4"):          # TrackedFrame, as each is final
        frame.index, frame.image_size, frame.poses.track_ids, frame.poses.keypoints
    tracker.track_to("video.mp4", "out/video.json")   # as `posetracker track`
    poses = tracker.estimate(["a.jpg", "b.jpg"])      # per image, no tracking
    evaluate_posetrack("gt/", "out/")                 # pandas DataFrame

Layers: ``posetracker.core`` (vocabulary) < ``posetracker.io`` (formats, sources, sinks) < the
domain packages ``posetracker.estimators``, ``.association``, ``.tracker``, ``.evaluation`` <
``posetracker.app`` (API, pipeline, CLI). The names below load on first use, so that
``import posetracker`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: The public API: name -> module that defines it.
_API = {
    "PoseTracker": "posetracker.app.api",
    "TrackedFrame": "posetracker.app.api",
    "TrackSummary": "posetracker.app.api",
    "evaluate_posetrack": "posetracker.app.api",
    "evaluate_coco": "posetracker.app.api",
    "evaluate_crowdpose": "posetracker.app.api",
    "AppConfig": "posetracker.app.settings",
    "FramePoses": "posetracker.core.poses",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'posetracker' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
