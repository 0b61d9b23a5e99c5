"""The torso colour histogram cue: regions, histograms, and a swap that geometry alone gets
wrong."""

from __future__ import annotations

import numpy as np
import pytest

from posetracker.core.config import from_dict
from posetracker.core.schemas import POSETRACK17
from posetracker.tracker import TrackerConfig, make_tracker, track_frames
from posetracker.tracker.appearance import bhattacharyya, torso_boxes, torso_histograms, torso_indices
from tests.test_tracker import frame, person

RED, BLUE, WHITE, BLACK = (0, 0, 220), (220, 60, 0), (250, 250, 250), (10, 10, 10)
TORSO = torso_indices(POSETRACK17.keypoints)


def _image(people, size=(500, 600)):
    """Grey frame with each person's torso painted in a colour (BGR)."""
    import cv2

    img = np.full((*size, 3), 128, np.uint8)
    for (cx, cy), colour in people:
        cv2.rectangle(img, (int(cx - 30), int(cy - 70)), (int(cx + 30), int(cy + 5)), colour, -1)
    return img


def test_torso_region_from_shoulders_and_hips_or_the_box():
    kp = person(200, 300)[None]                     # shoulders at y 240, hips at y 300
    box = np.array([[150.0, 190.0, 250.0, 400.0]])
    (x1, y1, x2, y2), = torso_boxes(kp, box, TORSO, shrink=0.0)
    assert (x1, x2) == pytest.approx((176, 224)) and (y1, y2) == pytest.approx((240, 300))
    blind = np.full_like(kp, np.nan)                 # no joints: the middle of the box
    assert torso_boxes(blind, box, TORSO)[0] == pytest.approx([175, 232, 225, 305.5])


def test_histograms_tell_shirt_colours_apart():
    img = _image([((150, 300), RED), ((300, 300), BLUE), ((450, 300), WHITE)])
    other = _image([((150, 300), RED), ((300, 300), BLACK), ((450, 300), BLUE)])
    kp = np.stack([person(x, 300) for x in (150, 300, 450)])
    boxes = np.array([[x - 50, 190, x + 50, 400] for x in (150, 300, 450)], dtype=float)
    h1 = torso_histograms(img, kp, boxes, TORSO)
    h2 = torso_histograms(other, kp, boxes, TORSO)
    assert np.allclose(h1.sum(1), 1.0)
    bc = bhattacharyya(h1, h2)
    assert bc[0, 0] > 0.95                                  # red, red
    assert bc[1, 2] > 0.95                                  # blue, blue
    assert bc[0, 2] < 0.1 and bc[2, 1] < 0.1                # red / blue, white / black
    # a pose outside the image has no histogram
    assert torso_histograms(img, kp + 2000, boxes + 2000, TORSO).sum() == 0


def test_colours_keep_ids_where_geometry_prefers_a_swap():
    """Red at x 200 and blue at x 300 stand still, are missed for 3 frames, then appear one above
    the other between their old places: geometry slightly prefers red at blue's id (the blue pose
    is 5 px nearer red's old place); the torso colours say otherwise."""
    frames, images = [], []
    for t in range(20):
        if t < 10:
            people = [((200, 300), RED), ((300, 300), BLUE)]
        elif t < 13:
            people = []
        else:
            people = [((255, 250), RED), ((245, 350), BLUE)]
        frames.append(frame(*[person(x, y) for (x, y), _ in people]) if people else frame())
        images.append(_image(people))
    ids = {}
    for w_app in (0.0, 1.0):
        cfg = from_dict(TrackerConfig, {"poseflow": {"w_app": w_app}})
        out = track_frames(make_tracker(cfg), frames, images)
        ids[w_app] = (out[5].track_ids.tolist(), out[15].track_ids.tolist())
    assert ids[1.0] == ([0, 1], [0, 1])   # red keeps red's id
    assert ids[0.0] == ([0, 1], [1, 0])   # without colours the swap happens
