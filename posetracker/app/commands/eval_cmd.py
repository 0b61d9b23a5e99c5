"""``posetracker eval posetrack|coco|crowdpose``: score predictions like the official tools."""

from __future__ import annotations

import argparse
import sys

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


#: --out and --plot are claimed for the run (:mod:`posetracker.core.outputs`): an output that is the
#: ground truth, a prediction file, the other output or unwritable is refused before the (slow)
#: evaluation runs, and one run at a time writes it.
_claimed = claiming({"--out": "out", "--plot": "plot"}, ("gt_dir", "pred_dir", "gt", "pred"),
                    folder_suffixes=(".json",))


def _emit(df, args, title: str) -> int:
    from posetracker.evaluation.report import format_table, plot_report, save_report

    print(format_table(df))
    sys.stdout.flush()
    if args.out:
        save_report(df, args.out)
    if args.plot:
        plot_report(df, args.plot, title=title)
    return 0


@_claimed
def run_posetrack(args) -> int:
    from posetracker.app.api import evaluate_posetrack
    from posetracker.evaluation.report import format_table, plot_report, save_report

    df = evaluate_posetrack(args.gt_dir, args.pred_dir, per_sequence=args.per_sequence,
                            strict_poseval=args.strict_poseval)
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
    return 0


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
