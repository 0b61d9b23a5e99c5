"""``posetracker eval posetrack|coco|crowdpose``: score predictions like the official tools."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from urllib.parse import quote

from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write_text
from posetracker.core.outputs import POLICY, claiming


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="score predictions against ground truth (PoseTrack, COCO, CrowdPose)",
        description="Score predictions against ground truth with the official tools' rules.",
        epilog=POLICY)
    kinds = p.add_subparsers(dest="eval_kind", metavar="KIND", required=True)

    pt = kinds.add_parser(
        "posetrack", help="PoseTrack: per-joint AP at PCKh 0.5 and MOTA/MOTP (poseval's rules)",
        description="PoseTrack evaluation as the official poseval computes it: per-joint AP "
        "(PCKh 0.5), MOTA, MOTP, precision and recall. GT_DIR and PRED_DIR hold one JSON file per "
        "sequence with the same names; PoseTrack 2017 and 2018 files may be mixed.", epilog=POLICY)
    pt.add_argument("gt_dir", metavar="GT_DIR", help="folder of ground-truth JSON files, or one file")
    pt.add_argument("pred_dir", metavar="PRED_DIR", help="folder of prediction JSON files, or one file")
    pt.add_argument("--per-sequence", action="store_true", help="add a row per sequence")
    pt.add_argument("--strict-poseval", action="store_true",
                    help="joints never annotated in GT_DIR (e.g. the nose in Bonn data) count as "
                    "poseval counts them (AP 0, MOTP 0, NaN groups) instead of being left out")
    _add_output_args(pt)
    pt.add_argument("--videos", metavar="DIR", help="with --html: DIR holds each sequence's video "
                    "(DIR/NAME.mp4, any video suffix: a track-dataset --render folder will do) or "
                    "frames folder (DIR/NAME/); a viewer page "
                    "per sequence (as `posetracker view --gt`) is written into the folder "
                    "REPORT_viewer/ beside the report and linked from its tables")
    pt.set_defaults(func=run_posetrack)

    for name, what in (("coco", "COCO keypoints (pycocotools)"),
                       ("crowdpose", "CrowdPose: AP, AR and AP easy/medium/hard")):
        c = kinds.add_parser(name, help=what, description=f"{what}. GT is an annotation file, "
                             "PRED a keypoint results file (list of image_id/keypoints/score).",
                             epilog=POLICY)
        c.add_argument("gt", metavar="GT", help="ground-truth annotation JSON")
        c.add_argument("pred", metavar="PRED", help="keypoint results JSON")
        if name == "coco":
            c.add_argument("--by-crowd", action="store_true",
                           help="add rows for CrowdPose-style easy/medium/hard images (crowd index "
                           "computed from GT: < 0.2 / < 0.8 / >= 0.8)")
        else:
            c.add_argument("--pred-schema", choices=("crowdpose14", "coco17"), default="crowdpose14",
                           help="joint layout of PRED; coco17 results are converted to CrowdPose-14 "
                           "(neck and head top derived from shoulders and face) (default: %(default)s)")
        _add_output_args(c)
        c.set_defaults(func=_run_coco if name == "coco" else _run_crowdpose)


def _add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="FILE", help="also write the report: .csv, .json or .md")
    p.add_argument("--plot", metavar="FILE.png", help="draw the figures into a PNG: one bar per "
                   "metric for a single row, a heat map of rows x metrics for several (e.g. "
                   "--per-sequence); at most 1600x1400 pixels")
    p.add_argument("--html", metavar="FILE.html", help="also write a self-contained HTML report: "
                   "sortable tables (PoseTrack: per sequence and per joint) and the figure")


#: --out and --plot are claimed for the run (:mod:`posetracker.core.outputs`): an output that is the
#: ground truth, a prediction file, the other output or unwritable is refused before the (slow)
#: evaluation runs, and one run at a time writes it.
_claimed = claiming({"--out": "out", "--plot": "plot", "--html": "html"},
                    ("gt_dir", "pred_dir", "gt", "pred"), folder_suffixes=(".json",))


def _emit(df, args, title: str) -> int:
    from posetracker.evaluation.report import format_table, plot_report, save_report

    print(format_table(df))
    sys.stdout.flush()
    if args.out:
        save_report(df, args.out)
    if args.plot:
        plot_report(df, args.plot, title=title)
    if args.html:
        _write_html(args.html, title, {title: df})
    return 0


def _write_html(path: str, title: str, tables: dict, links: dict | None = None) -> None:
    from posetracker.app.viewer.report import report_html
    from posetracker.core.fileio import atomic_write_text
    from posetracker.evaluation.report import report_figure

    first = next(iter(tables.values()))
    atomic_write_text(path, report_html(title, tables, report_figure(first, title), links))


@_claimed
def run_posetrack(args) -> int:
    from posetracker.app.api import read_posetrack_pairs
    from posetracker.evaluation.posetrack import evaluate_videos
    from posetracker.evaluation.report import format_table, plot_report, save_report

    if args.videos and not args.html:
        raise InputError("--videos makes viewer pages for the --html report; give --html too")
    gt_videos, pred_videos = read_posetrack_pairs(args.gt_dir, args.pred_dir)
    media = _sequence_media(args, gt_videos) if args.videos else None
    full = evaluate_videos(gt_videos, pred_videos, per_sequence=args.per_sequence or bool(args.html),
                           strict_poseval=args.strict_poseval)
    df = full if args.per_sequence else full.loc[["total"]]
    # Two tables as poseval prints them: AP per group; MOTA per group, then MOTP, Prec, Rec totals.
    groups = [c.split(" ", 1)[1] for c in df.columns if c.startswith("AP ")]
    ap = df[[f"AP {g}" for g in groups]].set_axis(groups, axis=1)
    mot = df[[f"MOTA {g}" for g in groups] + ["MOTP Total", "Precision Total", "Recall Total"]]
    mot = mot.set_axis(groups + ["MOTP", "Prec", "Rec"], axis=1)
    print("Average Precision (AP, PCKh 0.5), percent")
    print(format_table(ap, digits=1))
    print("\nMultiple Object Tracking (MOTA per group; MOTP, precision, recall totals), percent")
    print(format_table(mot, digits=1))
    sys.stdout.flush()
    if args.out:
        save_report(df, args.out)
    if args.plot:
        plot_report(df, args.plot, title="PoseTrack")
    if args.html:
        _posetrack_html(args, full, gt_videos, pred_videos, media)
    return 0


def _viewer_dir(args) -> Path:
    html = Path(args.html)
    return html.with_name(html.stem + "_viewer")


def _sequence_media(args, gt_videos: list) -> dict:
    """Per sequence name, its video or frames under --videos, checked (frame count, decodable)
    before anything is written."""
    from posetracker.app.dataset.discovery import VIDEO_SUFFIXES
    from posetracker.app.viewer.page import ViewerOptions, load_media

    root, out = Path(args.videos), _viewer_dir(args)
    media = {}
    for v in gt_videos:
        spec = root / v.name
        if not spec.is_dir():
            found = sorted(p for p in root.glob(f"{glob.escape(v.name)}.*")
                           if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise InputError(f"--videos {root}: no video or frames folder for sequence {v.name}")
            spec = found[0]
        m, _ = load_media(str(spec), out / f"{v.name}.html", ViewerOptions())
        if m.num_frames != len(v):
            raise InputError(f"{spec}: {m.num_frames} frames, but sequence {v.name} has {len(v)}")
        media[v.name] = m
    return media


def _posetrack_html(args, full, gt_videos: list, pred_videos: list, media: dict | None) -> None:
    """The --html report, and with --videos a viewer page per sequence (claimed here: their
    names come from the sequences)."""
    from posetracker.app.viewer.data import page_data
    from posetracker.app.viewer.page import render_page
    from posetracker.core.outputs import claim_outputs
    from posetracker.evaluation.posetrack import evaluate_videos_per_joint

    joints = evaluate_videos_per_joint(gt_videos, pred_videos, strict_poseval=args.strict_poseval)
    tables = {"PoseTrack per sequence (percent)": full, "PoseTrack per joint (percent, counts)": joints}
    links = None
    if media:
        out = _viewer_dir(args)
        pages = {f"--html viewer {v.name}": out / f"{v.name}.html" for v in gt_videos}
        with claim_outputs(pages, [args.gt_dir, args.pred_dir, args.videos, args.html]):
            for g, p in zip(gt_videos, pred_videos):
                data = page_data(p, media[g.name], g, str(g.name), title=g.name)
                atomic_write_text(out / f"{g.name}.html", render_page(data))
        links = {v.name: f"{quote(out.name)}/{quote(v.name)}.html" for v in gt_videos}
    _write_html(args.html, "PoseTrack", tables, links)


@_claimed
def _run_coco(args) -> int:
    if args.by_crowd:
        from posetracker.app.api import evaluate_coco_by_crowd

        return _emit(evaluate_coco_by_crowd(args.gt, args.pred), args, "COCO keypoints by crowd index")
    from posetracker.app.api import evaluate_coco

    return _emit(evaluate_coco(args.gt, args.pred), args, "COCO keypoints")


@_claimed
def _run_crowdpose(args) -> int:
    from posetracker.app.api import evaluate_crowdpose
    from posetracker.core.schemas import get_schema

    df = evaluate_crowdpose(args.gt, args.pred, pred_schema=get_schema(args.pred_schema))
    return _emit(df, args, "CrowdPose")
