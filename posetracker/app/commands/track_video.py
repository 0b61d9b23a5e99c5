"""``posetracker track VIDEO -o out.json``: the main job, video in, tracked PoseTrack JSON out.

:func:`add_arguments` adds the VIDEO-mode options to the ``track`` parser (built in
:mod:`posetracker.app.commands.track_cmd`); :func:`run` is that mode. Steps:

1. settings: ``configs/default.yaml`` < ``--config`` < ``--tracker-config`` < option flags < ``--set``;
2. open the source (fails before any model loads when the input is unreadable);
3. load the estimator and build the tracker;
4. open the sinks: ``<out>.jsonl`` stream, final JSON, optional CSV and rendered video;
5. run the streaming pipeline with a progress bar;
6. success: write the final JSON atomically with the run's metadata, print the summary;
   failure or Ctrl-C: close the streams (finished frames stay in the JSON lines and the CSV,
   the rendered video is finalised), write no final JSON, re-raise.

Option defaults shown in ``--help`` are the built-in settings' defaults; ``tests/test_track_video.py``
checks that they match :class:`posetracker.app.settings.AppConfig`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from posetracker.core.errors import InputError

#: Top-level sections of :class:`posetracker.app.settings.AppConfig`; a ``--set`` key starting with
#: anything else is a tracker key (``poseflow.link_len=20``), as in the ``--poses`` mode.
SECTIONS = ("estimator", "association", "tracker", "pipeline")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The VIDEO-mode options (``-o``, ``--format``, ``--tracker``, ``--set`` are shared with
    ``--poses`` and defined by the ``track`` command itself)."""
    g = p.add_argument_group(
        "VIDEO mode", "estimate and track VIDEO (a video file, an image folder, a glob such as "
        "'frames/*.jpg', a single image, or a webcam index such as 0); -o is the final JSON, "
        "<out>.jsonl is streamed per frame while running. --set keys are settings paths such as "
        "pipeline.queue_size=8 or tracker.poseflow.link_len=20 (see --dump-config).")
    g.add_argument("--render", metavar="OUT.mp4", help="also draw the tracked skeletons into "
                   "this video (mp4v)")
    g.add_argument("--render-boxes", action="store_true",
                   help="draw person boxes in the rendered video (pipeline.output.render_boxes)")
    g.add_argument("--csv", metavar="OUT.csv", help="also write one row per frame x track x joint")
    g.add_argument("--jsonl", metavar="PATH", help="the per-frame stream (default: the output "
                   "with suffix .jsonl; pipeline.output.jsonl=false turns it off)")
    g.add_argument("--device", metavar="auto|cpu|cuda[:N]", help="where the models run "
                   "(estimator.device, default: auto = CUDA when available)")
    g.add_argument("--half", action="store_true", help="float16 pose estimator on CUDA "
                   "(estimator.sppe.half, default: off)")
    g.add_argument("--det-batch", type=int, metavar="N", help="frames per detector call "
                   "(estimator.frame_batch, default: 4)")
    g.add_argument("--pose-batch", type=int, metavar="N", help="people per pose-estimator call, "
                   "gathered across frames (estimator.sppe.batch_size, default: 16)")
    g.add_argument("--association", choices=("nms", "crowdpose"), help="remove duplicate poses "
                   "by RMPE pose NMS or CrowdPose joint-candidate association "
                   "(pipeline.association, default: nms)")
    g.add_argument("--sequential", action="store_true", help="run the stages one after the other "
                   "on one thread (pipeline.mode=sequential; default: threaded)")
    g.add_argument("--config", metavar="YAML", help="settings file (sections estimator, "
                   "association, tracker, pipeline) over configs/default.yaml")
    g.add_argument("--dump-config", action="store_true", help="print every setting as YAML "
                   "(after --config, flags and --set) and exit")
    g.add_argument("--start-frame", type=int, default=0, metavar="N",
                   help="first frame to read (default: %(default)s)")
    g.add_argument("--max-frames", type=int, metavar="N", help="read at most N frames "
                   "(default: all)")
    g.add_argument("--stride", type=int, default=1, metavar="N",
                   help="read every N-th frame (default: %(default)s)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")


def _overrides(args: argparse.Namespace) -> tuple[list[str], int | None]:
    """``--set`` style overrides from the flags, then the user's ``--set``; and a CUDA index."""
    sets: list[str] = []
    cuda_index = None
    if args.device:
        dev = args.device
        if dev.startswith("cuda:"):  # the estimator config names the kind; the index is set below
            try:
                cuda_index = int(dev.split(":", 1)[1])
            except ValueError:
                raise InputError(f"--device {dev}: expected cuda:N") from None
            dev = "cuda"
        sets.append(f"estimator.device={dev}")
    flags = (("half", "estimator.sppe.half=true"),
             ("render_boxes", "pipeline.output.render_boxes=true"),
             ("sequential", "pipeline.mode=sequential"))
    sets += [s for opt, s in flags if getattr(args, opt, False)]
    for opt, key in (("det_batch", "estimator.frame_batch"),
                     ("pose_batch", "estimator.sppe.batch_size"),
                     ("association", "pipeline.association"), ("tracker", "tracker.kind"),
                     ("format", "pipeline.output.format")):
        v = getattr(args, opt, None)
        if v is not None:
            sets.append(f"{key}={v}")
    for s in getattr(args, "set", None) or []:
        head = s.split("=", 1)[0].split(".", 1)[0].strip()
        sets.append(s if head in SECTIONS else f"tracker.{s}")
    return sets, cuda_index


def load_settings(args: argparse.Namespace):
    """The run's :class:`~posetracker.app.settings.AppConfig` and the CUDA device index, if any."""
    from posetracker.core.config import load_yaml
    from posetracker.app.settings import load_app_config

    sets, cuda_index = _overrides(args)
    extra = {"tracker": load_yaml(args.tracker_config)} if getattr(args, "tracker_config", None) \
        else None
    return load_app_config(args.config, sets, extra=extra), cuda_index


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_files(name: str) -> dict[str, str]:
    """The files behind a model name or path, with their SHA-256 (for the output's metadata)."""
    from posetracker.core.errors import PosetrackerError
    from posetracker.app.models import resolve_model

    try:
        r = resolve_model(name, fetch_missing=False)
    except PosetrackerError:  # metadata only; the estimator already loaded (or refused) it
        return {}
    files = [r.topology, r.weights]
    if r.format == "tfjs" and r.weights is None and r.topology is not None:
        files.append(r.topology.with_suffix(".bin"))
    return {f.name: _sha256(f) for f in files if f is not None and f.is_file()}


def _progress(total: int | None, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", dynamic_ncols=True, leave=False,
                disable=quiet or not sys.stderr.isatty())


def build_stages(config, cuda_index: int | None = None):
    """Load the estimator the settings name and wrap it as pipeline stages.

    Returns the :class:`~posetracker.app.pipeline.RMPEStages` and the device they run on, as text.
    """
    import torch

    from posetracker.app.build import build_estimator
    from posetracker.app.pipeline import RMPEStages

    threads = config.pipeline.torch_threads(os.cpu_count() or 1)
    if threads:
        torch.set_num_threads(threads)
    if cuda_index is not None:
        if not torch.cuda.is_available() or cuda_index >= torch.cuda.device_count():
            raise InputError(f"--device cuda:{cuda_index}: no such CUDA device")
        torch.cuda.set_device(cuda_index)
    estimator = build_estimator(config.estimator)
    stages = RMPEStages(estimator, config.pipeline.association, config.association,
                         min_pose_score=config.pipeline.min_pose_score)
    return stages, str(estimator.device)


def final_sink(out: Path, output, name: str):
    """The final-JSON sink of a run, as ``pipeline.output`` (an ``OutputConfig``) says; the
    pipeline benchmark writes through the same one."""
    from posetracker.io.sinks import FinalJsonSink

    return FinalJsonSink(out, output.format, name, keypoint_threshold=output.keypoint_threshold,
                         derive_head=output.derive_head)


def run(args: argparse.Namespace) -> int:
    """The VIDEO mode of ``posetracker track``; returns the exit status."""
    from posetracker.core.config import to_dict
    from posetracker.core.fileio import check_writable
    from posetracker.app.settings import dump_app_config
    from posetracker.io.sources import open_source

    config, cuda_index = load_settings(args)
    if args.dump_config:
        sys.stdout.write(dump_app_config(config))
        return 0
    if not args.output:
        raise InputError("VIDEO mode needs -o out.json")
    out = Path(args.output)
    # Every output is checked before the source opens or a model loads (nothing left behind).
    check_writable(args.output, "-o")
    if config.pipeline.output.jsonl:
        check_writable(args.jsonl or out.with_suffix(".jsonl"), "--jsonl")
    check_writable(args.csv, "--csv")
    check_writable(args.render, "--render")
    source = open_source(args.video, start_frame=args.start_frame, max_frames=args.max_frames,
                         stride=args.stride)
    for other in (args.render, args.csv, args.jsonl):
        if other and Path(other).resolve() == out.resolve():
            raise InputError(f"{other} is also the -o output")

    from posetracker import __version__
    from posetracker.app.pipeline import PipelineOptions, run_pipeline, run_sequential
    from posetracker.io.render import VideoRenderer
    from posetracker.io.sinks import CsvSink, JsonlSink, SinkSet
    from posetracker.tracker import make_tracker

    pc = config.pipeline
    stages, device = build_stages(config, cuda_index)
    tracker = make_tracker(config.tracker)

    fps = source.fps / source.stride if source.fps else 0.0
    sinks = []
    if pc.output.jsonl:
        sinks.append(JsonlSink(args.jsonl or out.with_suffix(".jsonl")))
    sinks.append(final_sink(out, pc.output, source.name))
    if args.csv:
        sinks.append(CsvSink(args.csv))
    if args.render:
        sinks.append(VideoRenderer(args.render, fps or 25.0, boxes=pc.output.render_boxes,
                                   trail=pc.output.render_trail,
                                   kpt_threshold=pc.output.render_threshold))
    sink = SinkSet(sinks)
    options = PipelineOptions(det_batch=config.estimator.frame_batch,
                              pose_batch=config.estimator.sppe.batch_size,
                              pose_max_frames=pc.pose_max_frames,
                              pose_workers=pc.pose_workers, queue_size=pc.queue_size)
    runner = run_sequential if pc.mode == "sequential" else run_pipeline
    bar = _progress(source.expected_frames, args.quiet)

    def progress(n: int) -> None:
        bar.update(1)

    try:
        result = runner(source, stages, tracker, sink.write, options, progress)
    except BaseException:
        bar.close()
        sink.abort()
        if pc.output.jsonl and not args.quiet:
            jl = args.jsonl or out.with_suffix(".jsonl")
            print(f"posetracker: stopped; finished frames are in {jl} "
                  f"(posetracker convert jsonl {jl} {out} writes them as {out.name})",
                  file=sys.stderr)
        raise
    bar.close()
    meta = {
        "version": __version__,
        "source": {"input": str(args.video), "frames": result.frames, "fps": source.fps,
                   "start_frame": source.start_frame, "stride": source.stride},
        "models": {m: model_files(m) for m in (config.estimator.detector.model,
                                               config.estimator.sppe.model)},
        "device": device,
        "config": to_dict(config),
        "timings": result.as_dict(),
    }
    sink.close(meta)
    if not args.quiet:
        print(f"{out}: {result.summary()}", file=sys.stderr)
    return 0
