"""``posetracker bench sppe``: milliseconds per person crop of the MoveNet SPPE models.

For each model x device x precision x batch size: wall-clock ms per crop (median over the timed
batches) of ``MoveNet.forward`` (backbone, heads and the batched single-person decode) and, on CPU,
the process CPU ms per crop, which is steadier than wall time on a shared machine. Crops are
random RGB (timing does not depend on content); the first batches are run untimed (warm-up:
oneDNN/cuDNN choose and compile their kernels per shape).
"""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_MODELS = ("movenet-thunder", "movenet-lightning")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sppe", help="ms per crop of the MoveNet SPPE models (CPU, and CUDA when present)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME|PATH",
                   help="registry names or TF.js model.json paths (default: movenet-thunder movenet-lightning)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], metavar="N",
                   help="crops per forward pass (default 1 16)")
    p.add_argument("--devices", nargs="+", default=None, metavar="DEV",
                   help="devices (default: cpu, and cuda when available)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16"], choices=("fp32", "fp16"),
                   help="fp16 runs on CUDA only (default fp32 fp16)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: steadier figures on a shared machine)")
    p.add_argument("--crops", type=int, default=32, help="crops timed per configuration (default 32)")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first (default 2)")
    p.add_argument("--save", metavar="PATH", help="also write the table (.md, .csv or .json)")
    p.set_defaults(func=run)


def time_forward(model, crops, repeats: int, warmup: int, device) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of ``repeats`` forward passes over ``crops`` (after warm-up)."""
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    walls, cpus = [], []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            t, c = time.perf_counter(), time.process_time()
            out = model(crops)
            out.keypoints.sum().item()  # waits for the device and the lazy decode
            sync()
            if i >= warmup:
                walls.append(time.perf_counter() - t)
                cpus.append(time.process_time() - c)
    return walls, cpus


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import torch

    from estimators.movenet import MoveNet
    from evaluation.report import format_table, save_report
    from posetracker.errors import InputError
    from posetracker.models import resolve_model

    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for d in devices:
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {d} requested but CUDA is not available")
    if min(args.batch_sizes) < 1 or args.crops < 1:
        raise InputError("--batch-sizes and --crops must be positive")
    rows = []
    for name in args.models:
        resolved = resolve_model(name, log=lambda s: print(s, file=sys.stderr))
        base = MoveNet.from_tfjs(Path(resolved.topology), weights=resolved.tfjs_weights())
        for device_name in devices:
            device = torch.device(device_name)
            for precision in args.precisions:
                if precision == "fp16" and device.type != "cuda":
                    continue
                dtype = torch.float16 if precision == "fp16" else torch.float32
                model = MoveNet(base.graph).to(device=device, dtype=dtype).eval()
                s = model.input_size
                for n in args.batch_sizes:
                    rng = np.random.default_rng(0)
                    crops = torch.from_numpy(rng.integers(0, 256, (n, 3, s, s), dtype=np.uint8))
                    crops = crops.to(device=device, dtype=dtype)
                    repeats = max(1, -(-args.crops // n))
                    walls, cpus = time_forward(model, crops, repeats, args.warmup, device)
                    rows.append({
                        "model": resolved.name, "input": f"{s}x{s}", "device": device_name,
                        "precision": precision, "threads": args.threads if device.type == "cpu" else None,
                        "batch": n, "ms/crop (wall)": 1000 * float(np.median(walls)) / n,
                        "ms/crop (cpu)": 1000 * float(np.median(cpus)) / n if device.type == "cpu" else None,
                        "crops timed": repeats * n})
                    print(f"{resolved.name} {device_name} {precision} batch {n}: "
                          f"{rows[-1]['ms/crop (wall)']:.1f} ms/crop", file=sys.stderr)
    df = pd.DataFrame(rows)
    print(format_table(df, digits=2))
    if args.save:
        save_report(df, args.save)
    return 0
