"""Interrupts at awkward moments of the threaded pipeline (test-double stages, no models):

- a second Ctrl-C while the stages are being joined (terminals and ``timeout`` signal the whole
  process group, so one keypress can arrive twice) must not cut the join short: a stage thread
  left inside a native call when the interpreter exits aborts the process (exit 134,
  ``terminate called without an active exception``) instead of exiting with 130;
- an interrupt while the stage threads are being started still stops those already started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from pipeline_doubles import FakeStages, make_frames

from posetracker.app import pipeline
from posetracker.app.pipeline import PipelineOptions, run_pipeline


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("posetracker-")]


def test_second_interrupt_during_the_join_waits_for_every_stage():
    # Real signals go to the whole process: run in a fresh interpreter, so they meet this test's
    # threads only (in the suite's process, the native runtime threads of earlier tests' models,
    # OpenVINO's, sit beside them; a SIGINT delivered there crashed the interpreter once).
    if os.environ.get("POSETRACKER_SIGNAL_CHILD") != "1":
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"{__file__}::test_second_interrupt_during_the_join_waits_for_every_stage"],
                           env={**os.environ, "POSETRACKER_SIGNAL_CHILD": "1"},
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "1 passed" in r.stdout
        return
    # Real signals: they wake the main thread blocked in Thread.join (interrupt_main would not);
    # several, so that every join of the shutdown path is hit. The stages sleep 0.4 s per call,
    # so the join lasts about that long. A handler raises KeyboardInterrupt as Python's own does
    # while the run lasts, and ignores a signal that comes after it.
    armed = threading.Event()
    armed.set()

    def handler(signum, frame):
        if armed.is_set():
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    more = [threading.Timer(d, os.kill, (os.getpid(), signal.SIGINT)) for d in (0.03, 0.1, 0.17)]

    def write(frame, poses):
        if frame.index == 2:
            for t in more:
                t.start()
            raise KeyboardInterrupt  # the first Ctrl-C, while writing

    try:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(make_frames(500), FakeStages(sleep=0.4), None, write,
                         PipelineOptions(queue_size=2, pose_workers=2))
        # no waiting here: the stages are gone when the interrupt leaves run_pipeline
        alive = _pipeline_threads()
        armed.clear()
        for t in more:
            t.join()
    finally:
        armed.clear()
        signal.signal(signal.SIGINT, old)
    assert alive == []


def test_interrupt_while_starting_the_stages_stops_those_started(monkeypatch):
    real_start = threading.Thread.start
    started = []

    def start(self):
        real_start(self)
        if self.name.startswith("posetracker-"):
            started.append(self.name)
            if len(started) == 3:
                raise KeyboardInterrupt  # as if Ctrl-C landed between two starts

    monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(make_frames(500), FakeStages(sleep=0.05), None, lambda f, p: None,
                     PipelineOptions(queue_size=2))
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert _pipeline_threads() == []


def test_join_gives_up_on_a_stuck_stage_after_its_timeout(caplog):
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="posetracker-stuck", daemon=True)
    t.start()
    t0 = time.monotonic()
    pipeline._join([t], 0.2)
    assert 0.15 < time.monotonic() - t0 < 2
    assert "posetracker-stuck" in caplog.text
    stop.set()
    t.join()
