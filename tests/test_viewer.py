"""``posetracker view``: the page's data (the evaluation's own events), the command's input
checks, and the page itself in headless Chromium (tests/browser.py)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from viewer_cases import SEQ, blank_frames, make_case, perturbed, view

from posetracker.app.viewer.data import gt_events
from posetracker.evaluation.posetrack import evaluate_videos_per_joint, sequence_matching
from posetracker.io.formats.posetrack import write_posetrack17


@pytest.fixture(scope="module")
def case(data_dir, tmp_path_factory):
    return make_case(data_dir, tmp_path_factory.mktemp("viewer"))


def _page_data(page: Path) -> dict:
    html = page.read_text("utf-8")
    start = html.index('<script type="application/json" id="data">') + len('<script type="application/json" id="data">')
    return json.loads(html[start:html.index("</script>", start)])


# ---- the evaluation's matching --------------------------------------------------------------
def test_matching_counts_equal_the_metric(case):
    """Summed over frames and joints, the per-frame assignment is the metric's counts, joint by
    joint; the viewer's grouped events carry the same totals."""
    gt, pred = case["gt_video"], case["pred_video"]
    table = evaluate_videos_per_joint([gt], [pred])
    matching = sequence_matching(gt, pred)
    for j, joint in enumerate(table.index):
        evs = [fm.joints[j] for fm in matching]
        assert sum(len(e.switches) for e in evs) == table.loc[joint, "ID switches"]
        assert sum(len(e.misses) for e in evs) == table.loc[joint, "Misses"]
        assert sum(len(e.false_positives) for e in evs) == table.loc[joint, "False positives"]
    events, counts = gt_events(gt, pred)
    assert counts["switches"] == table["ID switches"].sum() > 0
    assert counts["misses"] == table["Misses"].sum() > 0
    assert counts["fps"] == table["False positives"].sum() > 0
    for kind, key in (("switch", "switches"), ("miss", "misses"), ("fp", "fps")):
        assert sum(len(e["joints"]) for e in events if e["kind"] == kind) == counts[key]
    # the swap of the first two ids half-way is an id switch of both people, in that frame
    swap = len(gt) // 2
    assert {(e["gt"], e["pred"]) for e in events if e["kind"] == "switch" and e["frame"] == swap} \
        == {(0, 1), (1, 0)}


def test_matching_is_empty_without_track_ids(case):
    gt, pred = case["gt_video"], case["pred_video"]
    untracked = type(pred)(pred.name, [type(f)(f.index, f.poses.with_track_ids(None)) for f in pred.frames],
                           pred.schema)
    assert sequence_matching(gt, untracked) == []


# ---- the command ----------------------------------------------------------------------------
def test_page_is_self_contained(case):
    html = case["page"].read_text("utf-8")
    assert "<script src" not in html and "<link" not in html and "@import" not in html
    assert "http://" not in html and "https://" not in html
    data = _page_data(case["page"])
    assert data["media"]["kind"] == "frames" and data["media"]["srcs"][0].startswith("data:image/png;base64,")
    assert data["media"]["num_frames"] == len(case["gt_video"])
    ids = {int(t) for f in case["gt_video"].frames for t in f.poses.track_ids}
    assert [t["id"] for t in data["tracks"]] == sorted(ids | {900})


def test_large_frame_folder_is_referenced_relatively(case, tmp_path):
    page = tmp_path / "sub" / "page.html"
    r = view(case["pred"], "--video", case["frames"], "-o", page, "--embed-limit-mb", "0")
    assert r.returncode == 0, r.stderr
    srcs = _page_data(page)["media"]["srcs"]
    assert (page.parent / srcs[3]).resolve() == (case["frames"] / "000003.png").resolve()


@pytest.mark.parametrize("kind", ["wrong shape", "frame count", "missing video", "gt frame count"])
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, kind):
    pred, video, extra = case["pred"], case["frames"], []
    if kind == "wrong shape":
        pred = tmp_path / "bad.json"
        pred.write_text(json.dumps({"frames": [1, 2, 3]}))
    elif kind == "frame count":
        video = blank_frames(tmp_path / "short", 10, 64, 48)
    elif kind == "missing video":
        video = tmp_path / "nothing.mp4"
    else:
        short = perturbed(case["gt_video"])
        short.frames[:] = short.frames[:20]
        extra = ["--gt", tmp_path / "gt.json"]
        write_posetrack17(short, tmp_path / "gt.json")
    out = tmp_path / "out.html"
    r = view(pred, "--video", video, *extra, "-o", out)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("posetracker: error:"), r.stderr
    assert not out.exists() and not any(p.name.startswith(".out.html") for p in tmp_path.iterdir())


def test_coco_results_one_image_per_frame(data_dir, tmp_path):
    """estimate's COCO results over an image folder: frame i shows the results of image i's id."""
    gt = json.loads((data_dir / "coco_mini_val2017/annotations/person_keypoints_val2017.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt["annotations"] if a["num_keypoints"] > 0]
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(results))
    page = tmp_path / "coco.html"
    images = data_dir / "coco_mini_val2017/val2017"
    r = view(pred, "--video", images, "-o", page, "--embed-limit-mb", "0")
    assert r.returncode == 0, r.stderr
    data = _page_data(page)
    names = sorted(p.name for p in images.iterdir())
    assert data["media"]["num_frames"] == len(names)
    count = np.frombuffer(base64.b64decode(data["pred"]["count"]), "<u2")
    want = [sum(1 for x in results if x["image_id"] == int(Path(n).stem)) for n in names]
    assert count.tolist() == want and sum(want) == 68


# ---- eval --html ------------------------------------------------------------------------------
def _eval(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["posetracker", "eval", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_eval_html_links_a_viewer_page_per_sequence(case, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / SEQ).symlink_to(case["frames"], target_is_directory=True)
    report = tmp_path / "report.html"
    r = _eval("posetrack", case["gt"].parent, case["pred"].parent, "--html", report, "--videos", videos)
    assert r.returncode == 0, r.stderr
    html = report.read_text("utf-8")
    assert f'<a href="report_viewer/{SEQ}.html">{SEQ}</a>' in html
    assert "PoseTrack per joint" in html and "data:image/png;base64," in html
    data = _page_data(tmp_path / "report_viewer" / f"{SEQ}.html")
    assert data["counts"] == gt_events(case["gt_video"], case["pred_video"])[1]


def test_eval_html_refuses_a_missing_video_before_writing(case, tmp_path):
    report = tmp_path / "report.html"
    r = _eval("posetrack", case["gt"].parent, case["pred"].parent, "--html", report, "--videos", tmp_path)
    assert r.returncode == 2 and "no video or frames folder for sequence" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_eval_coco_html_report(data_dir, tmp_path):
    cases = data_dir / "metric_cases"
    report = tmp_path / "coco.html"
    r = _eval("coco", cases / "example_coco_val.json", cases / "example_coco_preds.json", "--html", report)
    assert r.returncode == 0, r.stderr
    html = report.read_text("utf-8")
    assert '<table class="sortable">' in html and "0.86" in html  # AP 0.8609
