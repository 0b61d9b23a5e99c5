"""Video mode (``posetracker.app.video``): proposals from the previous frame's poses, keyframe
detection, on real frames of ``two_people.mp4`` (two people standing apart, a chair beside them)
with the real default models (RTMDet-nano, TinyPose-256) on the CPU.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from posetracker.app.api import PoseTracker, build_stages
from posetracker.app.benchmarks.video import DropoutStages, indexed, match_counts, oks_matrix
from posetracker.app.cli import main
from posetracker.app.pipeline import PipelineOptions, iter_pipeline
from posetracker.app.settings import AppConfig, PipelineConfig, ProposalConfig, load_app_config
from posetracker.app.video import VideoLoop, predict_boxes
from posetracker.core.errors import ConfigError
from posetracker.core.timing import StageTimes
from posetracker.io.sources import open_source
from posetracker.tracker.factory import make_tracker


def _models(models_dir) -> list[str]:
    return [f"estimator.detector.model={models_dir / 'rtmdet-nano-person.onnx'}",
            f"estimator.sppe.model={models_dir / 'tinypose-256x192.xml'}"]


@pytest.fixture(scope="module")
def config(models_dir) -> AppConfig:
    return load_app_config(None, _models(models_dir))


@pytest.fixture(scope="module")
def stages(config):
    return build_stages(config)[0]


@pytest.fixture(scope="module")
def video(data_dir):
    return data_dir / "videos" / "two_people.mp4"


@pytest.fixture(scope="module")
def frames(video):
    return [f.image for f in open_source(str(video), max_frames=4)]


def _pipeline(config: AppConfig, **kw) -> PipelineConfig:
    return replace(config.pipeline, **kw)


def _loop(stages, config, **kw) -> VideoLoop:
    return VideoLoop(stages, _pipeline(config, **kw), StageTimes(("detect", "pose", "group")))


class Counting:
    """The stages, counting the detector's calls."""

    def __init__(self, stages):
        self.stages, self.calls = stages, 0

    def __getattr__(self, name):
        return getattr(self.stages, name)

    def detect(self, images):
        self.calls += 1
        return self.stages.detect(images)


def test_detect_every_and_keyframes_are_validated():
    with pytest.raises(ValueError, match="detect_every"):
        PipelineConfig(detect_every=0)
    with pytest.raises(ValueError, match="keyframes"):
        PipelineConfig(keyframes="sometimes")
    with pytest.raises(ValueError, match="proposals.enabled"):
        PipelineConfig(detect_every=2, proposals=ProposalConfig(enabled=False))
    with pytest.raises(ValueError, match="score_decay"):
        ProposalConfig(score_decay=0)
    with pytest.raises(ConfigError, match="detect_every"):
        load_app_config(None, ["pipeline.detect_every=0"])
    assert PipelineOptions.from_config(AppConfig(pipeline=PipelineConfig(
        proposals=ProposalConfig(enabled=False)))).video is None


def test_a_box_the_detector_drops_is_recovered_by_the_proposal(stages, config, frames):
    loop = _loop(stages, config)
    first = loop(frames[0], stages.detect([frames[0]])[0])
    assert len(first) == 2 and len(loop.proposals) == 2
    dets = stages.detect([frames[1]])[0]
    intact = stages.group(stages.estimate([frames[1]], [dets])[0], frames[1])
    assert len(intact) == 2
    kept = dets[1:]  # the detector loses its best box on frame 1
    alone = stages.group(stages.estimate([frames[1]], [kept])[0], frames[1])
    assert len(alone) == 1  # every frame handled as the first: the person is gone
    poses = loop(frames[1], kept)
    assert len(poses) == 2
    oks = oks_matrix(intact, poses)
    assert (oks.max(1) >= 0.8).all()  # the same two people, at nearly the same joints
    assert not loop.lost


def test_a_proposal_over_background_dies_at_once(stages, config, frames):
    loop = _loop(stages, config)
    loop(frames[0], stages.detect([frames[0]])[0])
    person = loop.proposals[0]
    w = person[2] - person[0]
    ghost = person.copy()  # the same box on the image's left edge: floor and wall only
    ghost[[0, 2]] = [0, w]
    assert (loop.proposals[:, 0] > 2 * w).all()  # no person there
    loop.proposals = np.vstack([loop.proposals, ghost])
    poses = loop(frames[1], None)  # no keyframe: the pose estimator sees the proposals only
    assert len(poses) == 2
    assert loop.lost  # a proposal died: an adaptive run detects the next frame
    assert len(loop.proposals) == 2 and (loop.proposals[:, 0] > 2 * w).all()


def test_a_person_leaving_the_frame_proposes_nothing(stages, config, frames):
    poses = stages.group(stages.estimate([frames[0]], [stages.detect([frames[0]])[0]])[0],
                         frames[0])
    h, w = frames[0].shape[:2]
    cfg = config.pipeline.proposals
    boxes, extents = predict_boxes(poses, None, cfg, (h, w))
    assert len(boxes) == 2
    # the previous extents one person's width to the left: moving right, still inside
    boxes, _ = predict_boxes(poses, extents - [50, 0, 50, 0], cfg, (h, w))
    assert len(boxes) == 2
    # the same people at the right border, most of each proposal beyond it: leaving
    moved = replace(poses, keypoints=poses.keypoints
                    + [w - poses.keypoints[..., 0].min() - 5, 0])
    assert len(predict_boxes(moved, None, cfg, (h, w))[0]) == 0


def test_adaptive_detects_on_the_first_frame_and_after_a_loss(stages, config, frames):
    counting = Counting(stages)
    loop = _loop(counting, config, detect_every=8, keyframes="adaptive")
    assert len(loop(frames[0], None)) == 2 and counting.calls == 1  # nothing known yet
    assert len(loop(frames[1], None)) == 2 and counting.calls == 1  # both tracked, nothing new
    w = loop.proposals[0, 2] - loop.proposals[0, 0]
    loop.proposals = np.vstack([loop.proposals, [0, 300, w, 900, 0.8]])  # a track to lose
    loop(frames[2], None)
    assert counting.calls == 1 and loop.lost
    assert len(loop(frames[3], None)) == 2 and counting.calls == 2


def test_keyframes_follow_detect_every_and_dropout_is_recovered(stages, config, video):
    """Through the pipeline, threaded, with the detector losing 40 % of its boxes (seeded)."""
    def run(pc: PipelineConfig, st, tracker: str = "iou"):
        cfg = replace(config, pipeline=pc, tracker=replace(config.tracker, kind=tracker))
        src = open_source(str(video), max_frames=6)
        return [p for _, p in iter_pipeline(indexed(src, getattr(st, "frame_index", None)), st,
                                             make_tracker(cfg.tracker),
                                             PipelineOptions.from_config(cfg))]

    every = _pipeline(config, proposals=replace(config.pipeline.proposals, enabled=False))
    reference = run(every, stages)
    counting = Counting(stages)
    fourth = run(_pipeline(config, detect_every=4), counting, "alphapose")
    assert counting.calls == 2  # frames 0 and 4 (one frame per call: det batches of 1 here)
    c = match_counts(reference, fourth)
    assert c["ref"] == 12 and c["m50"] == 12 and c["other"] == 12
    dropped = DropoutStages(stages, 0.4, seed=0)
    lossy_frame = run(every, dropped)
    lossy_video = run(config.pipeline, DropoutStages(stages, 0.4, seed=0))
    lost = match_counts(reference, lossy_frame)["m50"]
    assert lost <= 9, lost  # what dropout costs frame by frame
    c = match_counts(reference, lossy_video)
    # a box lost on frame 0 has no frame before it to come back from
    assert c["m50"] >= 11 and c["other"] == c["other50"], ([len(p) for p in lossy_video], c)
    assert {len(set(np.concatenate([p.track_ids for p in lossy_video])))} == {2}


def test_video_mode_through_the_api_and_the_cli(tmp_path, video, models_dir, capsys,
                                                shared_models):
    tracker = PoseTracker(load_app_config(None, _models(models_dir) + [
        "pipeline.keyframes=adaptive", "pipeline.detect_every=4", "pipeline.mode=sequential"]))
    got = [len(f.poses) for f in tracker.track(video, max_frames=3)]
    assert got == [2, 2, 2]
    out = tmp_path / "t.json"
    sets = [a for s in _models(models_dir) + ["pipeline.detect_every=2"] for a in ("--set", s)]
    code = main(["track", str(video), "-o", str(out), "--max-frames", "3", "--quiet",
                 "--device", "cpu", "--tracker", "poseflow", *sets])
    assert code == 0, capsys.readouterr().err
    code = main(["track", str(video), "-o", str(out), "--max-frames", "3", "--quiet",
                 "--device", "cpu", "--set", "pipeline.detect_every=0"])
    assert code == 2 and "detect_every" in capsys.readouterr().err


def test_poses_input_is_unaffected_by_video_mode(tmp_path, capsys):
    from tests.test_tracker_cli import _results

    src = tmp_path / "poses.json"
    src.write_text(json.dumps(_results(6, False)))
    outs = []
    for sets in ([], ["--set", "pipeline.detect_every=4", "--set", "pipeline.keyframes=adaptive"],
                 ["--set", "pipeline.proposals.enabled=false"]):
        outs.append(tmp_path / f"out{len(outs)}.json")
        assert main(["track", "--poses", str(src), "-o", str(outs[-1]), *sets]) == 0
    frames = [json.loads(o.read_text())["annotations"] for o in outs]
    assert frames[0] == frames[1] == frames[2] and len(frames[0]) == 12


def test_adaptive_motion_test_ignores_a_camera_pan_but_not_a_newcomer():
    from posetracker.app.video import Keyframes, cells

    rng = np.random.default_rng(0)
    scene = rng.integers(0, 255, (240, 400, 3), dtype=np.uint8)
    keys = Keyframes(PipelineConfig(detect_every=8, keyframes="adaptive"))
    before, after = cells(scene[:, 16:336]), cells(scene[:, 0:320])  # the camera pans 16 px
    no_boxes = np.zeros((0, 5))
    assert not keys.wanted(False, after, before, no_boxes)
    newcomer = scene[:, 0:320].copy()
    newcomer[40:200, 100:160] = 255 - newcomer[40:200, 100:160]  # something moved in
    assert keys.wanted(False, cells(newcomer), before, no_boxes)
    # ... unless a proposal box covers it (a known person moving)
    assert not keys.wanted(False, cells(newcomer), before, np.array([[96, 32, 168, 208, 0.9]]))
    assert keys.wanted(True, after, before, no_boxes)  # a track was lost
