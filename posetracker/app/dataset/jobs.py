"""The engine-independent bookkeeping of a run: which jobs wait, their attempts and retries,
and every sequence's record (the engines call :class:`JobQueue`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from posetracker.app.dataset.resume import Job

#: ``on_event(kind, name, data)``: ``ready`` (a worker's info), ``start``, ``frames``
#: (``{"n", "total"}``), ``done``/``failed``/``retry`` (the record).
EventFn = Callable[[str, str, dict], None]


@dataclass
class JobQueue:
    """The jobs of a run as the engines take them: which wait (a failed one is queued again
    until its ``retries`` are spent), their attempts, and every sequence's record; each change
    goes to ``on_event`` and rewrites the summary (``write_summary``).

    ``open`` counts the jobs neither done nor finally failed: the engines run while it is
    above 0.
    """

    jobs: list[Job]
    retries: int
    records: dict[str, dict]
    on_event: EventFn
    write_summary: Callable[[], None]
    waiting: deque = field(default_factory=deque)
    attempts: dict[str, int] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    open: int = 0

    def __post_init__(self) -> None:
        self.waiting.extend(self.jobs)
        self.open = len(self.jobs)

    def next(self) -> Job | None:
        return self.waiting.popleft() if self.waiting else None

    def start(self, job: Job, worker: str) -> None:
        self.attempts[job.name] = self.attempts.get(job.name, 0) + 1
        self.started[job.name] = time.perf_counter()
        self.records[job.name].update(status="running", worker=worker,
                                      attempts=self.attempts[job.name])
        self.on_event("start", job.name, self.records[job.name])
        self.write_summary()  # a live status: which worker runs what

    def finish(self, job: Job, status: str, data: dict, rss: float | None = None) -> None:
        rec = self.records[job.name]
        rec["wall_seconds"] = round(time.perf_counter() - self.started.get(job.name, 0.0), 3)
        rec["finished_at"] = round(time.time(), 3)
        if rss is not None:
            rec["rss_mb"] = round(rss, 1)
        if status == "done":
            rec.update(status="done", error="", **data)
            self.open -= 1
            self.on_event("done", job.name, rec)
        elif self.attempts.get(job.name, 0) <= self.retries:
            rec.update(status="pending", error=data.get("error", ""))
            self.waiting.append(job)  # retried after the others waiting
            self.on_event("retry", job.name, rec)
        else:
            rec.update(status="failed", error=data.get("error", ""),
                       seconds=data.get("seconds"))
            self.open -= 1
            self.on_event("failed", job.name, rec)
        self.write_summary()
