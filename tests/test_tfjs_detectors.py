"""CenterNet and NanoDet person detectors (TF.js graphs of the npm package) on real COCO images:
people found, boxes in original image pixels, batching, and CenterNet's decoding vs TF.js itself."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from posetracker.core.boxes import box_iou
from posetracker.core.errors import ModelError
from posetracker.estimators.movenet import square_crop
from posetracker.estimators.tfjs_detectors import CenterNetDetector, NanoDetDetector, load_tfjs_detector

GOLDEN = Path(__file__).parent / "golden" / "tfjs_golden.npz"
COCO = "coco_mini_val2017"
MIN_HEIGHT = 96  # "non-tiny" people: at least this many pixels tall


@pytest.fixture(scope="module")
def detectors(models_dir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {name: load_tfjs_detector(models_dir / f"{name}.json") for name in ("centernet", "nanodet")}
    torch.set_num_threads(threads)


def _read(data_dir, file_name) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(data_dir / COCO / "val2017" / file_name))[:, :, ::-1])


def _images_with_people(data_dir, count=3, min_people=2):
    """The first ``count`` images (by id) with at least ``min_people`` non-crowd people of
    ``MIN_HEIGHT`` px or more: [(image, (g, 4) xyxy boxes of those people)]."""
    ann = json.loads((data_dir / COCO / "annotations/person_keypoints_val2017.json").read_text())
    people: dict[int, list] = {}
    for a in ann["annotations"]:
        x, y, w, h = a["bbox"]
        if not a["iscrowd"] and h >= MIN_HEIGHT:
            people.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    files = {i["id"]: i["file_name"] for i in ann["images"]}
    chosen = [i for i in sorted(people) if len(people[i]) >= min_people][:count]
    assert len(chosen) == count
    return [(_read(data_dir, files[i]), np.array(people[i])) for i in chosen]


def test_recognised_from_the_graph(detectors, models_dir):
    assert isinstance(detectors["centernet"], CenterNetDetector)
    assert detectors["centernet"].input_size == (512, 512)
    assert isinstance(detectors["nanodet"], NanoDetDetector)
    assert detectors["nanodet"].input_size == (416, 416)
    assert [s for s, _, _ in detectors["nanodet"].levels] == [8, 16, 32]
    with pytest.raises(ModelError, match="neither CenterNet nor NanoDet"):
        load_tfjs_detector(models_dir / "movenet-lightning.json")


@pytest.mark.parametrize("name,min_recall", [("centernet", 0.8), ("nanodet", 0.7)])
def test_finds_most_people(detectors, data_dir, name, min_recall):
    """Most non-tiny GT people are matched one-to-one by a detection at IoU >= 0.5; every
    detection lies inside its image."""
    images = _images_with_people(data_dir)
    # Low threshold, as the estimator runs it: CenterNet scores big, cut-off people low (~0.1).
    dets = detectors[name].detect([im for im, _ in images], conf=0.05, nms=0.5)
    found = total = 0
    for (image, gt), d in zip(images, dets):
        assert d.shape[1] == 5 and np.all(np.diff(d[:, 4]) <= 0) and np.all(d[:, 4] >= 0.05)
        h, w = image.shape[:2]
        assert np.all(d[:, [0, 1]] >= 0) and np.all(d[:, 2] <= w) and np.all(d[:, 3] <= h)
        iou = box_iou(gt, d[:, :4])
        free = np.ones(len(d), bool)
        for row in iou:  # greedy one-to-one matching
            j = int(np.argmax(np.where(free, row, -1))) if len(d) else 0
            if len(d) and free[j] and row[j] >= 0.5:
                free[j] = False
                found += 1
        total += len(gt)
    assert found / total >= min_recall, f"{name}: {found}/{total} people found"


def _median_shift(a: np.ndarray, b: np.ndarray, min_score: float = 0.3) -> float:
    """Median over the confident boxes of ``a`` of the mean coordinate difference (pixels) to
    the box of ``b`` that overlaps it most (each must have one with IoU > 0.4)."""
    a = a[a[:, 4] >= min_score]
    assert len(a) >= 1
    iou = box_iou(a[:, :4], b[:, :4])
    assert np.all(iou.max(1) > 0.4)
    return float(np.median(np.abs(a[:, :4] - b[iou.argmax(1), :4]).mean(1)))


@pytest.mark.parametrize("name", ["centernet", "nanodet"])
def test_boxes_map_back_to_original_pixels(detectors, data_dir, name):
    """A non-square image (portrait and landscape), the same image scaled 1.5x, and the same image
    padded to a square (black right/bottom, so the letterbox moves): the boxes agree in the
    original image's pixels (a wrong back-mapping would be off by tens of pixels)."""
    images = _images_with_people(data_dir)
    det = detectors[name]
    for image, _ in (images[0], images[2]):
        h, w = image.shape[:2]
        side = max(h, w)
        assert h != w
        base = det.detect([image], conf=0.1, nms=0.5)[0]
        scaled = cv2.resize(image, (round(w * 1.5), round(h * 1.5)), interpolation=cv2.INTER_LINEAR)
        s = det.detect([scaled], conf=0.1, nms=0.5)[0]
        s[:, :4] /= 1.5
        padded = np.zeros((side, side, 3), np.uint8)
        padded[:h, :w] = image
        p = det.detect([padded], conf=0.1, nms=0.5)[0]
        assert _median_shift(base, s) < 0.01 * side
        assert _median_shift(base, p) < 0.015 * side


@pytest.mark.parametrize("name", ["centernet", "nanodet"])
def test_batch_equals_single_images(detectors, data_dir, name):
    (a, _), (b, _) = _images_with_people(data_dir, count=2)
    det = detectors[name]
    both = det.detect([a, b], conf=0.1, nms=0.5)
    for image, d in zip((a, b), both):
        np.testing.assert_allclose(d, det.detect([image], conf=0.1, nms=0.5)[0], atol=1e-3)


def test_centernet_peaks_match_tfjs_detections(detectors, data_dir):
    """The person peaks decoded here equal the class-0 rows of the graph's own
    ``tower_0/detections`` as TensorFlow.js computed them (tools/make_tfjs_golden.py): same input
    (zero-padded square crop), every class-0 peak above the 20th golden score."""
    golden = np.load(GOLDEN)
    image = _read(data_dir, str(golden["detector.image"]))
    x = square_crop(image, [0, 0, image.shape[1], image.shape[0]], 512, scale=1.0)[0]
    x = torch.from_numpy(x.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    det = detectors["centernet"]
    with torch.inference_mode():
        boxes, scores = det._heads(x, 0)
    k = det.max_peaks
    person_boxes, person_scores = boxes[0, :k].numpy(), scores[0, :k, 0].numpy()
    ref = golden["centernet.detections"]            # (20, 6): x1, y1, x2, y2, score, class
    ref = ref[ref[:, 5] == 0]
    mine = person_scores > golden["centernet.detections"][:, 4].min()
    assert mine.sum() == len(ref) >= 2
    np.testing.assert_allclose(person_scores[mine], ref[:, 4], atol=2e-4)
    np.testing.assert_allclose(person_boxes[mine], ref[:, :4], atol=0.05)


def test_rmpe_load_detector_by_format(models_dir):
    """estimators.rmpe.load_detector picks the implementation by the model file's format."""
    from posetracker.estimators.rmpe import load_detector
    from posetracker.estimators.runtimes.darknet import DarknetYolo

    assert isinstance(load_detector(models_dir / "yolo-fastest-1.1_body.cfg"), DarknetYolo)
    assert isinstance(load_detector(models_dir / "nanodet.json"), NanoDetDetector)
    with pytest.raises(ModelError, match="not a supported person detector"):
        load_detector(models_dir / "SHA256SUMS")
