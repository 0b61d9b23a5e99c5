import dataclasses

import numpy as np
import pytest

from posetracker.core.errors import InputError
from posetracker.core.poses import Frame, FramePoses, VideoPoses, keypoint_boxes
from posetracker.core.schemas import COCO17, POSETRACK18


def _poses(n=3, ids=None):
    rng = np.random.default_rng(0)
    return FramePoses.from_keypoints(rng.uniform(0, 100, (n, 17, 2)), rng.uniform(0, 1, (n, 17)),
                                     COCO17, track_ids=ids)


def test_shapes_and_readonly():
    p = _poses(3, [4, 5, 6])
    assert len(p) == 3 and p.boxes.shape == (3, 4) and p.track_ids.dtype == np.int64
    with pytest.raises(ValueError):
        p.keypoints[0, 0, 0] = 1.0


@pytest.mark.parametrize("kw, msg", [
    (dict(keypoints=np.zeros((2, 15, 2))), r"keypoints has shape \(2, 15, 2\), expected \(\*, 17, 2\)"),
    (dict(keypoint_scores=np.zeros((2, 3))), "keypoint_scores has shape"),
    (dict(boxes=np.zeros((3, 4))), "boxes has shape"),
    (dict(scores=np.zeros(5)), "scores has shape"),
    (dict(box_scores=np.zeros(5)), "box_scores has shape"),
    (dict(track_ids=[1, 1]), r"duplicate track ids in one frame: \[1\]"),
    (dict(track_ids=[-1, 2]), "non-negative"),
])
def test_validation_errors(kw, msg):
    base = dict(keypoints=np.zeros((2, 17, 2)), keypoint_scores=np.zeros((2, 17)),
                boxes=np.zeros((2, 4)), scores=np.zeros(2), schema=COCO17)
    base.update(kw)
    with pytest.raises(InputError, match=msg):
        FramePoses(**base)


def test_empty_subset_concat():
    e = FramePoses.empty(COCO17, tracked=True)
    assert len(e) == 0 and e.track_ids.shape == (0,)
    p = _poses(3, [1, 2, 3])
    s = p.subset(np.array([True, False, True]))
    assert s.track_ids.tolist() == [1, 3]
    c = FramePoses.concatenate([s, e])
    assert len(c) == 2 and c.track_ids.tolist() == [1, 3]
    with pytest.raises(InputError):
        FramePoses.concatenate([p, FramePoses.empty(POSETRACK18)])


def test_keypoint_boxes_ignore_missing_joints():
    kp = np.full((2, 17, 2), np.nan)
    kp[0, 0] = (10, 20)
    kp[0, 5] = (30, 5)
    b = keypoint_boxes(kp)
    assert b[0].tolist() == [10, 5, 30, 20] and b[1].tolist() == [0, 0, 0, 0]


def test_video_checks_schema_and_order():
    f0 = Frame(0, _poses())
    with pytest.raises(InputError, match="frame indices must increase"):
        VideoPoses("v", [f0, Frame(0, _poses())], COCO17)
    with pytest.raises(InputError, match="uses schema coco17"):
        VideoPoses("v", [f0], POSETRACK18)


def test_person_and_detector_scores_are_separate_fields():
    rng = np.random.default_rng(1)
    kp, sc = rng.uniform(0, 100, (3, 17, 2)), rng.uniform(0, 1, (3, 17))
    p = FramePoses(kp, sc, keypoint_boxes(kp), [0.5, 0.4, 0.3], COCO17, track_ids=[4, 5, 6],
                   box_scores=[0.9, 0.8, 0.7])
    assert p.scores.tolist() == [0.5, 0.4, 0.3] and p.box_scores.tolist() == [0.9, 0.8, 0.7]
    s = p.subset([2, 0])
    assert s.scores.tolist() == [0.3, 0.5] and s.box_scores.tolist() == [0.7, 0.9]
    c = FramePoses.concatenate([s, p.subset([1])])
    assert c.scores.tolist() == [0.3, 0.5, 0.4] and c.box_scores.tolist() == [0.7, 0.9, 0.8]
    # a source without a detector: the box scores are the person scores
    g = FramePoses(kp, sc, keypoint_boxes(kp), [0.5, 0.4, 0.3], COCO17)
    assert g.box_scores.tolist() == g.scores.tolist() and not g.box_scores.flags.writeable
    # rescoring people keeps the detector's scores
    r = dataclasses.replace(p, scores=[0.1, 0.2, 0.3])
    assert r.scores.tolist() == [0.1, 0.2, 0.3] and r.box_scores.tolist() == [0.9, 0.8, 0.7]
    # from_keypoints: mean score of the present joints
    kp[0, :5] = np.nan
    q = FramePoses.from_keypoints(kp, sc, COCO17)
    np.testing.assert_allclose(q.scores[0], sc[0, 5:].mean())
    np.testing.assert_allclose(q.box_scores, q.scores)
