"""RTMDet-nano person detector (estimators.rtmdet) on real COCO images: the same detections as
the ONNX file's own end-to-end output (onnxruntime, NMS inside the graph), boxes in image
pixels on the people, one batched call for images of different sizes, and the detector stage's
loader."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import require_test_extra

import posetracker.estimators.rtmdet as rtmdet_module
from posetracker.estimators.rmpe import load_detector
from posetracker.estimators.rtmdet import RTMDetDetector, load_rtmdet

RTMDET = "rtmdet-nano-person.onnx"
COCO = "coco_mini_val2017"


@pytest.fixture(scope="module")
def detector(models_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_rtmdet(models_dir / RTMDET)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def coco(data_dir):
    """[(RGB image, (g, 4) xyxy ground-truth person boxes)] for the first 8 images by id."""
    ann = json.loads((data_dir / COCO / "annotations/person_keypoints_val2017.json").read_text())
    people: dict[int, list] = {}
    for a in ann["annotations"]:
        x, y, w, h = a["bbox"]
        if not a["iscrowd"]:
            people.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    files = {i["id"]: i["file_name"] for i in ann["images"]}
    out = []
    for i in sorted(people)[:8]:
        im = cv2.imread(str(data_dir / COCO / "val2017" / files[i]))[:, :, ::-1]
        out.append((np.ascontiguousarray(im), np.array(people[i], np.float64)))
    return out


@pytest.fixture(scope="module")
def session(models_dir):
    """onnxruntime on the whole file, unoptimised (its fused kernels round differently; the
    reference is the file's ops)."""
    ort = require_test_extra("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(models_dir / RTMDET), options,
                                providers=["CPUExecutionProvider"])


def _ort_dets(session, detector, image):
    """The file's own detections for the person label, zero padding dropped, mapped back to
    image pixels and clipped as ``detect`` does."""
    x, [(sx, sy)] = detector.preprocess([image])
    dets, labels = session.run(["dets", "labels"], {"input": x.cpu().numpy()})
    d = dets[0][(labels[0] == 0) & (dets[0][:, 4] > 0)].astype(np.float64)
    h, w = image.shape[:2]
    d[:, 0:4:2] = np.clip(d[:, 0:4:2] / sx, 0, w)
    d[:, 1:4:2] = np.clip(d[:, 1:4:2] / sy, 0, h)
    return d


def test_graph_nms_settings_read_and_documented(detector):
    nms = detector.graph_nms
    assert nms.iou_threshold == pytest.approx(0.6) and nms.score_threshold == pytest.approx(0.05)
    assert nms.max_output_boxes_per_class == 200
    doc = rtmdet_module.__doc__
    assert "iou_threshold 0.6" in doc and "score_threshold 0.05" in doc
    assert "max_output_boxes_per_class 200" in doc and "**100**" in doc
    assert detector.input_size == (320, 320) and detector.device == torch.device("cpu")


def test_detections_equal_the_files_own_nms(detector, coco, session):
    nms = detector.graph_nms
    total = 0
    for image, _ in coco:
        ref = _ort_dets(session, detector, image)
        [ours] = detector.detect([image], conf=nms.score_threshold, nms=nms.iou_threshold,
                                 max_detections=100)
        assert ours.dtype == np.float64 and ours.shape == ref.shape and len(ref)
        total += len(ref)
        np.testing.assert_allclose(ours[:, 4], ref[:, 4], rtol=0, atol=1e-5)
        assert (np.diff(ours[:, 4]) <= 0).all()  # best first
        # float32 sums in another order: < 1e-3 px where the model is sure (score >= 0.3),
        # a few hundredths of a pixel on the weakest boxes.
        sure = ref[:, 4] >= 0.3
        np.testing.assert_allclose(ours[sure, :4], ref[sure, :4], rtol=0, atol=1e-3)
        np.testing.assert_allclose(ours[:, :4], ref[:, :4], rtol=0, atol=0.1)
    assert total > 100


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def test_boxes_in_image_pixels_on_the_people(detector, coco):
    found = total = 0
    for image, gt in coco:
        [dets] = detector.detect([image], conf=0.3, nms=0.6)
        h, w = image.shape[:2]
        assert (dets[:, [0, 2]] >= 0).all() and (dets[:, [0, 2]] <= w).all()
        assert (dets[:, [1, 3]] >= 0).all() and (dets[:, [1, 3]] <= h).all()
        big = gt[(gt[:, 3] - gt[:, 1]) >= 96]  # people at least 96 px tall
        if len(big) and len(dets):
            found += int((_iou(big, dets[:, :4]).max(axis=1) >= 0.7).sum())
        total += len(big)
    assert total >= 5 and found >= 0.8 * total


def test_batch_of_different_sizes_equals_single_calls(detector, coco, data_dir):
    cap = cv2.VideoCapture(str(data_dir / "videos" / "basketball_crossing.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    images = [coco[0][0], np.ascontiguousarray(frame[:, :, ::-1]), coco[1][0], coco[2][0]]
    assert len({im.shape for im in images}) >= 3
    batched = detector.detect(images, conf=0.1, nms=0.6)
    assert len(batched) == len(images)
    for image, b in zip(images, batched):
        [single] = detector.detect([image], conf=0.1, nms=0.6)
        assert b.shape == single.shape
        # A batch may take other conv kernels (GEMM vs oneDNN): float32 rounding only.
        np.testing.assert_allclose(b[:, 4], single[:, 4], rtol=0, atol=1e-5)
        sure = single[:, 4] >= 0.3
        np.testing.assert_allclose(b[sure, :4], single[sure, :4], rtol=0, atol=1e-3)
        np.testing.assert_allclose(b[:, :4], single[:, :4], rtol=0, atol=0.05)
    assert detector.detect([], conf=0.1) == []


def test_options(detector, coco):
    image = coco[0][0]
    assert len(detector.detect([image], conf=0.05, nms=0.6, max_detections=3)[0]) == 3
    assert detector.detect([image], conf=0.3, class_id=None)[0].shape[1] == 5
    with pytest.raises(ValueError, match="one class"):
        detector.detect([image], class_id=1)
    stretched = detector.detect([image], conf=0.3, letterbox=False)[0]
    h, w = image.shape[:2]
    assert len(stretched) and (stretched[:, 2] <= w).all() and (stretched[:, 3] <= h).all()


def test_load_detector_returns_rtmdet(models_dir):
    det = load_detector(models_dir / RTMDET)
    assert isinstance(det, RTMDetDetector)
    assert det.device == torch.device("cpu")
