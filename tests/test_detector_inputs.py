"""The detectors' inputs: each image resized as uint8 by OpenCV, the batch normalised once, equal
to resizing the image in float (the same bilinear interpolation) within a grey level."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from posetracker.estimators.boxes import darknet_batch, letterbox
from posetracker.estimators.rtmdet import letterbox_top_left


@pytest.fixture(scope="module")
def frames(data_dir):
    cap = cv2.VideoCapture(str(data_dir / "videos" / "two_people.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    small = cv2.resize(frame, (301, 177), interpolation=cv2.INTER_AREA)  # another size and aspect
    return [np.ascontiguousarray(f[..., ::-1]) for f in (frame, small)]


def _float_resize(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image.astype(np.float32), size_wh, interpolation=cv2.INTER_LINEAR)


def test_uint8_letterbox_equals_float_resize_within_a_grey_level(frames):
    for image in frames:
        canvas, (sx, sy) = letterbox_top_left(image, (320, 320))
        h, w = image.shape[:2]
        new_w, new_h = round(w * sx), round(h * sy)
        ref = _float_resize(image, (new_w, new_h))
        assert np.abs(canvas[:new_h, :new_w] - ref).max() <= 1.0
        assert (canvas[new_h:] == 114).all() and (canvas[:, new_w:] == 114).all()
        # Nearest-neighbour (or area) resizing would not pass: the check sees the interpolation.
        other = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        assert np.abs(other - ref).max() > 1.0


def test_picodet_input_normalised_once_per_batch(models_dir, frames):
    from posetracker.estimators.picodet import load_picodet

    det = load_picodet(models_dir / "picodet-s-320-pedestrian.xml")
    for keep_ratio in (False, True):
        x, transforms = det.preprocess(frames, letterbox=keep_ratio)
        ref, ref_tr = darknet_batch(frames, det.input_size, keep_ratio, det.device)
        assert torch.equal(x, (ref - det.mean) / det.std) and transforms == ref_tr
        assert x.dtype == torch.float32 and x.is_contiguous()
    stretched = [letterbox(im, det.input_size, keep_ratio=False)[0] * 255 for im in frames]
    for image, canvas in zip(frames, stretched):
        assert np.abs(canvas - _float_resize(image, det.input_size[::-1])).max() <= 1.0 + 1e-4
