"""Frame sources: videos (real shared ones and small written ones), image folders in natural order,
globs, single images, frame selection, and one-line errors for unreadable input."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from posetracker.core.errors import InputError
from posetracker.io.sources import natural_key, open_source, read_image


def _write_image(path: Path, value: int, size=(24, 32)) -> None:
    img = np.full((*size, 3), value, np.uint8)
    img[..., 2] = 255 - value  # B != R so a channel swap shows
    assert cv2.imwrite(str(path), img)


def _write_video(path: Path, n: int, size=(48, 64)) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size[1], size[0]))
    for i in range(n):
        w.write(np.full((*size, 3), 10 * i % 250, np.uint8))
    w.release()


def test_natural_key_orders_numbers_by_value():
    names = ["img10.png", "img2.png", "img1.png", "IMG3.png", "img1b.png"]
    assert sorted(names, key=natural_key) == ["img1.png", "img1b.png", "img2.png", "IMG3.png",
                                              "img10.png"]


def test_image_folder_natural_order_and_selection(tmp_path):
    for i in [1, 2, 3, 10, 11, 20]:
        _write_image(tmp_path / f"frame{i}.png", i * 10)
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_source(tmp_path)
    assert src.kind == "images" and src.name == tmp_path.name
    frames = list(src)
    assert [f.name for f in frames] == ["frame1.png", "frame2.png", "frame3.png", "frame10.png",
                                        "frame11.png", "frame20.png"]
    assert [f.index for f in frames] == list(range(6))
    img = frames[3].image
    assert img.dtype == np.uint8 and img.shape == (24, 32, 3)
    assert img[0, 0, 0] == 255 - 100 and img[0, 0, 2] == 100  # RGB, not OpenCV's BGR
    sel = list(open_source(tmp_path, start_frame=1, stride=2, max_frames=2))
    assert [(f.index, f.name) for f in sel] == [(1, "frame2.png"), (3, "frame10.png")]


def test_glob_and_single_image(tmp_path):
    for i in [9, 10, 100]:
        _write_image(tmp_path / f"{i}.jpg", 50)
    _write_image(tmp_path / "x.png", 50)
    assert [f.name for f in open_source(str(tmp_path / "*.jpg"))] == ["9.jpg", "10.jpg", "100.jpg"]
    one = list(open_source(tmp_path / "x.png"))
    assert len(one) == 1 and one[0].image.shape == (24, 32, 3)


def test_video_selection(tmp_path):
    path = tmp_path / "clip.avi"
    _write_video(path, 12)
    src = open_source(path, start_frame=2, stride=3)
    assert src.kind == "video" and src.header_frames == 12 and src.expected_frames == 4
    frames = list(src)
    assert [f.index for f in frames] == [2, 5, 8, 11]
    assert frames[0].name == "clip/000002.jpg" and frames[0].image.shape == (48, 64, 3)
    assert [f.index for f in open_source(path, max_frames=3)] == [0, 1, 2]


def test_shared_video_reads_all_frames(data_dir):
    src = open_source(data_dir / "videos" / "basketball_crossing.mp4", stride=10)
    frames = list(src)
    assert len(frames) == 30 and frames[-1].index == 290
    assert frames[0].image.shape == (240, 426, 3)


def test_truncated_video_keeps_frames_and_warns(tmp_path, caplog):
    path = tmp_path / "cut.avi"
    _write_video(path, 30)
    data = path.read_bytes()
    cut = tmp_path / "cut_short.avi"
    cut.write_bytes(data[: len(data) // 2])  # the header still announces 30 frames
    src = open_source(cut)
    with caplog.at_level(logging.WARNING):
        frames = list(src)
    assert 0 < len(frames) < 30
    assert "ended at frame" in caplog.text


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "no such file"),
    (lambda d: (d / "garbage.mp4").write_bytes(b"\0not a video" * 50) and d / "garbage.mp4",
     "cannot open video"),
    (lambda d: (d / "broken.jpg").write_bytes(b"\xff\xd8 truncated") and d / "broken.jpg",
     "cannot decode image"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no images"),
    (lambda d: d / "nothing*.png", "no images match"),
])
def test_bad_input_is_one_line_input_error(tmp_path, make, message):
    with pytest.raises(InputError, match=message) as e:
        open_source(make(tmp_path))
    assert "\n" not in str(e.value)


def test_corrupt_image_inside_folder_is_skipped_with_its_index_and_name(tmp_path, caplog):
    # the run goes on past a damaged frame (see the module docstring for why)
    _write_image(tmp_path / "1.png", 10)
    (tmp_path / "2.png").write_bytes(b"not png")
    (tmp_path / "3.png").write_bytes(b"")
    _write_image(tmp_path / "4.png", 10)
    assert [f.index for f in open_source(tmp_path)] == [0, 3]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("frame 1" in m and "2.png" in m for m in msgs)
    assert any("frame 2" in m and "3.png" in m for m in msgs)


def test_folder_of_which_no_image_decodes_is_refused(tmp_path):
    (tmp_path / "1.png").write_bytes(b"")
    (tmp_path / "2.png").write_bytes(b"not png")
    with pytest.raises(InputError, match="none of the 2 images"):
        list(open_source(tmp_path))


def test_damaged_video_frame_is_skipped_and_reading_goes_on(tmp_path, caplog):
    import cv2

    path = tmp_path / "m.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for _i in range(10):  # noise: every JPEG is far longer than the wiped bytes
        w.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    w.release()
    data = bytearray(path.read_bytes())
    soi = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(soi) == 10
    data[soi[5]:soi[5] + 400] = bytes(400)  # wipe the start of frame 5's JPEG
    path.write_bytes(bytes(data))
    frames = list(open_source(path))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("frame 5 could not be decoded" in m for m in msgs)
    assert not any("video ended" in m for m in msgs)


def test_bad_selection():
    with pytest.raises(InputError, match="stride"):
        open_source("x", stride=0)
    with pytest.raises(InputError, match="max-frames"):
        open_source("x", max_frames=0)


def test_read_image_rgb(tmp_path):
    _write_image(tmp_path / "a.png", 30)
    assert read_image(tmp_path / "a.png")[0, 0].tolist() == [225, 30, 30]
