"""The detector's test-time runs: weighted boxes fusion on hand-built cases, the mirrored run mapped
back, the fused members, and which command runs them."""

from __future__ import annotations

import numpy as np
import pytest

from posetracker.estimators.boxes import add_missed_boxes, weighted_box_fusion
from posetracker.estimators.config import DetectorConfig
from posetracker.estimators.rmpe import PersonDetector


def test_a_box_every_run_found_keeps_its_place_and_mean_score():
    a = np.array([[10, 20, 50, 120, 0.8]])
    b = np.array([[10, 20, 50, 120, 0.6]])
    fused = weighted_box_fusion([a, b])
    assert fused[0, :4] == pytest.approx([10, 20, 50, 120])
    assert fused[0, 4] == pytest.approx(0.7)


def test_corners_are_averaged_by_score():
    # IoU 80 / 120 = 0.67 > 0.55: one cluster; corners weighted 0.8 : 0.2
    a = np.array([[0, 0, 10, 10, 0.8]])
    b = np.array([[2, 0, 12, 10, 0.2]])
    fused = weighted_box_fusion([a, b])
    assert fused[0, :4] == pytest.approx([0.4, 0, 10.4, 10])
    assert fused[0, 4] == pytest.approx(0.5)


def test_a_box_one_run_of_two_found_gets_half_its_score():
    a = np.array([[0, 0, 10, 10, 0.8], [100, 0, 110, 10, 0.6]])
    b = np.array([[0, 0, 10, 10, 0.8]])
    fused = weighted_box_fusion([a, b])
    assert fused[:, 4] == pytest.approx([0.8, 0.3])
    assert fused[1, :4] == pytest.approx([100, 0, 110, 10])


def test_boxes_below_the_fusion_iou_stay_apart():
    # IoU 6 / 14 = 0.43: two people side by side, not one
    a = np.array([[0, 0, 10, 10, 0.9]])
    b = np.array([[4, 0, 14, 10, 0.9]])
    assert len(weighted_box_fusion([a, b], 0.55)) == 2
    assert len(weighted_box_fusion([a, b], 0.4)) == 1


def test_a_box_joins_the_fused_box_it_overlaps_most():
    # run a: two people (IoU 0.25); run b's box overlaps both above 0.3 (0.33 and 0.82)
    a = np.array([[0, 0, 10, 10, 0.9], [6, 0, 16, 10, 0.8]])
    b = np.array([[5, 0, 15, 10, 0.7]])
    fused = weighted_box_fusion([a, b], 0.3)
    assert len(fused) == 2
    assert fused[1] == pytest.approx([0, 0, 10, 10, 0.45])   # best first: 0.75, then 0.45
    assert fused[0] == pytest.approx([(0.8 * 6 + 0.7 * 5) / 1.5, 0, (0.8 * 16 + 0.7 * 15) / 1.5,
                                      10, 0.75])


def test_add_missed_keeps_the_first_run_and_adds_only_the_people_it_missed():
    first = np.array([[0, 0, 10, 20, 0.8]])
    mirrored = np.array([[1, 0, 11, 20, 0.9], [50, 0, 60, 20, 0.6]])   # the same one, and a new one
    out = add_missed_boxes([first, mirrored])
    assert len(out) == 2
    assert out[0] == pytest.approx([0, 0, 10, 20, 0.8])     # not moved, not rescored
    assert out[1] == pytest.approx([50, 0, 60, 20, 0.3])    # found by one run of two
    assert add_missed_boxes([first]) is not None and len(add_missed_boxes([first, first])) == 1


def test_no_boxes_fuse_to_none():
    assert weighted_box_fusion([np.zeros((0, 5)), np.zeros((0, 5))]).shape == (0, 5)
    assert add_missed_boxes([np.zeros((0, 5)), np.array([[0, 0, 5, 5, 0.4]])]).shape == (1, 5)


class _Blob:
    """A detector that finds the bright pixels: one box around them, scored ``score``; with
    ``shift`` its box is that many pixels right of the truth (a biased model)."""

    def __init__(self, score: float = 0.9, shift: float = 0.0):
        self.score, self.shift = score, shift
        self.calls: list[int] = []

    def detect(self, images, conf, nms, max_detections):
        self.calls.append(len(images))
        out = []
        for im in images:
            ys, xs = np.nonzero(im[..., 0])
            box = [xs.min() + self.shift, ys.min(), xs.max() + 1 + self.shift, ys.max() + 1,
                   self.score]
            out.append(np.array([box]) if self.score >= conf else np.zeros((0, 5)))
        return out


def _frame() -> np.ndarray:
    frame = np.zeros((120, 200, 3), np.uint8)
    frame[30:100, 20:60] = 255            # a person on the left: x 20..60, y 30..100
    return frame


def test_the_mirrored_run_is_mapped_back_onto_the_frame():
    det = _Blob()
    boxes = PersonDetector(det, DetectorConfig(flip=True, fusion="wbf", min_box_size=4))(
        [_frame()])[0]
    # both runs found the same place: one box, its full score (unmapped, it would be two at 0.45)
    assert boxes.shape == (1, 5) and boxes[0] == pytest.approx([20, 30, 60, 100, 0.9])
    assert det.calls == [2]                # the frame and its mirror in one batch


def test_members_boxes_are_fused_with_the_detectors():
    wbf = DetectorConfig(flip=False, fusion="wbf", min_box_size=4)
    lone = PersonDetector(_Blob(shift=4.0), wbf)([_frame()])[0]
    fused = PersonDetector(_Blob(shift=4.0), wbf, members=[_Blob(shift=0.0)])([_frame()])[0]
    assert lone[0, 0] == 24
    assert len(fused) == 1 and fused[0, 0] == pytest.approx(22)   # the two models' mean
    missing = PersonDetector(_Blob(), wbf, members=[_Blob(score=0.05)])([_frame()])[0]
    assert missing[0, 4] == pytest.approx(0.45)      # found by one model of two


def test_the_mirrored_run_adds_a_person_the_first_run_missed():
    class _LeftOnly(_Blob):
        """Finds the person only when it stands in the left half (as if occluded elsewhere)."""

        def detect(self, images, conf, nms, max_detections):
            found = super().detect(images, conf, nms, max_detections)
            return [d if d[0, 0] < im.shape[1] / 2 else np.zeros((0, 5))
                    for d, im in zip(found, images)]

    frame = _frame()[:, ::-1].copy()      # the person now on the right: x 140..180
    once = PersonDetector(_LeftOnly(), DetectorConfig(flip=False, min_box_size=4))([frame])[0]
    twice = PersonDetector(_LeftOnly(), DetectorConfig(flip=True, min_box_size=4))([frame])[0]
    assert len(once) == 0
    assert twice.shape == (1, 5) and twice[0] == pytest.approx([140, 30, 180, 100, 0.45])
    # found by the first run too: kept as the first run has it (not moved by the mirrored run)
    biased = PersonDetector(_Blob(shift=4.0), DetectorConfig(min_box_size=4))([_frame()])[0]
    assert biased.shape == (1, 5) and biased[0] == pytest.approx([24, 30, 64, 100, 0.9])


def test_detector_config_checks_the_test_time_settings():
    with pytest.raises(ValueError):
        DetectorConfig(sizes=(400,))
    with pytest.raises(ValueError):
        DetectorConfig(fusion_iou=0.0)
    with pytest.raises(ValueError):
        DetectorConfig(fusion="mean")


def test_the_real_models_load_as_runs_of_one_person_detector(models_dir):
    from posetracker.core.errors import ModelError
    from posetracker.estimators.rmpe import load_person_detector

    rtmdet = (models_dir / "rtmdet-nano-person.onnx", None)
    picodet = (models_dir / "picodet-s-320-pedestrian.xml", None)
    config = DetectorConfig(flip=True, sizes=(320,), ensemble=("picodet-s-320",))
    det = load_person_detector(config, rtmdet, [picodet], "cpu")
    assert det.detector.input_size == (416, 416)
    assert [m.input_size for m in det.members] == [(320, 320), (320, 320)]
    assert det.runs == 6
    frame = np.zeros((96, 128, 3), np.uint8)
    assert det([frame])[0].shape[1] == 5
    with pytest.raises(ModelError, match="input only"):   # PicoDet's graph fixes its size
        load_person_detector(DetectorConfig(model="picodet-s-320", sizes=(416,)), picodet, [],
                             "cpu")
    with pytest.raises(ModelError, match="ensemble"):
        load_person_detector(config, rtmdet, [], "cpu")


def test_estimate_adds_the_mirrored_run_s_missed_people_and_track_runs_once():
    from posetracker.app.settings import AppConfig

    settings = AppConfig()
    estimate = settings.estimate.estimator.detector
    assert estimate.flip and estimate.fusion == "add_missed"    # docs/models.md: +AP on both sets
    assert not settings.estimator.detector.flip                  # track: over its 10 % budget
