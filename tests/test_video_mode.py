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
    loop.motion = np.vstack([loop.motion, [0, 0]])
    poses = loop(frames[1], None)  # no keyframe: the pose estimator sees the proposals only
    assert len(poses) == 2
    assert loop.lost  # a proposal died: an adaptive run detects the next frame
    assert len(loop.proposals) == 2 and (loop.proposals[:, 0] > 2 * w).all()
    assert len(loop.carried[0]) == 0  # a proposal that died is not carried on either


def test_a_proposal_is_the_pose_box_and_decays_only_when_the_detector_missed(stages, config,
                                                                            frames):
    loop = _loop(stages, config)
    first = loop(frames[0], stages.detect([frames[0]])[0])
    # the boxes the poses came from (no motion yet), at the detector's scores: it saw them
    assert np.allclose(loop.proposals[:, :4], first.boxes)
    assert np.allclose(loop.proposals[:, 4], first.box_scores)
    scores = loop.proposals[:, 4].copy()
    assert len(loop(frames[1], None)) == 2  # not a keyframe: the detector did not look
    assert np.allclose(loop.proposals[:, 4], scores)
    assert len(loop(frames[2], np.zeros((0, 5)))) == 2  # a keyframe without either person
    assert np.allclose(loop.proposals[:, 4], scores * config.pipeline.proposals.score_decay)


def test_a_person_lost_on_the_frame_before_is_found_by_the_carried_proposal(stages, config,
                                                                              frames):
    loop = _loop(stages, config)
    loop(frames[0], stages.detect([frames[0]])[0])
    # person 1 went missing on frame 0: no pose proposes them, their proposal is carried
    loop.carried = (loop.proposals[1:], loop.motion[1:], np.ones(1, int))
    loop.proposals, loop.motion = loop.proposals[:1], loop.motion[:1]
    poses = loop(frames[1], np.zeros((0, 5)))  # and the detector misses both on frame 1
    assert len(poses) == 2 and not loop.lost  # a carried person found is no new loss
    assert len(loop.proposals) == 2 and len(loop.carried[0]) == 0
    without = _loop(stages, replace(config, pipeline=replace(
        config.pipeline, proposals=replace(config.pipeline.proposals, memory=0))))
    without(frames[0], stages.detect([frames[0]])[0])
    without.proposals, without.motion = without.proposals[:1], without.motion[:1]
    assert len(without(frames[1], np.zeros((0, 5)))) == 1


def test_a_person_leaving_the_frame_proposes_nothing(stages, config, frames):
    poses = stages.group(stages.estimate([frames[0]], [stages.detect([frames[0]])[0]])[0],
                         frames[0])
    h, w = frames[0].shape[:2]
    cfg = config.pipeline.proposals
    boxes, _, extents = predict_boxes(poses, None, cfg, (h, w))
    assert len(boxes) == 2
    # the previous extents one person's width to the left: moving right, still inside
    boxes, _, _ = predict_boxes(poses, extents - [50, 0, 50, 0], cfg, (h, w))
    assert len(boxes) == 2
    # the same people at the right border, most of each proposal beyond it: leaving
    dx = w - poses.keypoints[..., 0].min() - 5
    moved = replace(poses, keypoints=poses.keypoints + [dx, 0], boxes=poses.boxes + [dx, 0, dx, 0])
    assert len(predict_boxes(moved, None, cfg, (h, w))[0]) == 0


def test_adaptive_detects_on_the_first_frame_and_after_a_loss(stages, config, frames):
    counting = Counting(stages)
    loop = _loop(counting, config, detect_every=8, keyframes="adaptive")
    assert len(loop(frames[0], None)) == 2 and counting.calls == 1  # nothing known yet
    assert len(loop(frames[1], None)) == 2 and counting.calls == 1  # both tracked, nothing new
    w = loop.proposals[0, 2] - loop.proposals[0, 0]
    loop.proposals = np.vstack([loop.proposals, [0, 300, w, 900, 0.8]])  # a track to lose
    loop.motion = np.vstack([loop.motion, [0, 0]])
    loop(frames[2], None)
    assert counting.calls == 1 and loop.lost
    assert len(loop(frames[3], None)) == 2 and counting.calls == 2


def test_adaptive_decides_on_the_motion_cells_the_reader_made(stages, config, frames, video):
    from posetracker.app.pipeline import _read
    from posetracker.app.video import cells

    # the reader's cells are the loop's own: the mean of the channels on the grid, exactly
    item = _read(iter(open_source(str(video), max_frames=1)), StageTimes(("read",)), 0,
                 motion=True)
    image = item.frame.image
    assert np.array_equal(item.motion, image[::8, ::8].mean(-1, dtype=np.float32))
    assert _read(iter([item.frame]), StageTimes(("read",)), 0).motion is None  # not asked
    counting = Counting(stages)
    loop = _loop(counting, config, detect_every=8, keyframes="adaptive")
    loop(frames[0], None, motion=cells(frames[0]))
    loop(frames[1], None, motion=cells(frames[1]))
    assert counting.calls == 1  # both people tracked, the frame still
    loop(frames[2], None, motion=cells(frames[2]) + 100)  # given cells that all changed
    assert counting.calls == 2


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


class Recording:
    """The stages, recording how many frames and boxes each pose-estimator call got."""

    def __init__(self, stages):
        self.stages, self.calls = stages, []

    def __getattr__(self, name):
        return getattr(self.stages, name)

    def estimate(self, images, detections):
        self.calls.append((len(images), sum(len(d) for d in detections)))
        return self.stages.estimate(images, detections)


@pytest.mark.parametrize("mode", ["sequential", "threaded"])
def test_the_detector_boxes_are_estimated_ahead_with_the_same_poses(stages, config, video, mode):
    """The pipeline estimates the detector's boxes of several frames in one call, ahead of the
    video loop, which estimates only the proposals left over: the poses are those of the loop
    estimating every box itself, frame by frame, and no box is estimated twice."""
    dropped = DropoutStages(stages, 0.4, seed=0)  # leaves proposals for the loop to estimate
    frames = list(indexed(open_source(str(video), max_frames=8), dropped.frame_index))
    alone = Recording(dropped)
    loop = _loop(alone, config)
    expected = [loop(f.image, dropped.detect([f.image])[0]) for f in frames]
    ahead = Recording(dropped)
    cfg = replace(config, pipeline=replace(config.pipeline, mode=mode))
    got = [p for _, p in iter_pipeline(frames, ahead, None, PipelineOptions.from_config(cfg))]
    assert [len(p) for p in got] == [len(p) for p in expected]
    for a, b in zip(got, expected):
        # OpenVINO gives a crop the same heatmaps to 1e-5 whatever batch it is in
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)
    boxes = lambda calls: sum(n for _, n in calls)  # noqa: E731
    assert boxes(ahead.calls) == boxes(alone.calls)
    assert len(ahead.calls) > len(frames) // 2  # the loop's calls for the proposals are there
    if mode == "sequential":  # chunks of frames: the detector's boxes of 4 frames in one call
        assert max(f for f, _ in ahead.calls) == config.estimator.frame_batch > 1


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


def test_proposals_and_detector_boxes_pair_one_to_one():
    from posetracker.app.video import merge_proposals

    dets = np.array([[100, 100, 200, 300, 0.9]])
    # two people crossing: both proposals overlap the one box the detector kept
    proposals = np.array([[100, 100, 200, 300, 0.8], [130, 100, 230, 300, 0.7]])
    boxes, n_det, kept = merge_proposals(dets, proposals, 0.5)
    assert n_det == 1 and kept.tolist() == [1]  # the box accounts for the first person only
    assert np.allclose(boxes, [dets[0], proposals[1]])
    boxes, n_det, kept = merge_proposals(None, proposals, 0.5)
    assert n_det == 0 and kept.tolist() == [0, 1] and len(boxes) == 2


def test_a_lost_proposal_is_carried_on_until_memory_unless_it_died():
    from posetracker.app.video import carry_proposals

    cfg = ProposalConfig(memory=2, score_decay=0.5)
    proposals = np.array([[100, 100, 200, 300, 0.8], [400, 100, 500, 300, 0.8],
                          [700, 100, 800, 300, 0.8], [1000, 100, 1100, 300, 0.8]])
    motion = np.array([[10, 0], [10, 0], [10, 0], [10, 0]])
    age = np.array([0, 0, 2, 0])
    died = np.array([False, True, False, False])
    found = np.array([[1012, 100, 1112, 300, 0.8]])  # the fourth person's pose proposes again
    boxes, moved, ages = carry_proposals(proposals, motion, age, died, found, cfg, (720, 1280),
                                         keyframe=True)
    # only the first: the second died (background), the third is carried too long already
    assert np.allclose(boxes, [[110, 100, 210, 300, 0.4]]) and ages.tolist() == [1]
    assert moved.tolist() == [[10, 0]]
    boxes, _, _ = carry_proposals(proposals[:1], motion[:1], age[:1], died[:1], found, cfg,
                                  (720, 1280), keyframe=False)
    assert boxes[0, 4] == 0.8  # the detector did not look: no evidence against the person
    none = carry_proposals(proposals, motion, age, died, found, replace(cfg, memory=0),
                           (720, 1280), keyframe=True)
    assert len(none[0]) == 0


def test_the_motion_test_searches_no_shift_when_nothing_changed(monkeypatch):
    from posetracker.app import video
    from posetracker.app.video import Keyframes, cells

    def search(*_):
        raise AssertionError("a whole-frame shift was searched for")

    scene = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    keys = Keyframes(PipelineConfig(detect_every=8, keyframes="adaptive"))
    monkeypatch.setattr(video, "_aligned_change", search)
    assert not keys.wanted(False, cells(scene), cells(scene), np.zeros((0, 5)))


def test_bench_runs_each_mode_on_models_with_tracks_threads(config, video, monkeypatch):
    import posetracker.app.benchmarks.video as bench

    built, warmed = [], []

    def build(cfg):
        built.append(PipelineOptions.from_config(cfg).torch_threads)
        return f"stages {len(built)}", "cpu"

    monkeypatch.setattr(bench, "run_once", lambda v, st, cfg, start, n: warmed.append((st, n)))
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    stages_for = bench.ModeStages(build)
    got = {m: stages_for(bench.mode_config(config, m, 8), video, 0)
           for m in ("frame", "1", "2", "adaptive")}
    # the pose workers and the detector share the cores every frame; the loop gets them all
    assert built == [1, 4]
    assert got["frame"] == got["1"] != got["2"] == got["adaptive"]
    assert warmed == [("stages 1", 1), ("stages 2", 1)]  # each set warmed once, on one frame


def test_bench_runs_dropout_once_per_seed_against_one_intact_run(config, video, monkeypatch):
    import argparse

    import posetracker.app.benchmarks.video as bench

    runs = []

    def run_once(v, stages, cfg, start, n):
        runs.append(getattr(stages, "seed", "intact"))
        return [], {}

    monkeypatch.setattr(bench, "run_once", run_once)
    monkeypatch.setattr(bench, "match_counts", lambda ref, other: dict.fromkeys(
        ("ref", "m50", "m90", "other", "other50", "misplaced"), 0))
    args = argparse.Namespace(modes="1", dropouts="40%", dropout_modes="1", adaptive_every=8,
                              start=0, max_frames=5)
    rows = bench.video_rows(video, bench.ModeStages(lambda cfg: ("stages", "cpu")), config,
                            args, [3, 7])
    assert runs == ["intact", "intact", 3, 7]  # the warm-up, the intact run, one per seed
    assert [(r["dropout"], r["seed"]) for r in rows] == [("none", None), ("40%", 3), ("40%", 7)]
    assert main(["bench", "video", str(video), "--seeds", "0,x"]) == 2  # before any model loads


def test_bench_bursts_move_with_the_seed_and_shares_follow_it():
    """Burst dropout drops every box of a quarter of the frames, in runs of 5; each seed moves
    the bursts (seeds 0-3 cover every frame once); a share's draws depend on the seed too."""

    class Boxes:
        def detect(self, images):
            return [np.ones((4, 5)) for _ in images]

    def dropped(rate, seed, frames=40):
        d = DropoutStages(Boxes(), rate, seed)
        images = [np.zeros((2, 2, 3), np.uint8) for _ in range(frames)]
        d.frame_index.update({id(im): i for i, im in enumerate(images)})
        return np.array([len(b) == 0 for b in d.detect(images)]), \
            np.array([4 - len(b) for b in d.detect(images)])

    bursts = [dropped("burst", s)[0] for s in range(4)]
    for b in bursts:
        assert b.sum() == 10 and all(len(set(b[i: i + 5])) == 1 for i in range(0, 40, 5))
    assert np.flatnonzero(bursts[0])[:5].tolist() == [5, 6, 7, 8, 9]  # seed 0 as before seeds
    assert (np.sum(bursts, axis=0) == 1).all()  # seeds 0-3: every frame in one burst
    assert not np.array_equal(dropped(0.4, 0)[1], dropped(0.4, 1)[1])


def test_bench_counts_misplaced_apart_from_extra_poses():
    from posetracker.core.poses import FramePoses
    from posetracker.core.schemas import COCO17

    rng = np.random.default_rng(0)
    person = np.column_stack([rng.uniform(100, 160, 17), rng.uniform(100, 260, 17)])
    mirrored = person.copy()
    mirrored[:, 0] = 260 - mirrored[:, 0]  # the same extent, the joints elsewhere
    ref = FramePoses.from_keypoints(person[None], np.ones((1, 17)), COCO17)
    other = FramePoses.from_keypoints(np.stack([mirrored, person + [400, 0]]), np.ones((2, 17)),
                                      COCO17)
    c = match_counts([ref], [other])
    assert c["m50"] == 0 and c["misplaced"] == 1 and c["other"] - c["other50"] == 2


def test_per_box_estimates_join_in_order_and_refuse_mismatched_parts():
    import torch

    from posetracker.core.intermediates import FrameIntermediates

    def part(m: int, start: float, heatmaps: bool = False) -> FrameIntermediates:
        return FrameIntermediates(
            boxes=np.full((m, 4), start), box_scores=np.full(m, start),
            affines=torch.full((m, 2, 3), start, dtype=torch.float64),
            keypoints=np.full((m, 17, 2), start), keypoint_scores=np.full((m, 17), start),
            heatmaps=torch.zeros(m, 17, 4, 3) if heatmaps else None)

    joined = part(2, 1.0).join(part(3, 2.0))
    assert joined.boxes[:, 0].tolist() == [1, 1, 2, 2, 2]
    assert joined.affines[:, 0, 0].tolist() == [1, 1, 2, 2, 2]
    assert joined.keypoint_scores.shape == (5, 17) and joined.heatmaps is None
    assert part(1, 1.0, True).join(part(2, 2.0, True)).heatmaps.shape == (3, 17, 4, 3)
    with pytest.raises(ValueError, match="same outputs"):
        part(1, 1.0, True).join(part(1, 2.0))
    with pytest.raises(ValueError, match="geometries"):
        part(1, 1.0).join(replace(part(1, 2.0), heatmap_stride=4.0))
