"""Every output path is checked before any work: one ``posetracker: error:`` line naming the path
as given, exit 2, and nothing left behind (no .jsonl, no probe file)."""

from __future__ import annotations

import pytest

from posetracker.app.cli import main

BAD = "/proc/posetracker-nowhere/x"  # /proc refuses new files, even to root


def _cases():
    """``(argv builder, the bad path)``: each output option of ``track`` and ``eval``."""
    video = "{data}/videos/two_people.mp4"
    poses = "{data}/posetrack18_format/003418_mpii_test.json"
    gt = "{data}/posetrack18_format/003418_mpii_test.json"
    return [
        (["track", video, "-o", BAD + ".json"], BAD + ".json"),
        (["track", video, "-o", "{tmp}/o.json", "--jsonl", BAD + ".jsonl"], BAD + ".jsonl"),
        (["track", video, "-o", "{tmp}/o.json", "--csv", BAD + ".csv"], BAD + ".csv"),
        (["track", video, "-o", "{tmp}/o.json", "--render", BAD + ".mp4"], BAD + ".mp4"),
        (["track", video, "-o", "{tmp}"], "{tmp}"),  # a directory is not a file
        (["track", "--poses", poses, "-o", BAD + ".json"], BAD + ".json"),
        (["eval", "coco", gt, gt, "--plot", BAD + ".png"], BAD + ".png"),
        (["eval", "coco", gt, gt, "--out", BAD + ".csv"], BAD + ".csv"),
        (["eval", "crowdpose", gt, gt, "--out", BAD + ".md"], BAD + ".md"),
        (["eval", "posetrack", gt, gt, "--plot", BAD + ".png"], BAD + ".png"),
        (["estimate", video, "-o", BAD + ".json"], BAD + ".json"),
        (["estimate", video, "-o", "{tmp}/o.json", "--jsonl", BAD + ".jsonl"], BAD + ".jsonl"),
    ]


@pytest.mark.parametrize("argv,bad", _cases())
def test_unwritable_output_is_refused_up_front(argv, bad, tmp_path, data_dir, capsys,
                                                monkeypatch):
    import posetracker.app.api as api
    import posetracker.app.build as build

    def no_models(*a, **k):  # the check must come before any model loads
        raise AssertionError("models loaded before the output check")

    monkeypatch.setattr(api, "build_stages", no_models)
    monkeypatch.setattr(build, "build_estimator", no_models)
    fill = {"data": data_dir, "tmp": tmp_path}
    argv = [a.format(**fill) for a in argv]
    bad = bad.format(**fill)
    assert main([*argv, "--quiet"] if argv[0] != "eval" else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("posetracker: error: ")
    assert f"cannot write {bad} " in err[0]
    assert list(tmp_path.iterdir()) == []  # no empty .jsonl, no probe left
