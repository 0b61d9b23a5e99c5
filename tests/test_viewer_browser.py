"""The viewer page in headless Chromium (tests/browser.py drives it over the DevTools protocol):
it loads without console errors, draws the expected skeletons, the slider hides joints, a timeline
click seeks, the listed events are the evaluation's counts, a screenshot matches a rendering made
here, and a 2,000-frame, 20-person sequence opens fast and plays at its frame rate."""

from __future__ import annotations

import colorsys
import json
import subprocess
import time

import numpy as np
import pytest
from browser import Browser, find_chromium
from conftest import require_test_extra
from viewer_cases import make_case, view

from posetracker.core.poses import Frame, FramePoses, VideoPoses
from posetracker.core.schemas import POSETRACK18
from posetracker.evaluation.posetrack import evaluate_videos_per_joint
from posetracker.io.formats.posetrack import write_posetrack18


@pytest.fixture(scope="module")
def browser():
    b = Browser(find_chromium())
    yield b
    b.close()


@pytest.fixture(scope="module")
def case(data_dir, tmp_path_factory):
    return make_case(data_dir, tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def opened(browser, case):
    browser.open(case["page"])
    browser.wait_for("window.viewer && viewer.state.ready")
    return browser


def _expected(video: VideoPoses, f: int, threshold: float = 0.0) -> tuple[int, int]:
    """(skeletons, joints) the page should draw in frame ``f``: joints present with a score of
    at least ``threshold`` (as the page stores it: score * 255 rounded)."""
    p = video.frames[f].poses
    present = np.isfinite(np.asarray(p.keypoints)).all(-1)
    score = np.rint(np.nan_to_num(np.asarray(p.keypoint_scores)) * 255)
    shown = present & (score >= threshold * 255 - 1e-6)
    return int((shown.sum(1) > 0).sum()), int(shown.sum())


def test_loads_without_errors_and_draws_each_frame(opened, case):
    assert opened.console_errors == []
    assert opened.js("viewer.state.errors") == []
    for f in (0, 3, 10, 75, 150):
        opened.js(f"viewer.seek({f})")
        drawn = opened.js("viewer.state.drawn")
        assert drawn["frame"] == f
        assert (drawn["skeletons"], drawn["joints"]) == _expected(case["pred_video"], f)
        assert (drawn["gtSkeletons"], drawn["gtJoints"]) == _expected(case["gt_video"], f)
        assert opened.js("document.getElementById('counter').textContent") == f"frame {f} / 150"


def test_frame_keys_step_one_frame(opened):
    opened.js("viewer.seek(20)")
    for key, want in (("ArrowRight", 21), (".", 22), ("ArrowLeft", 21), (",", 20)):
        opened.js(f"document.dispatchEvent(new KeyboardEvent('keydown', {{key: '{key}'}}))")
        assert opened.js("viewer.state.frame") == want


def test_slider_hides_joints_below_it(opened, case):
    opened.js("viewer.seek(40)")
    for t in (0.0, 0.5, 0.9, 1.0):
        opened.js(f"{{const s = document.getElementById('threshold'); s.value = '{t}';"
                  " s.dispatchEvent(new Event('input'));}")
        drawn = opened.js("viewer.state.drawn")
        assert (drawn["skeletons"], drawn["joints"]) == _expected(case["pred_video"], 40, t)
        assert drawn["gtJoints"] == _expected(case["gt_video"], 40)[1]  # ground truth stays whole
    assert _expected(case["pred_video"], 40, 0.9)[1] < _expected(case["pred_video"], 40)[1]
    opened.js("viewer.setThreshold(0)")


def test_clicking_a_timeline_row_follows_and_seeks(opened, case):
    tracks = _page_tracks(opened)
    opened.js("viewer.seek(100)")
    target = max(tracks, key=lambda t: (t["first"], -t["last"]))
    assert target["last"] != 100
    row = opened.js(f"viewer.timelineRow({target['id']})")
    opened.js("document.getElementById('timeline').scrollIntoView()")
    rect = opened.js("(() => {const r = document.getElementById('timeline').getBoundingClientRect();"
                     " return {x: r.left, y: r.top, w: r.width};})()")
    opened.click(rect["x"] + rect["w"] / 2, rect["y"] + (row + 0.5) * opened.js("viewer.ROW"))
    assert opened.js("viewer.state.follow") == target["id"]
    assert opened.js("viewer.state.frame") == target["first"]
    opened.js("document.getElementById('last').click()")
    assert opened.js("viewer.state.frame") == target["last"]
    opened.js("viewer.follow(null)")


def _page_tracks(b: Browser) -> list[dict]:
    return json.loads(b.js("JSON.stringify(JSON.parse(document.getElementById('data').textContent).tracks)"))


def test_listed_events_are_the_evaluations_counts(opened, case):
    table = evaluate_videos_per_joint([case["gt_video"]], [case["pred_video"]])
    listed = opened.js("(() => {const n = {switch: 0, miss: 0, fp: 0};"
                       " for (const li of document.querySelectorAll('#events li'))"
                       "   n[li.className] += Number(li.dataset.joints); return n;})()")
    assert listed == {"switch": table["ID switches"].sum(), "miss": table["Misses"].sum(),
                      "fp": table["False positives"].sum()}
    # an entry jumps to its frame
    opened.js("document.querySelectorAll('#events li.switch')[0].click()")
    assert opened.js("viewer.state.frame") == len(case["gt_video"]) // 2


def _reference(video: VideoPoses, f: int, width: int, height: int, line: int, up: int = 4) -> np.ndarray:
    """The frame as the page should show it (grey background, skeletons in their track colours,
    joints as discs of 1.2 line widths) at ``up`` times the media's size, RGB."""
    import cv2

    img = np.full((height * up, width * up, 3), 40, np.uint8)
    p = video.frames[f].poses
    for kp, tid in zip(np.asarray(p.keypoints), np.asarray(p.track_ids)):
        r, g, b = colorsys.hls_to_rgb((tid * 137.508) % 360 / 360, 0.55, 0.80)
        colour = (int(r * 255), int(g * 255), int(b * 255))
        ok = np.isfinite(kp).all(-1)
        pts = np.rint(np.nan_to_num(kp) * up).astype(int)
        for a, c in video.schema.skeleton:
            if ok[a] and ok[c]:
                cv2.line(img, tuple(pts[a]), tuple(pts[c]), colour, line * up)
        for j in np.flatnonzero(ok):
            cv2.circle(img, tuple(pts[j]), round(line * 1.2 * up), colour, -1)
    return img


def test_screenshot_matches_a_rendered_reference(opened, case):
    """The stage at frame 61 (no evaluation events there; ground truth and labels off) against
    the same skeletons drawn by OpenCV: the mean difference is within a tolerance that a frame
    drawn without the skeletons, or the skeletons of another frame, exceeds."""
    import cv2

    opened.js("viewer.seek(61); for (const k of ['gt', 'ids']) {const c = document.getElementById('show-' + k);"
              " if (c.checked) c.click();}")
    opened.js("window.scrollTo(0, 0)")
    opened.wait_for("document.querySelector('#stage img').complete")
    rect = opened.js("(() => {const r = document.getElementById('overlay').getBoundingClientRect();"
                     " return {x: r.left, y: r.top, width: r.width, height: r.height};})()")
    shot = cv2.imdecode(np.frombuffer(opened.screenshot(rect), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    size = (shot.shape[1], shot.shape[0])
    line = max(2, round(720 / 400))

    def diff(f: int | None) -> float:
        ref = (_reference(case["pred_video"], f, 720, 540, line) if f is not None
               else np.full((540, 720, 3), 40, np.uint8))
        ref = cv2.resize(ref, size, interpolation=cv2.INTER_AREA)
        return float(np.abs(ref.astype(np.float64) - shot).mean())

    same, blank, other = diff(61), diff(None), diff(11)
    print(f"\nviewer screenshot: mean |difference| {same:.2f} (blank {blank:.2f}, frame 11 {other:.2f})")
    assert same < 1.5, (same, blank, other)
    assert blank > 2 * same and other > 2 * same, (same, blank, other)
    opened.js("for (const k of ['gt', 'ids']) document.getElementById('show-' + k).click()")


# ---- a large sequence -------------------------------------------------------------------------
FRAMES, PEOPLE, FPS = 2000, 20, 25


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """2,000 frames of 20 walking people (PoseTrack 2018, 17 joints) over a VP8 video of the
    same length at 25 fps (PyAV, the test extra)."""
    av = require_test_extra("av")
    d = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(1)
    k = POSETRACK18.num_keypoints
    base = rng.uniform(-30, 30, (PEOPLE, k, 2))
    start = rng.uniform(50, 1200, (PEOPLE, 2))
    frames = []
    for i in range(FRAMES):
        centre = start + np.stack([30 * np.sin(i / 40 + np.arange(PEOPLE)), np.full(PEOPLE, 20 * np.cos(i / 50))], -1)
        kp = base + centre[:, None] + rng.normal(0, 1, (PEOPLE, k, 2))
        frames.append(Frame(i, FramePoses.from_keypoints(kp, rng.uniform(0.1, 1, (PEOPLE, k)), POSETRACK18,
                                                         track_ids=np.arange(PEOPLE))))
    result = d / "large.json"
    write_posetrack18(VideoPoses("large", frames, POSETRACK18), result)
    video = d / "large.webm"
    with av.open(str(video), "w") as out:
        # one thread: libvpx threads crawl on a busy machine
        stream = out.add_stream("libvpx", rate=FPS, options={"deadline": "realtime", "cpu-used": "8", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        img = np.zeros((180, 320, 3), np.uint8)
        for i in range(FRAMES):
            img[:] = i % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    page = d / "large.html"
    r = view(result, "--video", video, "-o", page)
    assert r.returncode == 0, r.stderr
    return page


def test_large_sequence_opens_fast_and_plays_at_its_rate(browser, large):
    """Under 10 MB; ready (data decoded, first frame drawn) in under 3 s; playing, the overlay
    follows every video frame at 25 fps. The figures are printed (pytest -s) for docs/viewer.md."""
    size = large.stat().st_size
    assert size < 10e6
    t0 = time.monotonic()
    browser.open(large)
    browser.wait_for("window.viewer && viewer.state.ready && viewer.state.mediaReadyMs !== null")
    wall = time.monotonic() - t0
    ready = browser.js("viewer.state.readyMs")
    assert ready < 3000, ready
    assert browser.console_errors == [] and browser.js("viewer.state.errors") == []
    browser.js("viewer.seek(0); viewer.play()")
    time.sleep(4)
    browser.js("viewer.pause()")
    play = browser.js("viewer.state.play")
    seconds = (play["endMs"] - play["startMs"]) / 1000
    rate = play["frames"] / seconds
    mean_draw = play["drawMsSum"] / max(1, play["frames"])
    print(f"\nviewer large: {size / 1e6:.2f} MB, ready {ready:.0f} ms (page open {wall:.2f} s), "
          f"played {play['frames']} frames in {seconds:.2f} s = {rate:.1f} fps (video {FPS}), "
          f"{play['skipped']} skipped, draw mean {mean_draw:.2f} ms max {play['drawMsMax']:.1f} ms")
    assert browser.js("viewer.state.drawn.skeletons") == PEOPLE
    # the video advanced at its rate, and the overlay drew (nearly) every frame it showed
    assert (play["frames"] + play["skipped"]) / seconds > 0.9 * FPS, play
    assert play["skipped"] <= 0.05 * play["frames"], play
    assert mean_draw < 1000 / FPS


def test_chromium_missing_skips_or_fails_in_ci(monkeypatch):
    """Without a browser the tests skip locally and fail under CI."""
    import browser as browser_module

    monkeypatch.setattr(browser_module.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        browser_module.find_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        browser_module.find_chromium()


def test_view_help_lists_keys():
    r = subprocess.run(["posetracker", "view", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "left/right" in r.stdout


def test_report_sorts_and_links_the_viewer(browser, case, tmp_path):
    """eval --html: a header click sorts the per-joint table; a sequence link opens its viewer."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / case["gt"].stem).symlink_to(case["frames"], target_is_directory=True)
    report = tmp_path / "report.html"
    r = subprocess.run(["posetracker", "eval", "posetrack", str(case["gt"].parent), str(case["pred"].parent),
                        "--html", str(report), "--videos", str(videos)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    browser.open(report)
    column = "(t, c) => Array.from(t.tBodies[0].rows, (r) => r.children[c].textContent)"
    browser.js("document.querySelectorAll('table')[1].querySelectorAll('th')[1].click()")  # AP
    ap = browser.js(f"({column})(document.querySelectorAll('table')[1], 1)")
    values = [float(v) for v in ap if v]
    assert values == sorted(values) and ap[-1] == ""  # the nose has no figure: last
    browser.js("document.querySelectorAll('table')[1].querySelectorAll('th')[1].click()")
    again = [float(v) for v in browser.js(f"({column})(document.querySelectorAll('table')[1], 1)") if v]
    assert again == sorted(values, reverse=True)
    browser.js("document.querySelector('a').click()")
    browser.wait_for("location.href.endsWith('.html') && location.href.includes('report_viewer')"
                     " && window.viewer && viewer.state.ready")
    assert browser.js("viewer.state.counts.switches") > 0
    assert browser.console_errors == []


def test_real_video_plays_and_seeks_in_step(browser, data_dir, tmp_path):
    """A real H.264 video (72 frames at 28 fps): a seek shows the frame the counter names, and
    playing advances the overlay with the video."""
    rng = np.random.default_rng(0)
    frames = [Frame(i, FramePoses.from_keypoints(rng.uniform(100, 900, (2, 17, 2)), rng.uniform(0.1, 1, (2, 17)),
                                                 POSETRACK18, track_ids=np.arange(2))) for i in range(72)]
    write_posetrack18(VideoPoses("two_people", frames, POSETRACK18), tmp_path / "two.json")
    page = tmp_path / "two.html"
    r = view(tmp_path / "two.json", "--video", data_dir / "videos/two_people.mp4", "-o", page)
    assert r.returncode == 0, r.stderr
    browser.open(page)
    browser.wait_for("window.viewer && viewer.state.mediaReadyMs !== null")
    fps = browser.js("JSON.parse(document.getElementById('data').textContent).media.fps")
    browser.js("viewer.seek(30)")
    browser.wait_for("!document.querySelector('video').seeking")
    assert browser.js("viewer.state.frame") == 30
    assert int(browser.js("document.querySelector('video').currentTime") * fps) == 30
    browser.js("viewer.play()")
    time.sleep(1)
    browser.js("viewer.pause()")
    shown = browser.js("viewer.state.frame")
    assert 30 < shown and abs(browser.js("document.querySelector('video').currentTime") * fps - shown) < 2
    assert browser.js("viewer.state.errors") == []
