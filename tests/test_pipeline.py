"""The streaming pipeline with test-double stages: order, batching, bounded queues, timings,
failure propagation with clean shutdown, and the sequential mode giving the same output."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

import numpy as np
import pytest
from pipeline_doubles import Boom, FakeStages, NearestTracker, WindowTracker, make_frames

from posetracker.app.pipeline import PipelineOptions, run_pipeline

SEQUENTIAL = PipelineOptions(mode="sequential")


class Collect:
    def __init__(self):
        self.frames = []
        self.poses = []

    def __call__(self, frame, poses):
        self.frames.append(frame.index)
        self.poses.append(poses)


def _no_pipeline_threads():
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith("posetracker-")]:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("mode", ["threaded", "sequential"])
def test_every_frame_in_order_with_track_ids(mode):
    out = Collect()
    res = run_pipeline(make_frames(23), FakeStages(people=3), NearestTracker(), out,
                       PipelineOptions(det_batch=4, pose_batch=5, queue_size=2, mode=mode))
    assert res.mode == mode
    assert out.frames == list(range(23))
    assert res.frames == 23 and res.people == 69
    for p in out.poses:
        assert p.track_ids is not None and len(p.track_ids) == 3
    # the synthetic people move slowly, so each keeps its id all along
    assert all(list(p.track_ids) == [0, 1, 2] for p in out.poses)
    assert set(res.times.ms_per_frame()) == {"read", "detect", "pose", "group", "track", "write"}
    assert _no_pipeline_threads()


@pytest.mark.parametrize("mode", ["threaded", "sequential"])
def test_windowed_tracker_frames_come_out_final_and_in_order(mode):
    out = Collect()
    res = run_pipeline(make_frames(11), FakeStages(people=2), WindowTracker(window=4), out,
                       PipelineOptions(det_batch=3, pose_batch=2, mode=mode))
    assert out.frames == list(range(11)) and res.frames == 11
    # final ids (100, 101), renumbered in order of first appearance; provisional ones never
    assert all(list(p.track_ids) == [0, 1] for p in out.poses)


def test_threaded_and_sequential_agree():
    a, b = Collect(), Collect()
    run_pipeline(make_frames(17), FakeStages(people=2), NearestTracker(), a,
                 PipelineOptions(det_batch=3, pose_batch=4))
    run_pipeline(make_frames(17), FakeStages(people=2), NearestTracker(), b,
                 PipelineOptions(det_batch=3, pose_batch=4, mode="sequential"))
    assert a.frames == b.frames
    for p, q in zip(a.poses, b.poses):
        np.testing.assert_array_equal(p.keypoints, q.keypoints)
        np.testing.assert_array_equal(p.track_ids, q.track_ids)


def test_stages_run_on_their_own_threads():
    stages = FakeStages()
    run_pipeline(make_frames(8), stages, None, Collect(), PipelineOptions(det_batch=2))
    assert {"posetracker-detect", "posetracker-pose-0"} <= stages.threads


def test_parallel_pose_workers_keep_frame_order():
    class Jittery(FakeStages):
        def estimate(self, images, detections):
            # every third batch is slow: the others must wait their turn, not pile up
            time.sleep(0.03 if int(images[0][0, 0, 0]) % 3 == 0 else 0.001)
            return super().estimate(images, detections)

    stages = Jittery(people=2)
    out = Collect()
    run_pipeline(make_frames(60), stages, NearestTracker(), out,
                 PipelineOptions(det_batch=2, pose_batch=2, pose_workers=3))
    assert out.frames == list(range(60))
    assert {"posetracker-pose-0", "posetracker-pose-1", "posetracker-pose-2"} <= stages.threads
    assert all(list(p.track_ids) == [0, 1] for p in out.poses)


def test_stages_overlap():
    # detector and pose stage each sleep 20 ms per call: overlapped, the run takes about
    # max(stage) per batch, not the sum
    opts = PipelineOptions(det_batch=1, pose_batch=1, pose_max_frames=1, queue_size=2)
    t0 = time.perf_counter()
    run_pipeline(make_frames(20), FakeStages(sleep=0.02), None, Collect(),
                 dataclasses.replace(opts, mode="sequential"))
    seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_pipeline(make_frames(20), FakeStages(sleep=0.02), None, Collect(), opts)
    thr = time.perf_counter() - t0
    assert thr < 0.75 * seq, (thr, seq)


@pytest.mark.parametrize("stage", ["detect", "pose"])
def test_stage_error_reaches_caller_and_keeps_finished_frames(stage):
    out = Collect()
    with pytest.raises(Boom, match=f"{stage} at frame 13"):
        run_pipeline(make_frames(40), FakeStages(fail_at=13, fail_stage=stage), NearestTracker(),
                     out, PipelineOptions(det_batch=2, pose_batch=2, queue_size=2))
    assert out.frames == list(range(len(out.frames)))  # a prefix, in order
    assert len(out.frames) <= 13
    assert _no_pipeline_threads()


def test_reader_error_reaches_caller():
    def frames():
        yield from make_frames(5)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_pipeline(frames(), FakeStages(), None, Collect())
    assert _no_pipeline_threads()


def test_writer_error_and_interrupt_stop_all_stages():
    def write(frame, poses):
        if frame.index == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(make_frames(1000), FakeStages(), None, write, PipelineOptions(queue_size=2))
    assert _no_pipeline_threads()


def test_queues_are_bounded(monkeypatch):
    """Every queue the pipeline makes has a maximum size, and the reader does not run ahead of a
    slow writer by more than the queues and batches can hold."""
    made = []
    real_queue = queue.Queue

    def spy(maxsize=0):
        q = real_queue(maxsize)
        made.append(q)
        return q

    monkeypatch.setattr("posetracker.app.pipeline.queue.Queue", spy)
    read = []

    def frames():
        for f in make_frames(200):
            read.append(f.index)
            yield f

    written = []
    opts = PipelineOptions(det_batch=2, pose_batch=4, pose_max_frames=2, queue_size=3,
                           pose_workers=2)

    def slow_write(frame, poses):
        # frames read but not yet written: 5 queues x 3, the detector's batch (2), two pose
        # workers' batches (2 each), and one frame in the hands of the reader, the group and
        # track stages and this writer each
        assert len(read) - len(written) <= 5 * 3 + 2 + 2 * 2 + 4
        written.append(frame.index)
        time.sleep(0.002)

    run_pipeline(frames(), FakeStages(people=1), None, slow_write, opts)
    assert len(made) == 5 and all(q.maxsize == 3 for q in made)
    assert written == list(range(200))


def test_empty_source():
    res = run_pipeline(iter(()), FakeStages(), None, Collect())
    assert res.frames == 0 and res.fps == 0.0


def test_summary_text():
    res = run_pipeline(make_frames(5), FakeStages(people=2), None, Collect(), SEQUENTIAL)
    s = res.text()
    assert "5 frames" in s and "2.00 people/frame" in s and "detect" in s
    assert res.as_dict()["frames"] == 5


def test_options_validated():
    with pytest.raises(ValueError):
        PipelineOptions(queue_size=0)
    with pytest.raises(ValueError, match="mode"):
        PipelineOptions(mode="parallel")


def test_options_from_config_carry_the_mode():
    from posetracker.app.settings import AppConfig, PipelineConfig

    seq = PipelineOptions.from_config(AppConfig(pipeline=PipelineConfig(mode="sequential")), 4)
    assert seq.mode == "sequential" and seq.pose_workers == 1
    assert PipelineOptions.from_config(AppConfig(), 4).mode == "threaded"


# -- the real estimator's stages (real detector, toy pose network) --------------------------------------

@pytest.fixture(scope="module")
def toy_estimator(models_dir):
    """The RMPE estimator with the real Yolo-Fastest person detector and a toy SPPE that puts
    every joint at the brightest crop pixel (the pose network is not what is tested here)."""
    import torch
    from torch import nn

    from posetracker.estimators.config import EstimatorConfig
    from posetracker.estimators.rmpe import PersonDetector, RMPEEstimator, load_detector
    from posetracker.estimators.sppe import SPPE

    class Brightest(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, x, return_heatmaps=False, candidates=0):
            m, _, h, w = x.shape
            g = x.mean(1)
            val, idx = g.reshape(m, -1).max(1)
            xy = torch.stack([(idx % w).float(), (idx // w).float()], -1)
            k = torch.linspace(0.5, 1.0, 17)
            out = {"keypoints": xy[:, None] + k[None, :, None] * 3,
                   "scores": (val / 255)[:, None] * k[None]}
            if return_heatmaps:
                out["heatmaps"] = nn.functional.avg_pool2d(g[:, None] / 255, 4).expand(
                    m, 17, h // 4, w // 4)
            return out

    config = EstimatorConfig(device="cpu", frame_batch=2)
    det = PersonDetector(load_detector(str(models_dir / "yolo-fastest-1.1_body.cfg")),
                         conf_threshold=0.2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two stages share the 2-core test machine; no OpenMP spinning
    yield RMPEEstimator(SPPE(Brightest(), (64, 48), flip_test=False, batch_size=3), det, config)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("association", ["nms", "crowdpose", "auto"])
def test_rmpe_stages_match_the_estimator(toy_estimator, data_dir, association):
    from posetracker.app.build import build_grouping
    from posetracker.app.pipeline import RMPEStages
    from posetracker.estimators.rmpe import RMPEEstimator
    from posetracker.io.sources import open_source

    toy = toy_estimator
    est = RMPEEstimator(toy.sppe, toy.detector, toy.config,
                        grouping=build_grouping(association, toy.config))
    src = open_source(data_dir / "videos" / "basketball_crossing.mp4", max_frames=4, stride=30)
    stages = RMPEStages(est)
    a, b = Collect(), Collect()
    opts = PipelineOptions(det_batch=2, pose_batch=3, pose_workers=2)
    res = run_pipeline(src, stages, None, a, opts)
    run_pipeline(src, stages, None, b, dataclasses.replace(opts, mode="sequential"))
    assert a.frames == b.frames == [0, 30, 60, 90]
    assert res.people > 0
    for p, q in zip(a.poses, b.poses):
        np.testing.assert_allclose(p.keypoints, q.keypoints)
    if association == "nms":  # the split stages give what the estimator gives in one call
        whole = est.estimate([f.image for f in src])
        for p, q in zip(a.poses, whole):
            np.testing.assert_allclose(p.keypoints, q.keypoints, atol=1e-6)
            np.testing.assert_allclose(p.scores, q.scores, atol=1e-9)


def test_looped_input_for_the_memory_check():
    from posetracker.app.benchmarks.pipeline import looped

    frames = list(looped(list(make_frames(3, start=5)), 3))
    assert [f.index for f in frames] == list(range(9))
    assert frames[3].name == frames[0].name


def test_stage_threads_set_the_runs_torch_thread_count(monkeypatch):
    # torch.set_num_threads on one thread does not reach OpenMP in threads started later (a stage
    # thread's convolutions then use every core); each stage thread must set the run's count
    # itself. The count is passed down in the options, never read back from the caller.
    import torch

    calls: list[tuple[str, int]] = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "get_num_threads", lambda: pytest.fail("read back"))
    monkeypatch.setattr(torch, "set_num_threads",
                        lambda n: calls.append((threading.current_thread().name, n)))
    try:
        run_pipeline(make_frames(6), FakeStages(), None, Collect(),
                     PipelineOptions(det_batch=2, torch_threads=3))
    finally:
        monkeypatch.setattr(torch, "set_num_threads", real)
    names = {name for name, n in calls if n == 3}
    assert {"posetracker-detect", "posetracker-pose-0", "posetracker-read"} <= names


def test_sequential_thread_count_is_scoped_to_the_run():
    import torch

    before = torch.get_num_threads()
    seen = []

    class Probe(FakeStages):
        def detect(self, images):
            seen.append(torch.get_num_threads())
            return super().detect(images)

    want = 1 if before != 1 else 2
    run_pipeline(make_frames(4), Probe(), None, Collect(),
                 PipelineOptions(det_batch=2, torch_threads=want, mode="sequential"))
    assert seen and set(seen) == {want}
    assert torch.get_num_threads() == before  # the caller's setting is back


def test_rmpe_stages_drop_low_scored_poses(toy_estimator, data_dir):
    from posetracker.app.pipeline import RMPEStages
    from posetracker.io.sources import open_source

    src = list(open_source(data_dir / "videos" / "basketball_crossing.mp4", max_frames=2,
                           stride=30))
    every = RMPEStages(toy_estimator)
    inter = every.estimate([f.image for f in src], every.detect([f.image for f in src]))
    all_poses = [every.group(i, f.image) for i, f in zip(inter, src)]
    scores = np.concatenate([p.scores for p in all_poses])
    assert len(scores) >= 2
    cut = float(np.median(scores))
    some = RMPEStages(toy_estimator, min_pose_score=cut)
    for i, f, whole in zip(inter, src, all_poses):
        kept = some.group(i, f.image)
        assert np.all(kept.scores >= cut)
        np.testing.assert_allclose(kept.keypoints,
                                   whole.keypoints[np.asarray(whole.scores) >= cut])


def test_a_stage_does_not_wait_for_a_full_batch():
    # The pose stage takes the frames that are waiting instead of waiting for pose_batch people:
    # with a detector that hands over one frame at a time and a pose batch that is never full,
    # each pose call still gets frames as soon as they arrive.
    class Slow(FakeStages):
        def __init__(self):
            super().__init__()
            self.pose_calls: list[int] = []

        def detect(self, images):
            time.sleep(0.02)
            return super().detect(images)

        def estimate(self, images, detections):
            self.pose_calls.append(len(images))
            return super().estimate(images, detections)

    stages = Slow()
    out = Collect()
    run_pipeline(make_frames(6), stages, None, out,
                 PipelineOptions(det_batch=1, pose_batch=1000, pose_max_frames=1000))
    assert out.frames == list(range(6))
    assert sum(stages.pose_calls) == 6 and len(stages.pose_calls) > 1


@pytest.mark.parametrize("mode", ["threaded", "sequential"])
def test_written_ids_count_up_from_zero_in_order_of_appearance(mode):
    # a tracker that starts a new id for every pose of every third frame (as PoseFlow's counter
    # runs on over the flows its NMS later suppresses): the written ids have no gaps
    class Jumpy(NearestTracker):
        def __init__(self):
            super().__init__()
            self.t = 0

        def update(self, poses, image):
            ids = [500 - 7 * (self.t // 3) - i for i in range(len(poses))]
            self.t += 1
            self.ready.append(poses.with_track_ids(ids))
            return self.ready[-1]

    out = Collect()
    run_pipeline(make_frames(7), FakeStages(people=2), Jumpy(), out,
                 PipelineOptions(det_batch=2, mode=mode))
    ids = [list(p.track_ids) for p in out.poses]
    assert ids == [[0, 1]] * 3 + [[2, 3]] * 3 + [[4, 5]]


def test_bench_pipeline_against_runs_both_settings_alternating(monkeypatch, tmp_path, capsys):
    """``bench pipeline --against``: every round runs the settings and the alternative in turn,
    each keeps its fastest run, and the ratio row compares those."""
    import argparse

    from posetracker.app.benchmarks import pipeline as bench

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    calls = []

    def fake_measure(spec):
        calls.append(spec["sets"])
        fps = {0: 4.0, 1: 2.0, 2: 5.0, 3: 1.0}[len(calls) - 1]
        return {"frames": 10, "people_per_frame": 1.0, "fps": fps, "cpu_s_per_frame": 0.1,
                "peak_rss_mb": 100.0}
    monkeypatch.setattr(bench, "measure", fake_measure)
    out = tmp_path / "rows.json"
    args = argparse.Namespace(videos=[str(video)], device="cpu", half=False, set=["a=1"],
                              against=["b=2"], modes="threaded", repeat=2, max_frames=10,
                              threads=0, loop=0, loop_frames=5, out=str(out),
                              reference=False)
    assert bench.run(args) == 0
    assert [("b=2" in s) for s in calls] == [False, True, False, True]
    assert all("a=1" in s for s in calls)
    import json
    ratio = [r for r in json.loads(out.read_text()) if "settings_over_against" in r]
    assert ratio[0]["settings_over_against"] == 5.0 / 2.0
