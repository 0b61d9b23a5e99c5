"""PF-NMS at the end of the input: nobody is dropped for being short when the input ended before
their flow could reach ``min_flow_len`` frames; ghosts that ended earlier are still suppressed."""

from __future__ import annotations

import json

import pytest
from test_tracker import frame, person, run

from posetracker.app.cli import main


@pytest.mark.parametrize("n", [1, 2, 3])
def test_an_input_shorter_than_min_flow_len_keeps_its_people(n):
    out = run("poseflow", [frame(person(100, 300), person(400, 300)) for _ in range(n)])
    assert [len(f) for f in out] == [2] * n
    assert all(sorted(f.track_ids.tolist()) == [0, 1] for f in out)


def test_a_person_entering_in_the_last_frames_is_kept():
    # Person B appears in the last 3 frames of 12: its flow could not have been 4 long.
    frames = [frame(person(100, 300)) for _ in range(9)]
    frames += [frame(person(100, 300), person(400, 300)) for _ in range(3)]
    out = run("poseflow", frames)
    assert [len(f) for f in out] == [1] * 9 + [2] * 3


def test_a_flow_that_ends_early_and_short_is_still_suppressed():
    # A 2-frame ghost at frames 2-3 of 12 had 8 more frames to grow: suppressed.
    frames = [frame(person(100, 300), person(400, 300)) if t in (2, 3) else frame(person(100, 300))
              for t in range(12)]
    out = run("poseflow", frames)
    assert [len(f) for f in out] == [1] * 12


def test_a_short_flow_that_had_its_chance_at_the_end_is_suppressed():
    # Seen in 2 of the last 5 frames: it could have reached 4 poses and did not.
    frames = [frame(person(100, 300)) for _ in range(12)]
    for t in (7, 9):
        frames[t] = frame(person(100, 300), person(400, 300))
    out = run("poseflow", frames)
    assert [len(f) for f in out] == [1] * 12


@pytest.mark.parametrize("name", ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"])
def test_track_poses_on_a_one_frame_posetrack_file_keeps_its_poses(name, tmp_path, data_dir,
                                                                    capsys):
    src = data_dir / "posetrack18_format" / f"{name}.json"
    n_in = len(json.loads(src.read_text())["annotations"])
    out = tmp_path / "out.json"
    code = main(["track", "--poses", str(src), "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert len(json.loads(out.read_text())["annotations"]) == n_in
