"""The CPU crops (one ``cv2.warpAffine`` of the uint8 frame per crop) sample the same points as the
batched ``grid_sample`` crops: real COCO frames, boxes partly outside the frame, tiny boxes, boxes
at the edges, the outside-box masks, and the estimator's keypoints end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from posetracker.estimators.transform import (
    box_regions,
    crop_affines,
    crop_boxes,
    crop_people,
    crop_to_image,
    frames_to_tensor,
    snap_boxes,
    warp_crops,
)

SIZE = (256, 192)


@pytest.fixture(scope="module")
def coco(data_dir):
    """Five COCO frames (RGB uint8) and their ground-truth person boxes (xyxy)."""
    root = data_dir / "coco_mini_val2017"
    gt = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    boxes: dict[int, list] = {}
    for a in gt["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] >= 5 and a["bbox"][3] > 40:
            x, y, w, h = a["bbox"]
            boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    names = {im["id"]: im["file_name"] for im in gt["images"]}
    ids = sorted(boxes)[:5]
    frames = [np.ascontiguousarray(cv2.imread(str(root / "val2017" / names[i]))[..., ::-1])
              for i in ids]
    return frames, [np.array(boxes[i]) for i in ids]


def _hard_boxes(frames, rng) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: random boxes partly outside the frame, tiny boxes, boxes on each edge."""
    boxes, fidx = [], []
    for i, f in enumerate(frames):
        h, w = f.shape[:2]
        for _ in range(4):
            x1, y1 = rng.uniform(-60, w - 20), rng.uniform(-60, h - 20)
            boxes.append([x1, y1, x1 + rng.uniform(20, w / 2), y1 + rng.uniform(20, h / 2)])
        x, y = rng.uniform(0, w - 3), rng.uniform(0, h - 3)
        boxes += [[x, y, x + 2.3, y + 1.7],                     # tiny
                  [0, 0, 40.5, 90], [w - 33, h - 70.2, w, h],   # on the corners
                  [-20, h / 3, 15, h / 2], [w / 3, h - 10, w / 2, h + 40]]   # over the edges
        fidx += [i] * 9
    return np.array(boxes, dtype=np.float64), np.array(fidx)


def _keep(boxes: np.ndarray, margin: float = 0.2) -> np.ndarray:
    pad = margin * (boxes[:, 2:] - boxes[:, :2])
    return np.concatenate([boxes[:, :2] - pad, boxes[:, 2:] + pad], axis=1)


def _grid_crops(frames, fidx, A, keep):
    sizes = np.array([f.shape[:2] for f in frames])
    return crop_boxes(frames_to_tensor(frames), fidx, A, SIZE, frame_sizes=sizes, keep_regions=keep)


def _differences(frames, fidx, A, keep, shift=0.0):
    """Per-pixel |OpenCV - grid_sample| with the OpenCV affine moved by ``shift`` image pixels."""
    moved = A.clone()
    moved[:, :, 2] += shift
    return (warp_crops(frames, fidx, moved, SIZE, keep) - _grid_crops(frames, fidx, A, keep)).abs()


def _agree(d: torch.Tensor) -> bool:
    """Within a grey level on average in every crop, and nowhere more than one grey level off."""
    return bool(d.mean(dim=(1, 2, 3)).max() < 1.0 and d.max() <= 1.0)


def test_opencv_crops_equal_grid_sample_crops_on_real_frames(coco):
    frames, _ = coco
    boxes, fidx = _hard_boxes(frames, np.random.default_rng(1))
    A = crop_affines(box_regions(boxes, SIZE, 1.25), SIZE)
    for keep in (None, _keep(boxes)):
        d = _differences(frames, fidx, A, keep)
        assert _agree(d), (d.mean(dim=(1, 2, 3)).max(), d.max())
        assert d.mean() < 0.25
        # The comparison sees half a pixel: the same crops half a pixel off fail it.
        for shift in (0.5, -0.5):
            assert not _agree(_differences(frames, fidx, A, keep, shift))


def test_opencv_masks_cover_the_same_region(coco):
    """White frames: a crop pixel is non-zero exactly where the frame and the keep region are."""
    frames, _ = coco
    white = [np.full_like(f, 255) for f in frames]
    boxes, fidx = _hard_boxes(frames, np.random.default_rng(2))
    keep = _keep(boxes)
    A = crop_affines(box_regions(boxes, SIZE, 1.25), SIZE)
    # A general affine too (rotated and sheared, as a trained STN may give): the full-grid mask.
    turned = A.clone()
    turned[:, 0, 1] = 0.3 * A[:, 1, 1]
    turned[:, 1, 0] = -0.2 * A[:, 0, 0]
    for affines in (A, turned):
        ours = warp_crops(white, fidx, affines, SIZE, keep)
        ref = _grid_crops(white, fidx, affines, keep)
        assert torch.equal(ours > 0, ref > 0)
        assert (ours - ref).abs().max() <= 1.0
        assert 0 < (ours == 0).float().mean() < 1  # the masks do blank something


def test_crop_people_on_cpu_is_opencv_as_contiguous_float(coco):
    frames, boxes = coco
    fidx = np.repeat(np.arange(len(frames)), [len(b) for b in boxes])
    allb = np.concatenate(boxes)
    A = crop_affines(box_regions(allb, SIZE, 1.25), SIZE)
    crops = crop_people(frames, fidx, A, SIZE, "cpu", _keep(allb))
    assert crops.dtype == torch.float32 and crops.is_contiguous() and crops.shape == (len(allb), 3, *SIZE)
    assert torch.equal(crops, warp_crops(frames, fidx, A, SIZE, _keep(allb)))
    assert len(crop_people(frames, fidx[:0], A[:0], SIZE, "cpu")) == 0


def test_estimator_keypoints_move_under_half_a_pixel(coco, models_dir):
    """TinyPose on ground-truth boxes: the estimator's keypoints (OpenCV crops on the CPU) against
    the same SPPE on the grid_sample crops, mapped back by the same SDTN. A joint whose heatmap has
    two near-equal peaks may jump a heatmap cell on any sub-grey-level change; rounding the
    grid_sample crops to whole grey levels is the yardstick for those."""
    from posetracker.estimators.config import EstimatorConfig
    from posetracker.estimators.rmpe import ModelPaths, RMPEEstimator

    frames, boxes = coco
    est = RMPEEstimator.from_config(EstimatorConfig(device="cpu"),
                                    ModelPaths(models_dir / "tinypose-256x192.xml"),
                                    with_detector=False, threads=0)
    assert est.config.sppe.mask_outside_box  # the default: the masks are part of what is compared
    fidx = np.repeat(np.arange(len(frames)), [len(b) for b in boxes])
    allb = snap_boxes(np.concatenate(boxes))  # the estimator crops its boxes so
    size = est.sppe.input_size
    A = crop_affines(box_regions(allb, size, est.config.sppe.scale_factor), size)
    with torch.inference_mode():
        inters = est.intermediates(frames, heatmaps=False, candidates=0, boxes=boxes)
        grid = _grid_crops(frames, fidx, A, _keep(allb, est.config.sppe.mask_margin))
        out = est.sppe(grid)
        ref = crop_to_image(out.keypoints, A).numpy()
        rounded = crop_to_image(est.sppe(grid.round()).keypoints, A).numpy()
    ours = np.concatenate([i.keypoints for i in inters])
    assert ours.shape == ref.shape and len(ours) >= 6
    moved = np.hypot(*(ours - ref).transpose(2, 0, 1))   # (people, joints) image pixels
    assert np.median(moved) < 0.1 and np.percentile(moved, 95) < 0.5, np.percentile(moved, [50, 95])
    confident = out.scores.numpy() > 0.3
    assert confident.sum() > 50 and moved[confident].mean() < 0.15, moved[confident].mean()
    # In crop pixels (A[:, 0, 0]: image pixels per crop pixel), confident joints move no farther
    # than the rounding moves them, but for half a crop pixel.
    per_crop_px = A[:, 0, 0].numpy()[:, None]
    by_rounding = np.hypot(*(rounded - ref).transpose(2, 0, 1)) / per_crop_px
    assert (moved / per_crop_px)[confident].max() < by_rounding[confident].max() + 0.5
    assert ((moved / per_crop_px)[confident] > 0.5).sum() <= (by_rounding[confident] > 0.5).sum() + 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_crop_people_on_cuda_is_grid_sample_and_agrees(coco):
    frames, _ = coco
    boxes, fidx = _hard_boxes(frames, np.random.default_rng(3))
    A = crop_affines(box_regions(boxes, SIZE, 1.25), SIZE)
    keep = _keep(boxes)
    gpu = crop_people(frames, fidx, A, SIZE, "cuda", keep)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), _grid_crops(frames, fidx, A, keep), atol=1e-3)
    assert _agree((gpu.cpu() - crop_people(frames, fidx, A, SIZE, "cpu", keep)).abs())


def test_detector_float_noise_does_not_change_the_poses(coco, models_dir):
    """Boxes moved by the detector's float noise between batch sizes (about 3e-5 pixel) give the
    same crops, hence the same keypoints (without the 1/8-pixel grid OpenCV's 1/32-pixel sampling
    steps make some crops differ by a grey level, and some joints move)."""
    from posetracker.estimators.config import EstimatorConfig
    from posetracker.estimators.rmpe import ModelPaths, RMPEEstimator

    frames, boxes = coco
    est = RMPEEstimator.from_config(EstimatorConfig(device="cpu"),
                                    ModelPaths(models_dir / "tinypose-256x192.xml"),
                                    with_detector=False, threads=0)
    # Away from the grid's rounding edges (k/8 + 1/16), as nearly every box is.
    on_grid = [np.round(b * 8) / 8 + 0.02 for b in boxes]
    moved = [b + np.random.default_rng(i).uniform(-4e-5, 4e-5, b.shape) for i, b in enumerate(on_grid)]
    with torch.inference_mode():
        a = est.intermediates(frames, heatmaps=False, candidates=0, boxes=on_grid)
        b = est.intermediates(frames, heatmaps=False, candidates=0, boxes=moved)
    assert all(np.array_equal(x.keypoints, y.keypoints) for x, y in zip(a, b))
