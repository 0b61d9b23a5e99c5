"""``posetracker track --poses`` and ``posetracker bench tracking`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from posetracker.app.cli import main
from posetracker.io.formats.posetrack import read_posetrack
from tests.test_tracker import person

# COCO-17 joints of a walking person: the PoseTrack-17 template's joints reused where they exist.
_COCO_FROM_PT17 = [13, 13, 13, 13, 13, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0]


def _results(n_frames: int, ids_as_names: bool) -> list[dict]:
    out = []
    for t in range(n_frames):
        for cx in (150 + 4 * t, 600 - 4 * t):
            kp = person(cx, 300)[_COCO_FROM_PT17]
            flat = np.column_stack([kp, np.full(17, 0.9)]).ravel().tolist()
            iid = f"{t:06d}.jpg" if ids_as_names else 1000 + t
            out.append({"image_id": iid, "category_id": 1, "keypoints": flat, "score": 0.95})
    return out


@pytest.mark.parametrize("ids_as_names", [False, True], ids=["coco", "alphapose"])
@pytest.mark.parametrize("tracker", ["poseflow", "iou", "alphapose"])
def test_track_results_file_writes_tracked_posetrack18(tmp_path, ids_as_names, tracker, capsys):
    src = tmp_path / "poses.json"
    src.write_text(json.dumps(_results(12, ids_as_names)))
    out = tmp_path / "tracked.json"
    assert main(["track", "--poses", str(src), "-o", str(out), "--tracker", tracker]) == 0
    video = read_posetrack(out)
    assert len(video.frames) == 12
    ids = [f.poses.track_ids.tolist() for f in video.frames]
    assert all(len(i) == 2 for i in ids) and all(i == ids[0] for i in ids)
    assert "12 frames" in capsys.readouterr().err


def test_track_posetrack_input_to_posetrack17(tmp_path):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(_results(10, False)))
    mid = tmp_path / "mid.json"
    assert main(["track", "--poses", str(src), "-o", str(mid), "--tracker", "none"]) == 0
    out = tmp_path / "out17.json"
    assert main(["track", "--poses", str(mid), "-o", str(out), "--format", "posetrack17",
                 "--set", "tracker.poseflow.window=3"]) == 0
    data = json.loads(out.read_text())
    assert "annolist" in data and len(data["annolist"]) == 10
    ids = {r["track_id"][0] if isinstance(r["track_id"], list) else r["track_id"]
           for f in data["annolist"] for r in f["annorect"]}
    assert len(ids) == 2


def test_track_with_frames_folder(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((400, 840)) * 255).astype(np.uint8), (5, 5), 1.0)
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(6):
        cv2.imwrite(str(frames / f"{t:06d}.jpg"), base[:, 4 * t:4 * t + 800])
    src = tmp_path / "poses.json"
    src.write_text(json.dumps(_results(6, True)))
    out = tmp_path / "t.json"
    assert main(["track", "--poses", str(src), "--frames", str(frames), "-o", str(out)]) == 0
    assert len(read_posetrack(out).frames) == 6


@pytest.mark.parametrize("argv, message", [
    (["track"], "--poses"),
    (["track", "--poses", "missing.json", "-o", "x.json"], "no such file"),
    (["track", "--poses", "{bad}", "-o", "x.json"], "malformed JSON"),
    (["track", "--poses", "{list}"], "-o"),
    (["track", "--poses", "{list}", "-o", "x.json", "--set", "poseflow.nope=1"], "unknown key"),
    (["track", "--poses", "{list}", "-o", "x.json", "--frames", "nowhere"], "no such folder"),
])
def test_track_bad_input_is_one_line_and_status_2(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    good = tmp_path / "list.json"
    good.write_text(json.dumps(_results(2, False)))
    argv = [a.replace("{bad}", str(bad)).replace("{list}", str(good))
            .replace("x.json", str(tmp_path / "x.json")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posetracker: error:") and message in err and "\n" not in err


def test_bench_tracking_on_bonn(data_dir, capsys, tmp_path):
    import pandas as pd

    bonn = data_dir / "bonn_posetrack" / "annolist" / "test" / "annolist.mat"
    table = tmp_path / "t.csv"
    assert main(["bench", "tracking", "--bonn", str(bonn), "--videos", "2", "--noise", "none,high",
                 "--trackers", "poseflow,poseflow-landed,none", "--seed", "0",
                 "--out", str(table)]) == 0
    out = capsys.readouterr().out
    _, _, speed = out.partition("Speed:")
    assert "poseflow" in speed and "frames/s" in speed
    df = pd.read_csv(table).set_index(["noise", "tracker"])
    assert set(df["seed"]) == {0}
    assert {"MOTA", "IDF1", "ID switches", "person switches", "fragments", "misses",
            "false pos.", "frames/s"} <= set(df.columns)
    mota, idf1 = df["MOTA"], df["IDF1"]
    # Untouched ground truth tracked by PoseFlow is (nearly) perfect; a new id per frame is not.
    assert mota[("none", "poseflow")] > 95.0 and idf1[("none", "poseflow")] > 95.0
    assert mota[("none", "none")] < mota[("none", "poseflow")] - 50
    assert idf1[("none", "none")] < 20.0
    assert mota[("high", "poseflow")] < mota[("none", "poseflow")]
    # Look-ahead and filling beat the tracker before them on noisy poses.
    assert mota[("high", "poseflow")] > mota[("high", "poseflow-landed")] + 2
    assert df.loc[("high", "poseflow"), "fragments"] < df.loc[("high", "poseflow-landed"),
                                                               "fragments"]


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0,x"], "--seeds"),
    (["--crossing", "ref.json"], "--crossing-frames"),
    (["--trackers", "poseflow-nothing"], "unknown tracker"),
])
def test_bench_tracking_bad_options(data_dir, capsys, extra, message):
    bonn = data_dir / "bonn_posetrack" / "annolist" / "test" / "annolist.mat"
    assert main(["bench", "tracking", "--bonn", str(bonn), "--videos", "1", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("posetracker: error:") and message in err
