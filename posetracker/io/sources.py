"""Frame sources: a video file, an image folder, a glob, a single image, or a webcam.

:func:`open_source` turns what the user typed into a :class:`FrameSource`; iterating it yields
:class:`SourceFrame` tuples ``(index, image, name)`` where ``image`` is an RGB ``uint8`` array of
shape ``(H, W, 3)`` and ``index`` is the frame's position in the *original* input (so
``--start-frame 10 --stride 2`` yields 10, 12, 14, ...). Frames are decoded one at a time; a
source never holds more than the frame it is yielding.

Errors: input that cannot be opened or decoded at all raises :class:`~posetracker.core.errors.InputError`
with one line naming the file (and frame). A frame that fails to decode in the middle (a damaged
video frame, a corrupt or zero-byte image in a folder) is reported by its index with a warning and
the run goes on: one damaged frame should not cost the rest of a long recording, the trackers bridge
a one-frame gap as they bridge an occlusion. Every frame keeps its index in the source (a counter of
decoded frames would shift every later frame's name), and the next decoded frame carries the lost
ones (:attr:`SourceFrame.lost`) so that outputs write them as frames with no people. A video that
stops before the frame count in its header keeps the frames already yielded and logs one warning
("ended early"), because a truncated recording is still worth tracking up to the cut. An input of
which no frame decodes raises.

Videos are read with PyAV when it is installed (the ``video`` extra: by file object, so a file name
of any bytes works, and with the container's frame index, so a frame the demuxer drops still counts),
else with OpenCV, which sees a failed read as a lost frame and :data:`MAX_BAD_FRAMES` of them in a
row as the end. Both give the same pixels.
"""

from __future__ import annotations

import glob as globlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.paths import check_name, opencv_path, printable

log = logging.getLogger(__name__)

#: Failed OpenCV reads in a row after which a video is taken to end there (a cut-off file).
MAX_BAD_FRAMES = 25

#: File suffixes read as still images (lower case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class SourceFrame(NamedTuple):
    """One decoded frame.

    Attributes:
        index: 0-based position of the frame in the original input (before start/stride).
        image: ``(H, W, 3)`` uint8 RGB pixels.
        name: Image file name for folders and globs; ``"<stem>/%06d.jpg"``-style name for videos,
            which is what PoseTrack files call the frame.
        lost: ``(index, name)`` of the selected frames just before this one that could not be
            decoded (a damaged video frame, a corrupt image in a folder): the sinks write each as
            a frame with no people, so outputs keep one entry per source frame.
    """

    index: int
    image: np.ndarray
    name: str
    lost: tuple[tuple[int, str], ...] = ()


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``img2.jpg`` before ``img10.jpg``."""
    return tuple(int(part) if part.isdigit() else part.lower()
                 for part in re.split(r"(\d+)", text))


def _cv2():
    # FFmpeg prints its own diagnostics ("moov atom not found") on stderr; bad input is reported
    # once by us as an InputError instead. OpenCV reads this variable when it opens a capture.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to ``(H, W, 3)`` uint8 RGB; unreadable files raise InputError."""
    cv2 = _cv2()
    p = Path(path)
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as e:
        raise InputError(f"cannot read image {p}: {e.strerror or e}") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"cannot decode image {p}: not an image or corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class FrameSource:
    """Frames of one input, selected by ``start_frame``, ``max_frames`` and ``stride``.

    Build it with :func:`open_source`. Iterating opens the input afresh each time.

    Attributes:
        spec: What the user gave: a path, a glob pattern, or a webcam index as text.
        kind: ``"video"``, ``"images"`` (folder, glob or single image) or ``"webcam"``.
        name: Sequence name used for output files and PoseTrack ``vid_id`` (the file or folder stem).
        paths: Image files in natural order (``kind == "images"``), else empty.
        fps: Frames per second of the input (videos and webcams; 0 when unknown). Output videos use
            ``fps / stride``.
        start_frame: First original frame index to yield.
        max_frames: Yield at most this many frames (``None``: all).
        stride: Yield every ``stride``-th frame from ``start_frame``.
        header_frames: The frame count the container declares (videos), the number of images
            (images), ``None`` for webcams.
    """

    spec: str
    kind: str
    name: str
    paths: tuple[Path, ...] = ()
    fps: float = 0.0
    start_frame: int = 0
    max_frames: int | None = None
    stride: int = 1
    header_frames: int | None = None

    @property
    def expected_frames(self) -> int | None:
        """How many frames iteration should yield, from the header (``None`` when unknown)."""
        if self.header_frames is None:
            return self.max_frames
        n = max(0, -(-(self.header_frames - self.start_frame) // self.stride))
        return n if self.max_frames is None else min(n, self.max_frames)

    def __iter__(self) -> Iterator[SourceFrame]:
        if self.kind == "images":
            yield from self._iter_images()
        else:
            yield from self._iter_capture()

    def _wanted(self, index: int) -> bool:
        return index >= self.start_frame and (index - self.start_frame) % self.stride == 0

    def _iter_images(self) -> Iterator[SourceFrame]:
        picked = self.paths[self.start_frame::self.stride]
        if self.max_frames is not None:
            picked = picked[:self.max_frames]
        yielded = 0
        lost: list[tuple[int, str]] = []
        for i, p in enumerate(picked):
            index = self.start_frame + i * self.stride
            try:
                image = read_image(p)
            except InputError as e:
                if len(picked) == 1:
                    raise
                log.warning("frame %d skipped: %s", index, e)
                lost.append((index, p.name))
                continue
            yield SourceFrame(index, image, p.name, tuple(lost))
            lost.clear()
            yielded += 1
        if picked and not yielded:
            raise InputError(f"none of the {len(picked)} images of {self.spec} could be decoded")

    def _iter_capture(self) -> Iterator[SourceFrame]:
        """The selected frames of a video or webcam, each with its index in the source.

        1. The reader (:func:`_av_slots` with PyAV, else :func:`_cv_slots`) gives every frame
           slot of the source in order, as ``(index, pixels)``, or ``(index, None)`` for a slot
           whose frame is lost: a packet the decoder rejects, or one the container's index
           lists but the demuxer never delivered (a damaged AVI chunk).
        2. Lost slots of the selection are carried by the next decoded frame
           (:attr:`SourceFrame.lost`), so that outputs keep one entry per source frame, and
           each is warned about by index ("lost in the middle").
        3. Lost slots with no decoded frame after them, or a stop before the header's frame
           count, mean the video ended early: one warning, the frames read are kept.
        """
        reader = _av_slots(self.spec) if self.kind == "video" and _have_av() else \
            _cv_slots(self.spec, self.kind, self.header_frames, self.start_frame)
        yielded = 0
        end = 0  # one past the last slot the reader gave
        lost: list[int] = []  # lost slots of the selection since the last yielded frame
        stopped = False
        try:
            for index, pixels in reader:
                end = index + 1
                if not self._wanted(index):
                    continue
                if pixels is None:
                    lost.append(index)
                    continue
                for b in lost:
                    log.warning("%s: frame %d could not be decoded; written as a frame with no "
                                "people", printable(self.spec), b)
                yield SourceFrame(index, pixels(), f"{self.name}/{index:06d}.jpg",
                                  tuple((b, f"{self.name}/{b:06d}.jpg") for b in lost))
                lost.clear()
                yielded += 1
                if self.max_frames is not None and yielded >= self.max_frames:
                    stopped = True
                    break
        finally:
            reader.close()
        if yielded == 0 and self.kind == "video" and end == 0:
            raise InputError(f"cannot decode any frame of video {printable(self.spec)}: corrupt "
                             "or unsupported codec")
        ended_at = lost[0] if lost else end
        if self.kind == "video" and not stopped and self.header_frames is not None \
                and ended_at < self.header_frames:
            log.warning("%s: video ended at frame %d, early: its header announced %d frames; "
                        "kept the %d frames read", printable(self.spec), ended_at,
                        self.header_frames, yielded)


def _have_av() -> bool:
    """Whether PyAV (the ``video`` extra) is installed: it reads videos with their container's
    frame index, and by file object, so any file name works."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


#: A frame slot of a video: its index in the source and its pixels (``(H, W, 3)`` uint8 RGB,
#: made on demand) or ``None`` when the frame is lost.
Slot = tuple[int, Callable[[], np.ndarray] | None]


def _av_open(path: str):
    """``(file, container, stream)`` for a video, opened by file object (any name); the caller
    closes the container and the file."""
    import av

    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read {printable(path)}: {e.strerror or e}") from None
    try:
        container = av.open(f, mode="r")
    except (av.FFmpegError, ValueError, OSError):
        f.close()
        raise InputError(f"cannot open video {printable(path)}: not a video, corrupt, or "
                         "unsupported codec") from None
    if not container.streams.video:
        container.close()
        f.close()
        raise InputError(f"cannot open video {printable(path)}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return f, container, stream


def _av_slots(path: str) -> Iterator[Slot]:
    """Every frame slot of a video read with PyAV (see :meth:`FrameSource._iter_capture`).

    1. Slots are given in the decoder's output order: each decoded frame takes the next slot,
       and so does each packet the decoder rejects.
    2. Where the container indexes every frame (AVI, MP4: as many index entries as the header's
       frame count), a packet's byte position names its entry. Entries the demuxer skipped
       (a damaged AVI chunk is dropped, and the demuxer numbers the later frames as if it never
       existed) take their slots too, once every packet before the gap has come out of the
       decoder (which may hold a few frames back).
    """
    import av

    f, container, stream = _av_open(path)
    try:
        entries = stream.index_entries
        by_pos: dict[int, int] = {}
        if stream.frames and len(entries) == stream.frames:
            by_pos = {int(e.pos): n for n, e in enumerate(entries)}
        slot = 0
        fed = 0  # packets given to the decoder
        done = 0  # slots of packets given so far (frames decoded, packets rejected)
        seen = 0  # index entries accounted for
        gaps: list[tuple[int, int]] = []  # (packets fed before the gap, entries lost in it)
        demuxed = container.demux(stream)
        while True:
            try:
                packet = next(demuxed)
            except StopIteration:
                break
            except av.FFmpegError:  # the container is cut or garbled from here on
                break
            if packet.size and by_pos:
                n = by_pos.get(int(packet.pos), by_pos.get(int(packet.pos) - 8))  # AVI: +header
                if n is not None:
                    if n > seen:
                        gaps.append((fed, n - seen))
                    seen = max(seen, n + 1)
            fed += bool(packet.size)
            try:
                out: list = list(packet.decode())
            except av.FFmpegError:
                out = [None] if packet.size else []
            for frame in out:
                while gaps and gaps[0][0] <= done:  # the packets before a gap are all out
                    for _ in range(gaps.pop(0)[1]):
                        yield slot, None
                        slot += 1
                yield slot, (None if frame is None
                             else (lambda fr=frame: fr.to_ndarray(format="rgb24")))
                slot += 1
                done += 1
        for _, lost in gaps:  # dropped at the very end
            for _ in range(lost):
                yield slot, None
                slot += 1
    finally:
        container.close()
        f.close()


def _not_read() -> np.ndarray:
    raise AssertionError("the pixels of a frame before --start-frame were not read")


def _cv_slots(spec: str, kind: str, header_frames: int | None, start_frame: int
              ) -> Iterator[Slot]:
    """Every frame slot of a video or webcam read with OpenCV (no PyAV): a failed read before
    the header's frame count is a lost frame, :data:`MAX_BAD_FRAMES` of them in a row the end."""
    cv2 = _cv2()
    if kind == "webcam":
        cap = cv2.VideoCapture(int(spec))
    else:
        with opencv_path(spec) as name:
            cap = cv2.VideoCapture(name)
    if not cap.isOpened():
        raise InputError(f"cannot open {kind} {printable(spec)}")
    try:
        index = 0
        bad = 0  # failed reads in a row
        while True:
            # frames before the selection are grabbed, which decodes no pixels for most codecs
            ok, bgr = (cap.grab(), None) if index < start_frame else cap.read()
            if not ok:
                more = header_frames is None or index + 1 < header_frames
                if kind != "video" or not more or bad >= MAX_BAD_FRAMES - 1:
                    return  # the failed reads in a row were the end, not lost frames
                bad += 1
                index += 1
                continue
            for b in range(index - bad, index):
                yield b, None
            bad = 0
            if bgr is None:  # grabbed before the selection: its pixels are never asked for
                yield index, _not_read
            else:
                if bgr.ndim == 2:
                    bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
                yield index, (lambda b=bgr: cv2.cvtColor(b, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        cap.release()


def _check_selection(start_frame: int, max_frames: int | None, stride: int) -> None:
    if start_frame < 0:
        raise InputError(f"--start-frame must be >= 0, got {start_frame}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {max_frames}")
    if stride < 1:
        raise InputError(f"--stride must be >= 1, got {stride}")


def open_source(spec: str | Path, *, start_frame: int = 0, max_frames: int | None = None,
                stride: int = 1) -> FrameSource:
    """Recognise the input and check that it can be read.

    ``spec`` is one of: a video file; a folder of images (read in natural order, ``2.jpg``
    before ``10.jpg``); a glob pattern such as ``"frames/*.png"``; a single image; or a webcam
    index such as ``"0"``. Videos are opened once here so that a corrupt file fails before any
    model is loaded.

    Raises:
        InputError: the path does not exist, the folder or glob has no images, or the file cannot
            be opened as an image or a video.
    """
    _check_selection(start_frame, max_frames, stride)
    text = str(spec)
    check_name(text)  # a name the file system cannot hold: one line, not an OSError
    select = dict(start_frame=start_frame, max_frames=max_frames, stride=stride)
    if text.isdigit() and not Path(text).exists():
        return FrameSource(text, "webcam", f"webcam{text}", **select)
    path = Path(text)
    if path.is_dir():
        images = sorted((p for p in path.iterdir()
                         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                        key=lambda p: natural_key(p.name))
        if not images:
            raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
        return FrameSource(text, "images", path.resolve().name, tuple(images),
                           header_frames=len(images), **select)
    if any(c in text for c in "*?[") and not path.exists():
        images = sorted((Path(p) for p in globlib.glob(text)
                         if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES),
                        key=lambda p: natural_key(str(p)))
        if not images:
            raise InputError(f"no images match {text}")
        return FrameSource(text, "images", images[0].parent.resolve().name, tuple(images),
                           header_frames=len(images), **select)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        read_image(path)  # fail now on a corrupt image, before models load
        return FrameSource(text, "images", path.stem, (path,), header_frames=1, **select)
    fps, count = _probe_video(text)
    return FrameSource(text, "video", path.stem, fps=fps,
                       header_frames=count if count > 0 else None, **select)


def _probe_video(path: str) -> tuple[float, int]:
    """``(fps, frame count of the header)`` of a video of which a first frame decodes (0 where
    unknown); else InputError, one line."""
    if _have_av():
        f, container, stream = _av_open(path)
        try:
            rate = stream.average_rate or stream.guessed_rate
            fps, count = float(rate) if rate else 0.0, int(stream.frames or 0)
            decoded = any(pixels is not None for _, pixels in _first_slots(path))
        finally:
            container.close()
            f.close()
    else:
        cv2 = _cv2()
        with opencv_path(path) as name:
            cap = cv2.VideoCapture(name)
        try:
            if not cap.isOpened():
                raise InputError(f"cannot open video {printable(path)}: not a video, corrupt, "
                                 "or unsupported codec")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            decoded = bool(cap.read()[0])
        finally:
            cap.release()
    if not decoded:
        raise InputError(f"cannot decode any frame of video {printable(path)}: corrupt or "
                         "unsupported codec")
    return (fps if np.isfinite(fps) else 0.0), count


def _first_slots(path: str) -> Iterator[Slot]:
    """The slots of a video up to its first decoded frame."""
    slots = _av_slots(path)
    try:
        for slot in slots:
            yield slot
            if slot[1] is not None:
                return
    finally:
        slots.close()


def video_frame_count(path: str | Path) -> int | None:
    """The frame count a video's header declares (``None``: unknown, or not a readable video)."""
    try:
        count = _probe_video(str(path))[1]
    except InputError:
        return None
    return count or None
