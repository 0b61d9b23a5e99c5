"""The tables of model formats and output formats: every CLI choice and check reads them, and a
format registered here (in the test, touching no other file) is usable at once."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posetracker.app.cli import build_parser, main
from posetracker.core.errors import InputError, ModelError
from posetracker.core.poses import FramePoses, VideoPoses
from posetracker.core.schemas import COCO17
from posetracker.estimators.model_formats import MODEL_FORMATS, ModelFormat, format_of, locate
from posetracker.io.formats.output_formats import OUTPUT_FORMATS, OutputFormat, OutputFormatName
from posetracker.io.sinks import JsonlSink
from posetracker.io.sources import SourceFrame


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _choices(parser: argparse.ArgumentParser, option: str) -> tuple:
    return tuple(next(a for a in parser._actions if option in a.option_strings).choices)


@pytest.mark.parametrize("command", [("track",), ("track-dataset",), ("convert", "jsonl")])
def test_format_choices_are_the_output_formats(command):
    parser = _subparser(build_parser(), *command)
    assert _choices(parser, "--format") == OUTPUT_FORMATS.names()
    help_text = " ".join(parser.format_help().split())
    for f in OUTPUT_FORMATS:
        assert f"{f.name}: {' '.join(f.help.split())}" in help_text


def test_the_type_aliases_and_the_tables_agree():
    from typing import get_args

    from posetracker.estimators.model_formats import ModelFormatName

    assert get_args(OutputFormatName) == OUTPUT_FORMATS.names()
    assert get_args(ModelFormatName) == MODEL_FORMATS.names()


def test_named_models_use_known_formats_for_stages_they_serve():
    from posetracker.app.models.catalog import REGISTRY

    for spec in REGISTRY.values():
        fmt = MODEL_FORMATS.get(spec.format)
        assert spec.kind in fmt.stages, spec.name
        assert format_of(spec.topology_file.name, spec.kind) is fmt, spec.name


def test_a_named_model_of_a_format_that_cannot_serve_its_stage_is_refused():
    from posetracker.app.models.catalog import ModelFile, ModelSpec

    with pytest.raises(ModelError, match="onnx model cannot be a sppe"):
        ModelSpec("x", "sppe", "onnx", (ModelFile("x.onnx", "0" * 64, None),), "", None, "")


def test_models_list_shows_the_settings_input_size_for_any_size_detectors(tmp_path, monkeypatch,
                                                                        capsys):
    from posetracker.app.settings import AppConfig

    monkeypatch.setenv("POSETRACKER_CACHE", str(tmp_path))
    assert main(["models", "list"]) == 0
    rows = {line.split()[0]: line.replace(" * ", " ").split()
            for line in capsys.readouterr().out.splitlines() if line.strip()}
    side = AppConfig().estimator.detector.input_size
    assert rows["name"][3] == "input"
    assert rows["rtmdet-nano"][3] == f"{side}x{side}"  # the size the settings run it at
    assert rows["picodet-s-320"][3] == "320x320"  # its graph fixes it


def test_locate_finds_each_formats_files(tmp_path):
    for name in ("a.json", "a.safetensors", "b.xml", "b.bin", "c.cfg", "c.weights", "d.pth",
                 "e.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    got = {name: locate(tmp_path / name) for name in ("a.json", "a.safetensors", "b.xml",
                                                      "c.cfg", "c.weights", "d.pth",
                                                      "e.safetensors")}
    assert {n: (f.name, t and t.name, w and w.name) for n, (f, t, w) in got.items()} == {
        "a.json": ("tfjs", "a.json", None),
        "a.safetensors": ("tfjs", "a.json", "a.safetensors"),
        "b.xml": ("openvino", "b.xml", "b.bin"),
        "c.cfg": ("darknet", "c.cfg", "c.weights"),
        "c.weights": ("darknet", "c.cfg", "c.weights"),
        "d.pth": ("fastpose", None, "d.pth"),
        "e.safetensors": ("fastpose", None, "e.safetensors"),
    }
    (tmp_path / "f.weights").write_bytes(b"x")
    with pytest.raises(ModelError, match="no f.cfg beside"):
        locate(tmp_path / "f.weights")
    (tmp_path / "g.xml").write_bytes(b"x")
    with pytest.raises(ModelError, match="no g.bin beside"):
        locate(tmp_path / "g.xml")
    with pytest.raises(ModelError, match="unknown model file type '.bin'"):
        locate(tmp_path / "b.bin")


# -- a toy model format, registered here -------------------------------------------------------

class ToyDetector(torch.nn.Module):
    """One box per frame: the whole image, at the score the toy file holds."""

    def __init__(self, score: float, input_size: int | None):
        super().__init__()
        self.score = score
        self.input_size = input_size

    def detect(self, frames, conf=0.0, nms=0.5, max_detections=100):
        return [np.array([[0, 0, f.shape[1], f.shape[0], self.score]]) for f in frames]


def read_toy_detector(topology: Path, weights: Path | None, *, device="cpu",
                      input_size: int | None = None) -> ToyDetector:
    return ToyDetector(float(Path(topology).read_text()), input_size).to(device)


@pytest.fixture
def toy_model_format():
    fmt = MODEL_FORMATS.register(ModelFormat("toy", "a toy detector", (".toy",),
                                             detector=f"{__name__}:read_toy_detector"))
    try:
        yield fmt
    finally:
        MODEL_FORMATS.unregister("toy")


def test_a_registered_model_format_is_read_resolved_and_checked(toy_model_format, tmp_path):
    from posetracker.app.build import detector_files, sppe_files
    from posetracker.app.models.resolve import resolve_model
    from posetracker.estimators.rmpe import PersonDetector, load_detector
    from posetracker.estimators.sppe import load_sppe

    path = tmp_path / "box.toy"
    path.write_text("0.75")
    r = resolve_model(str(path))
    assert (r.format, r.kind, r.topology, r.weights) == ("toy", "detector", path, None)
    assert detector_files(str(path)) == (path, None)
    det = load_detector(*detector_files(str(path)), "cpu", 416)
    assert isinstance(det, ToyDetector) and det.input_size == 416
    boxes = PersonDetector(det)([np.zeros((40, 60, 3), np.uint8)])
    np.testing.assert_allclose(boxes[0], [[0, 0, 60, 40, 0.75]])
    with pytest.raises(ModelError, match="not a pose estimator"):
        sppe_files(str(path))
    with pytest.raises(ModelError, match="not a supported pose estimator file"):
        load_sppe(path)


def test_an_unregistered_suffix_is_refused_naming_the_formats(tmp_path):
    from posetracker.estimators.rmpe import load_detector

    path = tmp_path / "box.toy"
    path.write_text("0.75")
    with pytest.raises(ModelError, match="not a supported person detector file") as e:
        load_detector(path)
    for f in MODEL_FORMATS:
        if "detector" in f.stages:
            assert f.what in str(e.value)


# -- a toy output format, registered here ------------------------------------------------------

def write_toy(video: VideoPoses, path: Path, *, derive_head: bool, min_score: float) -> None:
    """One line per frame: its index and track ids."""
    lines = [f"{f.index} {' '.join(str(int(t)) for t in f.poses.track_ids)}" for f in video.frames]
    Path(path).write_text("\n".join(lines) + "\n")


@pytest.fixture
def toy_output_format():
    fmt = OUTPUT_FORMATS.register(OutputFormat("toy", "frame index and track ids per line",
                                               write_toy, (".txt", ".meta.json"),
                                               meta_inside=False))
    try:
        yield fmt
    finally:
        OUTPUT_FORMATS.unregister("toy")


def _stream(path: Path, frames: int = 3) -> None:
    sink = JsonlSink(path)
    for i in range(frames):
        kp = np.full((2, 17, 2), 10.0 + i)
        poses = FramePoses.from_keypoints(kp, np.full((2, 17), 0.9), COCO17, track_ids=[4, 9])
        sink.write(SourceFrame(i, None, f"{i:06d}.jpg"), poses)
    sink.close({})


def test_a_registered_output_format_is_a_cli_choice_a_setting_and_written(toy_output_format,
                                                                         tmp_path, capsys):
    from posetracker.app.output import OutputPolicy
    from posetracker.app.settings import OutputConfig

    assert "toy" in _choices(_subparser(build_parser(), "track"), "--format")
    stream, out = tmp_path / "run.jsonl", tmp_path / "run.txt"
    _stream(stream)
    assert main(["convert", "jsonl", str(stream), str(out), "--format", "toy"]) == 0
    assert out.read_text().splitlines() == ["0 4 9", "1 4 9", "2 4 9"]
    assert json.loads((tmp_path / "run.meta.json").read_text()) == {
        "converted_from": str(stream)}
    assert toy_output_format.read_meta(out) == {"converted_from": str(stream)}
    # the settings take it, by flag and by --set, and the output policy keeps the model's joints
    capsys.readouterr()
    assert main(["track", "--dump-config", "--set", "pipeline.output.format=toy"]) == 0
    assert "format: toy" in capsys.readouterr().out
    assert OutputPolicy.for_output(OutputConfig(format="toy")) == OutputPolicy()


def test_an_unknown_output_format_is_one_line(tmp_path, capsys):
    from posetracker.io.sinks import FinalJsonSink

    with pytest.raises(InputError, match="unknown output format 'toy' \\(choose from "
                       "posetrack18, posetrack17, coco\\)"):
        FinalJsonSink(tmp_path / "x.json", "toy")
    assert main(["track", "--dump-config", "--set", "pipeline.output.format=toy"]) == 2
    assert "'toy' is not one of 'posetrack18', 'posetrack17', 'coco'" in capsys.readouterr().err


def test_the_extending_guide_lists_exactly_the_registered_formats():
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text()
    models, outputs = text.split("## A new output format")
    outputs = outputs.split("## A new tracker")[0]

    def table(section: str) -> tuple[str, ...]:
        return tuple(re.findall(r"^\| `([a-z0-9]+)` ", section, flags=re.M))

    assert table(models) == MODEL_FORMATS.names()
    assert table(outputs) == OUTPUT_FORMATS.names()
    for fmt in MODEL_FORMATS:  # the "serves" column
        row = next(line for line in models.splitlines() if line.startswith(f"| `{fmt.name}`"))
        assert [c.strip() for c in row.split("|")][4] == ", ".join(fmt.stages)
