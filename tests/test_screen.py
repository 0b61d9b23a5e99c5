"""The screen (``EstimatorConfig.screen``): a small pose model drops the detector's low-scored boxes
that hold no person before the pose model runs, and touches nothing else."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from posetracker.estimators.config import DetectorConfig, EstimatorConfig, ScreenConfig

GREY = 118


class _Fixed:
    """A detector that returns the same boxes for every frame."""

    def __init__(self, boxes: np.ndarray):
        self.boxes = boxes

    def detect(self, frames, conf, nms, max_detections):
        return [self.boxes.copy() for _ in frames]


@pytest.fixture(scope="module")
def scene(data_dir):
    """A COCO frame (RGB uint8) with its best-seen person's box and, in a blank grey patch, a box
    with no one in it."""
    root = data_dir / "coco_mini_val2017"
    gt = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    best = max((a for a in gt["annotations"] if not a["iscrowd"]), key=lambda a: a["num_keypoints"]
               * min(a["bbox"][2:]))
    name = next(im["file_name"] for im in gt["images"] if im["id"] == best["image_id"])
    frame = np.ascontiguousarray(cv2.imread(str(root / "val2017" / name))[..., ::-1])
    x, y, w, h = best["bbox"]
    person = np.array([x, y, x + w, y + h])
    frame = frame.copy()
    frame[:120, :90] = GREY  # the empty box's region, blank (and its crop margin)
    empty = np.array([10.0, 10.0, 60.0, 100.0])
    return frame, person, empty


def _estimator(models_dir, boxes: np.ndarray, screen: ScreenConfig):
    """TinyPose behind a detector that always gives ``boxes``, screened by TinyPose 128x96 when
    ``screen.model`` is set."""
    from posetracker.estimators.rmpe import ModelPaths, PersonDetector, RMPEEstimator
    from posetracker.estimators.sppe import load_sppe

    config = EstimatorConfig(device="cpu", screen=screen,
                             detector=DetectorConfig(conf_threshold=0.0, min_box_size=4.0, flip=False))
    est = RMPEEstimator.from_config(config, ModelPaths(models_dir / "tinypose-256x192.xml"),
                                    with_detector=False, threads=0)
    small = None if not screen.model else load_sppe(models_dir / "tinypose-128x96.xml",
                                                   backend=config.backend)
    return RMPEEstimator(est.sppe, PersonDetector(_Fixed(boxes), config.detector), config,
                         screen=small)


def test_low_boxes_without_a_person_are_dropped_people_and_high_boxes_kept(scene, models_dir):
    frame, person, empty = scene
    boxes = np.array([[*empty, 0.3], [*person, 0.21], [*empty, 0.22]])  # best first
    on = ScreenConfig(model="tinypose-128x96", below=0.25, min_score=0.1)
    screened = _estimator(models_dir, boxes, on).detect([frame])[0]
    # the empty box scored 0.3 is above ``below``: never screened; the person scored 0.21 passes
    np.testing.assert_array_equal(screened, boxes[:2])
    # without the screen every box reaches the pose model, and the pose model keeps the empty
    # box's pose (its person score is low, but it costs a pose-model call)
    off = _estimator(models_dir, boxes, ScreenConfig())
    np.testing.assert_array_equal(off.detect([frame])[0], boxes)
    assert len(off.estimate([frame])[0]) >= 2
    # everything screened when the bar is above any person's score; nothing when it is 0
    strict = _estimator(models_dir, boxes, replace(on, min_score=0.25))
    np.testing.assert_array_equal(strict.detect([frame])[0], boxes[:1])
    lax = _estimator(models_dir, boxes, replace(on, min_score=0.0))
    np.testing.assert_array_equal(lax.detect([frame])[0], boxes)


def test_the_estimators_own_detector_path_is_screened_given_boxes_are_not(scene, models_dir):
    frame, person, empty = scene
    boxes = np.array([[*person, 0.21], [*empty, 0.22]])
    est = _estimator(models_dir, boxes, ScreenConfig(model="tinypose-128x96"))
    (inter,) = est.intermediates([frame], heatmaps=False, candidates=0)
    np.testing.assert_array_equal(inter.boxes, boxes[:1, :4])
    # boxes the caller gives (ground truth, the tracker's proposals) all reach the pose model
    (given,) = est.intermediates([frame], heatmaps=False, candidates=0, boxes=[boxes])
    np.testing.assert_array_equal(given.boxes, boxes[:, :4])
    # frames without any box to screen, and a batch of frames
    est.detector = type(est.detector)(_Fixed(np.zeros((0, 5))), est.config.detector)
    assert [len(d) for d in est.detect([frame, frame])] == [0, 0]


def test_screen_settings_are_checked_and_track_turns_it_on():
    from posetracker.app.settings import AppConfig

    with pytest.raises(ValueError, match="screen"):
        ScreenConfig(below=1.5)
    with pytest.raises(ValueError, match="screen"):
        ScreenConfig(min_score=-0.1)
    app = AppConfig()
    assert app.estimator.screen.model == "tinypose-128x96"
    assert app.estimate.estimator.screen.model == ""  # ``estimate`` keeps every box


def test_model_paths_resolve_the_screen_only_with_a_detector(shared_models, models_dir, monkeypatch):
    from posetracker.app.build import model_paths

    monkeypatch.setenv("POSETRACKER_MODELS", str(models_dir))
    config = EstimatorConfig(screen=ScreenConfig(model="tinypose-128x96"))
    assert model_paths(config).screen.name == "tinypose-128x96.xml"
    assert model_paths(config, with_detector=False).screen is None
    assert model_paths(EstimatorConfig()).screen is None
