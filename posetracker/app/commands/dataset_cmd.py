"""``posetracker track-dataset ROOT -o OUT_DIR``: track every sequence of a dataset, resumably,
in local worker processes or on a Ray cluster, and optionally score it (``--eval GT_DIR``).

The work is :func:`posetracker.app.dataset.track_dataset`; this module adds the command line, the
progress bars (sequences and frames) and the closing lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from posetracker.app.commands.format_option import add_format_option
from posetracker.app.commands.settings_args import add_config_options, config_files, default
from posetracker.core.errors import InputError
from posetracker.core.outputs import POLICY
from posetracker.core.paths import printable
from posetracker.tracker.config import TrackerKind


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track-dataset", help="track every video and frame folder under a folder, resumably, "
        "locally or on Ray",
        description="Track every sequence under ROOT (video files and folders of frames, found "
        "recursively; PoseTrack's images/<split>/<sequence>/ included) as `posetracker track` "
        "does, one OUT_DIR/<sequence>.json each (named like PoseTrack's ground truth, so "
        "`posetracker eval posetrack GT_DIR OUT_DIR` pairs them), with its .jsonl stream and, "
        "with --render, <sequence>.mp4; OUT_DIR/summary.json and summary.csv list every "
        "sequence. A rerun skips the sequences already done with the same settings and models. "
        "Exit status 1 when a sequence failed (after --retries).", epilog=POLICY)
    p.add_argument("root", metavar="ROOT", help="folder of videos and/or frame folders (or one "
                   "video)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="output folder (made if missing)")
    add_format_option(p, default=None, default_text=default("pipeline.output.format"),
                      setting="pipeline.output.format")
    p.add_argument("--render", action="store_true", help="also draw each sequence into "
                   "OUT_DIR/<sequence>.mp4 (default: off)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine; ray: Ray tasks on a local Ray "
                   "or the cluster at --ray-address (pip install -e \".[ray]\") "
                   "(default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="worker processes (local) or Ray actors, each loading the models once "
                   "(default: 0 = the CPU cores; with Ray the cluster's CPUs, or its GPUs / "
                   "--gpus-per-task)")
    p.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster, e.g. auto or "
                   "ray://head:10001 (default: start a local Ray for the run); ROOT, OUT_DIR and "
                   "the models must be at the same paths on its nodes")
    p.add_argument("--gpus-per-task", type=float, default=0.0, metavar="F",
                   help="GPUs (or a fraction, e.g. 0.25) each Ray worker holds (default: "
                   "%(default)s)")
    p.add_argument("--retries", type=int, default=1, metavar="K",
                   help="further attempts of a failed sequence (default: %(default)s)")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="only sequences whose name or path under ROOT matches this shell pattern "
                   "(repeatable; default: all)")
    p.add_argument("--max-frames", type=int, metavar="N", help="read at most N frames of each "
                   "sequence (a quick look; the PoseTrack evaluation needs every frame; "
                   "default: all)")
    p.add_argument("--list", action="store_true", help="print the sequences found (name, kind, "
                   "path, done or to do) and exit")
    p.add_argument("--eval", metavar="GT_DIR", help="score OUT_DIR against the PoseTrack ground "
                   "truth in GT_DIR at the end, as `posetracker eval posetrack GT_DIR OUT_DIR`")
    p.add_argument("--eval-out", metavar="FILE", help="with --eval: also write the report "
                   "(.csv, .json or .md)")
    p.add_argument("--eval-plot", metavar="FILE.png", help="with --eval: draw the report")
    p.add_argument("--tracker", choices=get_args(TrackerKind), default=None,
                   help=f"tracker (tracker.kind, default: {default('tracker.kind')})")
    p.add_argument("--device", metavar="auto|cpu|cuda[:N]", help="where the models run "
                   f"(estimator.device, default: {default('estimator.device')})")
    add_config_options(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars and no lines "
                   "per sequence")
    p.set_defaults(func=run)


class _Progress:
    """Two bars (sequences, frames) on a terminal; else one line per finished sequence."""

    def __init__(self, total_seqs: int, skipped: int, quiet: bool):
        from tqdm import tqdm

        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self.seqs = tqdm(total=total_seqs, initial=skipped, unit="seq", desc="sequences",
                         position=0, dynamic_ncols=True, disable=not self.tty)
        self.frames = tqdm(total=0, unit="frame", desc="frames", position=1, dynamic_ncols=True,
                           disable=not self.tty)
        self.done_frames: dict[str, int] = {}

    def say(self, line: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.seqs.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def __call__(self, kind: str, name: str, data: dict) -> None:
        if kind == "queued":
            self.frames.total += data.get("frames_hint") or 0
            self.frames.refresh()
        elif kind == "frames":
            n = int(data.get("n") or 0)
            self.frames.update(n - self.done_frames.get(name, 0))
            self.done_frames[name] = n
        elif kind in ("done", "failed", "retry"):
            if kind != "done":  # this attempt's frames come again (or never)
                self.frames.update(-self.done_frames.get(name, 0))
            self.done_frames.pop(name, None)
            if kind != "retry":
                self.seqs.update(1)
            if kind == "done":
                self.say(f"{name}: {data.get('frames')} frames, {data.get('people_per_frame')} "
                         f"people/frame, {data.get('ids')} ids, {data.get('seconds')} s")
            else:
                self.say(f"{name}: {'failed' if kind == 'failed' else 'will retry'} "
                         f"(attempt {data.get('attempts')}): {data.get('error')}")

    def close(self) -> None:
        self.frames.close()
        self.seqs.close()


def _settings(args: argparse.Namespace):
    """The same settings layering as ``posetracker track`` (``--config`` < flags < ``--set``)."""
    from posetracker.app.commands.track_cmd import load_settings

    return load_settings(args)


def _check_eval(args: argparse.Namespace) -> None:
    from posetracker.core.fileio import check_writable

    if (args.eval_out or args.eval_plot) and not args.eval:
        raise InputError("--eval-out and --eval-plot need --eval GT_DIR")
    if args.eval:
        if not Path(args.eval).exists():
            raise InputError(f"--eval {args.eval}: no such folder")
        check_writable(args.eval_out, "--eval-out")
        check_writable(args.eval_plot, "--eval-plot")


def _evaluate(args: argparse.Namespace) -> int:
    """``posetracker eval posetrack GT_DIR OUT_DIR`` on the output, with its report."""
    from posetracker.app.commands import eval_cmd

    ns = argparse.Namespace(gt_dir=args.eval, pred_dir=args.output, per_sequence=False,
                            strict_poseval=False, out=args.eval_out, plot=args.eval_plot,
                            html=None, videos=None)
    return eval_cmd.run_posetrack(ns)


def _list(args, config, options) -> int:
    from posetracker.app import dataset as ds

    sequences, chosen = ds.plan(args.root, args.output, config, options)
    out = Path(args.output).absolute()
    fmt = config.pipeline.output.format
    settings, models = ds.settings_for_key(config), ds.model_checksums(config)
    names = {s.name for s in chosen}
    for s in sequences:
        job = ds.job_for(s, out, fmt, settings, models, options.max_frames, options.render)
        state = "excluded" if s.name not in names else \
            "done" if ds.finished_record(job, out, fmt, settings, models) else "to do"
        print(f"{printable(s.name)}\t{s.kind}\t{printable(s.rel)}\t{state}")
    return 0


def run(args: argparse.Namespace) -> int:
    from posetracker.app import dataset as ds
    from posetracker.app.commands.settings_args import dump

    config = _settings(args)
    if args.dump_config:
        return dump(config)
    options = ds.DatasetOptions(engine=args.engine, workers=args.workers, retries=args.retries,
                                render=args.render, max_frames=args.max_frames,
                                only=tuple(args.only), ray_address=args.ray_address,
                                gpus_per_task=args.gpus_per_task)
    if args.list:
        return _list(args, config, options)
    _check_eval(args)
    with _claim(args, config, options):
        return _track(args, config, options)


def _claim(args: argparse.Namespace, config, options):
    """The output policy (:mod:`posetracker.core.outputs`) for the whole run: no sequence's
    output (``<name>.json``, ``.jsonl``, ``.mp4``), summary or report may be an input (a video
    rendered over itself when ``-o`` is ROOT) or another output; the summary is locked for the
    run (each sequence's files are locked by the worker that writes them)."""
    from posetracker.app import dataset as ds
    from posetracker.core.outputs import OutputClaim, check_outputs
    from posetracker.io.sinks import meta_path
    from posetracker.io.sources import IMAGE_SUFFIXES

    _, chosen = ds.plan(args.root, args.output, config, options)
    out = Path(args.output)
    summary = {"-o summary.json": out / "summary.json", "-o summary.csv": out / "summary.csv"}
    outputs: dict = {**summary, "--eval-out": args.eval_out, "--eval-plot": args.eval_plot}
    for s in chosen:
        output, video = ds.job_files(s, out, config.pipeline.output.format, options.render)
        for path in (output, output.with_suffix(".jsonl"), meta_path(output), video):
            if path is not None:
                outputs[f"-o {path.name}"] = path
    check_outputs(outputs, [s.path for s in chosen] + config_files(args),
                  folder_suffixes=IMAGE_SUFFIXES)
    return OutputClaim().acquire(summary)


def _track(args: argparse.Namespace, config, options) -> int:
    """``track-dataset`` once its outputs are claimed."""
    from posetracker.app import dataset as ds

    bar: _Progress | None = None
    queued: list[tuple[str, str, dict]] = []

    def events(kind: str, name: str, data: dict) -> None:
        """The bars start at the first event after the plan (the jobs to run come first)."""
        nonlocal bar
        if kind == "queued":
            queued.append((kind, name, data))
            return
        if bar is None:
            bar = _Progress(len(queued), 0, args.quiet)
            for e in queued:
                bar(*e)
        bar(kind, name, data)

    try:
        result = ds.track_dataset(args.root, args.output, config, options, on_event=events)
    finally:
        if bar is not None:
            bar.close()
    done, skipped, failed = (result.count(s) for s in ("done", "skipped", "failed"))
    wall = result.timings.get("wall_seconds", 0.0)
    if not args.quiet:
        print(f"{args.output}: {done} tracked, {skipped} already done (skipped), {failed} failed"
              f" of {done + skipped + failed} sequences in {wall:.1f} s; {result.summary_json}",
              file=sys.stderr)
    if failed:
        for r in result.records:
            if r["status"] == "failed":
                print(f"posetracker: {printable(r['name'])} failed after {r['attempts']} "
                      f"attempt(s): {printable(r['error'])}", file=sys.stderr)
        if args.eval:
            print("posetracker: not scored (--eval): some sequences failed", file=sys.stderr)
        return 1
    if args.eval:
        return _evaluate(args)
    return 0
