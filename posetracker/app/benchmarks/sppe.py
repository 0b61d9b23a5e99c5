"""``posetracker bench sppe``: milliseconds per person crop of the pose estimators, and of the
reference runtime on the same crops.

For each model x device x precision x batch size: wall-clock ms per crop (median over the timed
batches) of the product's SPPE call (:class:`posetracker.estimators.sppe.SPPE`: network and decode, no flip)
and, on CPU, the process CPU ms per crop, which is steadier than wall time on a shared machine.
For models in OpenVINO IR, the same crops also go through OpenVINO's own runtime (when the
``openvino`` package is installed) with the same thread count, at float32 and at the runtime's
default precision, in the same run, so the ratio is measured side by side. Crops are random RGB
(timing does not depend on content); the first batches are run untimed (warm-up: oneDNN/cuDNN
choose and compile their kernels per shape).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_MODELS = ("tinypose-256x192", "tinypose-128x96", "movenet-thunder", "movenet-lightning")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sppe", help="ms per crop of the pose estimators (CPU, and CUDA when "
                       "present), beside OpenVINO's runtime for IR models",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME|PATH",
                   help="registry names or model paths (default: "
                   + " ".join(DEFAULT_MODELS) + ")")
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


def openvino_reference(xml, threads: int, precision: str):
    """A callable running ``xml`` in OpenVINO's CPU runtime on normalised crops ``(n, 3, h, w)``
    (batch reshaped on first use), or ``None`` without the ``openvino`` package."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = {}

    def run(x):
        n = x.shape[0]
        if n not in compiled:
            model = core.read_model(str(xml))
            model.reshape({model.inputs[0]: [n, *x.shape[1:]]})
            cfg = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
            if precision == "f32":
                cfg["INFERENCE_PRECISION_HINT"] = "f32"
            compiled[n] = core.compile_model(model, "CPU", cfg).create_infer_request()
        return compiled[n].infer({0: x})
    return run


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd
    import torch

    from posetracker.app.build import sppe_files
    from posetracker.core.errors import InputError
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

    for name in args.models:
        path, weights = sppe_files(name, log)
        for device_name in devices:
            device = torch.device(device_name)
            for precision in args.precisions:
                if precision == "fp16" and device.type != "cuda":
                    continue
                sppe = load_sppe(path, weights=weights, device=device, half=precision == "fp16",
                                 batch_size=max(args.batch_sizes))
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
                    add(Path(path).stem, "torch", device_name, precision, n, h, w, walls, cpus,
                        repeats)
                    if device.type != "cpu" or Path(path).suffix != ".xml":
                        continue
                    net = sppe.network
                    x = (crops * net.scale + net.bias).numpy()
                    for hint in ("f32", "default"):
                        ref = openvino_reference(path, args.threads, hint)
                        if ref is None:
                            log("openvino is not installed: no reference rows")
                            break
                        walls, cpus = time_calls(lambda: ref(x), repeats, args.warmup)
                        add(Path(path).stem, f"openvino ({hint})", device_name, "fp32"
                            if hint == "f32" else "runtime default", n, h, w, walls, cpus,
                            repeats)
    df = pd.DataFrame(rows)
    print(format_table(df, digits=2))
    if args.save:
        save_report(df, args.save)
    return 0
