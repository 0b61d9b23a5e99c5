"""Tracker building blocks: similarities, ORB correspondences, the AlphaPose grade, PF-NMS merge,
the detector-noise model."""

from __future__ import annotations

import numpy as np
import pytest

from posetracker.core.boxes import box_iou, greedy_pairs
from posetracker.core.poses import Frame, VideoPoses
from posetracker.core.schemas import POSETRACK17
from posetracker.tracker import pfnms
from posetracker.tracker.alphapose import (
    AlphaPoseTracker,
    expanded_boxes,
    inclusive_box_iou,
    joint_window_iou_inclusive,
)
from posetracker.tracker.orb import OrbMatcher, box_correspondence_iou, joint_correspondence_iou
from posetracker.tracker.perturb import NOISE_LEVELS, perturb_video
from posetracker.tracker.poseflow import PoseFlowTracker
from posetracker.tracker.similarity import pose_similarity, top_mean
from tests.test_tracker import frame, person


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    assert np.allclose(box_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_greedy_pairs_one_to_one_best_first():
    sim = np.array([[0.9, 0.8, 0.0], [0.85, 0.2, 0.6]])
    assert greedy_pairs(sim, 0.5) == [(0, 0), (1, 2)]  # row 1 loses column 0, takes its next
    assert greedy_pairs(sim, 0.7) == [(0, 0)]          # every pair at the minimum or above
    assert greedy_pairs(np.full((2, 2), 0.7), 0.5) == [(0, 0), (1, 1)]  # ties: row-major order
    assert greedy_pairs(np.zeros((0, 3)), 0.1) == [] and greedy_pairs(np.zeros((3, 0)), 0.1) == []


def test_pose_similarity_gaussian_and_absent_joints():
    a = np.zeros((1, 3, 2))
    b = np.zeros((1, 3, 2))
    b[0, 0] = (3.0, 4.0)        # 5 px away
    b[0, 2] = np.nan            # absent: ignored
    sim = pose_similarity(a, b, np.array([10.0]), sigma=0.5)   # tolerance 5 px
    assert sim[0, 0] == pytest.approx((np.exp(-0.5) + 1.0) / 2)
    none = np.full((1, 3, 2), np.nan)
    assert pose_similarity(a, none, np.array([10.0]), 0.5)[0, 0] == 0.0


def test_alphapose_grade_parts_follow_the_released_rules():
    # Identical joints: window IoU 1 (up to the script's 1e-5); 10 px apart in x: inclusive count.
    a = np.zeros((1, 1, 2))
    b = np.array([[[10.0, 0.0]]])
    assert joint_window_iou_inclusive(a, a, 30)[0, 0, 0] == pytest.approx(1.0, abs=1e-6)
    inter = (60 - 10 + 1) * 61
    assert joint_window_iou_inclusive(a, b, 30)[0, 0, 0] == pytest.approx(
        inter / (2 * 61 * 61 - inter))
    assert joint_window_iou_inclusive(a, np.array([[[61.0, 0.0]]]), 30)[0, 0, 0] == 0.0
    assert top_mean(np.array([[1, 0, 0.5, 0.25]]), 2)[0] == pytest.approx(0.75)
    kp = np.array([[[10.0, 20.0], [110.0, 220.0]]])
    assert expanded_boxes(kp, 0.1, None).tolist() == [[0.0, 0.0, 120.0, 240.0]]
    assert expanded_boxes(kp, 0.1, (100, 200)).tolist() == [[0.0, 0.0, 100.0, 200.0]]
    box = np.array([[0.0, 0.0, 9.0, 9.0]])
    assert inclusive_box_iou(box, box)[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_alphapose_accepts_above_threshold_and_carries_people_over_empty_frames():
    tr = AlphaPoseTracker()
    out = [tr.update(f) for f in (frame(person(100, 300)), frame(), frame(person(104, 300)),
                                  frame(person(900, 300)))]
    assert [f.track_ids.tolist() for f in out] == [[0], [], [0], [1]]


def _texture(shift: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    big = (rng.random((300, 520)) * 255).astype(np.uint8)
    import cv2

    big = cv2.GaussianBlur(big, (5, 5), 1.0)
    return np.dstack([big[:, shift:shift + 480]] * 3)


def test_orb_correspondences_follow_the_image_motion():
    m = OrbMatcher(n_features=500, max_side=0)
    assert m.match(_texture(0)).shape == (0, 4)
    corr = m.match(_texture(8))        # content moves 8 px to the left
    assert len(corr) > 50
    dx = corr[:, 2] - corr[:, 0]
    assert np.median(dx) == pytest.approx(-8, abs=0.6)
    # Joint windows that follow the motion share correspondences; windows that do not, share none.
    prev = np.array([[[200.0, 150.0]]])
    moved = prev - (8, 0)
    elsewhere = prev + (150, 0)
    iou = joint_correspondence_iou(corr, prev, np.concatenate([moved, elsewhere]), 30.0)
    assert iou[0, 0, 0] > 0.3 and iou[0, 1, 0] == 0.0
    boxes = np.array([[150.0, 100.0, 250.0, 200.0]])
    b = box_correspondence_iou(corr, boxes, np.concatenate([boxes - (8, 0, 8, 0), boxes + 200]))
    assert b[0, 0] > 0.5 and b[0, 1] == 0.0


def test_poseflow_and_alphapose_run_with_images():
    for tr in (PoseFlowTracker(), AlphaPoseTracker()):
        for t in range(6):
            tr.update(frame(person(200 - 2 * t, 200, height=150)), _texture(2 * t))
        out = tr.finish()
        assert [f.track_ids.tolist() for f in out] == [[0]] * 6


def test_merge_pair_weights_by_joint_scores():
    kp_a = np.array([[0.0, 0.0], [np.nan, np.nan]])
    kp_b = np.array([[4.0, 8.0], [1.0, 1.0]])
    kp, sc, box, bs = pfnms.merge_pair(kp_a, np.array([0.75, 0.0]), np.array([0, 0, 2, 2.0]), 0.9,
                                       kp_b, np.array([0.25, 0.5]), np.array([2, 2, 4, 4.0]), 0.3)
    assert np.allclose(kp, [[1.0, 2.0], [1.0, 1.0]])
    assert np.allclose(sc, [0.75, 0.5]) and bs == 0.9
    assert np.allclose(box, [0.5, 0.5, 2.5, 2.5])


def _gt_video(n_frames=40):
    frames = []
    for t in range(n_frames):
        p = frame(person(100 + 3 * t, 300), person(500, 300 - t))
        frames.append(Frame(t, p.with_track_ids([0, 1])))
    return VideoPoses("synthetic", frames, POSETRACK17)


def test_perturbation_is_deterministic_untracked_and_noisy():
    v = _gt_video()
    a = perturb_video(v, NOISE_LEVELS["high"], seed=3)
    b = perturb_video(v, NOISE_LEVELS["high"], seed=3)
    c = perturb_video(v, NOISE_LEVELS["high"], seed=4)
    assert all(f.poses.track_ids is None for f in a.frames)
    def flat(vid):
        return np.concatenate([np.nan_to_num(f.poses.keypoints).ravel() for f in vid])
    assert np.array_equal(flat(a), flat(b)) and not np.array_equal(flat(a), flat(c))
    counts = [len(f.poses) for f in a.frames]
    assert min(counts) < 2 or max(counts) > 2          # misses or false positives happened
    clean = perturb_video(v, NOISE_LEVELS["none"], seed=0)
    assert all(np.allclose(f.poses.keypoints, g.poses.keypoints, equal_nan=True)
               for f, g in zip(clean.frames, v.frames))


def test_output_ids_renumber_in_order_of_first_appearance():
    from posetracker.core.poses import FramePoses
    from posetracker.core.schemas import COCO17
    from posetracker.tracker.base import OutputIds

    kp = np.zeros((2, 17, 2))
    ids = OutputIds()
    a = ids(FramePoses.from_keypoints(kp, np.ones((2, 17)), COCO17, track_ids=[40, 7]))
    b = ids(FramePoses.from_keypoints(kp, np.ones((2, 17)), COCO17, track_ids=[7, 1000]))
    assert list(a.track_ids) == [0, 1] and list(b.track_ids) == [1, 2]
    # a new video (a new instance) counts from 0 again
    c = OutputIds()(FramePoses.from_keypoints(kp[:1], np.ones((1, 17)), COCO17, track_ids=[1000]))
    assert list(c.track_ids) == [0]


def test_orb_features_come_from_the_downscaled_frame_in_full_frame_pixels():
    """``max_side`` halves a 960-px frame for ORB, and the matches come back in its own pixels."""
    big = np.dstack([np.kron(_texture(0)[..., 0], np.ones((2, 2), np.uint8))] * 3)     # 600 x 960
    moved = np.dstack([np.kron(_texture(8)[..., 0], np.ones((2, 2), np.uint8))] * 3)   # 16 px left
    seen = []
    m = OrbMatcher(n_features=500, max_side=480)
    orb = m._orb

    class Spy:  # records the image ORB is given
        def detectAndCompute(self, img, mask):
            seen.append(img.shape)
            return orb.detectAndCompute(img, mask)

        def getEdgeThreshold(self):
            return orb.getEdgeThreshold()

    m._orb = Spy()
    m.match(big)
    corr = m.match(moved)
    assert seen == [(300, 480), (300, 480)]
    assert len(corr) > 50 and corr[:, 0].max() > 480        # full-frame x, up to 960
    assert np.median(corr[:, 2] - corr[:, 0]) == pytest.approx(-16, abs=1.5)


def _tracked(images, frames, when: str):
    tr = PoseFlowTracker(orb_when=when)
    for f, im in zip(frames, images):
        tr.update(f, im)
    extracted = tr._orb.frames_extracted
    return [f.track_ids.tolist() for f in tr.finish()], extracted


def test_orb_runs_only_where_it_could_change_a_link():
    """Two people far apart: PoseFlow links them without ORB; two crossing: it computes ORB. Ids are
    the same as computing ORB on every frame."""
    images = [_texture(s) for s in range(0, 12, 2)]
    apart = [frame(person(100 + s, 250), person(400 - s, 250, 180)) for s in range(0, 12, 2)]
    crossing = [frame(person(235 + s, 250), person(245 - s, 250)) for s in range(0, 12, 2)]
    ids_a, n_a = _tracked(images, apart, "ambiguous")
    ids_all, n_all = _tracked(images, apart, "always")
    assert n_a == 0 and n_all == len(images) and ids_a == ids_all
    ids_c, n_c = _tracked(images, crossing, "ambiguous")
    assert n_c > 0 and ids_c == _tracked(images, crossing, "always")[0]


def test_orb_gray_of_a_channel_reversed_view_is_the_bgr_gray(data_dir):
    """Video mode gives the tracker ``rgb[..., ::-1]``: the gray it takes from the RGB frame
    underneath (no copy of the view) must equal OpenCV's BGR gray of that view, level for level,
    and the features found on it must be the same."""
    import cv2

    from posetracker.io.sources import open_source
    from posetracker.tracker.orb import gray

    rgb = next(iter(open_source(str(data_dir / "videos" / "street_crowd.avi"), max_frames=1))).image
    view = rgb[..., ::-1]
    assert view.strides[2] < 0
    want = cv2.cvtColor(np.ascontiguousarray(view), cv2.COLOR_BGR2GRAY)
    assert np.array_equal(gray(view, cv2), want)
    bgr = np.ascontiguousarray(view)   # a plain BGR frame, and a gray one, as they come
    assert np.array_equal(gray(bgr, cv2), want) and gray(want, cv2) is want
    m = OrbMatcher(n_features=500, max_side=960)
    a, b = m.features(view), m.features(bgr)
    assert len(a[0]) > 100 and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_joint_correspondence_iou_equals_the_count_per_pair():
    """The broadcast window test equals counting, pair by pair and joint by joint, the matches
    whose points lie within ``half`` of both joints (a missing joint holds none; points exactly
    on the window's edge count)."""
    rng = np.random.default_rng(5)
    prev = rng.uniform(0, 200, (4, 17, 2))
    cur = prev[[2, 0, 1]] + rng.normal(0, 4, (3, 17, 2))
    prev[1, 5] = np.nan
    corr = np.hstack([prev[rng.integers(0, 4, 300), rng.integers(0, 17, 300)],
                      cur[rng.integers(0, 3, 300), rng.integers(0, 17, 300)]])
    corr += rng.normal(0, 6, corr.shape)
    corr[:, :2] = np.where(np.isnan(corr[:, :2]), 0.0, corr[:, :2])
    corr[0, :2] = prev[0, 0] + [12.0, -12.0]               # on the edge of a 12-px window
    half = np.array([12.0, 20.0, 9.0, 15.0])
    got = joint_correspondence_iou(corr, prev, cur, half, 11.0)
    want = np.zeros((4, 3, 17))
    for a in range(4):
        for b in range(3):
            for j in range(17):
                ina = np.abs(corr[:, :2] - prev[a, j]).max(1) <= half[a]
                inb = np.abs(corr[:, 2:] - cur[b, j]).max(1) <= 11.0
                union = (ina | inb).sum()
                # counts in float32, as the matrix product of memberships gives them
                want[a, b, j] = np.float32((ina & inb).sum()) / np.float32(union) if union else 0
    assert np.array_equal(got, want)
    assert (want > 0).sum() > 20 and np.all(want[1, :, 5] == 0)
