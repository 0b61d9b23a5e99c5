"""Time an OpenVINO pose model with a dynamic batch against the fixed-batch models the product runs.

    python tools/time_static_batches.py MODEL.xml [--threads 1] [--crops 2,5,8,18] [--repeat 4]

For each number of crops, alternating in one process, the same random crops go through (a)
``dynamic``: one model compiled with a dynamic batch, called once with every crop on every thread,
as a user's own glue (and the benchmark's reference row) does; (b) ``fixed``: the product's
executor (:class:`posetracker.estimators.runtimes.native.NativeGraph`) held to one lane: models
compiled for the batch sizes of ``STATIC_BATCHES``, the crops split into runs of them, each on
every thread; (c) ``lanes`` (with ``--threads`` above 1): the product's executor as it runs, the
crops split into one lane per thread, each a stream of one thread. Prints the best wall and
process-CPU milliseconds per crop of each and the ratios; all run float32 on ``--threads``
threads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import openvino as ov
import torch

from posetracker.estimators.runtimes.native import NativeGraph


def _best(fn, repeat: int) -> tuple[float, float]:
    """Fastest wall and process-CPU seconds of ``repeat`` calls of ``fn``."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="an OpenVINO IR .xml (e.g. TinyPose)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--crops", default="2,5,8,18")
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    counts = [int(c) for c in args.crops.split(",")]
    fixed = NativeGraph("openvino", args.model, precision="fp32", threads=args.threads)
    fixed._runner.lanes = 1  # before the first call: every run on all threads, one request
    lanes = NativeGraph("openvino", args.model, precision="fp32", threads=args.threads)
    core = ov.Core()
    model = core.read_model(str(args.model))
    tail = [d.get_length() for d in model.inputs[0].get_partial_shape()][1:]
    model.reshape({model.inputs[0]: ov.PartialShape([-1, *tail])})
    dynamic = core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
        "ENABLE_CPU_PINNING": False, "INFERENCE_NUM_THREADS": args.threads}).create_infer_request()
    crops = np.random.default_rng(0).random((max(counts), *tail), dtype=np.float32)
    runs = {"dynamic": lambda n: dynamic.infer({0: crops[:n]}),
            "fixed": lambda n: fixed(torch.from_numpy(crops[:n]))}
    if args.threads > 1:
        runs["lanes"] = lambda n: lanes(torch.from_numpy(crops[:n]))
    for n in counts:  # compile and warm up every shape first
        for run in runs.values():
            run(n)
    best: dict[tuple[str, int], tuple[float, float]] = {}
    for _ in range(args.repeat):
        for n in counts:
            for name, run in runs.items():
                w, c = _best(lambda: run(n), 2)
                old = best.get((name, n), (float("inf"), float("inf")))
                best[(name, n)] = (min(old[0], w), min(old[1], c))
    print(f"ms per crop, best of {args.repeat} x 2, {args.threads} thread(s): wall / CPU")
    for n in counts:
        cells = [f"{name} {1e3 * best[(name, n)][0] / n:6.2f} / {1e3 * best[(name, n)][1] / n:6.2f}"
                 for name in runs]
        ratios = f"CPU dynamic / fixed {best[('dynamic', n)][1] / best[('fixed', n)][1]:.2f}x"
        if "lanes" in runs:
            ratios += f", wall fixed / lanes {best[('fixed', n)][0] / best[('lanes', n)][0]:.2f}x"
        print(f"{n:3d} crops  " + "   ".join(cells) + "   " + ratios)


if __name__ == "__main__":
    main()
