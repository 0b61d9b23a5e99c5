"""``posetracker bench dataset``: ``track-dataset`` throughput against the number of workers, the
Ray engine against the local one, and each worker's memory over the run.

A dataset of short sequences (frame folders cut from the shared videos, ``--frames`` frames each)
is tracked, in one invocation, by each engine setting in turn (``local`` with 1 worker, ``local``
with 2, ``ray`` with 2; ``--repeat`` alternates rounds), each into a fresh output folder with the
default tracking settings, through :func:`posetracker.app.dataset.track_dataset` — the code
``posetracker track-dataset`` runs.

Reported per run:

- ``startup s``: start to the first worker ready (worker processes or the Ray instance and its
  actors started, models loaded);
- ``seq/s``: sequences per second in the steady state: for each worker, the sequences after its
  first one (which pays the model's one-off first-call costs) over the seconds it spent on them,
  summed over the workers (model loading left out: it is paid once per worker, not per
  sequence); ``seq/s all``: sequences over the whole run's wall time, loading included;
- ``overhead ms/seq``: per sequence, the engine's wall time (sent to result back) less the time the
  worker spent on it: what dispatching a sequence costs;
- per worker, its resident memory after each sequence (first, highest, last), and the highest
  over the first and over the second half of its sequences: equal when nothing accumulates from
  one sequence to the next (the allocator keeps the peak of the most crowded sequence so far).

The figures are wall-clock on a possibly shared machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from posetracker.app.benchmarks import shared_videos

DEFAULT_VIDEOS = ("basketball_crossing.mp4", "two_people.mp4", "street_crowd.avi")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dataset", help="track-dataset: sequences/s with 1 and 2 workers, Ray vs local, memory "
        "per worker", description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="videos to cut sequences from (default: the shared videos)")
    p.add_argument("--sequences", type=int, default=12, metavar="N",
                   help="sequences in the dataset (default: %(default)s)")
    p.add_argument("--frames", type=int, default=5, metavar="N",
                   help="frames per sequence (default: %(default)s)")
    p.add_argument("--runs", default="local:1,local:2,ray:2", metavar="ENGINE:WORKERS,...",
                   help="the runs, in order (default: %(default)s; ray runs need the ray extra)")
    p.add_argument("--repeat", type=int, default=1, metavar="R",
                   help="rounds of the runs, alternating (default: %(default)s)")
    p.add_argument("--memory-sequences", type=int, default=16, metavar="N",
                   help="memory check: N copies of one crowded sequence (--memory-video, 3 "
                   "frames) through 2 local workers, resident memory after each (0: skip; "
                   "default: %(default)s)")
    p.add_argument("--memory-video", default="street_crowd.avi", metavar="VIDEO",
                   help="the memory check's video (a shared video's name or a path; default: "
                   "%(default)s, the most people per frame)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="settings override for every run")
    p.add_argument("--out", metavar="FILE.json", help="also write every run's figures as JSON")
    p.set_defaults(func=run)


def make_dataset(root: Path, videos: list[Path], sequences: int, frames: int) -> list[Path]:
    """``sequences`` frame folders of ``frames`` JPEG frames each, cut in turn from ``videos``
    (consecutive stretches of each), as ``root/seqNN/000000.jpg``."""
    import cv2

    from posetracker.core.errors import InputError

    folders = []
    for i in range(sequences):
        video = videos[i % len(videos)]
        start = (i // len(videos)) * frames
        cap = cv2.VideoCapture(str(video))
        if not cap.isOpened():
            raise InputError(f"cannot open video {video}")
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            folder = root / f"seq{i:02d}_{video.stem}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(frames):
                ok, bgr = cap.read()
                if not ok:
                    raise InputError(f"{video}: fewer than {start + frames} frames")
                cv2.imwrite(str(folder / f"{k:06d}.jpg"), bgr)
        finally:
            cap.release()
        folders.append(folder)
    return folders


def _runs(text: str) -> list[tuple[str, int]]:
    from posetracker.core.errors import InputError

    out = []
    for part in text.split(","):
        engine, _, workers = part.strip().partition(":")
        if engine not in ("local", "ray") or not workers.isdigit() or int(workers) < 1:
            raise InputError(f"--runs: {part!r} is not ENGINE:WORKERS (local:2, ray:2)")
        out.append((engine, int(workers)))
    return out


def measure(root: Path, out: Path, config, engine: str, workers: int) -> dict:
    """One ``track-dataset`` run of ``root`` into ``out``; its figures."""
    from posetracker.app.dataset import DatasetOptions, track_dataset

    result = track_dataset(root, out, config, DatasetOptions(engine=engine, workers=workers,
                                                             retries=0))
    t = result.timings
    recs = sorted((r for r in result.records if r["status"] == "done"),
                  key=lambda r: r["finished_at"])
    n = len(recs)
    frames = sum(r["frames"] or 0 for r in recs)
    by_worker: dict[str, list[dict]] = {}
    for r in recs:
        by_worker.setdefault(r["worker"], []).append(r)
    # Steady state: each worker's sequences after its first (which pays the first calls'
    # one-off costs) over the time it spent on them, summed over the workers.
    steady = sum(len(rs[1:]) / sum(r["seconds"] for r in rs[1:])
                 for rs in by_worker.values() if len(rs) > 1)
    wall = t["end"] - t["start"]
    over = [1000 * (r["wall_seconds"] - r["seconds"]) for r in recs]
    return {
        "engine": engine, "workers": workers, "sequences": n, "frames": frames,
        "failed": result.count("failed"),
        "startup_s": round(t.get("first_ready", t["start"]) - t["start"], 2),
        "wall_s": round(wall, 2),
        "seq_per_s": round(steady, 4),
        "seq_per_s_all": round(n / wall, 4),
        "frames_per_s": round(steady * frames / max(n, 1), 3),
        "worker_s_per_seq": round(sum(r["seconds"] for r in recs) / max(n, 1), 3),
        "overhead_ms_per_seq": round(sum(over) / max(len(over), 1), 1),
        "load_s": [w.get("load_seconds") for w in result.workers],
        "ms_per_frame": _stage_ms(recs),
        "rss_mb_per_worker": {w: [r["rss_mb"] for r in rs] for w, rs in by_worker.items()},
        "load_average": os.getloadavg(),
    }


def _stage_ms(recs: list[dict]) -> dict[str, float]:
    """Milliseconds of work per frame of each pipeline stage, over all frames of the run (each
    sequence's ``track`` timings weighted by its frames)."""
    total: dict[str, float] = {}
    frames = 0
    for r in recs:
        for stage, ms in (r.get("ms_per_frame") or {}).items():
            total[stage] = total.get(stage, 0.0) + ms * r["frames"]
        frames += r["frames"]
    return {k: round(v / max(frames, 1), 1) for k, v in total.items()}


def _mem_text(memory: dict[str, list[float]]) -> str:
    parts = []
    for series in memory.values():
        if series:
            parts.append(f"{series[0]:.0f}/{max(series):.0f}/{series[-1]:.0f} ({len(series)})")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from posetracker.app.settings import load_app_config
    from posetracker.core.errors import InputError

    runs = _runs(args.runs)
    if args.sequences < 2 or args.frames < 1 or args.repeat < 1:
        raise InputError("--sequences must be >= 2, --frames and --repeat >= 1")
    config = load_app_config(None, args.set)
    videos = [Path(v) for v in args.videos] or shared_videos(DEFAULT_VIDEOS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="posetracker-bench-dataset-") as tmp:
        root = Path(tmp) / "dataset"
        make_dataset(root, videos, args.sequences, args.frames)
        print(f"{args.sequences} sequences x {args.frames} frames from "
              f"{', '.join(v.name for v in videos)}; load average before: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        for r in range(args.repeat):
            for engine, workers in runs:
                out = Path(tmp) / f"out-{engine}-{workers}-{r}"
                t0 = time.perf_counter()
                row = measure(root, out, config, engine, workers)
                row["round"] = r
                rows.append(row)
                print(f"  round {r} {engine}:{workers}: {row['seq_per_s']:.3f} seq/s "
                      f"({time.perf_counter() - t0:.0f} s; load "
                      f"{row['load_average'][0]:.2f})", flush=True)
    print()
    print(f"{'run':<9} {'startup s':>9} {'seq/s':>7} {'seq/s all':>9} {'frames/s':>8} "
          f"{'worker s/seq':>12} {'overhead ms/seq':>15}  RSS MB per worker "
          "after each sequence: first/highest/last (sequences)")
    for row in rows:
        print(f"{row['engine']}:{row['workers']:<3} {row['startup_s']:>9.1f} "
              f"{row['seq_per_s']:>7.3f} {row['seq_per_s_all']:>9.3f} "
              f"{row['frames_per_s']:>8.2f} {row['worker_s_per_seq']:>12.2f} "
              f"{row['overhead_ms_per_seq']:>15.1f}  {_mem_text(row['rss_mb_per_worker'])}")
    print()
    for row in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in row["ms_per_frame"].items())
        print(f"ms of work per frame by stage, {row['engine']}:{row['workers']} round "
              f"{row['round']}: {stages}")
    best: dict[tuple[str, int], dict] = {}
    for row in rows:  # each setting's fastest round
        k = (row["engine"], row["workers"])
        if k not in best or row["seq_per_s"] > best[k]["seq_per_s"]:
            best[k] = row
    print()
    local = {w: row for (e, w), row in best.items() if e == "local"}
    if 1 in local:
        for w, row in sorted(local.items()):
            if w > 1:
                ratio = row["seq_per_s"] / local[1]["seq_per_s"]
                print(f"local {w} workers / 1 worker: {ratio:.2f}x sequences/s (whole run: "
                      f"{row['seq_per_s_all'] / local[1]['seq_per_s_all']:.2f}x)")
    for (e, w), row in best.items():
        if e == "ray" and w in local:
            lo = local[w]
            print(f"ray vs local, {w} workers: {row['seq_per_s'] / lo['seq_per_s']:.2f}x "
                  f"sequences/s; dispatch overhead {row['overhead_ms_per_seq']:.1f} vs "
                  f"{lo['overhead_ms_per_seq']:.1f} ms/sequence; startup {row['startup_s']:.1f} "
                  f"vs {lo['startup_s']:.1f} s")
    for row in rows:
        for worker, series in row["rss_mb_per_worker"].items():
            if len(series) >= 4:
                half = len(series) // 2
                first, second = max(series[:half]), max(series[half:])
                print(f"memory {row['engine']}:{row['workers']} round {row['round']} worker "
                      f"{worker}: {len(series)} sequences; highest after each sequence, first "
                      f"half {first:.0f} MB, second half {second:.0f} MB "
                      f"({second - first:+.0f} MB)")
    memory = None
    if args.memory_sequences:
        memory = _memory_check(args, config)
    if args.out:
        from posetracker.core.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps({"runs": rows, "memory": memory}, indent=1,
                                               default=str))
    return 0


def _memory_check(args: argparse.Namespace, config) -> dict:
    """The same crowded sequence ``--memory-sequences`` times through 2 local workers: each
    worker's resident memory after each of its sequences. With no accumulation the series is
    flat after a worker's first sequence (which reaches the allocator's peak for the sequence)."""
    video = Path(args.memory_video)
    if not video.is_file():
        video = shared_videos((args.memory_video,))[0]
    with tempfile.TemporaryDirectory(prefix="posetracker-bench-dataset-mem-") as tmp:
        root = Path(tmp) / "dataset"
        first = make_dataset(root, [video], 1, 3)[0]
        import shutil

        for i in range(1, args.memory_sequences):
            shutil.copytree(first, root / f"copy{i:03d}")
        row = measure(root, Path(tmp) / "out", config, "local", 2)
    print(f"\nmemory: {args.memory_sequences} copies of {video.name} (3 frames) through 2 local "
          f"workers (load {row['load_average'][0]:.2f}); MB after each sequence, per worker:")
    for worker, series in row["rss_mb_per_worker"].items():
        rest = series[1:] or series
        print(f"  {worker}: {' '.join(f'{x:.0f}' for x in series)}  (after the first: "
              f"{min(rest):.0f}-{max(rest):.0f}, last - second {series[-1] - rest[0]:+.0f} MB)")
    return row

