"""Gap filling: poses of a flow in the frames where the detector missed its person.

Pure functions; :class:`posetracker.tracker.poseflow.PoseFlowTracker` calls them when a frame leaves its window,
so a filled pose is emitted in the frame it fills (a frame is final ``window - 1`` frames after it
arrives, and only frames not yet final can still receive a pose).

The evidence on each side of a gap:

- before it, an :class:`Anchor`: per joint, the last final frame in which the flow had that joint,
  with its position and score (a joint seen two frames before the gap still counts);
- after it, the flow's first pose in a later frame of the window.

A filled joint lies on the straight line between its two sightings, at the fraction of the time
elapsed (constant velocity between them). Joints seen on one side only are not invented. Scores are
honest: the interpolated joint score times ``decay ** d``, ``d`` the frames to the nearer sighting,
so a filled joint ranks below the detections it was made from, the more so the longer the gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class Anchor:
    """What a flow's final frames say about where its joints were last seen.

    Attributes:
        t: Last final frame with a (detected, not filled) pose of the flow.
        kp: ``(k, 2)`` each joint's last detected position; NaN when never seen.
        seen_at: ``(k,)`` frame of that sighting (``-inf`` when never seen).
        joint_scores: ``(k,)`` its score.
        box: ``(4,)`` box of the pose at ``t``; person_score: its person score;
            box_score: its detector score.
        head: ``(4,)`` head box at ``t``, or ``None``.
        vel: ``(2,)`` the flow's velocity at ``t`` (pixels per frame).
        shown: Whether the pose at ``t`` was written (PF-NMS did not suppress it); only shown
            flows are filled.
    """

    t: int
    kp: np.ndarray
    seen_at: np.ndarray
    joint_scores: np.ndarray
    box: np.ndarray
    person_score: float
    box_score: float
    head: np.ndarray | None = None
    vel: np.ndarray = field(default_factory=lambda: np.zeros(2))
    shown: bool = True

    @classmethod
    def first(cls, t: int, kp: np.ndarray, joint_scores: np.ndarray, box: np.ndarray,
              person_score: float, box_score: float, head: np.ndarray | None) -> Anchor:
        present = np.isfinite(kp).all(-1)
        return cls(t, kp.copy(), np.where(present, float(t), -np.inf),
                   np.where(present, joint_scores, 0.0), box.copy(), float(person_score),
                   float(box_score), None if head is None else head.copy())

    def update(self, t: int, kp: np.ndarray, joint_scores: np.ndarray, box: np.ndarray,
               person_score: float, box_score: float, head: np.ndarray | None) -> None:
        """Record the flow's detected pose at final frame ``t`` (joints absent there keep their
        older sighting)."""
        present = np.isfinite(kp).all(-1)
        self.kp[present] = kp[present]
        self.seen_at[present] = t
        self.joint_scores[present] = joint_scores[present]
        self.t, self.box = t, box.copy()
        self.person_score, self.box_score = float(person_score), float(box_score)
        self.head = None if head is None else head.copy()


def interpolate_joints(t: int, kp_a: np.ndarray, t_a: np.ndarray, sc_a: np.ndarray,
                       kp_b: np.ndarray, sc_b: np.ndarray, t_b: int, max_gap: int,
                       decay: float) -> tuple[np.ndarray, np.ndarray]:
    """Joints at frame ``t`` between sightings before (per joint at ``t_a``) and at ``t_b``.

    Args:
        t: The frame to fill, ``t_a < t < t_b`` for the joints filled.
        kp_a, t_a, sc_a: ``(k, 2)``, ``(k,)``, ``(k,)`` last sightings before ``t``.
        kp_b, sc_b: ``(k, 2)``, ``(k,)`` the pose at ``t_b``; t_b: its frame.
        max_gap: A joint is filled only when its two sightings are at most ``max_gap + 1`` frames
            apart (at most ``max_gap`` frames without it).
        decay: Score factor per frame of distance to the nearer sighting.

    Returns:
        ``(kp (k, 2), sc (k,))``: NaN and 0 for joints not filled.
    """
    ok = (np.isfinite(kp_a).all(-1) & np.isfinite(kp_b).all(-1) & (t_a < t) & (t < t_b)
          & (t_b - t_a <= max_gap + 1))
    span = np.where(ok, t_b - t_a, 1.0)
    w = np.where(ok, (t - t_a) / span, 0.0)
    kp = np.where(ok[:, None], (1 - w)[:, None] * kp_a + w[:, None] * kp_b, np.nan)
    near = np.minimum(t - t_a, t_b - t)
    sc = np.where(ok, ((1 - w) * sc_a + w * sc_b) * decay ** np.where(ok, near, 0.0), 0.0)
    return kp, sc


def interpolate_box(t: int, box_a: np.ndarray, t_a: int, box_b: np.ndarray,
                    t_b: int) -> np.ndarray:
    """A box (or any array) at ``t`` on the line between its values at ``t_a`` and ``t_b``."""
    w = (t - t_a) / max(t_b - t_a, 1)
    return (1 - w) * np.asarray(box_a, dtype=np.float64) + w * np.asarray(box_b, dtype=np.float64)
