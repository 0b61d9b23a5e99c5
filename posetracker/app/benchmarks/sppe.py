"""``posetracker bench sppe``: milliseconds per person crop of the pose estimators, per backend.

For each model x device x precision x backend x batch size: wall-clock ms per crop (median over
the timed batches) of the product's SPPE call (:class:`posetracker.estimators.sppe.SPPE`: network
and decode, no flip) and, on CPU, the process CPU ms per crop, which is steadier than wall time
on a shared machine. ``--backends torch openvino`` times this package's IR reader and OpenVINO's
runtime (``estimator.backend``) on the same crops in the same run, so the ratio is measured side
by side; a backend or precision a model or machine cannot run is skipped with a line. Crops are
random RGB (timing does not depend on content); the first batches are run untimed (warm-up:
oneDNN/cuDNN/OpenVINO choose and compile their kernels per shape).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_MODELS = ("tinypose-256x192", "tinypose-128x96", "movenet-thunder", "movenet-lightning")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sppe", help="ms per crop of the pose estimators per backend (CPU, and "
                       "CUDA when present)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME|PATH",
                   help="registry names or model paths (default: "
                   + " ".join(DEFAULT_MODELS) + ")")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], metavar="N",
                   help="crops per forward pass (default 1 16)")
    p.add_argument("--devices", nargs="+", default=None, metavar="DEV",
                   help="devices (default: cpu, and cuda when available)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16"],
                   choices=("fp32", "bf16", "fp16"), help="fp16 runs on CUDA only, bf16 on CUDA "
                   "and on CPUs with bfloat16 arithmetic; others are skipped (default fp32 fp16)")
    p.add_argument("--backends", nargs="+", default=["torch"],
                   choices=("torch", "openvino", "onnxruntime"), help="what runs the graph "
                   "(estimator.backend; the native runtimes on the CPU only; default torch)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per call, torch's and the native backends' (default 1: "
                   "steadier figures on a shared machine)")
    p.add_argument("--crops", type=int, default=32, help="crops timed per configuration (default 32)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first (default 2)")
    p.add_argument("--save", metavar="PATH", help="also write the table (.md, .csv or .json)")
    p.set_defaults(func=run)


def time_calls(call, repeats: int, warmup: int, sync=lambda: None
               ) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of ``repeats`` calls of ``call()`` (after ``warmup``)."""
    walls, cpus = [], []
    for i in range(warmup + repeats):
        sync()
        t, c = time.perf_counter(), time.process_time()
        call()
        sync()
        if i >= warmup:
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
    return walls, cpus


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd
    import torch

    from posetracker.app.build import sppe_files
    from posetracker.core.errors import InputError, ModelError
    from posetracker.estimators.sppe import load_sppe
    from posetracker.evaluation.report import format_table, save_report

    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for d in devices:
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {d} requested but CUDA is not available")
    if min(args.batch_sizes) < 1 or args.crops < 1:
        raise InputError("--batch-sizes and --crops must be positive")
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    rows = []

    def add(model, runtime, device_name, precision, n, h, w, walls, cpus, repeats):
        cpu = device_name == "cpu"
        rows.append({"model": model, "runtime": runtime, "input": f"{h}x{w}", "device": device_name,
                     "precision": precision, "threads": args.threads if cpu else None, "batch": n,
                     "ms/crop (wall)": 1000 * float(np.median(walls)) / n,
                     "ms/crop (cpu)": 1000 * float(np.median(cpus)) / n if cpu else None,
                     "crops timed": repeats * n})
        log(f"{model} {runtime} {device_name} {precision} batch {n}: "
            f"{rows[-1]['ms/crop (wall)']:.1f} ms/crop")

    runs = [(torch.device(d), p, b) for d in devices for p in args.precisions
            for b in args.backends]
    for name in args.models:
        path, weights = sppe_files(name, log)
        for device, precision, backend in runs:
            try:
                sppe = load_sppe(path, weights=weights, device=device, precision=precision,
                                 backend=backend, threads=args.threads,
                                 batch_size=max(args.batch_sizes))
            except ModelError as e:  # a backend or precision this model or machine lacks
                log(f"{name} {backend} {precision}: skipped ({e})")
                continue
            h, w = sppe.input_size
            sync = ((lambda: torch.cuda.synchronize(device)) if device.type == "cuda"
                    else (lambda: None))
            for n in args.batch_sizes:
                rng = np.random.default_rng(0)
                crops = torch.from_numpy(rng.integers(0, 256, (n, 3, h, w), dtype=np.uint8))
                crops = crops.to(device=device, dtype=torch.float32)
                repeats = max(1, -(-args.crops // n))
                with torch.inference_mode():
                    walls, cpus = time_calls(lambda: sppe(crops).keypoints.sum().item(),
                                             repeats, args.warmup, sync)
                add(Path(path).stem, backend, str(device), precision, n, h, w, walls, cpus,
                    repeats)
    df = pd.DataFrame(rows)
    print(format_table(df, digits=2))
    if args.save:
        save_report(df, args.save)
    return 0
