"""PoseFlow's tuned behaviours, each on a scene where removing it changes the ids: confidence
weighting (online and look-ahead), the look-ahead's hysteresis and its stop criterion, the running
colour histogram, the online stop criterion, ``link_len``, PF-NMS's overlap rule for merging.
(The tolerance growing with the gap and every term of the link similarity:
tests/test_tracker_matching.py; the look-ahead itself: tests/test_tracker_lookahead.py.
``python tools/mutate_tracker.py`` checks that removing each of them fails a test.)"""

from __future__ import annotations

import numpy as np
import pytest

from posetracker.core.poses import FramePoses
from posetracker.tracker import track_frames
from posetracker.tracker.appearance import bhattacharyya, torso_histograms, torso_indices
from posetracker.tracker.poseflow import PoseFlowTracker
from tests.test_tracker import SCHEMA, frame, person
from tests.test_tracker_appearance import BLUE, RED, _image

PLAIN = dict(nms=False, fill_gaps=False, fill_joints=False)


def _frame(xs: list[float], scores: list[float]) -> FramePoses:
    kp = np.stack([person(x, 300) for x in xs])
    return FramePoses.from_keypoints(kp, np.repeat(np.array(scores)[:, None], 15, 1), SCHEMA)


def _ids(frames, **settings) -> list[list[int]]:
    return [f.track_ids.tolist() for f in track_frames(PoseFlowTracker(**settings), frames)]


@pytest.mark.parametrize("lookahead", [0, 7])
def test_confidence_weighting_prefers_the_confident_pose(lookahead):
    """A person at x 100, then two poses: a weak one (joint scores 0.35) exactly there and a
    confident one (0.9) 15 px off. The link value weighs confidence (``w_conf``): the flow
    continues with the confident pose; ranked by similarity alone it takes the weak one."""
    frames = [_frame([100], [0.9])] + [_frame([100, 115], [0.35, 0.9]) for _ in range(7)]
    weighted = _ids(frames, lookahead=lookahead, **PLAIN)
    assert weighted[1:] == [[1, 0]] * 7
    assert _ids(frames, lookahead=lookahead, w_conf=0.0, **PLAIN)[1:] == [[0, 1]] * 7


def _switching(a1: float, b1: float, a2: float, b2: float) -> list[FramePoses]:
    """A person at x 100; then poses A at ``100 + a1`` and B at ``100 + b1`` (A nearer), and from
    the next frame on A at ``100 + a2`` and B at ``100 + b2``."""
    return ([_frame([100], [0.9]), _frame([100 + a1, 100 + b1], [0.9, 0.9])]
            + [_frame([100 + a2, 100 + b2], [0.9, 0.9]) for _ in range(7)])


def test_lookahead_hysteresis_keeps_links_unless_a_chain_is_clearly_better():
    """The online step links the person to A (nearer); over the look-ahead, B's chain is slightly
    better. The links already made count ``lookahead_margin`` more, so the ids stay; without
    the margin the look-ahead re-assigns. A chain that is clearly better still wins."""
    slightly = _switching(10, 15, 20, 10)
    assert _ids(slightly, **PLAIN)[1:] == [[0, 1]] * 8
    assert _ids(slightly, lookahead_margin=0.0, **PLAIN)[1:] == [[1, 0]] * 8
    assert _ids(_switching(10, 15, 30, 0), **PLAIN)[1:] == [[1, 0]] * 8


def test_a_flows_colours_are_a_running_histogram():
    """One frame in which a person's torso shows another colour (a neighbour in front) moves the
    flow's histogram by 0.3 of the way, it does not replace it."""
    torso = torso_indices(SCHEMA.keypoints)
    kp = person(200, 300)[None]
    f = FramePoses.from_keypoints(kp, np.full((1, 15), 0.9), SCHEMA)
    red, blue = _image([((200, 300), RED)]), _image([((200, 300), BLUE)])
    h_red = torso_histograms(red, kp, f.boxes, torso)[0]
    h_blue = torso_histograms(blue, kp, f.boxes, torso)[0]
    assert bhattacharyya(h_red[None], h_blue[None])[0, 0] < 0.1
    tracker = PoseFlowTracker(lookahead=0, w_orb=0.0, **PLAIN)
    for image in (red, red, red, blue):
        assert tracker.update(f, image).track_ids.tolist() == [0]
    assert tracker._flows[0].app == pytest.approx(0.7 * h_red + 0.3 * h_blue)


def test_stop_criterion_closes_a_flow_whose_confidence_fades():
    """The paper's stop criterion: a flow whose mean confidence ``s(Q)`` over the last ``window``
    frames falls below ``stop_score`` closes. A person scored 0.9 for 4 frames, then 0.1 (``s(Q)``
    0.3) at the same place: at frame 11 the window holds only weak poses and the flow stops; each
    weak pose after it stops at once. ``stop_score=0`` never stops a flow."""
    frames = [_frame([100 + 2 * t], [0.9 if t < 4 else 0.1]) for t in range(16)]
    assert _ids(frames, **PLAIN) == [[0]] * 11 + [[1], [2], [3], [4], [5]]
    assert _ids(frames, stop_score=0.0, **PLAIN) == [[0]] * 16


@pytest.mark.parametrize("missed, linked", [(2, True), (3, False)])
def test_a_flow_waits_link_len_frames(missed, linked):
    """A flow not extended for more than ``link_len`` frames closes: with ``link_len=3`` a person
    last seen at frame 2 is linked again at frame 5 (3 frames later), not at frame 6."""
    frames = [_frame([100], [0.9])] * 3 + [frame()] * missed + [_frame([100], [0.9])] * 2
    ids = _ids(frames, link_len=3, lookahead=0, stop_score=0.0, **PLAIN)
    assert ids[-1] == ([0] if linked else [1])


def test_one_close_frame_does_not_merge_two_flows():
    """PF-NMS merges flows that stay close over ``merge_min_overlap`` (2) frames: a person who
    appears 4 px beside another and walks away keeps a flow of their own from the first frame."""
    frames = [frame(*[person(x, 300) for x in [100] + ([104 + 40 * (t - 5)] if t >= 5 else [])])
              for t in range(13)]
    out = track_frames(PoseFlowTracker(), frames)
    assert [f.track_ids.tolist() for f in out] == [[0]] * 5 + [[0, 1]] * 8


def test_lookahead_stop_criterion_keeps_a_flow_from_a_weak_sparse_tail():
    """A person near x 330 with two confident false positives (x 239 in frame 2, x 284 in frame
    4) and a weak pose (joint scores 0.3) at x 240 in frame 7. Online, the false positives' flow
    takes the person's later poses; the look-ahead gives them back to the person's flow, and its
    stop criterion (the tail's windowed score must reach ``stop_score``) keeps the false
    positives' flow from taking the weak pose instead: it stays a flow of its own."""
    seen = [[321], [322.6], [238.7], [330.7], [283.6], [], [329.4], [333, 240.3], []]
    frames = [_frame(xs, [0.9, 0.3][:len(xs)]) if xs else frame() for xs in seen]
    online = PoseFlowTracker(**PLAIN)
    assert [online.update(f).track_ids.tolist() for f in frames][4:8] == [[1], [], [1], [1, 2]]
    assert _ids(frames, **PLAIN) == [[0], [0], [1], [0], [0], [], [0], [0, 2], []]


def test_a_gap_is_not_filled_where_the_person_is_already_seen():
    """A person walking right is detected twice in frame 6 (x 383 and 381): the duplicate starts
    flow 1, which takes the person's weak pose in frame 8. Flow 1 skips frame 7, but the person is
    there (flow 0's pose): a fill for flow 1 would show the person twice, so there is none."""
    seen = [[350.2], [354.1], [313.0], [206.3], [370.2, 96.6], [320.6], [383.2, 381.3], [371.6],
            [380.7]]
    scores = [[0.5], [0.9], [0.3], [0.9], [0.9, 0.9], [0.3], [0.9, 0.9], [0.15], [0.15]]
    out = track_frames(PoseFlowTracker(), [_frame(x, s) for x, s in zip(seen, scores)])
    assert [f.track_ids.tolist() for f in out] == [[], [0], [0], [0], [0], [0], [1, 0], [0], [1]]
