"""The one table of flags that stand for one setting each, for the command line and the Python API.

A flag (``--det-batch``) and a :class:`~posetracker.app.api.PoseTracker` keyword (``det_batch=``)
are the same entry: its name, the settings path it sets in a tracking run (``track``, ``dataset``,
``PoseTracker``), and the path it sets in per-image estimation (``estimate``, ``fit-nms``, the
estimator benchmarks: the ``estimate`` section). The value is set with
:func:`dataclasses.replace` (:func:`posetracker.core.config.replace_path`), so the settings'
dataclasses check it; defaults are theirs alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Scope = Literal["track", "estimate"]


@dataclass(frozen=True)
class Flag:
    """One flag.

    Attributes:
        name: The argparse dest and the API keyword (``det_batch`` for ``--det-batch``).
        track: Settings path in a tracking run, or ``None``.
        estimate: Settings path in per-image estimation, or ``None``.
        both: The API sets both paths (the models, the device and the precision hold for
            tracking and per-image estimation alike); otherwise it sets ``track`` only.
        switch: A command-line switch that sets this value (``--sequential``: ``pipeline.mode =
            "sequential"``) rather than its own; not an API keyword (the API takes the setting's
            own keyword, ``mode=``).
    """

    name: str
    track: str | None
    estimate: str | None
    both: bool
    switch: Any

    def paths(self, scope: Scope) -> tuple[str, ...]:
        """The paths this flag sets in a command of ``scope`` (none: not a flag there)."""
        path = self.track if scope == "track" else self.estimate
        return () if path is None else (path,)

    def api_paths(self) -> tuple[str, ...]:
        """The paths the API keyword sets (none: not an API keyword)."""
        if self.track is None or self.switch is not None:
            return ()
        return (self.track, self.estimate) if self.both and self.estimate else (self.track,)


_E = "estimate.estimator"

#: Every flag: (name, path in a tracking run, path in per-image estimation, API sets both, switch).
FLAGS: tuple[Flag, ...] = tuple(Flag(*row) for row in (
    ("device", "estimator.device", f"{_E}.device", True, None),
    ("detector", "estimator.detector.model", f"{_E}.detector.model", True, None),
    ("pose_model", "estimator.sppe.model", f"{_E}.sppe.model", True, None),
    ("half", "estimator.precision", f"{_E}.precision", True, "fp16"),
    ("precision", "estimator.precision", f"{_E}.precision", True, None),
    ("backend", "estimator.backend", f"{_E}.backend", True, None),
    ("tracker", "tracker.kind", None, False, None),
    ("association", "pipeline.association", "estimate.association", False, None),
    ("det_batch", "estimator.frame_batch", None, False, None),
    ("pose_batch", "estimator.sppe.batch_size", None, False, None),
    ("mode", "pipeline.mode", None, False, None),
    ("sequential", "pipeline.mode", None, False, "sequential"),
    ("threads", "pipeline.threads", "estimate.threads", False, None),
    ("min_pose_score", "pipeline.min_pose_score", None, False, None),
    ("render_boxes", "pipeline.output.render_boxes", None, False, None),
    ("format", "pipeline.output.format", None, False, None),
    ("flip", None, f"{_E}.sppe.flip_test", False, None),
    ("nms", None, f"{_E}.nms.mode", False, None),
    ("frame_batch", None, f"{_E}.frame_batch", False, None),
))

#: The API keywords (:class:`~posetracker.app.api.PoseTracker`) -> the paths each sets.
API_KEYWORDS: dict[str, tuple[str, ...]] = {f.name: f.api_paths() for f in FLAGS if f.api_paths()}
