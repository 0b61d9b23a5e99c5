"""Spatial transformer / de-transformer: crops of synthetic images round-trip to the image."""

from __future__ import annotations

import numpy as np
import torch

from posetracker.estimators.transform import (
    STN,
    box_regions,
    crop_affines,
    crop_boxes,
    crop_to_image,
    frames_to_tensor,
    image_to_crop,
)


def _blob_image(h, w, points, sigma=2.0):
    """A float image with one Gaussian blob per point (pixel-index coordinates)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for x, y in points:
        img = np.maximum(img, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2)))
    return img


def _subpixel_peak(crop: np.ndarray) -> np.ndarray:
    """Centroid of the values above half the max around the argmax: (x, y)."""
    v, u = np.unravel_index(np.argmax(crop), crop.shape)
    win = crop[max(v - 6, 0): v + 7, max(u - 6, 0): u + 7]
    win = np.where(win > 0.3 * win.max(), win, 0)
    yy, xx = np.mgrid[max(v - 6, 0): v + 7, max(u - 6, 0): u + 7][:, : win.shape[0], : win.shape[1]]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


def test_regions_pad_to_aspect_and_scale():
    r = box_regions(np.array([[10, 20, 50, 220]]), (256, 192), scale_factor=1.25)
    cx, cy, W, H = r[0].tolist()
    assert (cx, cy) == (30, 120)
    assert abs(W / H - 192 / 256) < 1e-9 and abs(H - 200 * 1.25) < 1e-9


def test_affine_inverse_roundtrip():
    regions = box_regions(np.array([[5.0, 7, 80, 60], [100, 50, 130, 200]]), (64, 48), 1.1)
    A = crop_affines(regions, (64, 48))
    pts = torch.rand(2, 17, 2, dtype=torch.float64) * 300
    back = crop_to_image(image_to_crop(pts, A), A)
    assert torch.allclose(back, pts, atol=1e-9)
    # The crop's outer edges land on the region's edges.
    edge = crop_to_image(torch.tensor([[[-0.5, -0.5], [47.5, 63.5]]] * 2, dtype=torch.float64), A)
    assert torch.allclose(edge[:, 0, 0], regions[:, 0] - regions[:, 2] / 2)
    assert torch.allclose(edge[:, 1, 1], regions[:, 1] + regions[:, 3] / 2)


def test_synthetic_points_round_trip_below_half_pixel():
    """Known points -> one batched grid_sample crop per box -> peak in the crop -> SDTN -> image."""
    rng = np.random.default_rng(0)
    sizes = [(120, 160), (96, 200)]  # frames of different sizes in one batch
    frames, boxes, frame_index, truth = [], [], [], []
    for f, (h, w) in enumerate(sizes):
        pts = []
        for _ in range(3):
            x1, y1 = rng.uniform(5, w - 60), rng.uniform(5, h - 60)
            bw, bh = rng.uniform(25, 50), rng.uniform(30, 50)
            p = (x1 + rng.uniform(0.3, 0.7) * bw, y1 + rng.uniform(0.3, 0.7) * bh)
            pts.append(p)
            boxes.append([x1, y1, x1 + bw, y1 + bh])
            frame_index.append(f)
        # Point j of a frame is drawn in colour channel j only, so blobs never mix.
        img = np.stack([_blob_image(h, w, [p]) for p in pts], axis=-1)
        frames.append((img * 255).astype(np.float32))
        truth.extend(pts)
    images = torch.zeros(2, 3, 120, 200)
    for f, im in enumerate(frames):
        images[f, :, : im.shape[0], : im.shape[1]] = torch.from_numpy(im).permute(2, 0, 1)
    out_size = (64, 48)
    A = crop_affines(box_regions(np.array(boxes), out_size, 1.25), out_size)
    crops = crop_boxes(images, np.array(frame_index), A, out_size, frame_sizes=np.array(sizes))
    assert crops.shape == (6, 3, 64, 48)
    errors = []
    for c in range(6):
        peak = _subpixel_peak(crops[c, c % 3].numpy().astype(np.float64))
        back = crop_to_image(torch.from_numpy(peak)[None, None], A[c:c + 1])[0, 0].numpy()
        errors.append(np.hypot(*(back - np.array(truth[c]))))
    assert max(errors) < 0.5, errors


def test_identity_crop_reproduces_pixels_and_outside_is_zero():
    img = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8)
    # A region exactly covering frame 1 at 1:1 -> the frame itself.
    A = crop_affines(torch.tensor([[3.5, 2.5, 8.0, 6.0], [100.0, 100.0, 8.0, 6.0]]), (6, 8))
    crops = crop_boxes(img, [1, 0], A, (6, 8))
    assert torch.allclose(crops[0], img[1])
    assert crops[1].abs().max() == 0  # entirely outside frame 0


def test_keep_regions_blank_the_rest_of_each_crop():
    img = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8) + 1
    A = crop_affines(torch.tensor([[3.5, 2.5, 8.0, 6.0], [3.5, 2.5, 8.0, 6.0]]), (6, 8))
    # crop 0 keeps pixel columns 2..5 and rows 1..3 of frame 1; crop 1 keeps all of frame 0
    keep = np.array([[2, 1, 5, 3], [-1, -1, 9, 7]], dtype=float)
    crops = crop_boxes(img, [1, 0], A, (6, 8), keep_regions=keep)
    inside = torch.zeros(6, 8, dtype=torch.bool)
    inside[1:4, 2:6] = True
    assert torch.equal(crops[0][:, inside], img[1][:, inside])
    assert crops[0][:, ~inside].abs().max() == 0
    assert torch.allclose(crops[1], img[0])


def test_frames_to_tensor_pads():
    a = np.full((4, 5, 3), 7, np.uint8)
    b = np.full((6, 3, 3), 9, np.uint8)
    t = frames_to_tensor([a, b])
    assert t.shape == (2, 3, 6, 5) and t[0, :, 4:].abs().max() == 0 and t[1, :, :, 3:].abs().max() == 0


def test_stn_identity_initialised():
    stn = STN()
    crops = torch.rand(3, 3, 64, 48) * 255
    A = crop_affines(box_regions(np.array([[0, 0, 30, 40]] * 3), (64, 48), 1.25), (64, 48))
    assert torch.allclose(stn.refine(crops, A, (64, 48)), A, atol=1e-9)
