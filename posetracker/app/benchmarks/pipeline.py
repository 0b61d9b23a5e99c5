"""``posetracker bench pipeline``: end-to-end frames/s and peak memory of ``track`` on videos.

For each video, the whole job (decode, detect, pose, NMS or association, track, JSON lines and
final JSON written) runs

1. threaded (the streaming pipeline) and
2. sequential (the same stages one after the other on one thread),

each in a fresh Python process, so that each run's peak resident memory (``ru_maxrss``) is its own
and one run's caches do not speed up the next. Then, for the memory check, one video is fed
``--loop`` times in a row (the same frames again, frame numbers continuing) and its peak memory is
compared with one pass in its own process (the peak resident memory of each run), and the
long run's resident memory is sampled after every frame to show the highest value of each pass:
with bounded queues memory should not creep up with the input's length (target: within 10 %).

Frames/s counts from the first frame read to the final JSON written (model loading and one
warm-up frame excluded). The sequential runs are the same stages one after the other on one thread
(torch limited to one thread too); the threaded runs use the pipeline's settings (by default two
pose workers and torch threads shared out among them; ``--threads`` fixes the torch threads).
CPU seconds per frame are reported too: on a shared machine they vary less than frames/s.
``--against KEY=VALUE`` adds a second setting (other models, say) run alternating with the first,
and prints the frames/s ratio of the two per video and mode. ``--reference`` adds the own-runtime
reference (:mod:`posetracker.app.benchmarks.reference`: the same model files in onnxruntime and
OpenVINO with minimal glue, the same detector cut, no tracking, no files written) as one more
run per round, with the same frames, warm-up rule and threads (``--threads``, else the CPU
count), and prints the frames/s ratio product / reference per mode: the yardstick of every
speed claim (docs/pipeline.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

from posetracker.app.benchmarks import shared_videos

DEFAULT_VIDEOS = ("two_people.mp4", "street_crowd.avi", "basketball_crossing.mp4")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline", help="track on videos end to end: frames/s, peak memory, pipeline vs "
        "sequential, memory on a looped input",
        description="Run `posetracker track` end to end on videos, threaded and sequential, each "
        "in a fresh process: frames/s, peak resident memory, and their ratio; then peak memory "
        "on the first video looped --loop times against one pass.")
    p.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="videos (default: the three in ../shared/data/videos)")
    p.add_argument("--max-frames", type=int, default=40, metavar="N",
                   help="frames per video and pass (default: %(default)s)")
    p.add_argument("--loop", type=int, default=10, metavar="K",
                   help="passes over the memory-check video (0: skip; default: %(default)s)")
    p.add_argument("--loop-frames", type=int, default=20, metavar="N",
                   help="frames per pass in the memory check (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=1, metavar="R",
                   help="rounds of the modes, alternating; each mode keeps its fastest run "
                   "(default: %(default)s)")
    p.add_argument("--device", default="cpu", help="estimator device (default: %(default)s)")
    p.add_argument("--half", action="store_true", help="float16 pose estimator (CUDA)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per call in the threaded runs (default: %(default)s = the "
                   "pipeline's automatic choice); sequential runs use 1: one thread; the "
                   "reference's runtimes use this many (0: the CPU count)")
    p.add_argument("--modes", default="threaded,sequential",
                   help="comma-separated modes (default: %(default)s)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="settings override for every run, e.g. --set tracker.kind=iou")
    p.add_argument("--against", action="append", default=[], metavar="KEY=VALUE",
                   help="also run a second setting (these overrides on top of --set) alternating "
                   "with the first, and print the speed ratio, e.g. --against "
                   "estimator.sppe.model=movenet-thunder (repeatable)")
    p.add_argument("--reference", action="store_true",
                   help="also run the own-runtime reference (the same detector and pose model "
                   "files in onnxruntime and OpenVINO with minimal glue, the same cut; "
                   "docs/pipeline.md) alternating with the modes, and print the speed ratio "
                   "product / reference per mode")
    p.add_argument("--out", metavar="FILE.json", help="also write the rows as JSON")
    p.set_defaults(func=run)


def looped(source, passes: int):
    """The frames of ``source`` ``passes`` times in a row, numbered 0, 1, 2, ... throughout."""
    from posetracker.io.sources import SourceFrame

    n = 0
    for _ in range(passes):
        for f in source:
            yield SourceFrame(n, f.image, f.name)
            n += 1


class LoopedSource:
    """An opened source played ``passes`` times in a row (what :meth:`PoseTracker.track_to`
    accepts as an opened source: iterable, with ``name``, ``fps``, ``start_frame``, ``stride``,
    ``expected_frames``)."""

    def __init__(self, source, passes: int):
        self.source, self.passes = source, passes
        self.name, self.fps = source.name, source.fps
        self.start_frame, self.stride = 0, 1
        n = source.expected_frames
        self.expected_frames = None if n is None else n * passes

    def __iter__(self):
        return looped(self.source, self.passes)


def _current_rss_mb() -> float:
    """This process's resident memory now, MB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(spec: dict) -> dict:
    """One measured run in this process (called in a fresh interpreter by :func:`measure`): the
    Python API's :meth:`~posetracker.app.api.PoseTracker.track_to`, as ``posetracker track``."""
    import resource
    import time

    from posetracker.app.api import PoseTracker
    from posetracker.app.pipeline import PipelineOptions
    from posetracker.app.settings import load_app_config
    from posetracker.io.sources import open_source

    threads = 1 if spec["mode"] == "sequential" else spec["threads"]  # sequential: one thread
    # The bench's thread count first, so that a pipeline.threads in --set/--against wins (it was
    # silently replaced before); the mode last: the bench runs each mode it lists.
    config = load_app_config(None, [f"pipeline.threads={threads}", *spec["sets"],
                                    f"pipeline.mode={spec['mode']}"])
    tracker = PoseTracker(config)
    # Warm-up: the first model calls pay one-off costs (kernel selection, weight packing) that
    # belong to loading, not to per-frame speed.
    for _ in tracker.track(spec["video"], max_frames=1):
        pass
    source = LoopedSource(open_source(spec["video"], max_frames=spec["max_frames"]),
                          spec["passes"])
    per_pass = spec["max_frames"]
    rss_by_pass: list[float] = []

    def sample(n: int, total: int | None) -> None:
        # resident memory after each written frame, highest per pass over the input
        if not n:
            return
        p = (n - 1) // per_pass
        rss = _current_rss_mb()
        if p == len(rss_by_pass):
            rss_by_pass.append(rss)
        else:
            rss_by_pass[p] = max(rss_by_pass[p], rss)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = tracker.track_to(source, Path(spec["out_dir"]) / "out.json", progress=sample)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    options = PipelineOptions.from_config(config)
    return {"frames": result.frames, "people_per_frame": round(result.people_per_frame, 2),
            "fps": result.frames / wall, "wall_s": wall, "cpu_s_per_frame": cpu / result.frames,
            "device": result.device, "torch_threads": options.torch_threads,
            "pose_workers": options.pose_workers,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "rss_peak_by_pass_mb": [round(r, 1) for r in rss_by_pass],
            "ms_per_frame": result.ms_per_frame}


def measure(spec: dict) -> dict:
    """Run :func:`worker` (mode ``reference``: :func:`posetracker.app.benchmarks.reference.worker`)
    in a fresh interpreter and return its row."""
    with tempfile.TemporaryDirectory(prefix="posetracker-bench-") as d:
        spec = {**spec, "out_dir": d}
        module = "reference" if spec["mode"] == "reference" else "pipeline"
        code = (f"import json,sys; from posetracker.app.benchmarks.{module} import worker; "
                "print('RESULT' + json.dumps(worker(json.loads(sys.argv[1]))))")
        r = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True,
                           text=True, check=False)
    lines = [x for x in r.stdout.splitlines() if x.startswith("RESULT")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"benchmark run failed ({spec['mode']}, {spec['video']}): {tail}")
    return json.loads(lines[-1][len("RESULT"):])


def _speed_rows(v: Path, args, variants: dict[str, list[str]], modes: list[str]) -> list[dict]:
    """The frames/s rows of one video: every (setting, mode) run and, with ``--reference``, the
    own-runtime reference, alternating, ``--repeat`` rounds; then the ratio rows."""
    runs = [(name, mode) for name in variants for mode in modes]
    if args.reference:
        runs.append(("reference", "reference"))  # with the first setting's models and cut
    rows, got = [], {}
    # Modes (and settings) alternate, --repeat rounds of them, and each keeps its fastest
    # run: other load on the machine only ever slows a run down, and alternating spreads its
    # drift over all of them.
    for r in range(args.repeat):
        for name, mode in runs:
            row = measure({"video": str(v), "mode": mode, "passes": 1, "threads": args.threads,
                           "max_frames": args.max_frames,
                           "sets": variants.get(name, variants["settings"])})
            rows.append({"video": v.name, "mode": mode, "variant": name, "round": r, **row})
            print(f"{v.name:26s} {name:9s} {mode:10s} {row['frames']:4d} frames "
                  f"{row['people_per_frame']:5.2f} people/frame {row['fps']:7.2f} "
                  f"frames/s ({row['cpu_s_per_frame']:.2f} CPU-s/frame) peak "
                  f"{row['peak_rss_mb']:7.1f} MB", flush=True)
            if (name, mode) not in got or row["fps"] > got[name, mode]["fps"]:
                got[name, mode] = row
    best = f"best of {args.repeat}"
    for name in variants:
        if (name, "threaded") in got and (name, "sequential") in got:
            t, q = got[name, "threaded"]["fps"], got[name, "sequential"]["fps"]
            rows.append({"video": v.name, "mode": "ratio", "variant": name,
                         "threaded_over_sequential": t / q, "threaded_fps": t,
                         "sequential_fps": q})
            print(f"{v.name:26s} {name}: pipeline / sequential speed ({best}): "
                  f"{t:.2f} / {q:.2f} frames/s = {t / q:.2f}x", flush=True)
    for mode in modes if len(variants) > 1 else ():
        a, b = got["settings", mode]["fps"], got["against", mode]["fps"]
        rows.append({"video": v.name, "mode": mode, "variant": "settings/against",
                     "settings_over_against": a / b})
        print(f"{v.name:26s} {mode}: settings / against ({best}): "
              f"{a:.2f} / {b:.2f} frames/s = {a / b:.2f}x", flush=True)
    for name, mode in runs if args.reference else ():
        if name != "reference":
            p, q = got[name, mode], got["reference", "reference"]
            a, b = p["fps"], q["fps"]
            rows.append({"video": v.name, "mode": mode, "variant": f"{name}/reference",
                         "product_over_reference": a / b, "product_fps": a, "reference_fps": b,
                         "product_cpu_s_per_frame": p["cpu_s_per_frame"],
                         "reference_cpu_s_per_frame": q["cpu_s_per_frame"]})
            print(f"{v.name:26s} {name} {mode}: product / own-runtime reference ({best}): "
                  f"{a:.2f} / {b:.2f} frames/s = {a / b:.2f}x (CPU-s/frame "
                  f"{p['cpu_s_per_frame']:.2f} / {q['cpu_s_per_frame']:.2f})", flush=True)
    return rows


def _memory_row(v: Path, args, sets: list[str]) -> dict:
    """The memory check: ``v`` looped ``--loop`` times against one pass."""
    # The short input is one pass, the long one the same frames looped; each in its own
    # process, so each peak (ru_maxrss, transients included) is that run's alone. The long
    # run also samples its resident memory after every frame: the highest value per pass
    # shows whether memory creeps up with the length of the input.
    spec = {"video": str(v), "mode": "threaded", "threads": args.threads,
            "max_frames": args.loop_frames, "sets": sets}
    short = measure({**spec, "passes": 1})
    long = measure({**spec, "passes": args.loop})
    growth = long["peak_rss_mb"] / short["peak_rss_mb"] - 1
    by_pass = long["rss_peak_by_pass_mb"]
    print(f"{v.name:26s} memory: {short['frames']} frames peak {short['peak_rss_mb']:.1f} MB, "
          f"{long['frames']} frames ({args.loop}x looped) peak {long['peak_rss_mb']:.1f} MB "
          f"({100 * growth:+.1f} %); long run, highest resident memory per pass: "
          f"{', '.join(f'{r:.0f}' for r in by_pass)} MB", flush=True)
    return {"video": v.name, "mode": "memory", "frames_short": short["frames"],
            "frames_long": long["frames"], "peak_short_mb": short["peak_rss_mb"],
            "peak_long_mb": long["peak_rss_mb"], "growth": growth,
            "long_rss_peak_by_pass_mb": by_pass, "fps_long": long["fps"]}


def run(args) -> int:
    from posetracker.core.errors import InputError

    videos = [Path(v) for v in args.videos] or shared_videos(DEFAULT_VIDEOS)
    for v in videos:
        if not v.is_file():
            raise InputError(f"no such video: {v}")
    sets = [f"estimator.device={args.device}", *(["estimator.precision=fp16"] if args.half
                                                   else []), *args.set]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("threaded", "sequential")]
    if bad:
        raise InputError(f"--modes: unknown mode {bad[0]!r} (threaded, sequential, or '' for "
                         "the memory check only)")
    missing = [m for m in ("onnxruntime", "openvino") if args.reference and not find_spec(m)]
    if missing:
        raise InputError(f"--reference runs the models in onnxruntime and OpenVINO: "
                         f"{' and '.join(missing)} not installed (both come with the test "
                         f"extra: pip install -e \".[test]\")")
    variants = {"settings": sets}
    if args.against:
        variants["against"] = [*sets, *args.against]
    rows = [row for v in videos for row in _speed_rows(v, args, variants, modes)]
    if args.loop > 1:
        rows.append(_memory_row(videos[0], args, sets))
    if args.out:
        from posetracker.core.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps(rows, indent=1))
    return 0
