"""``--association auto``: the association on frames whose people overlap, pose NMS elsewhere; the
crowd index of predicted people; the per-person error breakdown of ``bench association``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from posetracker.association.assign import associate_intermediates, heatmap_affines
from posetracker.association.auto import AutoGrouping, frame_crowd_index
from posetracker.association.candidates import extract_candidates
from posetracker.association.config import AssociationConfig, AutoConfig
from posetracker.association.synthetic import crop_affines, person_boxes, render_heatmaps, standing_person
from posetracker.core.coco import crowd_index, crowd_index_of
from posetracker.core.pose_nms import PoseNMSConfig, pose_nms
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17
from posetracker.evaluation.grouping_errors import GroundTruthPeople, grouping_errors


def _scores(box_scores, kp_scores):
    return box_scores * kp_scores.mean(1)


def _nms_grouping(inter, schema, person_scores):
    poses = FramePoses(inter.keypoints, inter.keypoint_scores, inter.boxes,
                       person_scores(inter.box_scores, inter.keypoint_scores), schema,
                       box_scores=inter.box_scores)
    return pose_nms(poses, PoseNMSConfig())[0]


def _frame(joints: np.ndarray, amp: np.ndarray):
    """Intermediates of people ``(n, 17, 2)`` whose crops' heatmaps answer with ``amp``
    ``(n crops, n people, 17)`` (what a crop sees of each person)."""
    aff = crop_affines(person_boxes(joints), 64)
    hm = render_heatmaps(joints, aff, 64, amp)
    stride = 4.0
    a = aff.copy()                       # crop -> image affines whose heatmap affines are ``aff``
    a[:, :, :2] /= stride
    a[:, :, 2] += 0.5 * a[:, :, :2].sum(axis=2)
    assert np.allclose(heatmap_affines(a, stride), aff)
    top = extract_candidates(hm, aff).top()
    return SimpleNamespace(boxes=person_boxes(joints), box_scores=np.ones(len(joints)),
                           affines=torch.as_tensor(a), heatmaps=torch.as_tensor(hm),
                           heatmap_stride=stride, keypoints=top[0], keypoint_scores=top[1])


def _overlapping_pair():
    """A (left) and B overlapping; A's crop peaks stronger on B than on A."""
    joints = np.stack([standing_person(60, 40, 150), standing_person(85, 45, 145)])
    amp = np.empty((2, 2, 17))
    amp[0, 0], amp[0, 1] = 0.6, 0.9
    amp[1, 1], amp[1, 0] = 0.95, 0.3
    return joints, _frame(joints, amp)


def _apart_pair():
    """Two people far apart, each crop seeing only its own person."""
    joints = np.stack([standing_person(40, 40, 150), standing_person(400, 45, 145)])
    amp = np.zeros((2, 2, 17))
    amp[0, 0], amp[1, 1] = 0.8, 0.9
    return joints, _frame(joints, amp)


def test_crowd_index_of_arrays_equals_the_annotation_rule():
    a = dict(keypoints=[10, 10, 2, 20, 20, 2, 30, 30, 2, 40, 40, 2], bbox=[0, 0, 50, 50],
             num_keypoints=4)
    b = dict(keypoints=[45, 45, 2, 48, 48, 2, 90, 90, 2, 95, 95, 2], bbox=[40, 40, 60, 60],
             num_keypoints=4)
    pts = [np.array(x["keypoints"], float).reshape(-1, 3)[:, :2] for x in (a, b)]
    boxes = np.array([[0, 0, 50, 50], [40, 40, 100, 100]], float)
    assert crowd_index_of(pts, boxes, np.array([True, True])) == pytest.approx(crowd_index([a, b]))
    assert crowd_index_of(pts, boxes, np.array([True, True])) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert crowd_index_of(pts, boxes, np.array([False, True])) == pytest.approx(1 / 4)


def test_frame_crowd_index_counts_confident_joints_of_overlapping_people():
    joints, inter = _overlapping_pair()
    people = FramePoses(joints, np.full((2, 17), 0.9), person_boxes(joints), np.ones(2), COCO17)
    ci = frame_crowd_index(people)
    assert ci > 0.2
    faint = FramePoses(joints, np.full((2, 17), 0.1), person_boxes(joints), np.ones(2), COCO17)
    assert frame_crowd_index(faint) == 0.0          # no joint reaches joint_threshold
    _, apart = _apart_pair()
    lone = FramePoses(apart.keypoints, apart.keypoint_scores, apart.boxes, np.ones(2), COCO17)
    assert frame_crowd_index(lone) == 0.0


def test_auto_keeps_nms_where_people_do_not_overlap():
    _, inter = _apart_pair()
    grouping = AutoGrouping(_nms_grouping)
    poses, used = grouping.group(inter, COCO17, _scores)
    assert not used
    nms = _nms_grouping(inter, COCO17, _scores)
    np.testing.assert_array_equal(poses.keypoints, nms.keypoints)
    np.testing.assert_array_equal(poses.scores, nms.scores)


def test_auto_associates_where_people_overlap():
    joints, inter = _overlapping_pair()
    grouping = AutoGrouping(_nms_grouping)
    poses, used = grouping.group(inter, COCO17, _scores)
    assert used and grouping.heatmaps
    expected = associate_intermediates(inter, COCO17, AssociationConfig(), _scores)[0]
    np.testing.assert_array_equal(poses.keypoints, expected.keypoints)
    # pose NMS keeps A's answer on B (a second pose of B); the association gives A its own joints
    nms = _nms_grouping(inter, COCO17, _scores)
    err_nms = np.linalg.norm(nms.keypoints[np.argsort(nms.boxes[:, 0])][0] - joints[0], axis=-1)
    err = np.linalg.norm(poses.keypoints[np.argsort(poses.boxes[:, 0])][0] - joints[0], axis=-1)
    assert err.max() < 1.5 < err_nms.max()
    # a threshold above the frame's crowd index keeps pose NMS
    high = AssociationConfig(auto=AutoConfig(crowd_threshold=10.0))
    assert not AutoGrouping(_nms_grouping, high).group(inter, COCO17, _scores)[1]


def test_estimate_defaults_to_auto_and_track_to_nms():
    """The defaults chosen by the figures (docs/association.md): ``auto`` for per-image
    estimation, pose NMS for tracking (the association keeps merged-away poses ranked low)."""
    from posetracker.app.build import build_grouping
    from posetracker.app.settings import AppConfig
    from posetracker.estimators.rmpe import PoseNMSGrouping

    c = AppConfig()
    assert isinstance(build_grouping(c.estimate.association, c.estimate.estimator, c.association),
                      AutoGrouping)
    assert isinstance(build_grouping(c.pipeline.association, c.estimator, c.association),
                      PoseNMSGrouping)


def test_auto_config_is_validated():
    with pytest.raises(ValueError):
        AutoConfig(crowd_threshold=-1)
    with pytest.raises(ValueError):
        AutoConfig(joint_threshold=2)


def test_grouping_errors_count_lost_duplicate_and_wrong_joints():
    joints = np.stack([standing_person(60, 40, 150), standing_person(85, 45, 145)])
    anns = [dict(keypoints=np.c_[j, np.full(17, 2)].ravel().tolist(),
                 bbox=[*j.min(0), *(j.max(0) - j.min(0))], area=float(np.prod(j.max(0) - j.min(0))))
            for j in joints]
    gt = GroundTruthPeople.from_annotations(anns, 17)
    box = person_boxes(joints)
    # both predictions on A: A found, B lost (though it had a box), one duplicate
    two_on_a = FramePoses(np.stack([joints[0], joints[0] + 1]), np.ones((2, 17)), box,
                          np.array([0.9, 0.8]), COCO17)
    e = grouping_errors(gt, two_on_a, COCO17.sigma_array(), box)
    assert (e["found"], e["lost"], e["lost_no_box"], e["duplicate"]) == (1, 1, 0, 1)
    # A's pose with three joints on B's: A still found, three wrong joints
    mixed = joints[0].copy()
    mixed[[9, 10, 15]] = joints[1][[9, 10, 15]]
    pair = FramePoses(np.stack([mixed, joints[1]]), np.ones((2, 17)), box, np.array([0.9, 0.8]), COCO17)
    e = grouping_errors(gt, pair, COCO17.sigma_array())
    assert (e["found"], e["lost"], e["duplicate"], e["wrong_joint"]) == (2, 0, 0, 3)


def test_bench_association_tables_on_real_images(tmp_path, data_dir):
    """``bench association --coco``: AP per path and crowd bin, the error totals and the cases,
    from the estimate settings' estimator on three real images (one crowded)."""
    import json

    from posetracker.app.benchmarks.association import PATHS, accuracy_tables
    from posetracker.app.settings import AppConfig
    from posetracker.core.coco import crowd_index

    src = data_dir / "coco_mini_val2017"
    gt = json.loads((src / "annotations" / "person_keypoints_val2017.json").read_text())
    by = {}
    for a in gt["annotations"]:
        by.setdefault(a["image_id"], []).append(a)
    ranked = sorted(gt["images"], key=lambda im: -crowd_index(by.get(im["id"], [])))
    pick = [ranked[0], *[im for im in ranked if by.get(im["id"])][-2:]]
    ids = {im["id"] for im in pick}
    root = tmp_path / "mini"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    for im in pick:
        (root / "val2017" / im["file_name"]).symlink_to(src / "val2017" / im["file_name"])
    (root / "annotations" / "gt.json").write_text(json.dumps(
        dict(gt, images=pick, annotations=[a for a in gt["annotations"] if a["image_id"] in ids])))
    tables = accuracy_tables(AppConfig(), str(root), None, worst=2, candidates=True,
                             pictures_over="image")
    ap, totals, cases = tables["ap"], tables["errors"], tables["cases"]
    # one row of three panels per case, drawn over its image
    assert len(tables["pictures"]) == len(cases)
    assert all(r.ndim == 3 and r.shape[2] == 3 and r.dtype == np.uint8 for r in tables["pictures"])
    assert list(ap.index.get_level_values("path")) == list(PATHS)
    assert ap.loc[("mini", "crowdpose"), "frames associated"] == 3
    assert ap.loc[("mini", "nms"), "frames associated"] == 0
    assert 1 <= ap.loc[("mini", "auto"), "frames associated"] <= 3   # the crowded image at least
    assert ap.filter(like="AP all").notna().all().all()
    assert len(set(totals["people"])) == 1 and totals["people"].iloc[0] > 0
    assert (totals["found"] + totals["lost"] == totals["people"]).all()
    assert len(cases) <= 4
    thr = tables["thresholds"]
    assert (thr["secondary candidates"].diff().dropna() <= 0).all()     # fewer as it rises
    assert ((thr["on a joint"].dropna() >= 0) & (thr["on a joint"].dropna() <= 1)).all()
    if len(tables["deltas"]):
        d = tables["deltas"]
        assert (d["same joint merged"].diff().dropna() >= 0).all()


def test_bench_association_pictures_show_who_each_pose_went_to(tmp_path, capsys):
    """``--pictures``: a row per case, three panels (ground truth, pose NMS, the association);
    a matched pose in its person's colour, a duplicate dark grey, a lost person pale; the option
    needs images to draw and a .png, refused in one line before any model loads."""
    import json

    import cv2

    from posetracker.app.benchmarks.association import _PANEL_H, _TITLE_H, case_picture
    from posetracker.app.cli import main
    from posetracker.io.formats.coco import read_coco_gt
    from posetracker.io.render import track_colour

    joints = np.stack([standing_person(60, 40, 150), standing_person(140, 45, 145)])
    anns = [dict(id=i + 1, image_id=7, category_id=1, iscrowd=0,
                 keypoints=np.c_[j, np.full(17, 2)].ravel().tolist(),
                 bbox=[*j.min(0), *(j.max(0) - j.min(0))], area=float(np.prod(j.max(0) - j.min(0))))
            for i, j in enumerate(joints)]
    (tmp_path / "gt.json").write_text(json.dumps(dict(
        images=[dict(id=7, file_name="a.jpg", width=240, height=200)], annotations=anns,
        categories=[dict(id=1, name="person", keypoints=list(COCO17.keypoints),
                         skeleton=[[a + 1, b + 1] for a, b in COCO17.skeleton])])))
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((200, 240, 3), 90, np.uint8))
    box = person_boxes(joints)
    nms = FramePoses(joints[1:], np.ones((1, 17)), box[1:], np.array([0.9]), COCO17)  # A lost
    assoc = FramePoses(np.stack([joints[0], joints[0] + 3, joints[1]]), np.ones((3, 17)),
                       box[[0, 0, 1]], np.array([0.9, 0.5, 0.8]), COCO17)  # a duplicate of A
    case = {"set": "t", "image_id": 7, "file": "a.jpg", "crowd index": 0.1}
    row = case_picture(case, read_coco_gt(tmp_path / "gt.json"), {"nms": {7: nms},
                       "crowdpose": {7: assoc}}, tmp_path, "blank")
    assert row.dtype == np.uint8 and row.shape[0] == _TITLE_H + _PANEL_H + 6
    drawing = row[_TITLE_H: _TITLE_H + _PANEL_H]
    borders = np.flatnonzero((row == 200).all(axis=(0, 2)))
    panels = np.split(drawing, [b for b in borders[1::2]][:2], axis=1)
    assert len(panels) == 3

    def count(panel, colour, tol=8):
        return int((np.abs(panel.astype(int) - colour) <= tol).all(-1).sum())

    def has(panel, colour, tol=8):
        return count(panel, colour, tol) > 0

    a, b = np.array(track_colour(0)), np.array(track_colour(1))
    pale_a = (a + 2 * 255) // 3
    truth, by_nms, by_assoc = panels
    assert has(truth, a) and has(truth, b)
    assert has(by_nms, b) and not has(by_nms, a) and has(by_nms, pale_a)   # A lost
    # A found: in A's colour; pale only where a line's smoothed edge passes through it
    assert has(by_assoc, a) and count(by_assoc, pale_a) * 5 < count(by_nms, pale_a)
    # the duplicate (elsewhere that grey is only where a label's dark patch was smoothed)
    assert count(by_assoc, (70, 70, 70)) > 5 * count(by_nms, (70, 70, 70))
    for argv in (["--pictures", str(tmp_path / "p.png")],
                 ["--coco", str(tmp_path), "--pictures", str(tmp_path / "p.jpg")]):
        assert main(["bench", "association", "--people", "1", "--frames", "1", *argv]) == 2
        assert len([x for x in capsys.readouterr().err.splitlines() if x.strip()]) == 1
