"""One configuration: the dataclasses hold every default; every command reads the same settings
with one ``--set`` grammar; flags map onto fields; ``--help`` shows the dataclasses' defaults; the
shipped example equals ``--dump-config``; and an installed wheel (not the checkout) prints the same
settings and installs no generic top-level packages."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from posetracker.app.cli import build_parser, main
from posetracker.app.settings import AppConfig, dump_app_config, load_app_config
from posetracker.core.config import apply_overrides, replace_path
from posetracker.core.errors import ConfigError
from posetracker.estimators.config import EstimatorConfig

ROOT = Path(__file__).resolve().parents[1]


def _dump(capsys, argv) -> dict:
    assert main(argv) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_shipped_example_is_the_dump(capsys):
    text = (ROOT / "configs" / "default.yaml").read_text()
    body = "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith("#")).lstrip("\n")
    assert main(["track", "--dump-config"]) == 0
    assert body == capsys.readouterr().out == dump_app_config(AppConfig())
    assert sorted(p.name for p in (ROOT / "configs").iterdir()) == ["default.yaml"]


def test_estimate_and_track_read_the_same_settings(capsys):
    track = _dump(capsys, ["track", "--dump-config"])
    estimate = _dump(capsys, ["estimate", "--dump-config"])
    assert track == estimate
    # the commands' differences are explicit settings: track's estimator section, estimate's own
    assert estimate["estimate"]["estimator"] == yaml.safe_load(
        yaml.safe_dump(dataclasses.asdict(EstimatorConfig())))
    t, e = track["estimator"], track["estimate"]["estimator"]
    diff = {(s, k) for s in ("detector", "sppe", "nms") for k in t[s] if t[s][k] != e[s][k]}
    assert diff == {("detector", "conf_threshold"), ("detector", "min_box_size"), ("detector", "flip"),
                    ("sppe", "flip_test"), ("sppe", "batch_size"), ("nms", "eta")}


def test_one_set_grammar_rooted_at_the_settings(capsys, tmp_path):
    sets = ["--set", "tracker.poseflow.window=5", "--set", "estimate.estimator.nms.eta=4.5",
            "--set", "pipeline.output.keypoint_threshold=0.3"]
    a = _dump(capsys, ["track", "--dump-config", *sets])
    b = _dump(capsys, ["estimate", "--dump-config", *sets])
    assert a == b
    assert a["tracker"]["poseflow"]["window"] == 5
    assert a["estimate"]["estimator"]["nms"]["eta"] == 4.5
    # the --poses mode reads the tracker section of the same settings
    from posetracker.app.commands.track_cmd import load_settings

    args = build_parser().parse_args(["track", "--poses", "x.json", "-o", "o.json", *sets])
    assert load_settings(args).tracker.poseflow.window == 5
    # a key outside the settings is refused the same way by every command, in one line
    for argv in (["track", "--dump-config"], ["estimate", "--dump-config"],
                 ["track", "--poses", str(tmp_path / "x.json"), "-o", str(tmp_path / "o.json")]):
        assert main([*argv, "--set", "poseflow.window=5"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "unknown key poseflow" in err[0]


def test_flags_map_onto_fields(capsys):
    d = _dump(capsys, ["track", "--dump-config", "--device", "cuda:1", "--det-batch", "2",
                       "--pose-batch", "7", "--sequential", "--half", "--tracker", "iou",
                       "--association", "crowdpose", "--format", "coco"])
    assert d["estimator"]["device"] == "cuda:1" and d["estimator"]["frame_batch"] == 2
    assert d["estimator"]["sppe"]["batch_size"] == 7 and d["estimator"]["precision"] == "fp16"
    assert d["pipeline"]["mode"] == "sequential" and d["tracker"]["kind"] == "iou"
    assert d["pipeline"]["association"] == "crowdpose"
    assert d["pipeline"]["output"]["format"] == "coco"
    e = _dump(capsys, ["estimate", "--dump-config", "--no-flip", "--nms", "none", "--threads", "3",
                       "--pose-model", "movenet-thunder", "--association", "crowdpose"])["estimate"]
    assert e["estimator"]["sppe"]["flip_test"] is False and e["estimator"]["nms"]["mode"] == "none"
    assert e["threads"] == 3 and e["association"] == "crowdpose"
    assert e["estimator"]["sppe"]["model"] == "movenet-thunder"
    # a flag's value is used as parsed, not re-read as YAML: a model path that YAML would read as
    # a number or a boolean stays a string
    e = _dump(capsys, ["estimate", "--dump-config", "--detector", "1e3"])["estimate"]
    assert e["estimator"]["detector"]["model"] == "1e3"
    assert main(["track", "--dump-config", "--device", "gpu"]) == 2
    assert "device" in capsys.readouterr().err


def test_replace_path_and_overrides():
    c = replace_path(AppConfig(), "estimator.sppe.batch_size", 3)
    assert c.estimator.sppe.batch_size == 3 and c.estimator.nms.eta == AppConfig().estimator.nms.eta
    with pytest.raises(ConfigError, match="batch_size"):
        replace_path(AppConfig(), "estimator.sppe.batch_size", 0)
    with pytest.raises(ConfigError, match="no such setting"):
        replace_path(AppConfig(), "estimator.nope", 1)
    # a section given in part keeps the rest of the section it lands on (track's estimator
    # keeps its own values, not EstimatorConfig's)
    c = apply_overrides(AppConfig(), ["estimator.detector.model=x.onnx"])
    assert c.estimator.detector.conf_threshold == AppConfig().estimator.detector.conf_threshold
    assert c.estimator.detector.model == "x.onnx"


def test_config_file_then_flags_then_set(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("estimator:\n  frame_batch: 3\n  sppe:\n    batch_size: 5\ntracker:\n  kind: iou\n")
    d = _dump(capsys, ["track", "--dump-config", "--config", str(f), "--det-batch", "6",
                       "--set", "estimator.frame_batch=8"])
    assert d["estimator"]["frame_batch"] == 8 and d["estimator"]["sppe"]["batch_size"] == 5
    assert d["tracker"]["kind"] == "iou"
    assert d["estimator"]["nms"]["eta"] == AppConfig().estimator.nms.eta  # kept: track's value
    assert load_app_config(f).estimator.sppe.flip_test == AppConfig().estimator.sppe.flip_test


def _subparsers(parser):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            yield from a.choices.items()


def test_help_defaults_come_from_the_dataclasses_and_read_plainly():
    parser = build_parser()
    cmds = dict(_subparsers(parser))
    d = AppConfig()
    track = " ".join(cmds["track"].format_help().split())
    estimate = " ".join(cmds["estimate"].format_help().split())
    assert f"(estimator.sppe.batch_size, default: {d.estimator.sppe.batch_size})" in track
    assert f"(estimate.estimator.frame_batch, default: {d.estimate.estimator.frame_batch})" \
        in estimate
    assert "(estimate.estimator.sppe.flip_test, default: on)" in estimate
    assert f"(estimate.threads, default: {d.estimate.threads})" in estimate
    # every option of track and estimate says its default
    for name in ("track", "estimate"):
        for a in cmds[name]._actions:
            if a.option_strings and a.help and a.dest not in ("help", "config", "set",
                                                              "dump_config", "output", "poses",
                                                              "frames"):
                assert "default" in a.help, (name, a.option_strings)
    # no reStructuredText markup in any help text
    texts = [parser.format_help()]
    stack = list(_subparsers(parser))
    while stack:
        _, p = stack.pop()
        texts.append(p.format_help())
        stack += list(_subparsers(p))
    for t in texts:
        assert not re.search(r":(mod|func|class|meth|attr):`|``", t), t[:200]


def _no_torch_threads_or_device_set(path: Path) -> list[str]:
    text = path.read_text()
    return [m for m in ("torch.cuda.set_device", "get_num_threads()") if m in text]


def test_device_and_threads_are_passed_down_not_read_back():
    for f in [*(ROOT / "posetracker").rglob("*.py"), *(ROOT / "estimators").rglob("*.py")]:
        found = _no_torch_threads_or_device_set(f)
        if f.name != "pipeline.py" or found != ["get_num_threads()"]:
            assert not found, (f, found)
    # pipeline.py reads the count only to restore it after a scoped run
    text = (ROOT / "posetracker" / "app" / "pipeline.py").read_text()
    assert text.count("get_num_threads()") == 1 and "before = torch.get_num_threads()" in text


def _copy_source(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.pyc")
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    for folder in ("posetracker", "tracker", "estimators", "association", "evaluation"):
        shutil.copytree(ROOT / folder, dst / folder, ignore=ignore)


def test_installed_wheel_prints_the_same_settings(tmp_path):
    """Build the wheel, install it alone into a scratch folder, and run ``--dump-config`` from
    there (outside the checkout): the settings equal the checkout's, and the wheel holds
    ``posetracker`` only (the domain folders as ``posetracker.tracker``, ...)."""
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                         check=False)
    if pip.returncode != 0:
        pytest.skip("pip is not available")
    src, wheels, target, away = (tmp_path / n for n in ("src", "wheels", "site", "away"))
    for d in (src, wheels, away):
        d.mkdir()
    _copy_source(src)
    quiet = {"capture_output": True, "text": True, "timeout": 600}
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(wheels), str(src)], check=False, **quiet)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = wheels.glob("posetracker-*.whl")
    tops = {n.split("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith((".dist-info", ".data"))} == {"posetracker"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "posetracker/tracker/poseflow.py" in names and "posetracker/app/api.py" in names
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                        str(target), str(wheel)], check=False, **quiet)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONNOUSERSITE": "1"}
    code = ("import sys, posetracker; print(posetracker.__file__); "
            "from posetracker.app.cli import main; sys.exit(main(sys.argv[1:]))")
    outs = []
    for cmd in ("track", "estimate"):
        r = subprocess.run([sys.executable, "-c", code, cmd, "--dump-config"], cwd=away, env=env,
                           check=False, **quiet)
        assert r.returncode == 0, r.stderr[-2000:]
        where, _, dumped = r.stdout.partition("\n")
        assert Path(where).resolve().is_relative_to(target.resolve())  # the installed copy
        outs.append(dumped)
    assert outs[0] == outs[1] == dump_app_config(AppConfig())
    api = ("import posetracker, sys; from posetracker import PoseTracker, TrackedFrame, "
           "evaluate_posetrack, evaluate_coco, evaluate_crowdpose; "
           "from posetracker.app.settings import AppConfig; "
           "assert PoseTracker().config == AppConfig(); "
           "assert 'tracker' not in sys.modules and 'estimators' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", api], cwd=away, env=env, check=False, **quiet)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_a_cuda_index_is_a_device_not_a_process_setting(monkeypatch, capsys):
    import torch

    from posetracker import PoseTracker
    from posetracker.estimators.rmpe import pick_device

    assert PoseTracker(device="cuda:1").config.estimator.device == "cuda:1"
    monkeypatch.setattr(torch.cuda, "set_device", lambda *a: pytest.fail("set process-wide"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda", 1)  # handed to the models explicitly
    with pytest.raises(Exception, match="no such CUDA device"):
        pick_device("cuda:2")


def test_stage_benchmarks_take_the_one_set_grammar():
    """``bench tracking`` and ``bench association`` read ``--set`` keys rooted at the whole
    settings, as every other command; a key of another section is refused with one line."""
    from posetracker.app.benchmarks.tracking import tracker_config
    from posetracker.app.settings import load_section
    from posetracker.core.errors import ConfigError

    cfg = tracker_config("poseflow-online", ["tracker.poseflow.window=12"])
    assert cfg.kind == "poseflow" and cfg.poseflow.window == 12 and cfg.poseflow.lookahead == 0
    assert tracker_config("iou").kind == "iou"
    assert load_section("association", ["association.delta_scale=3"]).delta_scale == 3
    for bad in (["poseflow.window=12"], ["pipeline.mode=sequential"]):
        with pytest.raises(ConfigError, match="only the tracker settings"):
            load_section("tracker", bad)
    with pytest.raises(ConfigError, match="unknown key"):
        load_section("association", ["association.nope=1"])


def test_one_flag_table_serves_the_commands_and_the_api(capsys):
    """Every flag of ``track``, ``dataset``, ``estimate`` that stands for a setting is an entry of
    the one table (:data:`posetracker.app.flags.FLAGS`), every entry's paths are settings, and a
    ``PoseTracker`` keyword sets what the flag of the same name sets."""
    from posetracker.app.api import apply_keywords
    from posetracker.app.flags import API_KEYWORDS, FLAGS
    from posetracker.core.config import get_path

    names = [f.name for f in FLAGS]
    assert len(names) == len(set(names))
    for f in FLAGS:
        for path in filter(None, (f.track, f.estimate)):
            get_path(AppConfig(), path)  # a setting, or AttributeError
    cmds = dict(_subparsers(build_parser()))
    for cmd in ("track", "track-dataset", "estimate", "fit-nms"):
        for a in cmds[cmd]._actions:
            if a.help and re.search(r"\((estimator|estimate|pipeline|tracker)\.[a-z_.]+[,)]", a.help):
                assert a.dest in names, (cmd, a.dest)  # a flag named for a setting is in the table
    # the API keyword and the track flag land on the same setting
    track = _dump(capsys, ["track", "--dump-config", "--det-batch", "3", "--tracker", "iou",
                           "--association", "crowdpose", "--format", "coco", "--render-boxes"])
    api = apply_keywords(AppConfig(), {"det_batch": 3, "tracker": "iou", "association": "crowdpose",
                                       "format": "coco", "render_boxes": True})
    assert track == yaml.safe_load(dump_app_config(api))
    # the models and the device hold for tracking and per-image estimation alike
    c = apply_keywords(AppConfig(), {"device": "cpu", "pose_model": "movenet-thunder"})
    assert c.estimator.device == c.estimate.estimator.device == "cpu"
    assert c.estimator.sppe.model == c.estimate.estimator.sppe.model == "movenet-thunder"
    assert API_KEYWORDS["mode"] == ("pipeline.mode",) and "sequential" not in API_KEYWORDS


def test_convert_jsonl_defaults_are_tracks():
    """``convert jsonl`` finishes a track run: its defaults are the track settings'."""
    out = AppConfig().pipeline.output
    args = build_parser().parse_args(["convert", "jsonl", "a.jsonl", "b.json"])
    assert args.keypoint_threshold == out.keypoint_threshold
    assert args.format == out.format and (not args.no_derive_head) == out.derive_head


def test_automatic_threads_per_call_follow_the_mode():
    # With the detector on every frame the pose workers run most crops, in video mode as frame
    # by frame: the cores are shared out among them and the detector. With fewer keyframes the
    # one video loop runs most crops: each call gets every core. An explicit setting wins.
    from posetracker.app.settings import PipelineConfig, ProposalConfig

    video = PipelineConfig()
    assert video.video_mode and video.detect_every == 1
    assert video.torch_threads(2) == 1 and video.torch_threads(6) == 2
    for sparse in (PipelineConfig(detect_every=4), PipelineConfig(keyframes="adaptive")):
        assert sparse.torch_threads(2) == 2 and sparse.torch_threads(8) == 8
    frame = PipelineConfig(proposals=ProposalConfig(enabled=False))
    assert not frame.video_mode
    assert frame.torch_threads(2) == 1 and frame.torch_threads(6) == 2
    assert PipelineConfig(threads=3).torch_threads(2) == 3
    assert PipelineConfig(mode="sequential").torch_threads(2) == 0
