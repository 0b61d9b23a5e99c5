"""posetracker: multi-person 2D pose estimation and tracking.

The ``posetracker`` package holds the shared vocabulary (keypoint schemas, pose value types,
file formats, video sources and sinks, config loading) and the application layer (pipeline, CLI).
The domain packages ``estimators``, ``association``, ``tracker`` and ``evaluation`` import only the
vocabulary modules from here, never :mod:`posetracker.app.cli` or :mod:`posetracker.app.pipeline`.
"""

__version__ = "0.1.0"
