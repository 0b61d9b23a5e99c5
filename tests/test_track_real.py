"""``posetracker track`` end to end with the real models on a shared demo video (CPU, 8 frames).

The full-HD ``two_people.mp4``: two people standing apart, a chair and a hat beside them. Checks what
the test doubles cannot: the real detector, pose estimator and tracker give each person one id, the
chair no track, and the PoseTrack file carries the derived head joints and reads back.
"""

from __future__ import annotations

import json

import numpy as np

from posetracker.cli import main
from posetracker.formats.posetrack import read_posetrack
from posetracker.schemas import POSETRACK18


def test_two_people_tracked_with_the_real_models(tmp_path, data_dir, models_dir, capsys):
    out = tmp_path / "two.json"
    code = main(["track", str(data_dir / "videos" / "two_people.mp4"), "-o", str(out),
                 "--max-frames", "8", "--device", "cpu", "--quiet",
                 "--set", f"estimator.detector.model={models_dir / 'centernet.json'}",
                 "--set", f"estimator.sppe.model={models_dir / 'movenet-thunder.json'}"])
    assert code == 0, capsys.readouterr().err
    video = read_posetrack(out)
    assert len(video.frames) == 8
    for f in video.frames:
        p = f.poses
        assert len(p) == 2  # the two people; not the chair (its pose scores about 0.014)
        centre_x = np.nanmean(p.keypoints[..., 0], axis=1)
        # ids count from 0 in order of appearance and stay with their person
        assert list(p.track_ids[np.argsort(centre_x)]) == [0, 1]
        # COCO has no head_bottom/head_top; they are derived, above the shoulders
        top, neck = POSETRACK18.index("head_top"), POSETRACK18.index("head_bottom")
        shoulders = [POSETRACK18.index("left_shoulder"), POSETRACK18.index("right_shoulder")]
        assert np.isfinite(p.keypoints[:, [top, neck]]).all()
        assert (p.keypoints[:, top, 1] < p.keypoints[:, neck, 1]).all()
        assert (p.keypoints[:, neck, 1] < p.keypoints[:, shoulders, 1].max(1)).all()
        # joints scored under the keypoint threshold are written absent
        sc = p.keypoint_scores[np.isfinite(p.keypoints).all(-1)]
        assert (sc >= 0.3).all()
    meta = json.loads(out.read_text())["meta"]
    assert meta["config"]["pipeline"]["min_pose_score"] == 0.075
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == 8
