"""Our batched NMS keeps exactly what ``torchvision.ops.batched_nms`` keeps, in the same order, on
the real detectors' boxes (RTMDet in input pixels, PicoDet mapped back to image pixels) and on
small cases built to hit the rule's edges."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from posetracker.estimators.boxes import batched_nms, darknet_batch

tv_ops = pytest.importorskip("torchvision.ops")


@pytest.fixture(scope="module")
def images(data_dir):
    root = data_dir / "coco_mini_val2017"
    gt = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    names = sorted(im["file_name"] for im in gt["images"])[:12]
    return [np.ascontiguousarray(cv2.imread(str(root / "val2017" / n))[..., ::-1]) for n in names]


def _candidates(boxes: torch.Tensor, scores: torch.Tensor, conf: float):
    """What ``select_detections`` hands to NMS: boxes over ``conf``, one group per image."""
    img, box = torch.nonzero(scores >= conf, as_tuple=True)
    return boxes[img, box], scores[img, box], img


def _same_as_torchvision(boxes, scores, groups, thresholds=(0.3, 0.5, 0.6, 0.7)) -> int:
    kept = 0
    for thr in thresholds:
        ours = batched_nms(boxes, scores, groups, thr)
        ref = tv_ops.batched_nms(boxes, scores, groups, thr)
        assert torch.equal(ours, ref), (thr, ours, ref)
        kept += len(ours)
    return kept


def test_rtmdet_boxes(models_dir, images):
    from posetracker.estimators.rtmdet import load_rtmdet

    det = load_rtmdet(models_dir / "rtmdet-nano-person.onnx")
    with torch.inference_mode():
        x, _ = det.preprocess(images)
        out = det.graph(x)
    boxes = out[det.boxes_name].float()
    scores = out[det.scores_name].float()[:, 0]
    for conf in (0.05, 0.3):
        b, s, g = _candidates(boxes, scores, conf)
        assert len(b) > 100 and len(torch.unique(g)) > 5
        assert _same_as_torchvision(b, s, g) > 40


def test_picodet_boxes_in_image_pixels(models_dir, images):
    from posetracker.estimators.picodet import load_picodet

    det = load_picodet(models_dir / "picodet-s-320-pedestrian.xml")
    with torch.inference_mode():
        x, transforms = darknet_batch(images, det.input_size, False, det.device)
        out = det.graph((x - det.mean) / det.std)
    b, s, g = _candidates(out[det.boxes_name].float(), out[det.scores_name].float()[:, 0], 0.05)
    t = torch.tensor([[tr.scale_x, tr.scale_y] for tr in transforms])[g]
    b = b / t.repeat(1, 2)
    assert _same_as_torchvision(b, s, g) > 40


def test_edge_cases():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (300, 2))
    wh = rng.uniform(0, 30, (300, 2))
    wh[:10] = 0                                               # empty boxes
    boxes = torch.tensor(np.hstack([xy, xy + wh]), dtype=torch.float32)
    boxes[20:40] = boxes[0:20]                                # exact duplicates
    scores = torch.tensor(rng.choice([0.2, 0.5, 0.9], 300), dtype=torch.float32)  # many ties
    groups = torch.tensor(rng.integers(0, 4, 300))
    assert _same_as_torchvision(boxes, scores, groups, (0.0, 0.25, 0.5, 0.9)) > 0
    # IoU exactly at the threshold is not over it.
    two = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]])
    assert batched_nms(two, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), 0.5).tolist() == [0, 1]
    assert batched_nms(two, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), 0.49).tolist() == [0]
    assert batched_nms(two, torch.tensor([0.8, 0.9]), torch.tensor([0, 1]), 0.1).tolist() == [1, 0]
    # IoU 0.6 in float32 (0.60000002) is over the float64 threshold 0.6, as in torchvision.
    six = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 6]])
    for thr, kept in ((0.6, [0]), (0.6000001, [0, 1])):
        assert batched_nms(six, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), thr).tolist() == kept
        assert _same_as_torchvision(six, torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), (thr,)) == len(kept)
    assert len(batched_nms(two[:0], torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5)) == 0
