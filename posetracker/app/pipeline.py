"""Streaming multi-stage pipeline: frames in, tracked poses out, with flat memory.

Stages, each on its own thread, joined by bounded queues (``queue.Queue(maxsize)``)::

    reader ──q──▶ detect ──q──▶ pose ×N ──q──▶ group ──q──▶ track ──q──▶ write (caller's thread)
    decode,       batches of     crops + SPPE,      association    tracker      JSON lines, CSV,
    prepare       frames         batches of people  or pose NMS    (in order)   render
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

Every stage's work is timed (seconds inside the stage's call, not time spent waiting on queues).
Shutdown: the first exception in any stage (or a ``KeyboardInterrupt`` in the caller's thread) sets a
stop event; every stage polls it while waiting on a queue and exits; the caller joins all threads and
the exception is re-raised in the caller's thread with its original traceback. No thread is left
running.

:func:`run_sequential` runs the same stages one after the other on the caller's thread, for the
speed comparison (``posetracker bench pipeline``).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from posetracker.core.poses import FramePoses
from posetracker.io.sources import SourceFrame

log = logging.getLogger(__name__)

#: Stage names in pipeline order, as they appear in timings and summaries.
STAGES = ("read", "detect", "pose", "group", "track", "write")


class FrameStages(Protocol):
    """The per-frame estimator split into the steps the pipeline overlaps.

    ``prepare`` runs on the reader thread (CPU: resize/letterbox for the detector); ``detect`` gets
    a batch of prepared frames; ``estimate`` gets several frames with their detections and runs
    the single-person pose estimator on all their people together (batches of people across
    frames); ``group`` removes redundant poses of one frame (pose NMS or joint-candidate
    association). Detections may be any object with ``len()`` = number of people.
    """

    def prepare(self, image: np.ndarray) -> Any: ...

    def detect(self, prepared: Sequence[Any]) -> list[Any]: ...

    def estimate(self, images: Sequence[np.ndarray], detections: Sequence[Any]) -> list[Any]: ...

    def group(self, estimate: Any, image: np.ndarray) -> FramePoses: ...


class Tracker(Protocol):
    """What the pipeline needs of a tracker (:class:`posetracker.tracker.base.Tracker`).

    ``update`` is called per frame in order; ``pop_final`` then returns the frames whose ids can
    no longer change (a windowed tracker such as PoseFlow returns them some frames later);
    ``finish`` returns the rest at the end of the video. Images are passed as ``(H, W, 3)`` BGR.
    """

    def update(self, poses: FramePoses, image: np.ndarray | None = None) -> FramePoses: ...

    def pop_final(self) -> list[FramePoses]: ...

    def finish(self) -> list[FramePoses]: ...


@dataclass(frozen=True)
class PipelineOptions:
    """How the pipeline batches and buffers (the run-time part of ``pipeline`` settings).

    Attributes:
        det_batch: Most frames per detector call.
        pose_batch: People per pose-estimator call; the pose stage gathers frames until their
            people reach this number (or ``pose_max_frames`` frames are gathered). In threaded
            mode a stage does not wait for a full batch: it takes the frames already waiting.
        pose_max_frames: Most frames gathered for one pose-estimator call (bounds memory and
            latency when frames have few people).
        pose_workers: Threads running the pose estimator on successive batches at once. The pose
            estimator is the slowest stage on a CPU (one call per person); with more than one
            worker its batches run in parallel (each worker one core when torch runs one thread
            per call), and frames are put back in order before grouping.
        queue_size: Capacity of each queue between stages, in frames.
        join_timeout: Seconds to wait for each stage thread at shutdown before giving up on it
            (a stage stuck in a long model call finishes that call first).
    """

    det_batch: int = 4
    pose_batch: int = 32
    pose_max_frames: int = 8
    pose_workers: int = 1
    queue_size: int = 4
    join_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("det_batch", "pose_batch", "pose_max_frames", "pose_workers", "queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class StageTimes:
    """Seconds of work per stage and frames it handled; safe to update from the stage threads."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    frames: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, seconds: float, frames: int) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.frames[stage] = self.frames.get(stage, 0) + frames

    def ms_per_frame(self) -> dict[str, float]:
        """Milliseconds of work per frame for each stage that handled frames."""
        with self._lock:
            return {s: 1000.0 * self.seconds[s] / self.frames[s]
                    for s in self.seconds if self.frames.get(s)}


@dataclass
class PipelineResult:
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
    def fps(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def people_per_frame(self) -> float:
        return self.people / self.frames if self.frames else 0.0

    def as_dict(self) -> dict:
        return {"mode": self.mode, "frames": self.frames, "people": self.people,
                "wall_seconds": round(self.wall_seconds, 4), "fps": round(self.fps, 3),
                "ms_per_frame": {k: round(v, 3) for k, v in self.times.ms_per_frame().items()}}

    def summary(self) -> str:
        """The closing summary: frames, people per frame, ms per frame per stage, frames/s."""
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.times.ms_per_frame().items())
        return (f"{self.frames} frames, {self.people_per_frame:.2f} people/frame, "
                f"{self.fps:.2f} frames/s ({self.mode}); ms/frame: {stages}")


WriteFn = Callable[[SourceFrame, FramePoses], None]


# -- the work of each stage, shared by both modes ---------------------------------------------------

@dataclass
class _Item:
    """One frame travelling through the stages; fields fill in as it goes."""

    frame: SourceFrame
    seq: int = 0  # position in the stream, to restore the order after parallel pose workers
    prepared: Any = None
    detections: Any = None
    estimate: Any = None
    poses: FramePoses | None = None


def _timed(times: StageTimes, stage: str, n: int, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    times.add(stage, time.perf_counter() - t0, n)
    return out


def _read(frames: Iterator[SourceFrame], stages: FrameStages, times: StageTimes,
          seq: int = 0) -> _Item | None:
    """Decode the next frame and prepare it for the detector; ``None`` at the end."""
    t0 = time.perf_counter()
    frame = next(frames, None)
    if frame is None:
        return None
    item = _Item(frame, seq, prepared=stages.prepare(frame.image))
    times.add("read", time.perf_counter() - t0, 1)
    return item


def _detect(batch: list[_Item], stages: FrameStages, times: StageTimes) -> None:
    dets = _timed(times, "detect", len(batch),
                  lambda: stages.detect([it.prepared for it in batch]))
    if len(dets) != len(batch):
        raise RuntimeError(f"detector returned {len(dets)} results for {len(batch)} frames")
    for it, d in zip(batch, dets):
        it.detections, it.prepared = d, None  # the detector input is not needed any more


def _estimate(batch: list[_Item], stages: FrameStages, times: StageTimes) -> None:
    out = _timed(times, "pose", len(batch), lambda: stages.estimate(
        [it.frame.image for it in batch], [it.detections for it in batch]))
    if len(out) != len(batch):
        raise RuntimeError(f"pose estimator returned {len(out)} results for {len(batch)} frames")
    for it, e in zip(batch, out):
        it.estimate, it.detections = e, None


def _group(it: _Item, stages: FrameStages, times: StageTimes) -> None:
    it.poses = _timed(times, "group", 1, lambda: stages.group(it.estimate, it.frame.image))
    it.estimate = None


class _TrackStep:
    """Feeds frames to the tracker and hands back the frames whose ids are final, in order.

    A windowed tracker finalises frame ``t`` only after seeing later frames, so frames wait
    here (at most the tracker's window, images included) until ``pop_final`` releases them.
    Final ids are renumbered 0, 1, 2, ... in order of first appearance
    (:class:`posetracker.tracker.base.OutputIds`).
    """

    def __init__(self, tracker: Tracker | None, times: StageTimes):
        from posetracker.tracker.base import OutputIds

        self.tracker = tracker
        self.times = times
        self.waiting: deque[_Item] = deque()
        self.ids = OutputIds()

    def _release(self, final: list[FramePoses]) -> list[_Item]:
        if len(final) > len(self.waiting):
            raise RuntimeError(f"tracker returned {len(final)} final frames, only "
                               f"{len(self.waiting)} were waiting")
        out = []
        for poses in final:
            it = self.waiting.popleft()
            it.poses = self.ids(poses)
            out.append(it)
        return out

    def __call__(self, it: _Item) -> list[_Item]:
        """Track one frame; returns the frames now final (possibly none, possibly several)."""
        if self.tracker is None:
            return [it]
        t0 = time.perf_counter()
        # the trackers' ORB features expect OpenCV's BGR order; a reversed view costs no copy
        self.tracker.update(it.poses, it.frame.image[..., ::-1])
        self.waiting.append(it)
        out = self._release(self.tracker.pop_final())
        self.times.add("track", time.perf_counter() - t0, 1)
        return out

    def finish(self) -> list[_Item]:
        """End of the video: every waiting frame with its final ids."""
        if self.tracker is None:
            return []
        t0 = time.perf_counter()
        out = self._release(self.tracker.finish())
        self.times.add("track", time.perf_counter() - t0, 0)
        if self.waiting:
            raise RuntimeError(f"tracker kept {len(self.waiting)} frames after finish()")
        return out


def _write(it: _Item, write: WriteFn, times: StageTimes) -> int:
    _timed(times, "write", 1, lambda: write(it.frame, it.poses))
    return len(it.poses)


# -- threaded mode ------------------------------------------------------------------------------------

class _Cancelled(Exception):
    """Raised inside a stage thread when another stage failed or the caller stopped the run."""


_END = object()  # end-of-stream marker, passed down the queues once
_EMPTY = object()  # "nothing waiting" from _Run.get_ready


class _Run:
    """Shared state of one threaded run: the stop event and the first error."""

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


def _caller_torch_threads() -> int | None:
    """Torch's intra-op threads as the calling thread has them set; ``None``: torch not loaded."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _worker(run: _Run, name: str, body: Callable[[], None],
            torch_threads: int | None = None) -> threading.Thread:
    def target() -> None:
        try:
            if torch_threads is not None:
                # torch.set_num_threads on the caller's thread does not reach threads started
                # later: their OpenMP calls would use every core each (measured: a 1-thread
                # setting gave 2 busy cores per call on a 2-core machine), oversubscribing the
                # CPU while several stages run model calls at once.
                sys.modules["torch"].set_num_threads(torch_threads)
            body()
        except _Cancelled:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, re-raised there
            run.fail(e)

    return threading.Thread(target=target, name=f"posetracker-{name}", daemon=True)


def run_pipeline(
    source: Iterable[SourceFrame],
    stages: FrameStages,
    tracker: Tracker | None,
    write: WriteFn,
    options: PipelineOptions = PipelineOptions(),
    progress: Callable[[int], None] | None = None,
) -> PipelineResult:
    """Run every frame of ``source`` through the stages on threads; ``write`` each tracked frame.

    ``write(frame, poses)`` is called on the caller's thread, in frame order. ``progress(n)`` is
    called after each written frame with the count so far.

    Raises:
        The first exception of any stage (after all threads stopped), or ``KeyboardInterrupt``.
        Frames written before the failure stay written.
    """
    times = StageTimes()
    run = _Run()
    qs = [queue.Queue(maxsize=options.queue_size) for _ in range(5)]
    q_read, q_det, q_pose, q_group, q_track = qs

    def reader() -> None:
        frames = iter(source)
        try:
            seq = 0
            while (item := _read(frames, stages, times, seq)) is not None:
                run.put(q_read, item)
                seq += 1
            run.put(q_read, _END)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:  # release the video file now, also when stopped early
                close()

    def gather_batch(q_in: queue.Queue, full: Callable[[list[_Item]], bool]
                     ) -> tuple[list[_Item], bool]:
        """Wait for one frame, then take the frames already waiting until ``full``.

        Returns the batch and whether the stream ended. Not waiting for a full batch keeps a
        stage from idling while its input trickles in (at the start of a video, or behind a
        slower stage): on a CPU a smaller batch costs the same per frame, and on a GPU an idle
        device gains nothing from waiting either.
        """
        batch: list[_Item] = []
        while not full(batch):
            item = run.get(q_in) if not batch else run.get_ready(q_in)
            if item is _EMPTY:
                break
            if item is _END:
                return batch, True
            batch.append(item)
        return batch, False

    def batching(q_in: queue.Queue, q_out: queue.Queue, full: Callable[[list[_Item]], bool],
                 work: Callable[[list[_Item]], None]) -> Callable[[], None]:
        def body() -> None:
            done = False
            while not done:
                batch, done = gather_batch(q_in, full)
                if batch:
                    work(batch)
                    for it in batch:
                        run.put(q_out, it)
            run.put(q_out, _END)
        return body

    def tracking() -> None:
        step = _TrackStep(tracker, times)
        while (item := run.get(q_group)) is not _END:
            for done in step(item):
                run.put(q_track, done)
        for done in step.finish():
            run.put(q_track, done)
        run.put(q_track, _END)

    def pose_full(batch: list[_Item]) -> bool:
        return (len(batch) >= options.pose_max_frames
                or sum(len(it.detections) for it in batch) >= options.pose_batch)

    # Pose workers take runs of consecutive frames in turn (under ``gather``) and hand their
    # results on in the same turn order (``turn``), so frames stay in order and a fast worker
    # waits, holding one batch, instead of piling results up behind a slow one.
    gather = threading.Lock()
    turn = threading.Condition()
    pose = {"ended": False, "taken": 0, "handed": 0, "finished": 0}

    def pose_worker() -> None:
        while True:
            with gather:
                if pose["ended"]:
                    break
                batch, pose["ended"] = gather_batch(q_det, pose_full)
                mine = pose["taken"]
                pose["taken"] += bool(batch)
            if not batch:
                continue
            _estimate(batch, stages, times)
            with turn:
                while pose["handed"] != mine:
                    if run.stop.is_set():
                        raise _Cancelled
                    turn.wait(0.05)
            for it in batch:
                run.put(q_pose, it)
            with turn:
                pose["handed"] += 1
                turn.notify_all()
        with gather:
            pose["finished"] += 1
            last = pose["finished"] == options.pose_workers
        if last:  # every worker has handed over its last batch
            run.put(q_pose, _END)

    def grouping() -> None:
        expect = 0
        while (item := run.get(q_pose)) is not _END:
            if item.seq != expect:  # cannot happen: the workers hand over in turn
                raise RuntimeError(f"frame {item.seq} reached grouping before frame {expect}")
            _group(item, stages, times)
            run.put(q_group, item)
            expect += 1
        run.put(q_group, _END)

    intra = _caller_torch_threads()  # every stage's model calls get the caller's setting
    threads = [
        _worker(run, "read", reader, intra),
        _worker(run, "detect", batching(q_read, q_det, lambda b: len(b) >= options.det_batch,
                                        lambda b: _detect(b, stages, times)), intra),
        *(_worker(run, f"pose-{i}", pose_worker, intra) for i in range(options.pose_workers)),
        _worker(run, "group", grouping, intra),
        _worker(run, "track", tracking, intra),
    ]
    frames = people = 0
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    try:
        while (item := run.get(q_track)) is not _END:
            people += _write(item, write, times)
            frames += 1
            if progress is not None:
                progress(frames)
    except _Cancelled:
        pass  # a stage failed; its error is raised below
    except BaseException as e:  # KeyboardInterrupt or a failing writer: stop the stages first
        run.fail(e)
    finally:
        run.stop.set()
        _join(threads, options.join_timeout)
    if run.error is not None:
        raise run.error
    return PipelineResult(frames, people, time.perf_counter() - t0, times, "threaded")


def _join(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:  # daemon threads: they cannot keep the process alive, but say so
        log.warning("pipeline stages still running after %.0f s: %s", timeout, ", ".join(stuck))


# -- sequential mode ----------------------------------------------------------------------------------

def run_sequential(
    source: Iterable[SourceFrame],
    stages: FrameStages,
    tracker: Tracker | None,
    write: WriteFn,
    options: PipelineOptions = PipelineOptions(),
    progress: Callable[[int], None] | None = None,
) -> PipelineResult:
    """The same stages and batches, one after the other on the caller's thread.

    Each chunk of ``det_batch`` frames is read, detected, pose-estimated (people of the chunk
    together, in calls of up to ``pose_batch`` people by the estimator), grouped, tracked and
    written before the next chunk is read.
    """
    times = StageTimes()
    frames_it = iter(source)
    step = _TrackStep(tracker, times)
    frames = people = 0

    def emit(items: list[_Item]) -> None:
        nonlocal frames, people
        for it in items:
            people += _write(it, write, times)
            frames += 1
            if progress is not None:
                progress(frames)

    t0 = time.perf_counter()
    try:
        while True:
            chunk: list[_Item] = []
            while len(chunk) < options.det_batch and (it := _read(frames_it, stages, times)):
                chunk.append(it)
            if not chunk:
                break
            _detect(chunk, stages, times)
            _estimate(chunk, stages, times)
            for it in chunk:
                _group(it, stages, times)
                emit(step(it))
        emit(step.finish())
    finally:
        close = getattr(frames_it, "close", None)
        if close is not None:
            close()
    return PipelineResult(frames, people, time.perf_counter() - t0, times, "sequential")


# -- the real estimator as pipeline stages --------------------------------------------------------------

class RMPEStages:
    """:class:`FrameStages` over an :class:`posetracker.estimators.rmpe.RMPEEstimator`.

    - ``prepare``: nothing beyond decoding (the detector letterboxes inside its own call);
    - ``detect``: the estimator's person detector on a batch of frames -> ``(m, 5)`` boxes + score;
    - ``estimate``: crops, SPPE and de-transform of all people of several frames together
      (:meth:`RMPEEstimator.intermediates` with the detector's boxes), the SPPE running in
      batches of ``estimator.sppe.batch_size`` crops;
    - ``group``: RMPE's parametric pose NMS (``association="nms"``) or CrowdPose joint-candidate
      association (``"crowdpose"``), per frame.

    Args:
        estimator: A loaded ``RMPEEstimator`` with a detector.
        association: ``"nms"`` or ``"crowdpose"``.
        association_config: :class:`posetracker.association.config.AssociationConfig` for ``"crowdpose"``.
        min_pose_score: ``group`` drops the poses whose person score is below this, after
            redundant poses are removed (so a weak duplicate cannot outlive its stronger twin).
    """

    def __init__(self, estimator, association: str = "nms", association_config=None,
                 min_pose_score: float = 0.0):
        if association not in ("nms", "crowdpose"):
            raise ValueError(f"association must be 'nms' or 'crowdpose', got {association!r}")
        self.min_pose_score = min_pose_score
        if estimator.detector is None:
            raise ValueError("the estimator needs a detector to run on videos")
        self.estimator = estimator
        self.association = association
        if association_config is None:
            from posetracker.association.config import AssociationConfig

            association_config = AssociationConfig()
        self.association_config = association_config

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return image

    def detect(self, prepared: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            return self.estimator.detector(list(prepared))

    def estimate(self, images: Sequence[np.ndarray], detections: Sequence[np.ndarray]) -> list:
        import torch

        crowd = self.association == "crowdpose"
        with torch.inference_mode():
            return self.estimator.intermediates(list(images), boxes=list(detections),
                                                heatmaps=crowd, candidates=0)

    def group(self, inter, image: np.ndarray) -> FramePoses:
        poses = self._group(inter)
        if self.min_pose_score > 0 and len(poses):
            poses = poses.subset(np.flatnonzero(np.asarray(poses.box_scores)
                                                >= self.min_pose_score))
        return poses

    def _group(self, inter) -> FramePoses:
        schema = self.estimator.sppe.schema
        # both methods rank people as the estimator does (detector score x joint scores)
        person_scores = self.estimator.person_scores
        if self.association == "crowdpose":
            from posetracker.association.assign import associate_intermediates

            # the same call as `estimate --association crowdpose` (AssociatingEstimator)
            return associate_intermediates(inter, schema, self.association_config,
                                           person_scores)[0]
        from posetracker.estimators.pose_nms import pose_nms

        scores = person_scores(inter.box_scores, inter.keypoint_scores)
        poses = FramePoses(inter.keypoints, inter.keypoint_scores, inter.boxes, scores, schema)
        return pose_nms(poses, self.estimator.config.nms)[0]
