"""Test doubles for the pipeline tests: an estimator and a tracker that need no models.

:class:`FakeStages` follows :class:`posetracker.app.pipeline.FrameStages`: every frame holds
``people`` synthetic people whose joints sit on a small circle that moves with the frame index,
so tracking them by nearest centre is easy. It can raise at a chosen frame (to test interruption)
and sleep per call (to test that stages overlap).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17
from posetracker.io.sources import SourceFrame


class Boom(RuntimeError):
    """The error a test double raises on purpose."""


class FakeStages:
    def __init__(self, people: int = 2, fail_at: int | None = None, fail_stage: str = "pose",
                 sleep: float = 0.0):
        self.people = people
        self.fail_at = fail_at
        self.fail_stage = fail_stage
        self.sleep = sleep
        self.threads: set[str] = set()

    def runtimes(self) -> dict:
        return {}  # no models

    def _maybe_fail(self, stage: str, indices) -> None:
        self.threads.add(threading.current_thread().name)
        if self.sleep:
            time.sleep(self.sleep)
        if stage == self.fail_stage and self.fail_at is not None and self.fail_at in indices:
            raise Boom(f"injected failure in {stage} at frame {self.fail_at}")

    @staticmethod
    def _centre(i: int, p: int) -> float:
        """x of person ``p``'s centre on frame ``i`` (y is 100, the radius 20 px)."""
        return 100 + 200 * p + 2 * i

    def detect(self, images):
        # the frame index is painted into pixel (0, 0) by make_frames; each person's box is
        # ``(m, 5)`` xyxy + score, as a real detector's
        idx = [int(im[0, 0, 0]) for im in images]
        self._maybe_fail("detect", idx)
        return [np.array([[self._centre(i, p) - 20, 80, self._centre(i, p) + 20, 120, 0.9]
                          for p in range(self.people)]).reshape(-1, 5) for i in idx]

    def estimate(self, images, detections):
        idx = [int(im[0, 0, 0]) for im in images]
        self._maybe_fail("pose", idx)
        out = []
        for i, dets in zip(idx, detections):
            k = COCO17.num_keypoints
            ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
            # which person a box holds: the one whose centre is nearest the box's (tests that
            # call this directly may name the people by index instead)
            people = [int(b) if np.ndim(b) == 0
                      else round((float(b[0] + b[2]) / 2 - self._centre(i, 0)) / 200) for b in dets]
            kp = np.stack([[self._centre(i, p) + 20 * np.cos(ang), 100 + 20 * np.sin(ang)]
                           for p in people]).transpose(0, 2, 1) if people else np.zeros((0, k, 2))
            out.append(FramePoses.from_keypoints(kp, np.full((len(people), k), 0.9), COCO17))
        return out

    def group(self, estimate: FramePoses, image) -> FramePoses:
        return estimate

    def joint_scores(self, estimate: FramePoses):
        """Video mode: each pose's mean joint score."""
        return estimate.keypoint_scores.mean(1)

    def keep(self, estimate: FramePoses, index):
        return estimate.subset(index)

    def join(self, first: FramePoses, second: FramePoses) -> FramePoses:
        return FramePoses.concatenate([first, second])


class NearestTracker:
    """Gives each pose the id of the previous frame's pose with the nearest centre."""

    def __init__(self):
        self.prev: tuple[np.ndarray, np.ndarray] | None = None
        self.next_id = 0
        self.ready: list[FramePoses] = []

    def update(self, poses: FramePoses, image) -> FramePoses:
        centres = np.nanmean(poses.keypoints, axis=1) if len(poses) else np.zeros((0, 2))
        ids = []
        for c in centres:
            if self.prev is not None and len(self.prev[0]):
                d = np.linalg.norm(self.prev[0] - c, axis=1)
                j = int(np.argmin(d))
                if d[j] < 50 and self.prev[1][j] not in ids:
                    ids.append(int(self.prev[1][j]))
                    continue
            ids.append(self.next_id)
            self.next_id += 1
        self.prev = (centres, np.array(ids, dtype=np.int64))
        self.ready.append(poses.with_track_ids(ids))
        return self.ready[-1]

    def pop_final(self):
        ready, self.ready = self.ready, []
        return ready

    def finish(self):
        ready = self.pop_final()
        self.__init__()
        return ready


class WindowTracker(NearestTracker):
    """Like :class:`NearestTracker`, but a frame is final only ``window`` frames later, and its
    final ids are the provisional ones + 100 (so a test can tell final from provisional)."""

    def __init__(self, window: int = 3):
        super().__init__()
        self.window = window
        self.held = []

    def update(self, poses, image):
        assert image.ndim == 3
        out = super().update(poses, image)
        self.held.extend(NearestTracker.pop_final(self))
        return out

    def pop_final(self):
        n = max(0, len(self.held) - self.window)
        done, self.held = self.held[:n], self.held[n:]
        return [p.with_track_ids(p.track_ids + 100) for p in done]

    def finish(self):
        done = [p.with_track_ids(p.track_ids + 100) for p in self.held]
        self.__init__(self.window)
        return done


def make_frames(n: int, size: tuple[int, int] = (48, 64), start: int = 0):
    """``n`` small RGB frames with their index painted into pixel (0, 0)."""
    for i in range(start, start + n):
        img = np.full((*size, 3), 40, np.uint8)
        img[0, 0, 0] = i
        yield SourceFrame(i, img, f"seq/{i:06d}.jpg")
