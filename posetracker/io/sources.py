"""Frame sources: a video file, an image folder, a glob, a single image, or a webcam.

:func:`open_source` turns what the user typed into a :class:`FrameSource`; iterating it yields
:class:`SourceFrame` tuples ``(index, image, name)`` where ``image`` is an RGB ``uint8`` array of
shape ``(H, W, 3)`` and ``index`` is the frame's position in the *original* input (so
``--start-frame 10 --stride 2`` yields 10, 12, 14, ...). Frames are decoded one at a time; a
source never holds more than the frame it is yielding.

Errors: input that cannot be opened or decoded at all raises :class:`~posetracker.core.errors.InputError`
with one line naming the file (and frame). A frame that fails to decode in the middle (a damaged
video frame, a corrupt or zero-byte image in a folder) is skipped with a warning naming its index and
the run goes on: one damaged frame should not cost the rest of a long recording, the trackers bridge
a one-frame gap as they bridge an occlusion, and the outputs name frames by index, so the gap is
visible. A video that stops decoding for good (:data:`MAX_BAD_FRAMES` failures in a row) before the
frame count in its header keeps the frames already yielded and logs a warning, because a truncated
recording is still worth tracking up to the cut. An input of which no frame decodes raises.
"""

from __future__ import annotations

import glob as globlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from posetracker.core.errors import InputError

log = logging.getLogger(__name__)

#: Failed video reads in a row after which the video is taken to end there (a cut-off file).
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
    """

    index: int
    image: np.ndarray
    name: str


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
        for i, p in enumerate(picked):
            index = self.start_frame + i * self.stride
            try:
                image = read_image(p)
            except InputError as e:
                if len(picked) == 1:
                    raise
                log.warning("frame %d skipped: %s", index, e)
                continue
            yield SourceFrame(index, image, p.name)
            yielded += 1
        if picked and not yielded:
            raise InputError(f"none of the {len(picked)} images of {self.spec} could be decoded")

    def _iter_capture(self) -> Iterator[SourceFrame]:
        cv2 = _cv2()
        cap = cv2.VideoCapture(int(self.spec) if self.kind == "webcam" else self.spec)
        if not cap.isOpened():
            raise InputError(f"cannot open {self.kind} {self.spec}")
        try:
            index = 0
            yielded = 0
            # Seeking by frame number is unreliable for many codecs; skip by grabbing, which
            # decodes no pixels for most of them.
            while index < self.start_frame:
                if not cap.grab():
                    break
                index += 1
            bad: list[int] = []  # indices of the failed reads in a row
            skipped = 0
            while self.max_frames is None or yielded < self.max_frames:
                if self._wanted(index):
                    ok, bgr = cap.read()
                else:
                    ok, bgr = cap.grab(), None
                if not ok:
                    # before the header's count (or with no count): a damaged frame, or the end
                    more = self.header_frames is None or index + 1 < self.header_frames
                    if self.kind != "video" or not more or len(bad) >= MAX_BAD_FRAMES - 1:
                        index -= len(bad)  # the video ended at the first of the failed reads
                        break
                    bad.append(index)
                    index += 1
                    continue
                for b in bad:
                    if self._wanted(b):
                        log.warning("%s: frame %d could not be decoded; skipped", self.spec, b)
                        skipped += 1
                bad.clear()
                if bgr is not None:
                    if bgr.ndim == 2:
                        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
                    name = f"{self.name}/{index:06d}.jpg"
                    yield SourceFrame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), name)
                    yielded += 1
                index += 1
            if yielded == 0 and self.kind == "video" and index == 0:
                raise InputError(f"cannot decode any frame of video {self.spec}: corrupt or "
                                 "unsupported codec")
            expected = self.expected_frames
            if (self.kind == "video" and expected is not None and yielded + skipped < expected):
                log.warning("%s: video ended at frame %d, the header announced %d frames; "
                            "kept the %d frames read", self.spec, index, self.header_frames,
                            yielded)
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
    cv2 = _cv2()
    cap = cv2.VideoCapture(text)
    try:
        if not cap.isOpened():
            raise InputError(f"cannot open video {path}: not a video, corrupt, or unsupported "
                             "codec")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, _ = cap.read()
        if not ok:
            raise InputError(f"cannot decode any frame of video {path}: corrupt or unsupported "
                             "codec")
    finally:
        cap.release()
    return FrameSource(text, "video", path.stem, fps=fps if np.isfinite(fps) else 0.0,
                       header_frames=count if count > 0 else None, **select)
