"""PoseFlow's matching cost: how well a pose continues a flow, as a public, injectable object.

PF-Builder (:class:`posetracker.tracker.poseflow.PoseFlowTracker`) links the ``n`` open flows to
the ``m`` poses of a later frame by maximising the summed *link value*; this module computes it,
in the terms of Xiu et al., "Pose Flow" (BMVC 2018):

1. *Motion*: each flow's last pose ``P`` and box are moved by the flow's velocity ``v``
   (pixels per frame, the box centre's) over the gap ``g`` (frames) to the pose's frame.
2. *Pose similarity* ``P_sim``: per joint ``exp(-d^2 / (2 (sigma * size * sqrt(g))^2))``, ``d``
   the joint distance in pixels and ``size = sqrt(w h)`` of the moved box, averaged over the joints
   present in both poses. The tolerance grows with ``sqrt(g)``, as a random walk's spread does.
3. *Box IoU* of the moved box and the pose's box.
4. *Correspondences* ``K_sim`` (with images, flows seen in the previous frame only): the share of
   ORB correspondences that fall in both joint neighbourhoods.
5. *Appearance* (with images): the Bhattacharyya coefficient of the torso colour histograms
   (:mod:`posetracker.tracker.appearance`), where both poses have one.
6. *Link similarity*: the weighted mean of the terms that exist,
   ``(w_pose P_sim + w_box IoU + w_orb K_sim + w_app app) / (sum of their weights)``, times the
   gap decay ``gap_decay ** (g - 1)`` (recent flows win ties). In [0, 1].
7. *Link value* (what the assignment maximises): the similarity times the confidence factor
   ``1 - w_conf + w_conf * clip(s / 3, 0, 1)``, ``s`` a pose confidence ``s(Q)`` (at most 3 for
   scores in [0, 1]); the paper's objective sums ``s(Q)`` along a flow, so confident links are
   worth more.

:class:`PoseFlowSimilarity` is the default; a tracker takes any object with the
:class:`LinkSimilarity` methods (``PoseFlowTracker(config, similarity=...)``), as a norfair tracker
takes a ``distance_function``. Everything here is pure: no state, inputs never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from posetracker.tracker.appearance import bhattacharyya, has_histogram
from posetracker.tracker.config import PoseFlowConfig
from posetracker.tracker.similarity import box_iou_paired, person_scale, pose_similarity_paired


@dataclass(frozen=True)
class FlowEnds:
    """The ``n`` flows' last poses, where a link starts.

    Attributes:
        keypoints: ``(n, k, 2)`` pixels, NaN for absent joints.
        boxes: ``(n, 4)`` xyxy pixels.
        velocity: ``(n, 2)`` pixels per frame (the box centre's motion).
        histograms: ``(n, B)`` L1-normalised torso histograms (an all-zero row: none), or ``None``
            without images.
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    velocity: np.ndarray
    histograms: np.ndarray | None


@dataclass(frozen=True)
class Candidates:
    """The ``m`` poses a flow may continue with (the paper's candidate poses).

    Attributes:
        keypoints: ``(m, k, 2)`` pixels, NaN for absent joints.
        boxes: ``(m, 4)`` xyxy pixels.
        histograms: ``(m, B)`` torso histograms (all-zero row: none), or ``None``.
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    histograms: np.ndarray | None


@dataclass(frozen=True)
class Correspondences:
    """The correspondence term ``K_sim`` of flows against poses.

    Attributes:
        k_sim: ``(n, m)`` share of ORB correspondences in both joint neighbourhoods, in [0, 1].
        known: ``(n, m)`` bool: the term exists (the flow was seen in the previous frame).
    """

    k_sim: np.ndarray
    known: np.ndarray


def stack_histograms(rows: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """``(len(rows), B)`` histograms with all-zero rows for ``None`` entries; ``None`` when no
    entry has one."""
    known = [h for h in rows if h is not None]
    if not known:
        return None
    empty = np.zeros_like(known[0])
    return np.stack([empty if h is None else h for h in rows])


class LinkSimilarity(Protocol):
    """What PF-Builder needs of a matching cost (see the module docstring, steps 1-7)."""

    def __call__(self, flows: FlowEnds, poses: Candidates, gap: np.ndarray,
                 correspondences: Correspondences | None = None) -> np.ndarray:
        """``(n, m)`` link similarity in [0, 1]; ``gap`` ``(n, m)`` frames from each flow's last
        pose to each pose (at least 1)."""

    def confidence_weight(self, confidence: np.ndarray) -> np.ndarray:
        """The factor of a link value for pose confidences ``s(Q)`` (any shape, same shape out)."""


@dataclass(frozen=True)
class PoseFlowSimilarity:
    """The PoseFlow link similarity and confidence weighting (module docstring, steps 1-7).

    Build it from the tracker's settings with :meth:`from_config`; the attributes are
    :class:`~posetracker.tracker.config.PoseFlowConfig`'s fields of the same names, which document
    them.
    """

    sigma: float
    w_box: float
    w_pose: float
    w_orb: float
    w_app: float
    w_conf: float
    gap_decay: float
    use_motion: bool

    @classmethod
    def from_config(cls, config: PoseFlowConfig) -> PoseFlowSimilarity:
        """The similarity with ``config``'s weights."""
        return cls(sigma=config.sigma, w_box=config.w_box, w_pose=config.w_pose,
                   w_orb=config.w_orb, w_app=config.w_app, w_conf=config.w_conf,
                   gap_decay=config.gap_decay, use_motion=config.use_motion)

    def moved(self, flows: FlowEnds, gap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step 1: the flows' poses ``(n, m, k, 2)`` and boxes ``(n, m, 4)`` moved over ``gap``."""
        if not self.use_motion:
            return flows.keypoints[:, None], np.broadcast_to(flows.boxes[:, None], gap.shape + (4,))
        shift = flows.velocity[:, None, :] * gap[..., None]                    # (n, m, 2)
        return (flows.keypoints[:, None] + shift[:, :, None, :],
                flows.boxes[:, None] + np.concatenate([shift, shift], -1))

    def __call__(self, flows: FlowEnds, poses: Candidates, gap: np.ndarray,
                 correspondences: Correspondences | None = None) -> np.ndarray:
        """``(n, m)`` link similarity in [0, 1] (steps 1-6).

        Args:
            flows: The ``n`` flows' last poses.
            poses: The ``m`` candidate poses.
            gap: ``(n, m)`` frames from each flow's last pose to each pose (>= 1).
            correspondences: The ``K_sim`` term, or ``None`` (no images).
        """
        pkp, pbox = self.moved(flows, gap)
        scale = person_scale(pbox.reshape(-1, 4)).reshape(gap.shape)
        psim = pose_similarity_paired(pkp, poses.keypoints[None], scale * np.sqrt(gap), self.sigma)
        num = self.w_pose * psim + self.w_box * box_iou_paired(pbox, poses.boxes[None])
        den = np.full(num.shape, self.w_pose + self.w_box)
        if correspondences is not None and self.w_orb > 0:
            num = num + self.w_orb * correspondences.k_sim * correspondences.known
            den = den + self.w_orb * correspondences.known
        if flows.histograms is not None and poses.histograms is not None and self.w_app > 0:
            both = has_histogram(flows.histograms)[:, None] & has_histogram(poses.histograms)[None, :]
            num = num + self.w_app * bhattacharyya(flows.histograms, poses.histograms) * both
            den = den + self.w_app * both
        return num / den * self.gap_decay ** (gap - 1)

    def confidence_weight(self, confidence: np.ndarray) -> np.ndarray:
        """Step 7: ``1 - w_conf + w_conf * clip(s(Q) / 3, 0, 1)``, elementwise."""
        return 1.0 - self.w_conf + self.w_conf * np.clip(confidence / 3.0, 0.0, 1.0)
