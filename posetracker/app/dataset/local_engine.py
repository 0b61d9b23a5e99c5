"""The local engine: spawned worker processes, one pipe each; each loads the models once and
then takes one sequence after another."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from posetracker.app.dataset.jobs import JobQueue
from posetracker.app.dataset.resume import Job
from posetracker.app.dataset.worker import SequenceRunner, one_line, rss_mb, worker_info
from posetracker.app.settings import AppConfig
from posetracker.core.errors import PosetrackerError


def _local_worker(conn, config: AppConfig, threads: int) -> None:
    """A local worker process: load the models, then run the jobs the parent sends."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C reaches the whole process group; the parent stops the workers itself, by SIGTERM,
    # which unwinds the sequence in hand as Ctrl-C unwinds `track` (temporary files removed).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    try:
        try:
            runner = SequenceRunner(config, threads)
        except Exception as e:
            conn.send(("fatal", "", {"error": one_line(e)}))
            return
        conn.send(("ready", "", worker_info(runner)))
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return
            if job is None:
                return
            name = job.name

            def progress(n: int, total: int | None) -> None:
                conn.send(("frames", name, {"n": n, "total": total}))

            status, data = runner.run(job, progress)
            conn.send((status, name, {**data, "rss_mb": rss_mb()}))
    except (KeyboardInterrupt, BrokenPipeError):
        return


@dataclass
class LocalWorker:
    """One worker process as the parent sees it: the process, its end of the pipe, the job it
    runs (``None``: idle), whether its models are loaded (``ready``) and the info it sent then."""

    proc: Any
    conn: Any
    job: Job | None = None
    ready: bool = False
    info: dict = field(default_factory=dict)


class LocalPool:
    """The worker processes of a local run (spawned: no fork of a parent holding threads and
    models) and the messages they send, feeding ``job_queue``.

    Args:
        job_queue: The run's jobs.
        config: The settings each worker loads its models with.
        workers: Processes to keep while there is work for them.
        threads: CPU cores each worker may use.
        timings: The run's marks; ``first_ready`` is set when a worker's models are loaded.
    """

    def __init__(self, job_queue: JobQueue, config: AppConfig, workers: int, threads: int,
                 timings: dict):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.job_queue = job_queue
        self.config = config
        self.workers = workers
        self.threads = threads
        self.timings = timings
        self.procs: list[LocalWorker] = []
        self.init_deaths = 0  # workers in a row that died before their models loaded

    def spawn(self) -> None:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_local_worker, args=(child, self.config, self.threads),
                             name="posetracker-dataset-worker", daemon=True)
        p.start()
        child.close()
        self.procs.append(LocalWorker(p, parent))

    def assign(self) -> None:
        """Give every idle ready worker a waiting job; spawn a replacement for a lost worker
        while there is work it could take."""
        for w in self.procs:
            if w.ready and w.job is None:
                job = self.job_queue.next()
                if job is None:
                    break
                w.job = job
                self.job_queue.start(job, f"{w.info.get('host', '')}:{w.proc.pid}")
                w.conn.send(job)
        busy = sum(w.job is not None for w in self.procs)
        if len(self.procs) < min(self.workers, busy + len(self.job_queue.waiting)):
            self.spawn()

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for messages or deaths, and handle them."""
        from multiprocessing.connection import wait

        ready = wait([w.conn for w in self.procs] + [w.proc.sentinel for w in self.procs],
                     timeout=timeout)
        for w in list(self.procs):
            if w.conn in ready or w.proc.sentinel in ready:
                self._receive(w)
                if not w.proc.is_alive():
                    self._bury(w)

    def _receive(self, w: LocalWorker) -> None:
        try:
            while w.conn.poll():
                kind, name, data = w.conn.recv()
                if kind == "ready":
                    w.ready, w.info = True, data
                    self.init_deaths = 0
                    self.timings.setdefault("first_ready", time.perf_counter())
                    self.job_queue.on_event("ready", "", data)
                elif kind == "fatal":
                    raise PosetrackerError(f"a worker could not start: {data['error']}")
                elif kind == "frames":
                    self.job_queue.on_event("frames", name, data)
                elif w.job is not None and name == w.job.name:
                    job, w.job = w.job, None
                    self.job_queue.finish(job, kind, data, rss=data.pop("rss_mb", None))
        except (EOFError, OSError):
            pass

    def _bury(self, w: LocalWorker) -> None:
        """A dead worker: its job fails (and is retried); too many deaths while loading the
        models stop the run."""
        w.proc.join(timeout=5)
        code = w.proc.exitcode
        if not w.ready:
            self.init_deaths += 1
            if self.init_deaths > 3:
                raise PosetrackerError(f"worker processes die while loading the "
                                       f"models (exit code {code})")
        self.procs.remove(w)
        if w.job is not None:
            self.job_queue.finish(w.job, "failed",
                                  {"error": f"worker process died (exit code {code})"})
        w.conn.close()
        w.proc.join(timeout=5)

    def terminate(self) -> None:
        """Stopped (Ctrl-C, an error): the sequences in hand stop too."""
        for w in self.procs:
            w.proc.terminate()

    def close(self) -> None:
        """Tell every worker to stop, and make sure it has."""
        for w in self.procs:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self.procs:
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            w.conn.close()


def run_local(job_queue: JobQueue, config: AppConfig, workers: int, threads: int,
              timings: dict) -> None:
    """Run ``job_queue``'s jobs in ``workers`` local processes of ``threads`` cores each."""
    pool = LocalPool(job_queue, config, workers, threads, timings)
    for _ in range(workers):
        pool.spawn()
    try:
        while job_queue.open:
            pool.assign()
            pool.poll(timeout=1.0)
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.close()
