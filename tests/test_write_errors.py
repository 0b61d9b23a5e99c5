"""A full disk (ENOSPC) or a failing write on any output: one line naming the path the user gave,
exit 2, and whatever was already written kept (the streams' finished frames; the old final file)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from posetracker.app.cli import main
from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write_text
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17
from posetracker.io.sinks import CsvSink, FinalJsonSink, JsonlSink, SinkSet
from posetracker.io.sources import SourceFrame

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")


def _poses() -> FramePoses:
    return FramePoses(np.full((1, 17, 2), 5.0), np.full((1, 17), 0.9), np.array([[0, 0, 9, 9.0]]),
                      np.array([0.8]), COCO17, track_ids=np.array([0]))


def _frame(i: int) -> SourceFrame:
    return SourceFrame(i, np.zeros((8, 8, 3), np.uint8), f"{i}.jpg")


class _FullAfter:
    """A file object that takes ``n`` writes, then fails like a full disk."""

    def __init__(self, f, n: int):
        self._f, self._left = f, n

    def write(self, text: str) -> int:
        if self._left == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= 1
        return self._f.write(text)

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_stream_that_fills_up_names_its_path_and_keeps_the_finished_frames(tmp_path):
    jl, csv_path, out = tmp_path / "o.jsonl", tmp_path / "o.csv", tmp_path / "o.json"
    out.write_text('{"old": true}')  # a previous run's final file stays whole
    jsonl = JsonlSink(jl)
    sinks = SinkSet([jsonl, FinalJsonSink(out, "posetrack18", "o"), CsvSink(csv_path)])
    sinks.write(_frame(0), _poses())  # the stream opens on its first frame
    jsonl._f = _FullAfter(jsonl._f, 1)
    sinks.write(_frame(1), _poses())
    with pytest.raises(InputError, match=f"cannot write {jl}: No space left on device"):
        sinks.write(_frame(2), _poses())
    sinks.abort()  # what `track` does after a failure: must not raise again
    lines = jl.read_text().splitlines()
    assert [json.loads(x)["frame"] for x in lines] == [0, 1]
    assert json.loads(out.read_text()) == {"old": True}
    assert not list(tmp_path.glob(".*.tmp"))


def test_final_file_write_error_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "o.json"
    out.write_text("old")

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.EIO, "Input/output error")

    from posetracker.core.fileio import atomic_write

    with pytest.raises(InputError, match=f"cannot write {out}: Input/output error"):
        atomic_write(out, boom)
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json"]


@needs_dev_full
def test_atomic_write_to_a_device_writes_into_it_and_does_not_replace_it():
    before = FULL.stat()
    with pytest.raises(InputError, match="cannot write /dev/full: No space left on device"):
        atomic_write_text(FULL, "x" * 100000)
    after = FULL.stat()
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)  # still the device


@needs_dev_full
@pytest.mark.parametrize("argv", [
    ["convert", "jsonl", "{d}/ok.jsonl", "/dev/full"],
    ["eval", "coco", "{gt}", "{pred}", "--plot", "/dev/full"],
    ["eval", "coco", "{gt}", "{pred}", "--out", "{d}/link.csv"],
    ["convert", "posetrack", "{pt}", "{d}/full_dir", "--to", "2017"],
], ids=["convert-jsonl", "eval-plot", "eval-out", "convert-posetrack"])
def test_cli_outputs_on_a_full_device(argv, tmp_path, data_dir, capsys):
    rec = {"frame": 0, "image": "a.jpg", "schema": "coco17",
           "people": [{"track_id": 0, "score": 0.9, "box": [1, 2, 30, 40],
                       "keypoints": [[10.0, 20.0, 0.9]] * 17}]}
    (tmp_path / "ok.jsonl").write_text(json.dumps(rec) + "\n")
    (tmp_path / "link.csv").symlink_to(FULL)  # a report path that is a full device
    (tmp_path / "full_dir").mkdir()
    pt = data_dir / "posetrack18_format" / "003418_mpii_test.json"
    (tmp_path / "full_dir" / pt.name).symlink_to(FULL)
    fields = {"d": str(tmp_path), "pt": str(pt),
              "gt": str(data_dir / "metric_cases" / "example_coco_val.json"),
              "pred": str(data_dir / "metric_cases" / "example_coco_preds.json")}
    code = main([a.format(**fields) for a in argv])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 2
    assert len(err) == 1 and err[0].startswith("posetracker: error: cannot write ")
    assert "No space left on device" in err[0]
