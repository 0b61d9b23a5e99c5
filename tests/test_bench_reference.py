"""The own-runtime reference of ``posetracker bench pipeline --reference``
(:mod:`posetracker.app.benchmarks.reference`): on real frames of ``two_people.mp4`` it finds the two
people and the joints that ``track`` finds, it follows the product's settings, and the flag runs end
to end and prints the ratio row."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from conftest import require_test_extra

require_test_extra("onnxruntime")
require_test_extra("openvino")

FRAMES = 3


@pytest.fixture(scope="module")
def model_sets(models_dir) -> list[str]:
    return [f"estimator.detector.model={models_dir / 'rtmdet-nano-person.onnx'}",
            f"estimator.sppe.model={models_dir / 'tinypose-256x192.xml'}", "estimator.device=cpu"]


@pytest.fixture(scope="module")
def video(data_dir) -> str:
    return str(data_dir / "videos" / "two_people.mp4")


@pytest.fixture(scope="module")
def reference_people(model_sets, video):
    """The reference's (boxes, joints, joint scores) on the first frames, at ``track``'s settings."""
    from posetracker.app.benchmarks.reference import ReferencePipeline, frames
    from posetracker.app.settings import load_app_config

    ref = ReferencePipeline(load_app_config(None, model_sets))
    return [ref(bgr) for bgr in frames(video, FRAMES)]


def product_people(sets: list[str], video: str) -> list:
    from posetracker.app.api import PoseTracker
    from posetracker.app.settings import load_app_config

    return [f.poses for f in PoseTracker(load_app_config(None, sets)).track(video,
                                                                            max_frames=FRAMES)]


def joint_distances(reference_people, product) -> list[float]:
    """Per person (matched by nearest box), the mean distance in pixels between the reference's
    and the product's joints where the reference scores the joint over 0.5."""
    out = []
    for (boxes, xy, sc), poses in zip(reference_people, product, strict=True):
        assert len(boxes) == len(poses) == 2  # the two people, not the chair or the hat
        for b, joints, scores in zip(boxes, xy, sc):
            j = int(np.argmin(np.abs(poses.boxes - b[:4]).sum(1)))
            np.testing.assert_allclose(poses.boxes[j], b[:4], atol=1.0)  # the same detector cut
            good = (scores > 0.5) & np.isfinite(poses.keypoints[j]).all(-1)
            assert good.sum() >= 12
            out.append(float(np.linalg.norm(poses.keypoints[j][good] - joints[good], axis=-1).mean()))
    return out


def test_nms_suppresses_above_the_threshold_only():
    from posetracker.app.benchmarks.reference import nms

    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 9], [20, 20, 30, 30]], float)
    scores = np.array([0.9, 0.95, 0.8, 0.1])
    # IoU(0, 1) = 0.5 exactly: both stay at 0.5; box 2 overlaps box 0 by 0.9 and goes
    assert nms(boxes, scores, 0.5).tolist() == [1, 0, 3]
    assert nms(boxes, scores, 0.49).tolist() == [1, 3]


def test_reference_poses_are_the_products_with_the_same_crops(reference_people, model_sets, video):
    # The product with the reference's glue (no blanking outside the box, quarter-cell decode):
    # the same crops and decode give the same joints; a half-pixel slip in the crop's affine or
    # the heatmap cell's position moves every joint by 5 px here.
    product = product_people([*model_sets, "estimator.sppe.mask_outside_box=false",
                              "estimator.sppe.refine=quarter"], video)
    assert max(joint_distances(reference_people, product)) < 1.0


def test_reference_poses_agree_with_track_at_its_settings(reference_people, model_sets, video):
    # ``track`` as it runs (blanked crops, DARK decode): within a few pixels (measured 2.2-2.8).
    assert max(joint_distances(reference_people, product_people(model_sets, video))) < 4.0


def test_reference_follows_the_products_cut(model_sets, video):
    from posetracker.app.benchmarks.reference import ReferencePipeline, frames
    from posetracker.app.settings import load_app_config

    bgr = next(frames(video, 1))
    capped = ReferencePipeline(load_app_config(None, [*model_sets, "estimator.detector.max_people=1"]))
    assert len(capped(bgr)[0]) == 1
    strict = ReferencePipeline(load_app_config(None, [*model_sets, "pipeline.min_pose_score=0.99"]))
    assert len(strict(bgr)[0]) == 0


def test_bench_pipeline_reference_end_to_end(model_sets, video, tmp_path, capsys):
    from posetracker.app.cli import main

    out = tmp_path / "rows.json"
    code = main(["bench", "pipeline", video, "--reference", "--max-frames", "2", "--repeat", "1",
                 "--loop", "0", "--modes", "threaded", "--out", str(out),
                 *[a for s in model_sets for a in ("--set", s)]])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "product / own-runtime reference" in printed.out
    rows = json.loads(out.read_text())
    ref = [r for r in rows if r["mode"] == "reference"]
    assert len(ref) == 1 and ref[0]["frames"] == 2 and ref[0]["people_per_frame"] == 2.0
    assert ref[0]["precision"] in ("f32", "bf16")
    ratio = [r for r in rows if "product_over_reference" in r]
    assert len(ratio) == 1
    assert ratio[0]["product_over_reference"] == ratio[0]["product_fps"] / ref[0]["fps"]


def _args(video, **kw) -> argparse.Namespace:
    base = dict(videos=[str(video)], device="cpu", half=False, set=[], against=[],
                modes="threaded,sequential", repeat=2, max_frames=10, threads=0, loop=0,
                loop_frames=5, out=None, reference=True)
    return argparse.Namespace(**{**base, **kw})


def test_reference_alternates_with_the_modes_and_keeps_its_best(monkeypatch, tmp_path):
    from posetracker.app.benchmarks import pipeline as bench

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    calls = []
    fps = iter([4.0, 3.0, 2.0, 6.0, 3.0, 4.0])

    def fake_measure(spec):
        calls.append(spec["mode"])
        return {"frames": 10, "people_per_frame": 1.0, "fps": next(fps), "cpu_s_per_frame": 0.1,
                "peak_rss_mb": 100.0}
    monkeypatch.setattr(bench, "measure", fake_measure)
    out = tmp_path / "rows.json"
    assert bench.run(_args(video, out=str(out))) == 0
    assert calls == ["threaded", "sequential", "reference"] * 2
    ratios = {r["mode"]: r["product_over_reference"] for r in json.loads(out.read_text())
              if "product_over_reference" in r}
    assert ratios == {"threaded": 6.0 / 4.0, "sequential": 3.0 / 4.0}


def test_reference_without_its_runtimes_is_one_clear_error(monkeypatch, tmp_path):
    from posetracker.app.benchmarks import pipeline as bench
    from posetracker.core.errors import InputError

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    monkeypatch.setattr(bench, "find_spec", lambda name: None if name == "openvino" else True)
    with pytest.raises(InputError, match="openvino not installed"):
        bench.run(_args(video))


def test_bench_worker_lets_a_settings_thread_count_win(monkeypatch):
    # `--against pipeline.threads=2` must reach the run: the bench's own thread count goes first
    # and the settings after it; the mode the bench runs goes last.
    import posetracker.app.settings as settings
    from posetracker.app.benchmarks.pipeline import worker

    seen = []

    class Stop(Exception):
        pass

    def capture(path, overrides=(), *a, **k):
        seen.append(list(overrides))
        raise Stop

    monkeypatch.setattr(settings, "load_app_config", capture)
    with pytest.raises(Stop):
        worker({"mode": "threaded", "threads": 0, "sets": ["pipeline.threads=2"]})
    assert seen[0] == ["pipeline.threads=0", "pipeline.threads=2", "pipeline.mode=threaded"]
