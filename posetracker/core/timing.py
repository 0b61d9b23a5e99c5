"""Work time per stage: :class:`StageTimes`, shared by the estimator (its steps) and the pipeline
(its stages)."""

from __future__ import annotations

import threading
from collections.abc import Sequence


class StageTimes:
    """Seconds of work per stage, the frames each stage handled, and the people seen; safe to
    update from several threads.

    Args:
        stages: Stage names in order (they appear in :meth:`ms_per_frame` in this order; others
            are added as they come).
        total: :meth:`ms_per_frame` also gives ``total``, the sum over the stages.
    """

    def __init__(self, stages: Sequence[str] = (), total: bool = False):
        self._stages = tuple(stages)
        self._total = total
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to zero."""
        with self._lock:
            self.seconds: dict[str, float] = dict.fromkeys(self._stages, 0.0)
            self.frames: dict[str, int] = dict.fromkeys(self._stages, 0)
            self.persons = 0

    def add(self, stage: str, seconds: float, frames: int = 0, persons: int = 0) -> None:
        """``seconds`` of work in ``stage`` on ``frames`` frames (and ``persons`` people)."""
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.frames[stage] = self.frames.get(stage, 0) + frames
            self.persons += persons

    def ms_per_frame(self) -> dict[str, float]:
        """Milliseconds of work per frame for each stage that handled frames (and ``total``)."""
        with self._lock:
            out = {s: 1000.0 * self.seconds[s] / self.frames[s]
                   for s in self.seconds if self.frames.get(s)}
        if self._total:
            out["total"] = sum(out.values())
        return out
