"""``posetracker view``: write one self-contained HTML page that plays a result over its video."""

from __future__ import annotations

import argparse

from posetracker.app.viewer.page import ViewerOptions
from posetracker.core.outputs import POLICY, claiming
from posetracker.core.paths import printable

_DEFAULTS = ViewerOptions()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view", help="one HTML page that plays a result over its video (timeline, evaluation events)",
        description="Write one self-contained HTML page (no server, no network: script and style "
        "inline) that plays RESULT over its video with the skeletons drawn in step, colours per track "
        "id, a track timeline, and with --gt the ground truth and the PoseTrack evaluation's own "
        "misses, false positives and id switches per frame. The video is referenced by its path "
        "relative to the page; an image sequence is embedded when small. Keys: space play/pause, "
        "left/right (or , and .) one frame, Home/End.", epilog=POLICY)
    p.add_argument("result", metavar="RESULT", help="a track result (PoseTrack 2017/2018 JSON) or "
                   "estimate's COCO keypoint results (one image per frame)")
    p.add_argument("--video", required=True, metavar="VIDEO_OR_FRAMES",
                   help="the video file, or the folder (or glob) of frames, RESULT was made from; "
                   "its frame count must equal RESULT's")
    p.add_argument("--gt", metavar="GT.json", help="PoseTrack ground truth of the same sequence")
    p.add_argument("-o", "--output", required=True, metavar="REPORT.html", help="page to write")
    p.add_argument("--fps", type=float, default=_DEFAULTS.fps,
                   help="frame rate of an image sequence (default: %(default)s)")
    p.add_argument("--embed-limit-mb", type=float, default=_DEFAULTS.embed_limit_mb, metavar="MB",
                   help="embed an image sequence whose files sum to at most MB megabytes; larger "
                   "ones are referenced by relative paths (default: %(default)s)")
    p.set_defaults(func=run)


@claiming({"-o": "output"}, ("result", "gt", "video"))
def run(args) -> int:
    from posetracker.app.viewer.page import build_viewer
    from posetracker.core.errors import InputError
    from posetracker.core.fileio import atomic_write_text

    if not args.fps > 0 or not args.embed_limit_mb >= 0:
        raise InputError("--fps must be > 0 and --embed-limit-mb >= 0")
    html = build_viewer(args.result, args.video, args.output, gt=args.gt,
                        options=ViewerOptions(fps=args.fps, embed_limit_mb=args.embed_limit_mb))
    atomic_write_text(args.output, html)
    print(f"wrote {printable(args.output)} ({len(html.encode('utf-8')) / 1e6:.1f} MB)")
    return 0
