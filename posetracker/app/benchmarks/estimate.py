"""``posetracker bench estimate``: speed and memory of the per-frame estimator on videos.

For each source x device x frame batch x precision: milliseconds per frame of every stage
(detect, transform, SPPE, SDTN, pose NMS), frames/s and persons/s of the estimator (decoding the
video is not counted), people per frame, and the resident memory (RSS) after the warm-up, half-way
and at the end. The allocator keeps the high-water mark of the largest batch of crops seen, so RSS
rises while batches with more people than before arrive; a per-frame leak shows as growth over the
second half (``RSS growth 2nd half``), which stays near zero when memory is flat.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    from posetracker.app.commands.estimate_cmd import add_estimator_options

    p = sub.add_parser("estimate", help="per-stage ms/frame, frames/s, persons/s, memory of "
                       "`estimate`", description=__doc__.split("\n\n")[1])
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="videos or image folders")
    p.add_argument("--max-frames", type=int, default=60, help="frames per run (default 60)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4], metavar="N",
                   help="frame batch sizes to try (default 1 4)")
    p.add_argument("--devices", nargs="+", default=None, metavar="DEV",
                   help="devices (default: cpu, and cuda when available)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "fp16"],
                   choices=("fp32", "bf16", "fp16"), help="SPPE precisions (estimator.precision); "
                   "one a device cannot run is skipped (default fp32 fp16)")
    p.add_argument("--warmup", type=int, default=1, help="batches run before timing (default 1)")
    p.add_argument("--passes", type=int, default=1, help="play each source this many times (2: the "
                   "half-way RSS is after the first pass, so the 2nd-half growth tests for leaks)")
    p.add_argument("--save", metavar="PATH", help="also write the table (.md, .csv or .json)")
    add_estimator_options(p, threads=1)
    p.set_defaults(func=run)


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux ``/proc``; else peak RSS)."""
    try:
        with open("/proc/self/statm") as f:
            import os
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    import pandas as pd
    import torch

    from posetracker.app.build import build_estimator
    from posetracker.app.commands.estimate_cmd import batched, estimator_config, set_threads
    from posetracker.core.errors import ModelError
    from posetracker.evaluation.report import format_table, save_report
    from posetracker.io.sources import open_source

    if args.dump_config:
        from posetracker.app.commands.estimate_cmd import app_settings
        from posetracker.app.commands.settings_args import dump

        return dump(app_settings(args))
    set_threads(args)
    base = estimator_config(args)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        for precision in args.precisions:
            try:
                est = build_estimator(replace(base, device=device, precision=precision),
                                      threads=args.threads)
            except ModelError as e:  # a precision this device lacks
                print(f"{device} {precision}: skipped ({e})", file=sys.stderr)
                continue
            for src in args.sources:
                source = open_source(src, max_frames=args.max_frames)
                for bs in args.batch_sizes:
                    est.times.reset()
                    rss0 = rss_half = None
                    total = args.passes * (source.expected_frames or args.max_frames)
                    half = max(1, (total - args.warmup * bs) // 2)
                    n = 0
                    t_wall = 0.0
                    frames = itertools.chain.from_iterable(source for _ in range(args.passes))
                    for i, chunk in enumerate(batched(frames, bs)):
                        images = [f.image for f in chunk]
                        if i < args.warmup:
                            est.estimate(images)
                            est.times.reset()
                            rss0 = rss_mb()
                            continue
                        t0 = time.perf_counter()
                        est.estimate(images)
                        t_wall += time.perf_counter() - t0
                        n += len(images)
                        if rss_half is None and n >= half:
                            rss_half = rss_mb()
                    if n == 0:
                        print(f"{src}: too few frames for batch {bs}", file=sys.stderr)
                        continue
                    ms = est.times.ms_per_frame()
                    rss1 = rss_mb()
                    rows.append({
                        "source": Path(src).name, "device": device, "batch": bs,
                        "precision": precision, "people/frame": est.times.persons / n,
                        **{f"{k} ms": v for k, v in ms.items()},
                        "frames/s": n / t_wall, "persons/s": est.times.persons / t_wall,
                        "RSS warm MiB": rss0 or rss1, "RSS half MiB": rss_half or rss1,
                        "RSS end MiB": rss1, "RSS growth 2nd half": rss1 - (rss_half or rss1),
                        "frames": n,
                    })
                    print(f"{Path(src).name} {device} batch {bs} {precision}: "
                          f"{n / t_wall:.2f} frames/s", file=sys.stderr)
    df = pd.DataFrame(rows)
    print(format_table(df, 2))
    print(f"(torch threads {args.threads}; SPPE {base.sppe.model}, detector {base.detector.model}, "
          f"nms {base.nms.mode})")
    if args.save:
        save_report(df, args.save)
    return 0
