"""``posetracker track`` end to end with the real default models (RTMDet-nano, TinyPose-256) on a
shared demo video (CPU, 8 frames).

The full-HD ``two_people.mp4``: two people standing apart, a chair and a hat beside them. Checks what
the test doubles cannot: the real detector, pose estimator and tracker give each person one id, the
chair no track, and the PoseTrack file carries the derived head joints and reads back.
"""

from __future__ import annotations

import json

import numpy as np

from posetracker.app.cli import main
from posetracker.core.schemas import POSETRACK18
from posetracker.io.formats.posetrack import read_posetrack


def test_two_people_tracked_with_the_real_models(tmp_path, data_dir, models_dir, capsys):
    out = tmp_path / "two.json"
    code = main(["track", str(data_dir / "videos" / "two_people.mp4"), "-o", str(out),
                 "--max-frames", "8", "--device", "cpu", "--quiet",
                 "--set", f"estimator.detector.model={models_dir / 'rtmdet-nano-person.onnx'}",
                 "--set", f"estimator.sppe.model={models_dir / 'tinypose-256x192.xml'}"])
    assert code == 0, capsys.readouterr().err
    video = read_posetrack(out)
    assert len(video.frames) == 8
    left_ids = set()
    for f in video.frames:
        p = f.poses
        assert len(p) == 2  # the two people; not the chair
        centre_x = np.nanmean(p.keypoints[..., 0], axis=1)
        # ids count from 0 (both people appear in frame 0) and stay with their person
        assert sorted(p.track_ids) == [0, 1]
        left_ids.add(int(p.track_ids[np.argmin(centre_x)]))
        # COCO has no head_bottom/head_top; they are derived, above the shoulders
        top, neck = POSETRACK18.index("head_top"), POSETRACK18.index("head_bottom")
        shoulders = [POSETRACK18.index("left_shoulder"), POSETRACK18.index("right_shoulder")]
        assert np.isfinite(p.keypoints[:, [top, neck]]).all()
        assert (p.keypoints[:, top, 1] < p.keypoints[:, neck, 1]).all()
        assert (p.keypoints[:, neck, 1] < p.keypoints[:, shoulders, 1].max(1)).all()
        # joints scored under the keypoint threshold are written absent
        sc = p.keypoint_scores[np.isfinite(p.keypoints).all(-1)]
        assert (sc >= 0.5).all()
    assert len(left_ids) == 1
    meta = json.loads(out.read_text())["meta"]
    assert meta["config"]["pipeline"]["min_pose_score"] == 0.15
    # estimator.backend auto on the CPU: the fastest installed runtime per format (test extra)
    assert meta["runtimes"] == {"detector": {"backend": "onnxruntime", "precision": "fp32"},
                                "sppe": {"backend": "openvino", "precision": "fp32"},
                                "screen": {"backend": "openvino", "precision": "fp32"}}
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == 8


def test_single_image_track_keeps_the_people_estimate_finds(tmp_path, data_dir, models_dir,
                                                             capsys):
    # One frame is shorter than PF-NMS's min_flow_len: the flows had no chance to grow, so the
    # rule must not drop them (it used to write 0 people here).
    image = data_dir / "coco_mini_val2017" / "val2017" / "000000000139.jpg"
    models = ["--set", f"estimator.detector.model={models_dir / 'rtmdet-nano-person.onnx'}",
              "--set", f"estimator.sppe.model={models_dir / 'tinypose-256x192.xml'}"]
    est, trk = tmp_path / "est.json", tmp_path / "trk.json"
    assert main(["estimate", str(image), "-o", str(est), "--device", "cpu", "--quiet",
                 "--detector", str(models_dir / "rtmdet-nano-person.onnx"),
                 "--pose-model", str(models_dir / "tinypose-256x192.xml")]) == 0, capsys.readouterr().err
    assert main(["track", str(image), "-o", str(trk), "--device", "cpu", "--quiet",
                 *models]) == 0, capsys.readouterr().err
    # track drops poses scored below tracking.min_pose_score (0.15) before tracking
    people = [r for r in json.loads(est.read_text()) if r["score"] >= 0.15]
    tracked = json.loads(trk.read_text())["annotations"]
    assert len(people) >= 1 and len(tracked) == len(people)
