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
    (dict(box_scores=np.zeros(5)), "box_scores has shape"),
    (dict(track_ids=[1, 1]), r"duplicate track ids in one frame: \[1\]"),
    (dict(track_ids=[-1, 2]), "non-negative"),
])
def test_validation_errors(kw, msg):
    base = dict(keypoints=np.zeros((2, 17, 2)), keypoint_scores=np.zeros((2, 17)),
                boxes=np.zeros((2, 4)), box_scores=np.zeros(2), schema=COCO17)
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
