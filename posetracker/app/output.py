"""The output policy of a ``track`` run: which joints the run writes, decided once per frame before
any sink sees it, so the JSON lines, the CSV, the rendered video and the final JSON hold the same
joints.

For a format with a keypoint schema (the PoseTrack formats; the ``schema`` of its entry in
:data:`posetracker.io.formats.output_formats.OUTPUT_FORMATS`) the poses go to that schema (COCO
models lack PoseTrack's ``head_bottom`` and ``head_top``; ``derive_head`` fills them from the face
and shoulders, :func:`posetracker.core.schemas.derive_head_joints`), then joints scored below
``keypoint_threshold`` become absent (NaN, score 0). A format without one (``coco``) keeps the
model's joints and scores as they are (COCO AP ranks joints by score itself).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from posetracker.core.poses import FramePoses
from posetracker.core.schemas import KeypointSchema, convert_keypoints
from posetracker.io.formats.output_formats import OUTPUT_FORMATS


@dataclass(frozen=True)
class OutputPolicy:
    """Joints a run writes.

    Attributes:
        schema: Keypoint schema of the written poses (``None``: the model's own).
        keypoint_threshold: Joints scored below this are written absent (0: every joint).
        derive_head: Fill ``head_bottom``/``head_top`` when ``schema`` has them and the poses
            do not.
    """

    schema: KeypointSchema | None = None
    keypoint_threshold: float = 0.0
    derive_head: bool = False

    @classmethod
    def for_output(cls, output) -> OutputPolicy:
        """The policy of ``pipeline.output`` (an ``OutputConfig``) for its ``format``."""
        schema = OUTPUT_FORMATS.get(output.format).schema
        if schema is None:  # e.g. coco results: the model's joints, every one with its score
            return cls()
        return cls(schema, output.keypoint_threshold, output.derive_head)

    def __call__(self, poses: FramePoses) -> FramePoses:
        """``poses`` as the run writes them: ``(n, k_out, 2)`` keypoints in ``schema``, absent
        joints NaN with score 0; boxes, scores and track ids unchanged."""
        kp, sc = poses.keypoints, poses.keypoint_scores
        schema = poses.schema
        if self.schema is not None and self.schema is not schema:
            kp, sc = convert_keypoints(kp, sc, schema, self.schema, derive_head=self.derive_head)
            schema = self.schema
        if self.keypoint_threshold > 0:
            low = sc < self.keypoint_threshold
            kp = np.where(low[..., None], np.nan, kp)
            sc = np.where(low, 0.0, sc)
        if schema is poses.schema and kp is poses.keypoints:
            return poses
        return dataclasses.replace(poses, keypoints=kp, keypoint_scores=sc, schema=schema)
