"""Drawing tracked poses: skeletons coloured per track id with the id written beside them, optional
boxes, and short trails of where each person was in the last frames; and a video sink that streams
the drawn frames into a video file one at a time (no frame is held after it is written).

Video encoding: H.264 (``libx264``, ``yuv420p``, ``+faststart``), which browsers play, when PyAV is
installed (``pip install -e ".[video]"``; its wheels bring FFmpeg with libx264); otherwise OpenCV's
``mp4v`` (MPEG-4 part 2), which plays in desktop players but not in common browsers, with a note on
stderr saying so. The container is the one the target's suffix names (:data:`CONTAINERS`); a target
the writer cannot take is refused before any model loads (:func:`check_render_target`).
"""

from __future__ import annotations

import colorsys
import contextlib
import errno
import os
import sys
from collections import deque
from pathlib import Path

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.fileio import PendingFile, write_error
from posetracker.core.paths import opencv_path, printable
from posetracker.core.poses import FramePoses
from posetracker.io.sources import SourceFrame


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A bright RGB colour for a track id; neighbouring ids get far-apart hues.

    Hues step by the golden ratio conjugate (0.618...) so that any run of consecutive ids is
    spread around the colour wheel instead of drifting slowly through it.
    """
    hue = (track_id * 0.6180339887498949) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _centre(keypoints: np.ndarray, ok: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The mean of a pose's drawn joints, else its box centre; ``None`` when neither is known."""
    if ok.any():
        return keypoints[ok].mean(axis=0)
    if np.all(np.isfinite(box)) and box[2] > box[0]:
        return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return None


def draw_poses(
    image: np.ndarray,
    poses: FramePoses,
    *,
    kpt_threshold: float = 0.2,
    boxes: bool = False,
    trails: dict[int, deque] | None = None,
    thickness: int | None = None,
    colour: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Draw ``poses`` on a copy of ``image`` (``(H, W, 3)`` uint8, any channel order: colours are
    given as RGB, so pass RGB for true colours).

    Args:
        kpt_threshold: Joints scored below this are not drawn (nor limbs touching them).
        boxes: Also draw each person's box.
        trails: Per track id, the recent centre points (oldest first) to draw as a fading line;
            the caller keeps and updates them (see :class:`VideoRenderer`).
        thickness: Line width in pixels (default: scaled with the image size).
        colour: Draw every pose in this colour (RGB) instead of its track's.

    Returns:
        The drawn image, same shape and dtype.
    """
    import cv2

    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    t = thickness or max(1, round(max(h, w) / 400))
    font = 0.4 + max(h, w) / 2000
    for tid, pts in (trails or {}).items():
        c = track_colour(tid)
        pts = list(pts)
        for a, (p, q) in enumerate(zip(pts, pts[1:])):
            fade = (a + 1) / len(pts)  # older segments thinner
            cv2.line(out, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), c,
                     max(1, round(t * fade)), cv2.LINE_AA)
    for i in range(len(poses)):
        tid = None if poses.track_ids is None else int(poses.track_ids[i])
        c = colour or track_colour(tid if tid is not None else i)
        kp = poses.keypoints[i]
        ok = np.isfinite(kp).all(axis=1) & (poses.keypoint_scores[i] >= kpt_threshold)
        for a, b in poses.schema.skeleton:
            if ok[a] and ok[b]:
                cv2.line(out, (int(kp[a, 0]), int(kp[a, 1])), (int(kp[b, 0]), int(kp[b, 1])),
                         c, t + 1, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(out, (int(kp[j, 0]), int(kp[j, 1])), t + 2, c, -1, cv2.LINE_AA)
        box = poses.boxes[i]
        if boxes and np.all(np.isfinite(box)):
            cv2.rectangle(out, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), c, t)
        if tid is not None:
            # Label above the highest drawn joint (or the box top), on a dark patch to stay legible.
            anchor = kp[ok][np.argmin(kp[ok][:, 1])] if ok.any() else box[:2]
            if np.all(np.isfinite(anchor)):
                text = str(tid)
                (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, t)
                x = int(np.clip(anchor[0] - tw / 2, 0, max(0, w - tw)))
                y = int(np.clip(anchor[1] - 3 * t - base, th, h - base))
                cv2.rectangle(out, (x - 2, y - th - 2), (x + tw + 2, y + base), (0, 0, 0), -1)
                cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font, c, t,
                            cv2.LINE_AA)
    return out


def h264_available() -> bool:
    """PyAV is installed and its FFmpeg has the libx264 encoder."""
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


#: Video containers a render can be written in, by file suffix -> FFmpeg muxer name.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}

#: The longest side, in pixels, of a rendered video: larger frames are scaled down to it (mp4v
#: cannot encode more than 4096-ish pixels a side, and H.264 at 10000 x 10000 takes seconds a
#: frame).
MAX_RENDER_SIDE = 4096


def container_format(path: str | Path) -> str:
    """The FFmpeg muxer for a render target, by its suffix (:data:`CONTAINERS`).

    Raises:
        InputError: a suffix that names no video container we write (``x.gif``, ``x``).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise InputError(f"cannot write {printable(path)} (--render): a rendered video is "
                         f"{', '.join(CONTAINERS)}, not {suffix or 'a name without suffix'}")
    return CONTAINERS[suffix]


def render_size(w: int, h: int) -> tuple[int, int]:
    """The video size for frames of ``w`` x ``h`` pixels: scaled down to fit
    :data:`MAX_RENDER_SIDE`, then rounded up to even numbers (4:2:0 colour needs them)."""
    scale = min(1.0, MAX_RENDER_SIDE / max(w, h))
    w, h = max(1, round(w * scale)), max(1, round(h * scale))
    return w + w % 2, h + h % 2


def check_render_target(path: str | Path, codec: str = "auto") -> None:
    """Open the writer a run would use on one dummy frame, in a probe file beside ``path`` (in
    the nearest existing folder), then remove it: a target the container or encoder refuses is
    refused now, before any model loads, and nothing is left behind.

    Raises:
        InputError: ``cannot write PATH (--render): reason``, one line.
    """
    import os
    import tempfile

    container_format(path)
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".posetracker-probe.",
                                     suffix=Path(path).suffix)
    except OSError as e:
        raise InputError(f"cannot write {printable(path)} (--render): {e.strerror or e}") \
            from None
    os.close(fd)
    try:
        writer = _writer_class(codec)(Path(probe), 25.0, (64, 64))
        writer.write(np.zeros((64, 64, 3), np.uint8))
        writer.release()
    except InputError:
        raise InputError(f"cannot write {printable(path)} (--render): the video writer "
                         "refuses it") from None
    except OSError as e:  # a full disk, a failing device: say which
        raise InputError(f"cannot write {printable(path)} (--render): {e.strerror or e}") \
            from None
    except Exception as e:  # noqa: BLE001 - PyAV's and OpenCV's errors, reported as one line
        raise InputError(f"cannot write {printable(path)} (--render): the video writer refuses "
                         f"it ({type(e).__name__})") from None
    finally:
        os.unlink(probe)


def _writer_class(codec: str) -> type[_AvWriter] | type[_CvWriter]:
    """The writer ``codec`` (``auto``, ``h264``, ``mp4v``) picks: PyAV for H.264 when it has
    libx264, else OpenCV's mp4v."""
    if codec == "h264" and not h264_available():
        raise InputError("H.264 video needs PyAV with libx264: pip install -e \".[video]\"")
    return _AvWriter if codec == "h264" or (codec == "auto" and h264_available()) else _CvWriter


class _AvWriter:
    """H.264 through PyAV: ``yuv420p`` (what browsers decode) at constant quality, in the
    container the file's suffix names (:func:`container_format`; MP4 with ``+faststart``)."""

    codec = "h264"

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        from fractions import Fraction

        import av

        muxer = container_format(path)
        self._c = av.open(str(path), mode="w", format=muxer,
                          options={"movflags": "+faststart"} if muxer in ("mp4", "mov") else {})
        rate = Fraction(fps).limit_denominator(1001)
        self._s = self._c.add_stream("libx264", rate=rate)
        self._s.width, self._s.height = size
        self._s.pix_fmt = "yuv420p"
        self._s.options = {"crf": "23", "preset": "veryfast"}

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._s.encode(frame):
            self._c.mux(packet)

    def release(self) -> None:
        try:
            for packet in self._s.encode():  # flush the encoder's delayed frames
                self._c.mux(packet)
        finally:
            self._c.close()


class _CvWriter:
    """MPEG-4 part 2 (``mp4v``) through OpenCV: always there, not played by common browsers."""

    codec = "mp4v"

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        import cv2

        self._path = path
        with opencv_path(path) as name:  # OpenCV crashes on a name that is not UTF-8
            self._w = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._w.isOpened():
            raise InputError(f"cannot open {path} for writing an mp4v video")

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        # OpenCV drops a frame it cannot write with a warning only; refuse a frame that cannot
        # fit (at most its raw size) before the encoder tries, as PyAV's writer would fail
        st = os.statvfs(self._path.parent)
        if st.f_bavail * st.f_frsize < rgb.nbytes + (1 << 16):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def release(self) -> None:
        self._w.release()


def _check_frames(path: Path, n: int) -> None:
    """Raise ``OSError`` unless the finished video at ``path`` reads back with ``n`` frames in
    its header (an encoder that lost frames to a full disk may say nothing)."""
    import cv2

    with opencv_path(path) as name:  # OpenCV crashes on a name that is not UTF-8
        cap = cv2.VideoCapture(name)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    finally:
        cap.release()
    if count < n:
        st = os.statvfs(path.parent)
        full = st.f_bavail * st.f_frsize < (1 << 20)
        raise OSError(errno.ENOSPC if full else errno.EIO,
                      os.strerror(errno.ENOSPC) if full
                      else f"the video holds {count} of its {n} frames")


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` = (width, height), keeping its aspect, centred on black
    (image folders may mix frame sizes; a video has one)."""
    import cv2

    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    if 0 <= w - iw <= 1 and 0 <= h - ih <= 1:  # odd size rounded up to even: pad, no resampling
        out = np.zeros((h, w, 3), dtype=np.uint8)
        out[:ih, :iw] = image
        return out
    scale = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
    out = np.zeros((h, w, 3), dtype=np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class VideoRenderer:
    """A sink that draws every tracked frame and appends it to a video (H.264 with PyAV, else
    ``mp4v``; see the module's docstring).

    The writer opens on the first frame; the video's size is that frame's, scaled down to at most
    :data:`MAX_RENDER_SIDE` pixels a side (said once on stderr) and rounded up to even numbers
    (H.264's 4:2:0 colour needs them). A later frame of another size (image folders) is scaled to
    fit, keeping its aspect, on black. Trails keep the last ``trail`` centres of each track; a
    track unseen for ``trail`` frames loses its trail, and a frame of another size than the one
    before starts every trail anew (its pixels are not the earlier frames' pixels).

    Args:
        path: Output video file (``.mp4`` recommended).
        fps: Frames per second of the output (the input's fps divided by the stride).
        boxes: Draw person boxes.
        trail: Trail length in frames (0: no trails).
        kpt_threshold: Joints scored below this are not drawn.
        codec: ``"auto"`` (H.264 when PyAV has libx264, else mp4v with a note on stderr),
            ``"h264"`` or ``"mp4v"``.
    """

    def __init__(self, path: str | Path, fps: float = 25.0, *, boxes: bool = False,
                 trail: int = 15, kpt_threshold: float = 0.2, codec: str = "auto"):
        if codec not in ("auto", "h264", "mp4v"):
            raise ValueError(f"codec must be auto, h264 or mp4v, got {codec!r}")
        _writer_class(codec)  # h264 without PyAV is refused now, not at the first frame
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.boxes = boxes
        self.trail = trail
        self.kpt_threshold = kpt_threshold
        self.codec = codec
        self._writer: _AvWriter | _CvWriter | None = None
        self._file: PendingFile | None = None  # the video under its temporary name
        self._failed = False
        self._codec: str | None = None
        self._size: tuple[int, int] | None = None
        self._frame_size: tuple[int, int] | None = None  # (w, h) of the trails' frames
        self._trails: dict[int, deque] = {}
        self._last_seen: dict[int, int] = {}
        self._n = 0  # (its folder is made with the file, by the first frame)

    def _update_trails(self, poses: FramePoses) -> None:
        if not self.trail or poses.track_ids is None:
            return
        for i, tid in enumerate(poses.track_ids):
            tid = int(tid)
            kp = poses.keypoints[i]
            ok = np.isfinite(kp).all(axis=1) & (poses.keypoint_scores[i] >= self.kpt_threshold)
            c = _centre(kp, ok, poses.boxes[i])
            if c is not None:
                self._trails.setdefault(tid, deque(maxlen=self.trail)).append(c)
                self._last_seen[tid] = self._n
        for tid in [t for t, seen in self._last_seen.items() if self._n - seen >= self.trail]:
            del self._trails[tid], self._last_seen[tid]

    def _open(self, w: int, h: int) -> None:
        """Open the writer on a temporary file beside ``path`` (renamed to it by ``close``)."""
        self._size = render_size(w, h)
        if self._size[0] < w or self._size[1] < h:
            print(f"posetracker: note: frames of {w}x{h} are rendered at {self._size[0]}x"
                  f"{self._size[1]} in {printable(self.path)} (at most {MAX_RENDER_SIDE} pixels "
                  "a side)", file=sys.stderr)
        self._file = PendingFile(self.path)
        try:
            self._writer = self._make_writer(self._file.tmp)
        except OSError as e:
            self._file.discard()
            raise write_error(self.path, e) from None
        except BaseException:
            self._file.discard()
            raise

    def _make_writer(self, tmp: Path) -> _AvWriter | _CvWriter:
        if _writer_class(self.codec) is _AvWriter:
            return _AvWriter(tmp, self.fps, self._size)
        if self.codec == "auto":
            print(f"posetracker: note: {printable(self.path)} is mp4v (MPEG-4 part 2), which common "
                  "browsers do not play; pip install -e \".[video]\" (PyAV) for H.264",
                  file=sys.stderr)
        try:
            return _CvWriter(tmp, self.fps, self._size)
        except InputError:
            raise InputError(f"cannot open {printable(self.path)} for writing an mp4v video") from None

    def write(self, frame: SourceFrame, poses: FramePoses) -> None:
        h, w = frame.image.shape[:2]
        if self._writer is None:
            self._open(w, h)
        if (w, h) != self._frame_size:  # trails are in one frame size's pixels: start anew
            self._trails.clear()
            self._last_seen.clear()
            self._frame_size = (w, h)
        self._update_trails(poses)
        # trails of the people in this frame only: a vanished person's trail would float alone
        here = set() if poses.track_ids is None else {int(t) for t in poses.track_ids}
        drawn = draw_poses(frame.image, poses, kpt_threshold=self.kpt_threshold,
                           boxes=self.boxes,
                           trails={t: p for t, p in self._trails.items() if t in here})
        self._codec = self._writer.codec
        try:
            self._writer.write(np.ascontiguousarray(_fit(drawn, self._size)))
        except BaseException:
            self._failed = True  # the container may hold half a frame: it is not kept
            raise
        self._n += 1

    @property
    def video_codec(self) -> str | None:
        """``"h264"`` or ``"mp4v"`` once the first frame is written, else ``None``."""
        return self._codec

    def close(self, meta: dict | None = None) -> None:
        """Finalise the container and rename it to ``path``; a write error (a full disk)
        removes it and raises one line naming ``path``."""
        if self._writer is None:
            return
        w, self._writer = self._writer, None
        file, self._file = self._file, None
        try:
            if self._failed:
                raise OSError(errno.EIO, "a frame could not be written")
            w.release()
            _check_frames(file.tmp, self._n)
        except OSError as e:
            with contextlib.suppress(Exception):  # close what is still open; the error is e
                w.release()
            file.discard()
            raise write_error(self.path, e) from None
        except BaseException:
            file.discard()
            raise
        file.commit()

    def abort(self) -> None:
        """After a failed or interrupted run: keep what was drawn (releasing finalises the
        container, so the video of the finished frames plays) unless writing it failed, then
        remove it quietly (the run reports its first error, not this one)."""
        with contextlib.suppress(InputError):
            self.close()
