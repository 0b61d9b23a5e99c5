"""The rendered video: H.264 when PyAV has libx264 (browsers play it), mp4v otherwise with a note;
frames of mixed sizes; odd frame sizes; a write error names the file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17
from posetracker.io import render
from posetracker.io.render import VideoRenderer
from posetracker.io.sources import SourceFrame


def _poses() -> FramePoses:
    kp = np.full((1, 17, 2), 40.0)
    kp[0, :, 0] += np.arange(17) * 2
    return FramePoses(kp, np.ones((1, 17)), np.array([[30.0, 30, 80, 90]]), np.array([0.9]),
                      COCO17, track_ids=np.array([3]))


def _frames(sizes):
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        yield SourceFrame(i, rng.integers(0, 255, (h, w, 3), dtype=np.uint8), f"{i}.jpg")


def _read_all(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    codec = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace")
    cap.release()
    return frames, codec


@pytest.mark.skipif(not render.h264_available(), reason="PyAV with libx264 not installed")
def test_h264_when_pyav_is_there(tmp_path, capsys):
    out = tmp_path / "v.mp4"
    r = VideoRenderer(out, 10.0)
    for f in _frames([(121, 161)] * 5):  # odd sizes: rounded up to even for 4:2:0
        r.write(f, _poses())
    r.close()
    assert r.video_codec == "h264"
    frames, codec = _read_all(out)
    assert len(frames) == 5 and frames[0].shape == (122, 162, 3)
    assert codec.lower() in ("avc1", "h264")
    assert "note" not in capsys.readouterr().err
    # the moov atom is at the front (+faststart): a browser starts playing before the end
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and head.find(b"moov") < max(head.find(b"mdat"), 4096)


def test_mp4v_fallback_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(render, "h264_available", lambda: False)
    out = tmp_path / "v.mp4"
    r = VideoRenderer(out, 10.0)
    for f in _frames([(120, 160)] * 3):
        r.write(f, _poses())
    r.close()
    assert r.video_codec == "mp4v"
    frames, codec = _read_all(out)
    assert len(frames) == 3 and codec.lower() in ("mp4v", "fmp4")  # FFmpeg reads mp4v as FMP4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mp4v" in err and "browsers" in err


@pytest.mark.parametrize("codec", ["mp4v"] + (["h264"] if render.h264_available() else []))
def test_mixed_frame_sizes_are_fitted_not_dropped(tmp_path, codec):
    out = tmp_path / "v.mp4"
    r = VideoRenderer(out, 10.0, codec=codec)
    sizes = [(120, 160), (240, 320), (100, 60), (120, 160)]
    for f in _frames(sizes):
        r.write(f, _poses())
    r.close()
    frames, _ = _read_all(out)
    assert len(frames) == len(sizes)  # OpenCV's writer silently drops frames of another size
    assert all(f.shape == (120, 160, 3) for f in frames)
    # the tall 100x60 frame is centred on black bars left and right
    assert frames[2][:, :40].mean() < 8 and frames[2][:, 60:100].mean() > 40


def test_h264_refused_without_pyav(tmp_path, monkeypatch):
    from posetracker.core.errors import InputError

    monkeypatch.setattr(render, "h264_available", lambda: False)
    with pytest.raises(InputError, match="PyAV"):
        VideoRenderer(tmp_path / "v.mp4", codec="h264")
