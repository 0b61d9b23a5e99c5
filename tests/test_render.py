"""Rendering: per-track colours and labels drawn, trails, and a streamed mp4v video."""

from __future__ import annotations

import cv2
import numpy as np
from pipeline_doubles import FakeStages, NearestTracker, make_frames

from posetracker.io.render import VideoRenderer, draw_poses, track_colour


def _poses(n=2, size=(120, 160)):
    stages, tracker = FakeStages(people=n), NearestTracker()
    f = next(make_frames(1, size=size))
    return f, tracker.update(stages.estimate([f.image], [list(range(n))])[0], f.image)


def test_colours_differ_between_neighbouring_ids():
    cols = [np.array(track_colour(i)) for i in range(8)]
    assert all(np.abs(a - b).sum() > 60 for i, a in enumerate(cols) for b in cols[i + 1:])
    assert track_colour(3) == track_colour(3)


def test_draw_uses_the_track_colour_and_copies():
    f, poses = _poses(n=1, size=(240, 320))
    img = np.zeros((240, 320, 3), np.uint8)
    out = draw_poses(img, poses)
    assert img.max() == 0  # input untouched
    colour = np.array(track_colour(int(poses.track_ids[0])))
    hits = np.all(out == colour, axis=-1)
    assert hits.sum() > 50  # limbs and joints in the track's colour


def test_low_scores_not_drawn_and_boxes_optional():
    f, poses = _poses(n=1, size=(240, 320))
    img = np.zeros((240, 320, 3), np.uint8)
    assert draw_poses(img, poses, kpt_threshold=0.95).sum() > 0  # the id label is still drawn
    no_box = draw_poses(img, poses, kpt_threshold=0.95)
    with_box = draw_poses(img, poses, kpt_threshold=0.95, boxes=True)
    assert with_box.sum() > no_box.sum()


def test_video_renderer_streams_frames(tmp_path):
    path = tmp_path / "out.mp4"
    r = VideoRenderer(path, fps=10, trail=5, boxes=True)
    stages, tracker = FakeStages(people=2), NearestTracker()
    for f in make_frames(12, size=(120, 160)):
        p = tracker.update(stages.estimate([f.image], [[0, 1]])[0], f.image)
        r.write(f, p)
    assert len(r._trails[0]) == 5  # bounded trail
    r.close()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 160
