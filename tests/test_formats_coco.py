"""COCO / CrowdPose ground truth and keypoint results: reading, validation, writing, GT as poses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from posetracker.core.coco import CocoDataset, coco_gt_to_frames, frames_to_coco_results
from posetracker.core.errors import InputError
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17, CROWDPOSE14
from posetracker.io.formats.coco import (
    read_coco_gt,
    read_coco_results,
    read_crowdpose_gt,
    write_coco_results,
)


@pytest.fixture(scope="module")
def coco_mini(data_dir):
    return read_coco_gt(data_dir / "coco_mini_val2017" / "annotations" / "person_keypoints_val2017.json")


def test_read_coco_mini_gt(coco_mini):
    assert coco_mini.schema is COCO17
    assert len(coco_mini.images) == 79
    assert len(coco_mini.annotations) == 118
    assert sum(a["num_keypoints"] > 0 for a in coco_mini.annotations) == 68
    assert all("iscrowd" in a for a in coco_mini.annotations)


def test_read_crowdpose_gt(data_dir):
    ds = read_crowdpose_gt(data_dir / "crowdpose" / "crowdpose_val.json")
    assert ds.schema is CROWDPOSE14
    assert (len(ds.images), len(ds.annotations)) == (2000, 8527)
    assert len(ds.stored_crowd_index()) == 2000


def test_crowdpose_reader_rejects_coco_gt(data_dir):
    with pytest.raises(InputError, match="14 joints"):
        read_crowdpose_gt(data_dir / "metric_cases" / "example_coco_val.json")


def _write(tmp_path, name, obj):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def _tiny_gt(k=17):
    return {"images": [{"id": 1, "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "person", "keypoints": [f"j{i}" for i in range(k)]}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                             "area": 50.0, "keypoints": [1, 1, 2] * k}]}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["annotations"][0].update(keypoints=[1, 1, 2] * 16), "has 48 values, expected 51"),
    (lambda d: d["annotations"][0].update(image_id=9), "image_id 9 is not in 'images'"),
    (lambda d: d["annotations"][0].update(bbox=[0, 0, -1, 3]), "'bbox' must be"),
    (lambda d: d["images"].append({"id": 1}), "duplicate image id 1"),
    (lambda d: d.pop("categories"), "missing or non-list 'categories'"),
])
def test_gt_validation_names_file_and_annotation(tmp_path, mutate, message):
    d = _tiny_gt()
    mutate(d)
    p = _write(tmp_path, "gt.json", d)
    with pytest.raises(InputError, match=message) as e:
        read_coco_gt(p)
    assert str(p) in str(e.value)


def test_gt_missing_file_and_malformed_json(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_coco_gt(tmp_path / "absent.json")
    with pytest.raises(InputError, match=r"malformed JSON .* line 1"):
        read_coco_gt(_write(tmp_path, "bad.json", '{"images": ['))
    with pytest.raises(InputError, match="results file"):
        read_coco_gt(_write(tmp_path, "list.json", []))


def test_results_validation(tmp_path):
    good = {"image_id": 1, "category_id": 1, "keypoints": [1.0, 2.0, 0.5] * 17, "score": 0.9}
    with pytest.raises(InputError, match=r"result 1 \(image_id 1\): 'keypoints' has 6 values"):
        read_coco_results(_write(tmp_path, "r.json", [good, dict(good, keypoints=[1] * 6)]))
    with pytest.raises(InputError, match="'score' must be a finite number"):
        read_coco_results(_write(tmp_path, "r.json", [dict(good, score=None)]))
    with pytest.raises(InputError, match="'image_id' must be an integer"):
        read_coco_results(_write(tmp_path, "r.json", [dict(good, image_id="1")]))
    with pytest.raises(InputError, match="expected a JSON list"):
        read_coco_results(_write(tmp_path, "r.json", _tiny_gt()))


def test_read_results_file(data_dir):
    path = data_dir / "metric_cases" / "example_coco_preds.json"
    raw = json.loads(path.read_text())
    frames = read_coco_results(path)
    assert sum(len(f) for f in frames.values()) == len(raw) == 73
    first = frames[raw[0]["image_id"]]
    flat = np.asarray(raw[0]["keypoints"]).reshape(17, 3)
    np.testing.assert_array_equal(first.keypoints[0], flat[:, :2])
    np.testing.assert_array_equal(first.keypoint_scores[0], flat[:, 2])
    assert first.scores[0] == raw[0]["score"]
    # No bbox in this file: the box is the joints' tight box.
    np.testing.assert_allclose(first.boxes[0], [*flat[:, :2].min(0), *flat[:, :2].max(0)])


def test_write_read_round_trip(tmp_path):
    kp = np.array([[[10.5, 20.25]] * 17, [[30.0, 40.0]] * 17], dtype=float)
    kp[0, 3] = np.nan  # an absent joint
    sc = np.full((2, 17), 0.7)
    sc[0, 3] = 0.0
    poses = FramePoses(kp, sc, np.array([[0, 0, 50, 60], [5, 5, 9, 9]], float), np.array([0.9, 0.4]),
                       COCO17)
    path = tmp_path / "sub" / "res.json"
    write_coco_results([(7, poses), (8, FramePoses.empty(COCO17))], path)
    raw = json.loads(path.read_text())
    assert len(raw) == 2 and raw[0]["keypoints"][9:12] == [0.0, 0.0, 0.0]
    assert raw[0]["bbox"] == [0.0, 0.0, 50.0, 60.0] and raw[1]["score"] == 0.4
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temporary file
    back = read_coco_results(path)[7]
    np.testing.assert_array_equal(back.keypoints, poses.keypoints)  # NaN in the same places
    np.testing.assert_array_equal(back.keypoint_scores, poses.keypoint_scores)
    np.testing.assert_array_equal(back.boxes, poses.boxes)
    np.testing.assert_array_equal(back.scores, poses.scores)


def test_gt_to_frames(coco_mini):
    frames = coco_gt_to_frames(coco_mini)
    assert list(frames) == coco_mini.image_ids
    by_image = coco_mini.annotations_by_image()
    for image_id, poses in frames.items():
        anns = [a for a in by_image[image_id] if not a["iscrowd"]]
        assert len(poses) == len(anns)
        for a, kp, box in zip(anns, poses.keypoints, poses.boxes):
            g = np.asarray(a["keypoints"], float).reshape(17, 3)
            lab = g[:, 2] > 0
            np.testing.assert_array_equal(kp[lab], g[lab, :2])
            assert np.isnan(kp[~lab]).all()
            x, y, w, h = a["bbox"]
            np.testing.assert_allclose(box, [x, y, x + w, y + h])
    with pytest.raises(InputError, match="schema crowdpose14 has 14"):
        coco_gt_to_frames(coco_mini, CROWDPOSE14)


def test_frames_to_results_accepts_mapping(coco_mini):
    frames = coco_gt_to_frames(coco_mini)
    res = frames_to_coco_results(frames)
    assert len(res) == sum(len(p) for p in frames.values())
    assert CocoDataset.from_dict(coco_mini.to_dict()).image_ids == coco_mini.image_ids
