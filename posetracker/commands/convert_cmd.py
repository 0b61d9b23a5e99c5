"""``posetracker convert bonn|posetrack``: turn annotation files into PoseTrack JSON."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert annotations to PoseTrack JSON (Bonn .mat, PoseTrack 2017 <-> 2018)",
        description="Convert annotation files to PoseTrack JSON, one file per video sequence.")
    kinds = p.add_subparsers(dest="convert_kind", metavar="KIND", required=True)

    b = kinds.add_parser(
        "bonn", help="Bonn Multi-Person PoseTrack annolist.mat -> PoseTrack 2017 JSON per video",
        description="Read a Bonn Multi-Person PoseTrack annolist.mat (14 MPII joints, track ids, "
        "head boxes, visibility) and write one PoseTrack 2017 JSON file per video, named "
        "<video name>.json, into OUT_DIR.")
    b.add_argument("mat_file", metavar="MAT_FILE", help="annolist.mat")
    b.add_argument("out_dir", metavar="OUT_DIR", help="folder for the JSON files (created)")
    b.set_defaults(func=_run_bonn)

    t = kinds.add_parser(
        "posetrack", help="PoseTrack 2017 <-> 2018 JSON (a folder or one file)",
        description="Rewrite PoseTrack JSON files (2017 or 2018, autodetected) in the version "
        "--to names, keeping file names, into OUT_DIR.")
    t.add_argument("src", metavar="SRC", help="folder of PoseTrack JSON files, or one file")
    t.add_argument("out_dir", metavar="OUT_DIR", help="folder for the converted files (created)")
    t.add_argument("--to", choices=("2017", "2018"), required=True, help="output version")
    t.set_defaults(func=_run_posetrack)


def _run_bonn(args) -> int:
    from posetracker.formats.bonn import read_bonn_mat
    from posetracker.formats.posetrack import write_posetrack17

    videos = read_bonn_mat(args.mat_file)
    out = Path(args.out_dir)
    for v in videos:
        write_posetrack17(v, out / f"{v.name}.json")
    frames = sum(len(v) for v in videos)
    print(f"wrote {len(videos)} PoseTrack 2017 files ({frames} frames) to {out}")
    return 0


def _run_posetrack(args) -> int:
    from posetracker.formats.posetrack import (posetrack_files, read_posetrack, write_posetrack17,
                                               write_posetrack18)

    write = write_posetrack17 if args.to == "2017" else write_posetrack18
    files = posetrack_files(args.src)
    out = Path(args.out_dir)
    for f in files:
        write(read_posetrack(f), out / f.name)
    print(f"wrote {len(files)} PoseTrack {args.to} files to {out}")
    return 0
