"""The Ray engine: one actor per worker holding the models, one Ray task per sequence, on a
local Ray started for the run or on a cluster."""

from __future__ import annotations

import os
import time
from typing import Any

from posetracker.app.dataset.jobs import JobQueue
from posetracker.app.dataset.resume import Job
from posetracker.app.dataset.worker import SequenceRunner, rss_mb, worker_info
from posetracker.app.settings import AppConfig
from posetracker.core.errors import InputError, PosetrackerError

RAY_MISSING = ("--engine ray needs Ray, an optional extra: pip install -e \".[ray]\" "
               "(or pip install \"ray>=2.9\")")


class RayWorker:
    """What each Ray actor holds (made a Ray actor class at run time: Ray is optional).

    Progress goes through a ``ray.util.queue.Queue`` given with each task (not to the
    constructor: a restarted actor would need it again), at most a few messages a second."""

    def __init__(self, config: AppConfig, threads: int):
        self.runner = SequenceRunner(config, threads)

    def info(self) -> dict:
        return worker_info(self.runner)

    def run(self, job: Job, queue) -> tuple[str, dict]:
        last = [0.0]

        def progress(n: int, total: int | None) -> None:
            now = time.perf_counter()
            if n == 0 or now - last[0] >= 0.25 or (total is not None and n >= total):
                last[0] = now
                try:
                    queue.put_nowait((job.name, {"n": n, "total": total}))
                except Exception:  # progress only; a full or lost queue must not fail the job
                    pass

        status, data = self.runner.run(job, progress)
        return status, {**data, "rss_mb": rss_mb()}


def import_ray():
    """The ``ray`` module, or :class:`InputError` with how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


def run_ray(job_queue: JobQueue, config: AppConfig, workers: int, address: str | None,
             gpus_per_task: float, timings: dict) -> None:
    ray = import_ray()
    from ray.exceptions import RayActorError, RayError
    from ray.util.queue import Empty, Queue

    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address:
            # the models folder travels to the cluster's workers (paths must exist there)
            env = {k: os.environ[k] for k in ("POSETRACKER_MODELS", "POSETRACKER_CACHE")
                   if k in os.environ}
            ray.init(address=address, runtime_env={"env_vars": env} if env else None, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, **kwargs)
    try:
        timings["engine_started"] = time.perf_counter()
        resources = ray.cluster_resources()
        cpus = float(resources.get("CPU", 1))
        if workers <= 0:
            workers = int(resources.get("GPU", 0) // gpus_per_task) if gpus_per_task > 0 \
                else int(cpus)
            workers = max(1, min(workers, len(job_queue.jobs)))
        per_worker = max(1, int(cpus // workers))
        queue = Queue(maxsize=10000, actor_options={"num_cpus": 0})
        actor_cls = ray.remote(RayWorker).options(
            num_cpus=per_worker, num_gpus=gpus_per_task or 0,
            max_restarts=-1, max_task_retries=0)  # a lost actor comes back; its task is ours
        actors = [actor_cls.remote(config, per_worker) for _ in range(workers)]
        try:
            infos = ray.get([a.info.remote() for a in actors])
        except RayError as e:
            raise PosetrackerError(f"a Ray worker could not start: "
                                   f"{' '.join(str(e).split())[-400:]}") from None
        timings["first_ready"] = time.perf_counter()
        hosts = {}
        for a, info in zip(actors, infos):
            hosts[a] = f"{info['host']}:{info['pid']}"
            job_queue.on_event("ready", "", info)
        idle = list(actors)
        inflight: dict[Any, tuple[Any, Job]] = {}
        while job_queue.open:
            while idle:
                job = job_queue.next()
                if job is None:
                    break
                actor = idle.pop()
                job_queue.start(job, hosts[actor])
                inflight[actor.run.remote(job, queue)] = (actor, job)
            done, _ = ray.wait(list(inflight), num_returns=1, timeout=0.25) \
                if inflight else ([], [])
            try:
                for name, data in queue.get_nowait_batch(queue.qsize()):
                    job_queue.on_event("frames", name, data)
            except Empty:
                pass
            for ref in done:
                actor, job = inflight.pop(ref)
                idle.append(actor)
                try:
                    status, data = ray.get(ref)
                except RayActorError as e:
                    status, data = "failed", {"error": "Ray worker died: "
                                              + " ".join(str(e).split())[:300]}
                except RayError as e:
                    status, data = "failed", {"error": " ".join(str(e).split())[-300:]}
                job_queue.finish(job, status, data, rss=data.pop("rss_mb", None))
    finally:
        if started_here:
            ray.shutdown()
