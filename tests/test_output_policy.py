"""The output policy (``posetracker/app/output.py``) decides the written joints once, before every
sink: applied first and then written plainly, a PoseTrack file is byte for byte the file the
writer made when it applied the head derivation and the joint threshold itself."""

from __future__ import annotations

import numpy as np
import pytest

from posetracker.app.output import OutputPolicy
from posetracker.app.settings import OutputConfig
from posetracker.core.poses import Frame, FramePoses, VideoPoses
from posetracker.core.schemas import COCO17
from posetracker.io.formats.posetrack import write_posetrack17, write_posetrack18


def _video(seed: int) -> VideoPoses:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(5):
        n = int(rng.integers(0, 4))
        kp = rng.uniform(0, 400, (n, 17, 2))
        sc = rng.uniform(0, 1, (n, 17))
        kp[rng.uniform(size=(n, 17)) < 0.1] = np.nan  # some joints absent
        poses = FramePoses.from_keypoints(kp, np.where(np.isfinite(kp).all(-1), sc, 0), COCO17,
                                          track_ids=np.arange(n))
        frames.append(Frame(i, poses, image=f"v/{i:06d}.jpg"))
    return VideoPoses("v", frames, COCO17)


@pytest.mark.parametrize("fmt,write", [("posetrack18", write_posetrack18),
                                       ("posetrack17", write_posetrack17)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_policy_then_plain_writer_is_the_old_writer(tmp_path, fmt, write, seed):
    video = _video(seed)
    out = OutputConfig(format=fmt)
    write(video, tmp_path / "old.json", derive_head=out.derive_head,
          min_score=out.keypoint_threshold)
    policy = OutputPolicy.for_output(out)
    applied = VideoPoses(video.name, [Frame(f.index, policy(f.poses), image=f.image)
                                      for f in video.frames], policy.schema)
    write(applied, tmp_path / "new.json")
    assert (tmp_path / "new.json").read_bytes() == (tmp_path / "old.json").read_bytes()
    for f in applied.frames:  # every written joint clears the threshold, in the format's joints
        assert f.poses.schema is policy.schema
        assert np.all(f.poses.keypoint_scores[np.isfinite(f.poses.keypoints).all(-1)]
                      >= out.keypoint_threshold)


def test_coco_output_keeps_every_joint():
    poses = _video(3).frames[1].poses
    assert OutputPolicy.for_output(OutputConfig(format="coco"))(poses) is poses
