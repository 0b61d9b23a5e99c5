"""Streaming multi-stage pipeline: frames in, tracked poses out, with flat memory.

Stages, each on its own thread, joined by bounded queues (``queue.Queue(maxsize)``)::

    reader ──q──▶ detect ──q──▶ pose ×N ──q──▶ group ──q──▶ track ──q──▶ write (caller's thread)
    decode        batches of     crops + SPPE,      association    tracker      JSON lines, CSV,
                  frames         batches of people  or pose NMS    (in order)   render
                                 across frames      (frames back
                                                    in order)

Why threads: PyTorch, OpenCV and NumPy release the GIL in their heavy calls, so while the detector
runs on one batch the reader decodes the next frames and the writer encodes the previous ones; on a
GPU the device stays busy while the CPU does everything else. On a CPU the pose estimator (one
network call per person) is the slowest stage by far, so ``pose_workers`` threads run it on
successive batches at once and hand their results on in turn, so frames stay in order. Why
bounded queues: a stage that runs
ahead blocks on ``put`` instead of piling frames up, so memory does not grow with video length.
At most ``queue_size`` items wait in each queue plus one batch inside each stage.

Video mode (``PipelineOptions.video``, :mod:`posetracker.app.video`): the grouping stage
becomes the *video loop* thread, so the order is::

    reader ──q──▶ detect ──q──▶ pose ×N ──q──▶ video loop ──q──▶ track ──q──▶ write
                  scheduled     the detector's     per frame, in order: adaptive detection (when
                  keyframes     boxes, batches     wanted), pose on the proposals no detector box
                  only          across frames      pairs with, dead proposals out, group, the
                                                   next frame's proposals

The detector runs ahead on the keyframes it knows from the frame numbers (``detect_every``), and
the pose workers estimate the detector's boxes ahead too (a box's pose does not depend on the
frame before), so decoding, detection and most crops overlap the loop; the loop is sequential
because frame t + 1's proposals come from frame t's poses. Adaptive keyframes are detected inside
the loop, decided from the frame before: the output does not depend on thread timing.

Every stage's work is timed (seconds inside the stage's call, not time spent waiting on queues).
Shutdown: the first exception in any stage (or a ``KeyboardInterrupt`` in the caller's thread) sets a
stop event; every stage polls it while waiting on a queue and exits; the caller joins all threads and
the exception is re-raised in the caller's thread with its original traceback. No thread is left
running.

:func:`run_pipeline` is the one loop every run goes through (``PoseTracker.track_to``, hence
``posetracker track`` and ``track-dataset``, and the tests): it writes each tracked frame with a
callback, timed as the write stage, and reports a :class:`PipelineResult`. :func:`iter_pipeline` is
the same stages as a generator of tracked frames (the Python API's ``PoseTracker.track`` yields
from it, ``run_pipeline`` writes from it; closing it stops and joins the stages).
``PipelineOptions.mode`` picks threads (:class:`_ThreadedRun`) or the same stages one after the
other on the caller's thread (:func:`_sequential`, for the speed comparison of
``posetracker bench pipeline``). The torch thread count is passed in (``PipelineOptions``) and set
on each stage thread, never read back from the caller.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from posetracker.app.settings import AppConfig, PipelineConfig
from posetracker.app.video import Keyframes, VideoLoop, cells
from posetracker.core.poses import FramePoses
from posetracker.core.timing import StageTimes
from posetracker.io.sources import SourceFrame
from posetracker.tracker.base import Tracker, TrackingLoop

log = logging.getLogger(__name__)

_DEFAULTS = AppConfig()  # read-only: the defaults PipelineOptions shows

#: Stage names in pipeline order, as they appear in timings and summaries.
STAGES = ("read", "detect", "pose", "group", "track", "write")


class FrameStages(Protocol):
    """The per-frame estimator split into the steps the pipeline overlaps.

    ``detect`` gets a batch of decoded frames (``(H, W, 3)`` uint8 RGB, in stream order, on one
    thread); ``estimate`` gets several frames with their detections and runs the single-person
    pose estimator on all their people together (batches of people across frames); ``group``
    removes redundant poses of one frame (pose NMS or joint-candidate association). Detections
    may be any object with ``len()`` = number of people.
    """

    def detect(self, images: Sequence[np.ndarray]) -> list[Any]: ...

    def estimate(self, images: Sequence[np.ndarray], detections: Sequence[Any]) -> list[Any]: ...

    def group(self, estimate: Any, image: np.ndarray) -> FramePoses: ...

    def runtimes(self) -> dict[str, dict[str, str]]:
        """What runs each model (backend, precision), for the run's metadata."""
        ...


@dataclass(frozen=True)
class PipelineOptions:
    """How one run batches, buffers and threads: the run-time view of the settings.

    :meth:`from_config` is the one mapping from :class:`posetracker.app.settings.AppConfig`; the
    defaults below are that of ``AppConfig()`` (read from the dataclasses, not written again).

    Attributes:
        det_batch: Most frames per detector call (``estimator.frame_batch``).
        pose_batch: People per pose-estimator call (``estimator.sppe.batch_size``); the pose stage
            gathers frames until their people reach this number (or ``pose_max_frames`` frames
            are gathered). In threaded mode a stage does not wait for a full batch: it takes the
            frames already waiting.
        pose_max_frames: Most frames gathered for one pose-estimator call (bounds memory and
            latency when frames have few people).
        pose_workers: Threads running the pose estimator on successive batches at once. The pose
            estimator is the slowest stage on a CPU (one call per person); with more than one
            worker its batches run in parallel (each worker one core when torch runs one thread
            per call), and frames are put back in order before grouping.
        queue_size: Capacity of each queue between stages, in frames.
        torch_threads: Torch intra-op threads of every stage's model calls, set on each stage
            thread (OpenMP's setting is per thread: one made on the caller's thread does not reach
            threads started later); 0 leaves torch's default.
        join_timeout: Seconds to wait for each stage thread at shutdown before giving up on it
            (a stage stuck in a long model call finishes that call first).
        mode: ``threaded`` (each stage on its own thread) or ``sequential`` (the same stages and
            batches one after the other on the caller's thread).
        video: Video mode's settings (``detect_every``, ``keyframes``, ``proposals`` of a
            :class:`~posetracker.app.settings.PipelineConfig`; :mod:`posetracker.app.video`), or
            ``None``: every frame handled as the first (the default here; :meth:`from_config`
            passes the config's ``pipeline`` when its ``video_mode`` is on).
    """

    det_batch: int = _DEFAULTS.estimator.frame_batch
    pose_batch: int = _DEFAULTS.estimator.sppe.batch_size
    pose_max_frames: int = _DEFAULTS.pipeline.pose_max_frames
    pose_workers: int = _DEFAULTS.pipeline.pose_workers
    queue_size: int = _DEFAULTS.pipeline.queue_size
    torch_threads: int = 0
    join_timeout: float = 30.0
    mode: Literal["threaded", "sequential"] = _DEFAULTS.pipeline.mode
    video: PipelineConfig | None = None

    def __post_init__(self) -> None:
        for name in ("det_batch", "pose_batch", "pose_max_frames", "pose_workers", "queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.torch_threads < 0:
            raise ValueError("torch_threads must be >= 0")
        if self.mode not in ("threaded", "sequential"):
            raise ValueError(f"mode must be threaded or sequential, got {self.mode!r}")

    @classmethod
    def from_config(cls, config: AppConfig, cpu_count: int | None = None) -> PipelineOptions:
        """The options of a ``track`` run with ``config`` (``cpu_count``: for the automatic
        thread count, default ``os.cpu_count()``)."""
        pc = config.pipeline
        threads = pc.torch_threads(cpu_count if cpu_count is not None else os.cpu_count() or 1)
        return cls(det_batch=config.estimator.frame_batch,
                   pose_batch=config.estimator.sppe.batch_size,
                   pose_max_frames=pc.pose_max_frames,
                   pose_workers=pc.pose_workers if pc.mode == "threaded" else 1,
                   queue_size=pc.queue_size, torch_threads=threads, mode=pc.mode,
                   video=pc if pc.video_mode else None)


class RunFigures:
    """The rates and closing line shared by every run report (needs ``frames``, ``people``,
    ``wall_seconds``, ``mode`` and ``ms_per_frame``)."""

    frames: int
    people: int
    wall_seconds: float
    mode: str
    ms_per_frame: dict[str, float]  # a field or a property of the report

    @property
    def fps(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def people_per_frame(self) -> float:
        return self.people / self.frames if self.frames else 0.0

    def text(self) -> str:
        """The closing summary line: frames, people per frame, frames/s, ms per frame per stage."""
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.ms_per_frame.items())
        return (f"{self.frames} frames, {self.people_per_frame:.2f} people/frame, "
                f"{self.fps:.2f} frames/s ({self.mode}); ms/frame: {stages}")


@dataclass
class PipelineResult(RunFigures):
    """What a finished run reports.

    Attributes:
        frames: Frames written.
        people: Poses written, summed over frames.
        wall_seconds: Time from the first read to the last write.
        times: Per-stage work times.
        mode: ``"threaded"`` or ``"sequential"``.
    """

    frames: int
    people: int
    wall_seconds: float
    times: StageTimes
    mode: str

    @property
    def ms_per_frame(self) -> dict[str, float]:
        return self.times.ms_per_frame()

    def as_dict(self) -> dict:
        return {"mode": self.mode, "frames": self.frames, "people": self.people,
                "wall_seconds": round(self.wall_seconds, 4), "fps": round(self.fps, 3),
                "ms_per_frame": {k: round(v, 3) for k, v in self.ms_per_frame.items()}}


WriteFn = Callable[[SourceFrame, FramePoses], None]


# -- the work of each stage, shared by both modes ---------------------------------------------------

@dataclass
class _FrameInFlight:
    """One frame travelling through the stages; fields fill in as it goes."""

    frame: SourceFrame
    seq: int = 0  # position in the stream, to restore the order after parallel pose workers
    detections: Any = None
    estimate: Any = None
    poses: FramePoses | None = None
    motion: np.ndarray | None = None  # adaptive keyframes: the motion test's cells of the frame


def _timed(times: StageTimes, stage: str, n: int, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    times.add(stage, time.perf_counter() - t0, n)
    return out


def _read(frames: Iterator[SourceFrame], times: StageTimes, seq: int = 0,
          motion: bool = False) -> _FrameInFlight | None:
    """Decode the next frame; ``None`` at the end. ``motion``: also make the frame's cells of
    the adaptive keyframes' motion test (:func:`posetracker.app.video.cells`) here, while the
    decoded pixels are in this thread's cache and off the video loop's path (in a sampling
    profile of the loop on a 1080p video, the grid took a tenth of its time)."""
    t0 = time.perf_counter()
    frame = next(frames, None)
    if frame is None:
        return None
    item = _FrameInFlight(frame, seq, motion=cells(frame.image) if motion else None)
    times.add("read", time.perf_counter() - t0, 1)
    return item


def _detect(batch: list[_FrameInFlight], stages: FrameStages, times: StageTimes,
            keyframes: Keyframes | None = None) -> None:
    """The detector on the batch's frames (video mode: its scheduled keyframes only; the others
    keep ``detections`` ``None``). Timed per frame of the batch, detected or not."""
    keys = [it for it in batch if keyframes is None or keyframes.scheduled(it.seq)]
    dets = _timed(times, "detect", len(batch),
                  lambda: stages.detect([it.frame.image for it in keys]) if keys else [])
    if len(dets) != len(keys):
        raise RuntimeError(f"detector returned {len(dets)} results for {len(keys)} frames")
    for it, d in zip(keys, dets):
        it.detections = d


def _estimate(batch: list[_FrameInFlight], stages: FrameStages, times: StageTimes,
              video: bool = False) -> None:
    """The pose estimator on the people of the batch's frames, together. In video mode only
    the frames with detector boxes (keyframes), and the boxes stay with the frame: the video
    loop merges them with its proposals."""
    todo = [it for it in batch if not video or it.detections is not None]
    out = _timed(times, "pose", len(batch), lambda: stages.estimate(
        [it.frame.image for it in todo], [it.detections for it in todo]) if todo else [])
    if len(out) != len(todo):
        raise RuntimeError(f"pose estimator returned {len(out)} results for {len(todo)} frames")
    for it, e in zip(todo, out):
        it.estimate = e
        if not video:
            it.detections = None


def _video_step(it: _FrameInFlight, loop: VideoLoop) -> None:
    """Video mode: the proposals' poses, group and the next frame's proposals of one frame, in
    order (the detector's boxes estimated ahead, by :func:`_estimate`)."""
    it.poses = loop(it.frame.image, it.detections, it.estimate, it.motion)
    it.detections = it.estimate = it.motion = None


def _group(it: _FrameInFlight, stages: FrameStages, times: StageTimes) -> None:
    it.poses = _timed(times, "group", 1, lambda: stages.group(it.estimate, it.frame.image))
    it.estimate = None


class _TrackStep:
    """The tracking stage: :class:`posetracker.tracker.base.TrackingLoop` with the frames'
    items as payloads, timed. Frames wait there (at most the tracker's window, images included)
    until their ids are final; ``None`` tracker: every frame passes at once."""

    def __init__(self, tracker: Tracker | None, times: StageTimes):
        self.loop = TrackingLoop(tracker) if tracker is not None else None
        self.times = times

    def _items(self, done: list[tuple[_FrameInFlight, FramePoses]]) -> list[_FrameInFlight]:
        for it, poses in done:
            it.poses = poses
        return [it for it, _ in done]

    def __call__(self, it: _FrameInFlight) -> list[_FrameInFlight]:
        """Track one frame; returns the frames now final (possibly none, possibly several)."""
        if self.loop is None:
            return [it]
        t0 = time.perf_counter()
        # the trackers' ORB features expect OpenCV's BGR order; a reversed view costs no copy
        out = self._items(self.loop.push(it.poses, it.frame.image[..., ::-1], it))
        self.times.add("track", time.perf_counter() - t0, 1)
        return out

    def finish(self) -> list[_FrameInFlight]:
        """End of the video: every waiting frame with its final ids."""
        if self.loop is None:
            return []
        t0 = time.perf_counter()
        out = self._items(self.loop.finish())
        self.times.add("track", time.perf_counter() - t0, 0)
        return out


# -- threaded mode ------------------------------------------------------------------------------------

class _Cancelled(Exception):
    """Raised inside a stage thread when another stage failed or the caller stopped the run."""


_END = object()  # end-of-stream marker, passed down the queues once
_EMPTY = object()  # "nothing waiting" from _RunControl.get_ready


class _RunControl:
    """How the stages of one threaded run stop together: the stop event, the first error, and
    queue puts and gets that give up (raising :class:`_Cancelled`) once the run stops."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.stop.set()

    def put(self, q: queue.Queue, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Cancelled
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def get_ready(self, q: queue.Queue) -> Any:
        """An item already waiting in ``q``, else ``_EMPTY`` (never blocks)."""
        if self.stop.is_set():
            raise _Cancelled
        try:
            return q.get_nowait()
        except queue.Empty:
            return _EMPTY

    def get(self, q: queue.Queue) -> Any:
        while True:
            if self.stop.is_set():
                raise _Cancelled
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch intra-op threads ``n`` on this thread for the block (0: leave torch's setting), and
    the previous setting back after it."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _worker(run: _RunControl, name: str, body: Callable[[], None],
            threads: int = 0) -> threading.Thread:
    def target() -> None:
        try:
            if threads:
                # OpenMP's thread count is per thread: set here, it holds for this stage's calls
                # (measured: without it a 1-thread setting on the caller gave 2 busy cores per
                # call on a 2-core machine, oversubscribing the CPU while several stages run).
                import torch

                torch.set_num_threads(threads)
            body()
        except _Cancelled:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, re-raised there
            run.fail(e)
        finally:
            done.set()

    done = threading.Event()  # what _join waits on (see there why not Thread.join)
    thread = threading.Thread(target=target, name=f"posetracker-{name}", daemon=True)
    thread.posetracker_done = done  # type: ignore[attr-defined]
    return thread


class _ThreadedRun(_RunControl):
    """One threaded run: the stage bodies and the state they share (the queues between them, the
    stop event and first error of :class:`_RunControl`, and the pose workers' turns).

    Pose workers take runs of consecutive frames in turn (under ``gather``: ``pose_taken`` counts
    the batches taken) and hand their results on in the same turn order (``turn``:
    ``pose_handed`` counts the batches handed on), so frames stay in order and a fast worker
    waits, holding one batch, instead of piling results up behind a slow one. The last worker to
    finish (``pose_finished``) passes the end of the stream on.
    """

    def __init__(self, source: Iterable[SourceFrame], stages: FrameStages, tracker: Tracker | None,
                 options: PipelineOptions, times: StageTimes):
        super().__init__()
        self.source, self.stages, self.tracker = source, stages, tracker
        self.options, self.times = options, times
        self.q_read, self.q_det, self.q_pose, self.q_group, self.q_track = (
            queue.Queue(maxsize=options.queue_size) for _ in range(5))
        self.keyframes = Keyframes(options.video) if options.video is not None else None
        self.gather = threading.Lock()
        self.turn = threading.Condition()
        self.pose_ended = False
        self.pose_taken = self.pose_handed = self.pose_finished = 0

    # -- the stages, in pipeline order ------------------------------------------------------------
    def reader(self) -> None:
        frames = iter(self.source)
        try:
            seq = 0
            motion = self.keyframes is not None and self.keyframes.adaptive
            while (item := _read(frames, self.times, seq, motion)) is not None:
                self.put(self.q_read, item)
                seq += 1
            self.put(self.q_read, _END)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:  # release the video file now, also when stopped early
                close()

    def detector(self) -> None:
        done = False
        while not done:
            batch, done = self.gather_batch(self.q_read, self.detect_full)
            if batch:
                _detect(batch, self.stages, self.times, self.keyframes)
                for it in batch:
                    self.put(self.q_det, it)
        self.put(self.q_det, _END)

    def pose_worker(self) -> None:
        while True:
            with self.gather:
                if self.pose_ended:
                    break
                batch, self.pose_ended = self.gather_batch(self.q_det, self.pose_full)
                mine = self.pose_taken
                self.pose_taken += bool(batch)
            if not batch:
                continue
            _estimate(batch, self.stages, self.times, video=self.keyframes is not None)
            with self.turn:
                while self.pose_handed != mine:
                    if self.stop.is_set():
                        raise _Cancelled
                    self.turn.wait(0.05)
            for it in batch:
                self.put(self.q_pose, it)
            with self.turn:
                self.pose_handed += 1
                self.turn.notify_all()
        with self.gather:
            self.pose_finished += 1
            last = self.pose_finished == self.options.pose_workers
        if last:  # every worker has handed over its last batch
            self.put(self.q_pose, _END)

    def grouping(self) -> None:
        expect = 0
        while (item := self.get(self.q_pose)) is not _END:
            if item.seq != expect:  # cannot happen: the workers hand over in turn
                raise RuntimeError(f"frame {item.seq} reached grouping before frame {expect}")
            _group(item, self.stages, self.times)
            self.put(self.q_group, item)
            expect += 1
        self.put(self.q_group, _END)

    def video(self) -> None:
        """Video mode's loop: one thread, frames in order (see :mod:`posetracker.app.video`)."""
        loop = VideoLoop(self.stages, self.options.video, self.times)
        while (item := self.get(self.q_pose)) is not _END:
            _video_step(item, loop)
            self.put(self.q_group, item)
        self.put(self.q_group, _END)

    def tracking(self) -> None:
        step = _TrackStep(self.tracker, self.times)
        while (item := self.get(self.q_group)) is not _END:
            for done in step(item):
                self.put(self.q_track, done)
        for done in step.finish():
            self.put(self.q_track, done)
        self.put(self.q_track, _END)

    # -- batching -----------------------------------------------------------------------------------
    def detect_full(self, batch: list[_FrameInFlight]) -> bool:
        return len(batch) >= self.options.det_batch

    def pose_full(self, batch: list[_FrameInFlight]) -> bool:
        return (len(batch) >= self.options.pose_max_frames
                or sum(len(it.detections) for it in batch if it.detections is not None)
                >= self.options.pose_batch)

    def gather_batch(self, q_in: queue.Queue, full: Callable[[list[_FrameInFlight]], bool]
                     ) -> tuple[list[_FrameInFlight], bool]:
        """Wait for one frame, then take the frames already waiting until ``full``.

        Returns the batch and whether the stream ended. Not waiting for a full batch keeps a
        stage from idling while its input trickles in (at the start of a video, or behind a
        slower stage): on a CPU a smaller batch costs the same per frame, and on a GPU an idle
        device gains nothing from waiting either.
        """
        batch: list[_FrameInFlight] = []
        while not full(batch):
            item = self.get(q_in) if not batch else self.get_ready(q_in)
            if item is _EMPTY:
                break
            if item is _END:
                return batch, True
            batch.append(item)
        return batch, False

    # -- the run ------------------------------------------------------------------------------------
    def frames(self) -> Iterator[tuple[SourceFrame, FramePoses]]:
        """Start the stage threads, yield each tracked frame, stop and join them at the end (also
        when the consumer closes the generator early); re-raise the first error of any stage."""
        n = self.options.torch_threads  # every stage's model calls get the run's setting
        # video mode: proposals -> group -> next proposals is one loop, in order
        last = (_worker(self, "video", self.video, n) if self.options.video is not None else
                _worker(self, "group", self.grouping, n))
        middle = [*(_worker(self, f"pose-{i}", self.pose_worker, n)
                    for i in range(self.options.pose_workers)), last]
        threads = [
            _worker(self, "read", self.reader, n),
            _worker(self, "detect", self.detector, n),
            *middle,
            _worker(self, "track", self.tracking, n),
        ]
        try:
            for t in threads:  # inside the try: a Ctrl-C while starting still stops those started
                t.start()
            while (item := self.get(self.q_track)) is not _END:
                yield item.frame, item.poses
        except _Cancelled:
            pass  # a stage failed; its error is raised below
        except GeneratorExit:  # the consumer stopped early: stop the stages, nothing to report
            _join(threads, self.options.join_timeout, self)
            raise
        except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt while waiting: stop the
            self.fail(e)            # stages first; re-raised below
        finally:
            _join(threads, self.options.join_timeout, self)
        if self.error is not None:
            raise self.error


def iter_pipeline(
    source: Iterable[SourceFrame],
    stages: FrameStages,
    tracker: Tracker | None,
    options: PipelineOptions = PipelineOptions(),
    times: StageTimes | None = None,
) -> Iterator[tuple[SourceFrame, FramePoses]]:
    """Every frame of ``source`` through the stages (``options.mode``: on threads, or one after
    the other); yields each tracked frame, in order, as soon as its ids are final.

    A generator: in threaded mode the stage threads start on the first ``next`` and are stopped
    and joined when it ends, fails or is closed (``close()``, or the consumer dropping it), so a
    consumer can stop early without leaving threads behind. ``times`` (default: a new one)
    collects each stage's work time.

    Raises:
        The first exception of any stage (after all threads stopped), or ``KeyboardInterrupt``.
    """
    times = times if times is not None else StageTimes(STAGES)
    if options.mode == "sequential":
        return _sequential(source, stages, tracker, options, times)
    return _ThreadedRun(source, stages, tracker, options, times).frames()


def run_pipeline(
    source: Iterable[SourceFrame],
    stages: FrameStages,
    tracker: Tracker | None,
    write: WriteFn,
    options: PipelineOptions = PipelineOptions(),
    progress: Callable[[int], None] | None = None,
) -> PipelineResult:
    """Run every frame of ``source`` through the stages (:func:`iter_pipeline`); ``write`` each
    tracked frame: the loop of every run (``PoseTracker.track_to``, ``posetracker track``).

    ``write(frame, poses)`` is called on the caller's thread, in frame order, and timed as the
    write stage. ``progress(n)`` is called after each written frame with the count so far.

    Raises:
        The first exception of any stage or of ``write`` (after all threads stopped), or
        ``KeyboardInterrupt``. Frames written before the failure stay written.
    """
    times = StageTimes(STAGES)
    n_frames = people = 0
    t0 = time.perf_counter()
    frames = iter_pipeline(source, stages, tracker, options, times)
    try:
        for frame, poses in frames:
            t1 = time.perf_counter()
            write(frame, poses)
            times.add("write", time.perf_counter() - t1, 1)
            people += len(poses)
            n_frames += 1
            if progress is not None:
                progress(n_frames)
    finally:
        frames.close()  # its stages stop before an error leaves
    return PipelineResult(n_frames, people, time.perf_counter() - t0, times, options.mode)


def _running(t: threading.Thread) -> bool:
    """A started stage thread that has not finished its work."""
    done = getattr(t, "posetracker_done", None)
    return t.ident is not None and (not done.is_set() if done is not None else t.is_alive())


def _join(threads: list[threading.Thread], timeout: float, run: _RunControl | None = None) -> None:
    """Stop the stages (``run.stop``) and wait for every started thread, up to ``timeout`` s.

    A ``KeyboardInterrupt`` (a second Ctrl-C, or the SIGINT that ``timeout`` and terminals
    send to the whole process group) does not cut the wait short: it is recorded as the run's
    error (re-raised by the caller) and the joining goes on. A thread left inside a torch call
    when the interpreter exits is killed mid-call, and the process aborts (``terminate called
    without an active exception``, exit 134) instead of exiting with 130.
    """
    # Waits on each stage's own "done" event, not on Thread.join: on Python 3.11 a
    # KeyboardInterrupt inside Thread.join can mark a thread that is still running as stopped
    # (bpo-45274's fix releases the thread's own state lock), after which is_alive() is False
    # and join returns at once, while the stage is still inside a model call.
    deadline = time.monotonic() + timeout
    pending = [t for t in threads if t.ident is not None]  # started ones only
    while True:
        try:
            if run is not None:
                run.stop.set()
            while pending:
                done = getattr(pending[0], "posetracker_done", None)
                left = max(0.0, deadline - time.monotonic())
                if done is not None:
                    done.wait(left)
                else:
                    pending[0].join(left)
                pending.pop(0)
            break
        except KeyboardInterrupt as e:
            if run is None:
                raise
            run.fail(e)
    stuck = [t.name for t in threads if _running(t)]
    if stuck:  # daemon threads: they cannot keep the process alive, but say so
        log.warning("pipeline stages still running after %.0f s: %s", timeout, ", ".join(stuck))


# -- sequential mode ----------------------------------------------------------------------------------

def _sequential(
    source: Iterable[SourceFrame],
    stages: FrameStages,
    tracker: Tracker | None,
    options: PipelineOptions,
    times: StageTimes,
) -> Iterator[tuple[SourceFrame, FramePoses]]:
    """The same stages and batches, one after the other on the caller's thread; yields each
    tracked frame as the threaded run does.

    Each chunk of ``det_batch`` frames is read, detected, pose-estimated (people of the chunk
    together, in calls of up to ``pose_batch`` people by the estimator), grouped and tracked
    before the next chunk is read. ``options.torch_threads`` holds while the stages run (the
    caller's setting is back whenever a frame is handed out).
    """
    frames_it = iter(source)
    step = _TrackStep(tracker, times)
    video = options.video
    loop = VideoLoop(stages, video, times) if video is not None else None
    seq = 0
    motion = loop is not None and loop.keyframes.adaptive
    try:
        while True:
            chunk: list[_FrameInFlight] = []
            with torch_threads(options.torch_threads):
                while len(chunk) < options.det_batch and (it := _read(frames_it, times, seq,
                                                                         motion)):
                    chunk.append(it)
                    seq += 1
                if not chunk:
                    break
                _detect(chunk, stages, times, loop.keyframes if loop is not None else None)
                _estimate(chunk, stages, times, video=loop is not None)
            for it in chunk:
                with torch_threads(options.torch_threads):
                    if loop is None:
                        _group(it, stages, times)
                    else:
                        _video_step(it, loop)
                    done = step(it)
                for d in done:  # written before the next frame is grouped, as it finishes
                    yield d.frame, d.poses
        with torch_threads(options.torch_threads):
            done = step.finish()
        for it in done:
            yield it.frame, it.poses
    finally:
        close = getattr(frames_it, "close", None)
        if close is not None:
            close()


# -- the real estimator as pipeline stages --------------------------------------------------------------

class RMPEStages:
    """:class:`FrameStages` over an :class:`posetracker.estimators.rmpe.RMPEEstimator`'s public steps.

    - ``detect``: :meth:`RMPEEstimator.detect` on a batch of frames -> ``(m, 5)`` boxes + score;
    - ``estimate``: :meth:`RMPEEstimator.estimate_people`: crops, SPPE and de-transform of all
      people of several frames together, in batches of ``estimator.sppe.batch_size`` crops;
    - ``group``: :meth:`RMPEEstimator.group`, the grouping the estimator was built with (pose NMS
      or CrowdPose association, picked by :func:`posetracker.app.build.build_grouping`), then
      the poses below ``min_pose_score`` dropped.

    Args:
        estimator: A loaded ``RMPEEstimator`` with a detector.
        min_pose_score: ``group`` drops the poses whose person score is below this, after
            redundant poses are removed (so a weak duplicate cannot outlive its stronger twin).
    """

    def __init__(self, estimator, min_pose_score: float = 0.0):
        if not estimator.has_detector:
            raise ValueError("the estimator needs a detector to run on videos")
        self.estimator = estimator
        self.min_pose_score = min_pose_score

    def runtimes(self) -> dict[str, dict[str, str]]:
        """:meth:`RMPEEstimator.runtimes`: the backend and precision each model runs with."""
        return self.estimator.runtimes()

    def detect(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.estimator.detect(list(images))

    def estimate(self, images: Sequence[np.ndarray], detections: Sequence[np.ndarray]) -> list:
        return self.estimator.estimate_people(list(images), list(detections))

    def joint_scores(self, inter) -> np.ndarray:
        """Video mode: each box's mean joint score (:meth:`RMPEEstimator.joint_scores`)."""
        return self.estimator.joint_scores(inter.keypoint_scores)

    def keep(self, inter, index: np.ndarray):
        """Video mode: the per-box estimates at ``index`` only."""
        return inter.subset(index)

    def join(self, first, second):
        """Video mode: one frame's per-box estimates made in two calls, as one."""
        return first.join(second)

    def group(self, inter, image: np.ndarray) -> FramePoses:
        poses = self.estimator.group(inter)
        if self.min_pose_score > 0 and len(poses):
            poses = poses.subset(np.flatnonzero(np.asarray(poses.scores) >= self.min_pose_score))
        return poses
