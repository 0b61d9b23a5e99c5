"""``posetracker convert bonn|posetrack|jsonl``: turn annotation files and streamed results into
PoseTrack JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from posetracker.app.commands.format_option import add_format_option
from posetracker.app.commands.settings_args import default
from posetracker.core.outputs import POLICY, claim_outputs
from posetracker.core.paths import printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert to PoseTrack JSON (Bonn .mat, PoseTrack 2017 <-> 2018, a track run's "
        "JSON lines)",
        description="Convert annotation files to PoseTrack JSON, one file per video sequence.",
        epilog=POLICY)
    kinds = p.add_subparsers(dest="convert_kind", metavar="KIND", required=True)

    b = kinds.add_parser(
        "bonn", help="Bonn Multi-Person PoseTrack annolist.mat -> PoseTrack 2017 JSON per video",
        description="Read a Bonn Multi-Person PoseTrack annolist.mat (14 MPII joints, track ids, "
        "head boxes, visibility) and write one PoseTrack 2017 JSON file per video, named "
        "<video name>.json, into OUT_DIR.", epilog=POLICY)
    b.add_argument("mat_file", metavar="MAT_FILE", help="annolist.mat")
    b.add_argument("out_dir", metavar="OUT_DIR", help="folder for the JSON files (created)")
    b.set_defaults(func=_run_bonn)

    t = kinds.add_parser(
        "posetrack", help="PoseTrack 2017 <-> 2018 JSON (a folder or one file)",
        description="Rewrite PoseTrack JSON files (2017 or 2018, autodetected) in the version "
        "--to names, keeping file names, into OUT_DIR.", epilog=POLICY)
    t.add_argument("src", metavar="SRC", help="folder of PoseTrack JSON files, or one file")
    t.add_argument("out_dir", metavar="OUT_DIR", help="folder for the converted files (created)")
    t.add_argument("--to", choices=("2017", "2018"), required=True, help="output version")
    t.set_defaults(func=_run_posetrack)

    j = kinds.add_parser(
        "jsonl", help="a `track` run's JSON lines -> its final JSON (finish an interrupted run)",
        description="Write the final file of a `posetracker track` run from its JSON-lines "
        "stream: what an interrupted run (Ctrl-C, a crash) left there becomes a complete PoseTrack "
        "or COCO file of the finished frames. The options mirror the track settings "
        "pipeline.output.*; the defaults are track's.", epilog=POLICY)
    j.add_argument("jsonl", metavar="JSONL", help="the stream (<out>.jsonl)")
    j.add_argument("output", metavar="OUT_JSON", help="file to write (atomically)")
    add_format_option(j, default=default("pipeline.output.format"), default_text="%(default)s")
    j.add_argument("--keypoint-threshold", type=float, metavar="S",
                   default=default("pipeline.output.keypoint_threshold"),
                   help="PoseTrack formats: joints scored below S are written absent "
                   "(pipeline.output.keypoint_threshold, default: %(default)s)")
    j.add_argument("--no-derive-head", action="store_true",
                   help="PoseTrack formats: do not fill head_bottom/head_top of COCO poses from "
                   "the eyes, ears and shoulders")
    j.set_defaults(func=_run_jsonl)


def _run_bonn(args) -> int:
    from posetracker.io.formats.bonn import read_bonn_mat
    from posetracker.io.formats.posetrack import write_posetrack17

    videos = read_bonn_mat(args.mat_file)
    out = Path(args.out_dir)
    with claim_outputs({f"OUT_DIR {v.name}.json": out / f"{v.name}.json" for v in videos},
                       [args.mat_file]):
        for v in videos:
            write_posetrack17(v, out / f"{v.name}.json")
    frames = sum(len(v) for v in videos)
    print(f"wrote {len(videos)} PoseTrack 2017 files ({frames} frames) to {printable(out)}")
    return 0


def _run_posetrack(args) -> int:
    from posetracker.io.formats.posetrack import posetrack_files, read_posetrack, write_posetrack17, write_posetrack18

    write = write_posetrack17 if args.to == "2017" else write_posetrack18
    files = posetrack_files(args.src)
    out = Path(args.out_dir)
    with claim_outputs({f"OUT_DIR {f.name}": out / f.name for f in files}, files):
        for f in files:
            write(read_posetrack(f), out / f.name)
    print(f"wrote {len(files)} PoseTrack {args.to} files to {printable(out)}")
    return 0


def _run_jsonl(args) -> int:
    from posetracker.core.errors import InputError
    from posetracker.io.sinks import FinalJsonSink, meta_path, read_jsonl
    from posetracker.io.sources import SourceFrame

    if not 0 <= args.keypoint_threshold <= 1:
        raise InputError("--keypoint-threshold must be in [0, 1]")
    with claim_outputs({"OUT_JSON": args.output, "OUT_JSON metadata": meta_path(args.output)},
                       [args.jsonl]):
        video = read_jsonl(args.jsonl)
        name = Path(args.jsonl).stem
        sink = FinalJsonSink(args.output, args.format, name,
                             keypoint_threshold=args.keypoint_threshold,
                             derive_head=not args.no_derive_head)
        for f in video.frames:
            sink.write(SourceFrame(f.index, None, f.image), f.poses)
        sink.close({"converted_from": str(args.jsonl)})
    print(f"wrote {len(video.frames)} frames of {printable(args.jsonl)} to "
          f"{printable(args.output)} ({args.format})")
    return 0
