"""``--association auto``: the CrowdPose association where a frame's people overlap, pose NMS elsewhere.

Steps, per frame:

1. the crowd index of the frame's proposals (:func:`frame_crowd_index`): each box with the SPPE's
   single-person answer in it; the share of the *other* proposals' confident joints inside each
   box, averaged over the boxes. The proposals, not pose NMS's survivors: where a box's answer
   lies on its neighbour, pose NMS merges the two into one person and the frame would look
   uncrowded exactly where the association is needed;
2. below ``auto.crowd_threshold``: pose NMS (RMPE's, the estimator's settings), exactly as
   ``--association nms``;
3. from it: the association (:func:`posetracker.association.assign.associate_intermediates`),
   since where boxes hold each other's joints, proposals compete for joints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from posetracker.association.assign import associate_intermediates
from posetracker.association.config import AssociationConfig, AutoConfig
from posetracker.core.coco import crowd_index_of
from posetracker.core.intermediates import FrameIntermediates
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import KeypointSchema


def frame_crowd_index(poses: FramePoses, config: AutoConfig = AutoConfig()) -> float:
    """Step 1: the CrowdPose crowd index of predicted people (``poses``: their joints, joint
    scores and boxes); a joint counts when its score is at least ``config.joint_threshold``,
    a person is averaged over when it has at least ``config.min_joints`` such joints."""
    ok = np.asarray(poses.keypoint_scores) >= config.joint_threshold
    ok &= np.isfinite(np.asarray(poses.keypoints)).all(-1)
    points = [np.asarray(poses.keypoints)[i][ok[i]] for i in range(len(poses))]
    counted = ok.sum(1) >= config.min_joints
    return crowd_index_of(points, np.asarray(poses.boxes, dtype=np.float64).reshape(-1, 4), counted)


@dataclass(frozen=True)
class AutoGrouping:
    """The estimator's grouping for ``--association auto`` (see the module).

    Attributes:
        nms: Step 1, the pose-NMS grouping ``(inter, schema, person_scores) -> FramePoses`` (the
            estimator's :class:`~posetracker.estimators.rmpe.PoseNMSGrouping`, given by the app).
        config: The association's settings; its ``auto`` field is the rule.
    """

    nms: Callable[[FrameIntermediates, KeypointSchema, Callable], FramePoses]
    config: AssociationConfig = field(default_factory=AssociationConfig)
    heatmaps: bool = True

    def __call__(self, inter: FrameIntermediates, schema: KeypointSchema,
                 person_scores: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FramePoses:
        return self.group(inter, schema, person_scores)[0]

    def group(self, inter: FrameIntermediates, schema: KeypointSchema,
              person_scores: Callable[[np.ndarray, np.ndarray], np.ndarray]
              ) -> tuple[FramePoses, bool]:
        """The frame's people and whether the association made them (steps 1-3)."""
        proposals = FramePoses(inter.keypoints, inter.keypoint_scores, inter.boxes,
                               np.asarray(inter.box_scores, dtype=np.float64), schema)
        if frame_crowd_index(proposals, self.config.auto) < self.config.auto.crowd_threshold:
            return self.nms(inter, schema, person_scores), False
        return associate_intermediates(inter, schema, self.config, person_scores)[0], True
