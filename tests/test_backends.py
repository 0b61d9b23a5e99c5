"""``estimator.backend`` and ``estimator.precision``: the native CPU runtimes (OpenVINO,
onnxruntime) run the real detector and pose graphs to the torch readers' results on real COCO
images and people (same boxes, same keypoints and scores), from several threads at once as
serially, at any batch size, on the thread count they are given; ``auto`` picks them on the CPU
only; a missing runtime or an impossible precision is one clear line."""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import require_test_extra

import posetracker.estimators.runtimes.native as native
from posetracker.core.errors import ModelError
from posetracker.estimators.config import EstimatorConfig
from posetracker.estimators.model_formats import MODEL_FORMATS
from posetracker.estimators.rmpe import RMPEEstimator, load_detector
from posetracker.estimators.runtimes.native import NativeGraph, backend_of
from posetracker.estimators.sppe import SPPE, cpu_has_bf16, load_sppe, resolve_precision

require_test_extra("openvino")
require_test_extra("onnxruntime")

TINYPOSE = "tinypose-256x192.xml"
RTMDET = "rtmdet-nano-person.onnx"
PICODET = "picodet-s-320-pedestrian.xml"


@pytest.fixture(scope="module")
def coco(data_dir):
    """[(RGB image, (g, 4) xyxy ground-truth person boxes)] of the first 6 images with people."""
    root = data_dir / "coco_mini_val2017"
    ann = json.loads((root / "annotations/person_keypoints_val2017.json").read_text())
    people: dict[int, list] = {}
    for a in ann["annotations"]:
        x, y, w, h = a["bbox"]
        if not a["iscrowd"] and w * h > 900:
            people.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    files = {i["id"]: i["file_name"] for i in ann["images"]}
    return [(np.ascontiguousarray(cv2.imread(str(root / "val2017" / files[i]))[:, :, ::-1]),
             np.array(people[i], np.float64)) for i in sorted(people)[:6]]


def _poses(sppe: SPPE, coco, frame_batch: int = 6):
    """Keypoints (image pixels) and scores of every ground-truth person, through the estimator's
    own crop and de-transform (pose NMS off: one pose per box)."""
    config = EstimatorConfig(frame_batch=frame_batch)
    config = replace(config, nms=replace(config.nms, mode="none"))
    est = RMPEEstimator(sppe, None, config)
    inters = est.estimate_people([im for im, _ in coco], [b for _, b in coco])
    return (np.concatenate([i.keypoints for i in inters]),
            np.concatenate([i.keypoint_scores for i in inters]))


@pytest.fixture(scope="module")
def torch_poses(models_dir, coco):
    return _poses(load_sppe(models_dir / TINYPOSE, backend="torch"), coco)


def _assert_same_poses(got, want, px: float = 0.02, score: float = 1e-4):
    (kp, sc), (kp0, sc0) = got, want
    assert kp.shape == kp0.shape and len(kp) >= 10
    assert np.abs(kp - kp0).max() < px
    assert np.abs(sc - sc0).max() < score


def test_openvino_sppe_equals_the_torch_reader(models_dir, coco, torch_poses):
    sppe = load_sppe(models_dir / TINYPOSE, backend="openvino", threads=1)
    assert sppe.backend == "openvino" and sppe.precision == "fp32"
    _assert_same_poses(_poses(sppe, coco), torch_poses)


def test_batch_size_does_not_change_a_crop_s_pose(models_dir, coco, torch_poses):
    one = load_sppe(models_dir / TINYPOSE, backend="openvino", threads=1, batch_size=1)
    sixteen = load_sppe(models_dir / TINYPOSE, backend="openvino", threads=1, batch_size=16)
    a, b = _poses(one, coco), _poses(sixteen, coco)
    _assert_same_poses(a, b, px=1e-3, score=1e-5)
    _assert_same_poses(b, torch_poses)


def test_batches_split_into_the_compiled_sizes():
    assert native.static_chunks(7) == [(0, 4), (4, 2), (6, 1)]
    assert native.static_chunks(18) == [(0, 4), (4, 4), (8, 4), (12, 4), (16, 2)]
    assert native.static_chunks(0) == []
    for n in range(1, 40):  # every item once, in order, no padding
        chunks = native.static_chunks(n)
        assert [s for s, _ in chunks] == list(np.cumsum([0] + [b for _, b in chunks])[:-1])
        assert sum(b for _, b in chunks) == n and all(b in native.STATIC_BATCHES for _, b in chunks)


def test_ctrl_c_waits_for_every_runtime_job_then_interrupts():
    """A compile or an inference left running in the runtime's threads when the interpreter
    exits aborts the process ("terminate called"): Ctrl-C must wait for every job first."""
    calls = []

    def job(i: int, interrupt_first: bool):
        def wait():
            calls.append(i)
            if interrupt_first and calls.count(i) == 1:
                raise KeyboardInterrupt
        return wait

    class Terminated(KeyboardInterrupt):  # the CLI's SIGTERM (exit 143, not 130)
        pass

    def terminated():
        calls.append("term")
        if calls.count("term") == 1:
            raise Terminated

    with pytest.raises(Terminated):
        native.finish_all([terminated, job(0, True), job(1, False), job(2, True)])
    # each waited to its end, the first interrupt re-raised after
    assert calls == ["term", "term", 0, 0, 1, 2, 2]
    native.finish_all([job(3, False)])
    assert calls[-1] == 3


@pytest.mark.parametrize("threads", [1, 2])
def test_openvino_runs_fixed_batch_models_only(models_dir, threads):
    """A dynamic-batch model cost 9-17 % more CPU per crop on one thread (docs/models.md, "CPU
    backends"), and one stream of one thread per lane less CPU than one stream on every
    thread: every call must run models compiled for fixed batches, on ``threads`` lanes, and a
    batch split across them equals its items run one by one."""
    graph = NativeGraph("openvino", models_dir / TINYPOSE, precision="fp32", threads=threads)
    x = torch.rand(7, 3, 256, 192)
    whole = graph(x)
    compiled = graph._runner._compiled[(3, 256, 192)]
    kind = "one" if threads == 1 else "lane"
    assert sorted(b for k, b in compiled if k == kind) == sorted(native.STATIC_BATCHES)
    assert ("one", 1) in compiled
    for (k, size), model in compiled.items():
        assert model.inputs[0].get_partial_shape().is_static
        assert model.inputs[0].get_shape()[0] == size
        # one thread per call: a stream per core, for callers on several threads at once
        streams = threads if k == "lane" else (os.cpu_count() if threads == 1 else 1)
        assert model.get_property("NUM_STREAMS") == streams
    (name,) = [n for n in graph.output_names if whole[n].ndim == 4][:1]
    parts = torch.cat([graph(x[i: i + 1])[name] for i in range(7)])
    assert whole[name].shape[0] == 7
    torch.testing.assert_close(whole[name], parts, atol=1e-5, rtol=0)
    empty = graph(x[:0])
    assert all(v.shape[0] == 0 and v.shape[1:] == whole[k].shape[1:] for k, v in empty.items())


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_native_rtmdet_finds_the_torch_reader_s_boxes(models_dir, coco, backend):
    images = [im for im, _ in coco]
    want = load_detector(models_dir / RTMDET, input_size=416).detect(images, conf=0.1, nms=0.5)
    det = load_detector(models_dir / RTMDET, input_size=416, backend=backend, threads=1)
    assert backend_of(det) == backend
    got = det.detect(images, conf=0.1, nms=0.5)
    assert sum(len(g) for g in got) >= 20
    for g, w in zip(got, want):
        assert g.shape == w.shape
        # corners within a hundredth of a pixel (values to 640), scores within 1e-4
        np.testing.assert_allclose(g[:, :4], w[:, :4], rtol=1e-3, atol=1e-2)
        np.testing.assert_allclose(g[:, 4], w[:, 4], atol=1e-4)


def test_native_picodet_finds_the_torch_reader_s_boxes(models_dir, coco):
    images = [im for im, _ in coco[:3]]
    want = load_detector(models_dir / PICODET).detect(images, conf=0.1, nms=0.5)
    det = load_detector(models_dir / PICODET, backend="openvino", threads=1)
    got = det.detect(images, conf=0.1, nms=0.5)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-2)


def test_concurrent_calls_give_the_serial_results(models_dir, coco):
    """Two pose workers and a detector thread at once, as the ``track`` pipeline calls them."""
    sppe = load_sppe(models_dir / TINYPOSE, backend="openvino", threads=1, batch_size=4)
    det = load_detector(models_dir / RTMDET, input_size=416, backend="onnxruntime", threads=1)
    ov_det = load_detector(models_dir / RTMDET, input_size=416, backend="openvino", threads=1)
    halves = [coco[:3], coco[3:]]
    images = [im for im, _ in coco]
    serial = {"pose0": _poses(sppe, halves[0]), "pose1": _poses(sppe, halves[1]),
              "det": det.detect(images, conf=0.1), "ovdet": ov_det.detect(images, conf=0.1)}
    got: dict = {}
    errors: list = []
    jobs = {"pose0": lambda: _poses(sppe, halves[0]), "pose1": lambda: _poses(sppe, halves[1]),
            "det": lambda: det.detect(images, conf=0.1),
            "ovdet": lambda: ov_det.detect(images, conf=0.1)}

    def work(name):
        try:
            for _ in range(2):
                got.setdefault(name, []).append(jobs[name]())
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name in ("pose0", "pose1"):
        for kp, sc in got[name]:
            np.testing.assert_array_equal(kp, serial[name][0])
            np.testing.assert_array_equal(sc, serial[name][1])
    for name in ("det", "ovdet"):
        for boxes in got[name]:
            for g, w in zip(boxes, serial[name]):
                np.testing.assert_array_equal(g, w)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process, every thread (the runtimes' pools included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@pytest.mark.parametrize("runtime, model", [("openvino", TINYPOSE), ("onnxruntime", RTMDET)])
def test_one_thread_keeps_the_runtime_on_one_core(models_dir, runtime, model):
    path = models_dir / model
    if model == RTMDET:
        from onnx.utils import Extractor

        from posetracker.estimators.rtmdet import find_nms
        from posetracker.estimators.runtimes.onnx_graph import read_onnx

        proto = read_onnx(path)
        boxes, scores, _ = find_nms(proto, str(path))
        graph = NativeGraph(runtime, Extractor(proto).extract_model(["input"], [boxes, scores])
                            .SerializeToString(), precision="fp32", threads=1)
        x = torch.rand(4, 3, 416, 416)
    else:
        graph = NativeGraph(runtime, path, precision="fp32", threads=1)
        x = torch.rand(16, 3, 256, 192)
    graph(x)  # compile / warm up
    wall, cpu = time.perf_counter(), _cpu_seconds()
    for _ in range(3):
        graph(x)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    # the calling thread plus one runtime thread would show up to 2 x wall on 2 cores
    assert cpu < 1.35 * wall, (cpu, wall)


# ------------------------------------------------------------------------------------------------
# Settings: validation, auto, fallbacks and errors
# ------------------------------------------------------------------------------------------------

def test_settings_validate():
    assert EstimatorConfig().backend == "auto" and EstimatorConfig().precision == "auto"
    with pytest.raises(ValueError, match="backend must be"):
        EstimatorConfig(backend="tensorrt")
    with pytest.raises(ValueError, match="precision must be"):
        EstimatorConfig(precision="int8")


def test_auto_picks_the_measured_fastest_runtime_on_the_cpu_only():
    onnx, ir, tfjs = (MODEL_FORMATS.get(n) for n in ("onnx", "openvino", "tfjs"))
    assert onnx.backend("auto", torch.device("cpu")) == "onnxruntime"
    assert ir.backend("auto", "cpu") == "openvino"
    assert tfjs.backend("auto", "cpu") == "torch"
    assert onnx.backend("auto", torch.device("cuda")) == "torch"
    # a fine-tuned checkpoint is torch's: the native runtimes read the format's own files
    assert ir.backend("auto", "cpu", weights=Path("ft.safetensors")) == "torch"
    assert ir.backend("torch", "cpu") == "torch"


def test_auto_without_the_runtimes_is_torch(monkeypatch):
    monkeypatch.setattr(native, "runtime_installed", lambda name: False)
    assert MODEL_FORMATS.get("onnx").backend("auto", "cpu") == "torch"
    assert MODEL_FORMATS.get("openvino").backend("auto", "cpu") == "torch"
    monkeypatch.setattr(native, "runtime_installed", lambda name: name == "openvino")
    assert MODEL_FORMATS.get("onnx").backend("auto", "cpu") == "openvino"


def test_a_runtime_named_for_a_format_it_cannot_read_leaves_that_model_on_torch():
    assert MODEL_FORMATS.get("tfjs").backend("openvino", "cpu") == "torch"
    assert MODEL_FORMATS.get("openvino").backend("onnxruntime", "cpu") == "torch"


def test_build_estimator_says_which_model_stays_on_torch(models_dir, monkeypatch):
    from posetracker.app import build

    lines: list[str] = []
    config = EstimatorConfig(device="cpu", backend="onnxruntime")
    config = replace(config, detector=replace(config.detector, model=str(models_dir / RTMDET)),
                     sppe=replace(config.sppe, model=str(models_dir / TINYPOSE)))
    est = build.build_estimator(config, log=lines.append, threads=1)
    assert est.runtimes() == {"detector": {"backend": "onnxruntime", "precision": "fp32"},
                              "sppe": {"backend": "torch", "precision": "fp32"}}
    assert len(lines) == 1 and "onnxruntime cannot run" in lines[0] and "torch" in lines[0]


def test_the_detector_s_test_time_runs_keep_the_backend(models_dir):
    """Flip, a further size and an ensemble member: each run on the runtime that reads it
    (RTMDet at both sizes on onnxruntime; PicoDet's IR stays on torch, and says so)."""
    from posetracker.app import build

    lines: list[str] = []
    picodet = str(models_dir / PICODET)
    config = EstimatorConfig(device="cpu", backend="onnxruntime")
    config = replace(config, detector=replace(config.detector, model=str(models_dir / RTMDET),
                                              flip=True, sizes=(320,), ensemble=(picodet,)),
                     sppe=replace(config.sppe, model=str(models_dir / TINYPOSE)))
    est = build.build_estimator(config, log=lines.append, threads=1)
    assert [backend_of(d) for d in (est.detector.detector, *est.detector.members)] == \
        ["onnxruntime", "onnxruntime", "torch"]
    assert any(picodet in line and "runs on torch" in line for line in lines)
    assert est.detector([np.zeros((64, 96, 3), np.uint8)])[0].shape[1] == 5


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_a_missing_runtime_asked_for_is_one_line(models_dir, monkeypatch):
    real = native.importlib.import_module

    def no_openvino(name, *args):
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real(name, *args)

    monkeypatch.setattr(native.importlib, "import_module", no_openvino)
    with pytest.raises(ModelError) as e:
        load_sppe(models_dir / TINYPOSE, backend="openvino")
    assert "openvino package is not installed" in _one_line(e)
    assert "[openvino]" in str(e.value)


def test_a_runtime_asked_for_on_cuda_is_refused():
    with pytest.raises(ModelError) as e:
        MODEL_FORMATS.get("onnx").backend("onnxruntime", torch.device("cuda"))
    assert "runs on the CPU" in _one_line(e)


def test_cli_refuses_a_bad_backend_with_exit_2(tmp_path, capsys):
    from posetracker.app.cli import main

    assert main(["estimate", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "p.json"),
                 "--backend", "tensorrt"]) == 2
    assert main(["estimate", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "p.json"),
                 "--set", "estimate.estimator.backend=tensorrt"]) == 2
    assert "backend=tensorrt" in capsys.readouterr().err


def test_precision(monkeypatch):
    import posetracker.estimators.sppe as sppe_module

    for amx in (False, True):  # auto: bf16 on an AMX CPU only, never on CUDA
        monkeypatch.setattr(sppe_module, "_cpu_flags",
                            lambda amx=amx: {"avx512_bf16"} | ({"amx_bf16"} if amx else set()))
        assert resolve_precision("auto", "cpu") == ("bf16" if amx else "fp32")
        assert resolve_precision("auto", "cuda") == "fp32"
    monkeypatch.undo()
    assert resolve_precision("fp16", "cuda") == "fp16"
    with pytest.raises(ModelError) as e:
        resolve_precision("fp16", "cpu")
    assert "CUDA only" in _one_line(e)
    monkeypatch.setattr(sppe_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(ModelError) as e:
        resolve_precision("bf16", "cpu")
    assert "no bfloat16" in _one_line(e)
    monkeypatch.setattr(sppe_module, "cpu_has_bf16", lambda: True)
    assert resolve_precision("bf16", "cpu") == "bf16"


def _assert_near(got, want):
    (kp, sc), (kp0, sc0) = got, want
    kp0, sc0 = kp0[:len(kp)], sc0[:len(sc)]  # ``got`` ran on the first images only
    err = np.linalg.norm(kp - kp0, axis=-1)[sc0 > 0.3]
    assert np.median(err) < 1.0 and np.abs(sc - sc0).max() < 0.1, (np.median(err), err.max())


def test_bf16_poses_stay_near_fp32(models_dir, coco, torch_poses):
    """bfloat16 (8-bit mantissa) moves joints by a fraction of a heatmap cell, not more: the
    torch network in bfloat16 (its input too), and OpenVINO with its precision hint."""
    base = load_sppe(models_dir / TINYPOSE)
    bf16 = SPPE(base.network, base.input_size, flip_test=False, dtype=torch.bfloat16)
    assert bf16.precision == "bf16" and bf16.backend == "torch"
    assert next(bf16.network.parameters()).dtype == torch.bfloat16
    _assert_near(_poses(bf16, coco[:2]), torch_poses)  # torch bfloat16 is slow on a CPU
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bfloat16 arithmetic: OpenVINO's bf16 not checked")
    ov = load_sppe(models_dir / TINYPOSE, backend="openvino", precision="bf16", threads=1)
    assert ov.precision == "bf16" and ov.dtype == torch.float32
    _assert_near(_poses(ov, coco[:2]), torch_poses)
