"""The detectors' shared box steps (estimators.boxes: letterbox conventions, threshold / map back
/ clip / NMS) and the plan executor the IR and ONNX runtimes share (estimators.runtimes.plan)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from posetracker.estimators.boxes import GraphDetector, LetterboxTransform, darknet_input, letterbox, select_detections
from posetracker.estimators.runtimes.plan import PlanRecorder


def _image(h: int, w: int, value: int = 200) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_darknet_letterbox_is_centred_grey_and_maps_back():
    x, tr = darknet_input(_image(50, 100), (64, 64))
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    # Scale 0.64: 64 x 32 pixels of image, (64 - 32) // 2 = 16 grey rows above and below.
    assert tr == LetterboxTransform(0.64, 0.64, 0.0, 16.0)
    assert np.all(x[:, :16] == 0.5) and np.all(x[:, 48:] == 0.5)
    np.testing.assert_allclose(x[:, 16:48], 200 / 255, rtol=1e-6)
    stretched, tr2 = darknet_input(_image(50, 100), (64, 64), keep_ratio=False)
    assert tr2 == LetterboxTransform(0.64, 1.28, 0.0, 0.0)
    np.testing.assert_allclose(stretched, 200 / 255, rtol=1e-6)


def test_mmdet_letterbox_rounds_half_up_at_the_top_left():
    # 3 x 5 into 4 x 4: scale 0.8, sides int(5 * 0.8 + 0.5) = 4 and int(3 * 0.8 + 0.5) = 2
    # (Darknet's int(side * scale) would give 4 and 2 too, but centred: rows 1..2).
    canvas, tr = letterbox(_image(3, 5), (4, 4), top_left=True, round_half=True, fill=114, unit=False)
    assert canvas.dtype == np.uint8
    assert np.all(canvas[:2] == 200) and np.all(canvas[2:] == 114)
    assert (tr.scale_x, tr.scale_y, tr.offset_x, tr.offset_y) == (4 / 5, 2 / 3, 0.0, 0.0)
    centred, tr_c = letterbox(_image(3, 5), (4, 4), fill=0.5)
    assert tr_c.offset_y == 1.0 and np.all(centred[0] == 0.5) and np.all(centred[3] == 0.5)
    with pytest.raises(ValueError, match="uint8 RGB"):
        letterbox(np.zeros((4, 4), np.uint8), (4, 4))


def _two_boxes():
    # A inside the image; B hangs 10 px off its left side. In input pixels IoU(A, B) = 0.5;
    # clipped to the image, B equals A (IoU 1).
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [-10.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]])
    scores = torch.tensor([[[0.9], [0.8], [0.05]]])
    return boxes, scores, [LetterboxTransform(1.0, 1.0, 0.0, 0.0)], [(100, 100)]


def test_select_detections_nms_before_or_after_clipping():
    boxes, scores, tr, sizes = _two_boxes()
    after = select_detections(boxes, scores, tr, sizes, conf=0.1, nms=0.6, class_id=0, max_detections=10)
    before = select_detections(boxes, scores, tr, sizes, conf=0.1, nms=0.6, class_id=0, max_detections=10,
                               nms_in_input_pixels=True)
    np.testing.assert_allclose(after[0], [[0, 0, 10, 10, 0.9]], rtol=1e-6)     # clipped B suppressed
    np.testing.assert_allclose(before[0], [[0, 0, 10, 10, 0.9], [0, 0, 10, 10, 0.8]], rtol=1e-6)
    assert after[0].dtype == before[0].dtype == np.float64
    kept = select_detections(boxes, scores, tr, sizes, conf=0.01, nms=0.6, class_id=None, max_detections=1)
    assert kept[0].shape == (1, 6)                                              # class column added
    with pytest.raises(ValueError, match="class_id 3"):
        select_detections(boxes, scores, tr, sizes, 0.1, 0.6, 3, 10)


def test_select_detections_maps_back_per_image():
    boxes = torch.tensor([[[16.0, 26.0, 48.0, 42.0]], [[16.0, 26.0, 48.0, 42.0]]])
    scores = torch.tensor([[[0.7]], [[0.7]]])
    trs = [LetterboxTransform(0.64, 0.64, 0.0, 16.0), LetterboxTransform(2.0, 2.0, 0.0, 0.0)]
    out = select_detections(boxes, scores, trs, [(50, 100), (10, 20)], 0.5, 0.5, 0, 5)
    np.testing.assert_allclose(out[0][0, :4], [25, 15.625, 75, 40.625], rtol=1e-6)
    np.testing.assert_allclose(out[1][0, :4], [8, 10, 20, 10], rtol=1e-6)       # clipped to 20 x 10


def test_graph_detector_device_and_buffers():
    det = GraphDetector(nn.Linear(2, 2), (320, 256), mean=(1.0, 2.0, 3.0), std=(1.0, 1.0, 1.0))
    assert det.input_size == (320, 256) and det.device == torch.device("cpu")
    assert det.mean.shape == (1, 3, 1, 1) and "mean" not in det.state_dict()
    assert not det.graph.training


def test_plan_frees_each_slot_after_its_last_reader():
    rec = PlanRecorder()
    rec.add(lambda x: x + 1, [0], [1])
    rec.add(lambda a, b: a * b, [1, 0], [2])                       # last reader of slot 1
    rec.add(lambda k, y: y - k, [2], [3], template=(10, None), positions=[1])
    rec.add(lambda y: (y, -y), [3], [4, 5])                         # slot 5 never read
    plan = rec.plan([("out", 4, None), ("const", None, 7)], keep={0, 4})
    frees = [step[-1] for step in plan.steps]
    assert frees == [(), (1,), (2,), (3, 5)]
    slots = [torch.tensor(3.0)] + [None] * 5
    out = plan.run(slots)
    assert out["out"].item() == (3 + 1) * 3 - 10 and out["const"] == 7
    assert slots[1] is slots[2] is slots[3] is slots[5] is None and slots[0] is not None
