"""PoseFlow's matching cost (:mod:`posetracker.tracker.matching`) on small hand-made matrices, term
by term and weight by weight, and injected into the tracker."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from posetracker.tracker.config import PoseFlowConfig
from posetracker.tracker.matching import (
    Candidates,
    Correspondences,
    FlowEnds,
    PoseFlowSimilarity,
    stack_histograms,
)
from posetracker.tracker.poseflow import PoseFlowTracker
from tests.test_tracker import frame, person

NAN = np.nan
# One flow: two joints 10 px apart in a 10 x 40 px box (person size sqrt(10 * 40) = 20 px).
KP = np.array([[[0.0, 0.0], [10.0, 0.0]]])
BOX = np.array([[0.0, 0.0, 10.0, 40.0]])


def cost(**weights) -> PoseFlowSimilarity:
    """Only the named terms on: weights 0, no gap decay, no motion unless given."""
    base = dict(sigma=0.5, w_box=0.0, w_pose=0.0, w_orb=0.0, w_app=0.0, w_conf=0.0, gap_decay=1.0,
                use_motion=False)
    return PoseFlowSimilarity(**{**base, **weights})


def ends(n: int = 1, velocity=(0.0, 0.0), histograms=None) -> FlowEnds:
    return FlowEnds(np.repeat(KP, n, 0), np.repeat(BOX, n, 0), np.tile(velocity, (n, 1)), histograms)


def poses(kp, boxes=None, histograms=None) -> Candidates:
    kp = np.asarray(kp, dtype=np.float64)
    boxes = np.repeat(BOX, len(kp), 0) if boxes is None else np.asarray(boxes, dtype=np.float64)
    return Candidates(kp, boxes, histograms)


def test_pose_term_is_the_gaussian_joint_similarity_with_a_tolerance_growing_with_the_gap():
    """``P_sim``: per joint ``exp(-d^2 / (2 (sigma size sqrt(g))^2))``, the mean over the joints
    present in both poses."""
    sim = cost(w_pose=1.0)
    b = poses([[[3.0, 4.0], [10.0, 0.0]],       # joint 0 moved 5 px, joint 1 in place
               [[0.0, 0.0], [NAN, NAN]]])       # joint 1 absent: only joint 0 counts
    gap = np.array([[1.0, 1.0], [4.0, 4.0]])    # second flow seen 4 frames before
    out = sim(ends(2), b, gap)
    tol1, tol4 = 0.5 * 20 * 1, 0.5 * 20 * 2     # sigma x size x sqrt(gap), pixels
    assert out == pytest.approx(np.array([
        [(np.exp(-25 / (2 * tol1 ** 2)) + 1) / 2, 1.0],
        [(np.exp(-25 / (2 * tol4 ** 2)) + 1) / 2, 1.0]]), abs=1e-12)
    # sigma scales the tolerance
    assert cost(w_pose=1.0, sigma=0.25)(ends(), b, gap[:1])[0, 0] == pytest.approx(
        (np.exp(-25 / (2 * 5.0 ** 2)) + 1) / 2, abs=1e-12)


def test_box_term_is_the_iou():
    b = poses(np.repeat(KP, 3, 0), [[5, 0, 15, 40], [0, 0, 10, 40], [20, 0, 30, 40]])
    out = cost(w_box=1.0)(ends(), b, np.ones((1, 3)))
    assert out == pytest.approx(np.array([[200 / 600, 1.0, 0.0]]), abs=1e-12)


def test_terms_are_a_weighted_mean():
    b = poses([[[3.0, 4.0], [10.0, 0.0]]], [[5, 0, 15, 40]])
    p = (np.exp(-25 / (2 * 10.0 ** 2)) + 1) / 2
    for w_pose, w_box in ((2.0, 1.0), (1.0, 3.0), (1.0, 0.0)):
        out = cost(w_pose=w_pose, w_box=w_box)(ends(), b, np.ones((1, 1)))
        assert out[0, 0] == pytest.approx((w_pose * p + w_box / 3) / (w_pose + w_box), abs=1e-12)


def test_motion_moves_the_flow_over_the_gap():
    """The flow moves 5 px/frame to the right; seen 2 frames later it is 10 px further on."""
    b = poses(KP + [10.0, 0.0], BOX + [10, 0, 10, 0])
    gap = np.full((1, 1), 2.0)
    moving = cost(w_pose=1.0, w_box=1.0, use_motion=True)
    assert moving(ends(velocity=(5.0, 0.0)), b, gap)[0, 0] == pytest.approx(1.0)
    # without motion: each joint 10 px off (tolerance 0.5 x 20 x sqrt 2), the boxes apart
    still = cost(w_pose=1.0, w_box=1.0)(ends(velocity=(5.0, 0.0)), b, gap)[0, 0]
    assert still == pytest.approx(np.exp(-100 / (2 * 200)) / 2, abs=1e-12)
    # a standing flow is not moved either
    assert moving(ends(), b, gap)[0, 0] == pytest.approx(still, abs=1e-12)


def test_gap_decay():
    b = poses(KP)
    gap = np.array([[1.0], [2.0], [4.0]])
    out = cost(w_pose=1.0, w_box=1.0, gap_decay=0.5)(ends(3), b, gap)
    assert out[:, 0] == pytest.approx([1.0, 0.5, 0.125])


def test_correspondence_term_where_known():
    b = poses(np.repeat(KP, 2, 0))
    k = Correspondences(np.array([[0.4, 0.4], [0.4, 0.4]]),
                        np.array([[True, False], [False, False]]))
    out = cost(w_pose=1.0, w_box=1.0, w_orb=2.0)(ends(2), b, np.ones((2, 2)), k)
    assert out == pytest.approx(np.array([[(1 + 1 + 2 * 0.4) / 4, 1.0], [1.0, 1.0]]))
    # w_orb = 0 turns it off
    assert cost(w_pose=1.0, w_box=1.0)(ends(2), b, np.ones((2, 2)), k) == pytest.approx(1.0)


def test_appearance_term_is_the_bhattacharyya_coefficient_where_both_have_a_histogram():
    hist = np.array([[1.0, 0, 0, 0]])
    other = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0.25, 0.25, 0.25, 0.25], [0, 0, 0, 0]])
    b = poses(np.repeat(KP, 4, 0), histograms=other)
    out = cost(w_pose=1.0, w_box=1.0, w_app=2.0)(ends(histograms=hist), b, np.ones((1, 4)))
    # identical geometry (1 and 1) with colours agreeing 1, 0, 0.5 and unknown (no term)
    assert out[0] == pytest.approx([1.0, 2 / 4, (2 + 2 * 0.5) / 4, 1.0])
    assert cost(w_pose=1.0, w_box=1.0)(ends(histograms=hist), b, np.ones((1, 4))) == pytest.approx(1.0)
    assert cost(w_pose=1.0, w_box=1.0, w_app=2.0)(ends(), b, np.ones((1, 4))) == pytest.approx(1.0)
    assert stack_histograms([None, None]) is None
    assert stack_histograms([None, hist[0]]) == pytest.approx(np.array([[0, 0, 0, 0], hist[0]]))


def test_confidence_weight():
    s = np.array([0.0, 1.5, 3.0, 4.5])
    assert cost(w_conf=1.0).confidence_weight(s) == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert cost(w_conf=0.5).confidence_weight(s) == pytest.approx([0.5, 0.75, 1.0, 1.0])
    assert cost(w_conf=0.0).confidence_weight(s) == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_the_weights_are_the_configs():
    config = PoseFlowConfig(sigma=0.3, w_box=3.0, w_pose=0.5, w_orb=0.0, w_app=2.0, w_conf=0.25,
                            gap_decay=0.7, use_motion=False)
    sim = PoseFlowSimilarity.from_config(config)
    for f in dataclasses.fields(sim):
        assert getattr(sim, f.name) == getattr(config, f.name)
    assert PoseFlowTracker(config).similarity == sim


def test_a_tracker_uses_the_similarity_it_is_given():
    """A matching cost passed in decides the links: one that never links gives every pose a
    new flow; the default follows the walking person."""

    class NeverLinks:
        def __call__(self, flows, candidates, gap, correspondences=None):
            return np.zeros(gap.shape)

        def confidence_weight(self, confidence):
            return np.ones_like(confidence)

    config = PoseFlowConfig(lookahead=0, nms=False, fill_gaps=False, fill_joints=False)
    frames = [frame(person(100 + 5 * t, 300)) for t in range(6)]
    default = PoseFlowTracker(config)
    injected = PoseFlowTracker(config, similarity=NeverLinks())
    assert [int(default.update(f).track_ids[0]) for f in frames] == [0] * 6
    assert [int(injected.update(f).track_ids[0]) for f in frames] == [0, 1, 2, 3, 4, 5]


def test_construction_takes_the_config_and_checked_overrides():
    assert PoseFlowTracker(window=4).config == PoseFlowConfig(window=4)
    assert PoseFlowTracker(PoseFlowConfig(gate=0.3), window=4).config == PoseFlowConfig(gate=0.3, window=4)
    with pytest.raises(ValueError, match="window"):
        PoseFlowTracker(window=0)
    with pytest.raises(TypeError):
        PoseFlowTracker(windw=4)
