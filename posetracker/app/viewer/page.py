"""Build the viewer's one self-contained HTML page: the template files of this package (HTML,
script, style) with the data inlined; no server, no network. The video is referenced by a path
relative to the page; an image sequence is referenced the same way, or embedded as data URIs while
its files sum to at most :attr:`ViewerOptions.embed_limit_mb`."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from posetracker.app.viewer.data import Media, coco_as_video, page_data
from posetracker.core.errors import InputError
from posetracker.core.paths import printable
from posetracker.core.poses import VideoPoses

_MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
         ".webp": "image/webp"}


@dataclass(frozen=True)
class ViewerOptions:
    """Options of ``posetracker view``.

    Attributes:
        fps: Frames per second of an image sequence (a video's own rate is used for videos).
        embed_limit_mb: Embed an image sequence's files in the page when they sum to at most this
            many megabytes (1e6 bytes); larger sequences are referenced by relative paths.
    """

    fps: float = 25.0
    embed_limit_mb: float = 8.0


def _relative_url(target: Path, page: Path) -> str:
    rel = os.path.relpath(target.resolve(), page.resolve().parent)
    return quote(Path(rel).as_posix())


def load_media(spec: str, page: str | Path, options: ViewerOptions) -> tuple[Media, list[str]]:
    """The media for ``spec`` (a video file, an image folder or a glob) and its frame names (as
    ``estimate`` names them, for COCO image ids). Raises InputError, one line."""
    from posetracker.io.sources import open_source, read_image

    source = open_source(spec)
    page = Path(page)
    if source.kind == "webcam":
        raise InputError(f"--video {printable(spec)}: a webcam cannot be viewed; give a video file "
                         "or a folder of frames")
    if source.kind == "video":
        first = next(iter(source), None)
        if first is None or source.fps <= 0:
            raise InputError(f"--video {printable(spec)}: no frame decodes, or the frame rate is unknown")
        h, w = first.image.shape[:2]
        # a container without a frame count in its header (WebM) is counted by reading it
        n = source.header_frames or sum(1 for _ in source)
        names = [f"{source.name}/{i:06d}.jpg" for i in range(n)]
        return Media("video", float(source.fps), w, h, n, src=_relative_url(Path(spec), page)), names
    h, w = read_image(source.paths[0]).shape[:2]
    total = sum(p.stat().st_size for p in source.paths)
    if total <= options.embed_limit_mb * 1e6:
        srcs = tuple(f"data:{_MIME.get(p.suffix.lower(), 'image/jpeg')};base64,"
                     + base64.b64encode(p.read_bytes()).decode("ascii") for p in source.paths)
    else:
        srcs = tuple(_relative_url(p, page) for p in source.paths)
    return (Media("frames", float(options.fps), w, h, len(source.paths), srcs=srcs),
            [p.name for p in source.paths])


def read_result(path: str) -> VideoPoses:
    """A PoseTrack 2017/2018 file, or a COCO/AlphaPose results list (``estimate``'s output);
    InputError for anything else."""
    from posetracker.io.formats.alphapose import read_results_video
    from posetracker.io.formats.coco import load_json
    from posetracker.io.formats.posetrack import read_posetrack

    data = load_json(path)
    if isinstance(data, list):
        video = read_results_video(path)
        video.meta["coco"] = True
        return video
    if isinstance(data, dict) and ("annolist" in data or "images" in data):
        return read_posetrack(path)
    raise InputError(f"{printable(path)}: neither a PoseTrack file ('annolist' or "
                     "'images'+'annotations') nor a list of COCO keypoint results")


def _template(name: str) -> str:
    return resources.files("posetracker.app.viewer").joinpath("templates", name).read_text("utf-8")


def render_page(data: dict) -> str:
    """The HTML page for :func:`page_data`'s dict: template, style, script and data inlined."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    html = _template("viewer.html")
    html = html.replace("/*TITLE*/", escape(data["title"]))  # before the data, which may hold it
    for key, value in (("/*STYLE*/", _template("viewer.css")), ("/*SCRIPT*/", _template("viewer.js")),
                       ("/*DATA*/", payload)):
        html = html.replace(key, value, 1)
    return html


def build_viewer(result: str, video: str, page: str | Path, gt: str | None = None,
                 options: ViewerOptions = ViewerOptions()) -> str:
    """Read and check every input, and return the page's HTML (nothing is written here).

    Args:
        result: A ``track`` result (PoseTrack 2017/2018 JSON) or ``estimate``'s COCO results.
        video: The video file, or the folder/glob of the frames, the result was made from.
        page: Where the page will be written (relative paths are taken from its folder).
        gt: PoseTrack ground truth of the same sequence: drawn, and the evaluation's events listed.

    Raises:
        InputError: a file of the wrong shape, or frame counts that disagree.
    """
    pred = read_result(result)
    media, names = load_media(video, page, options)
    if pred.meta.get("coco"):
        pred = coco_as_video(pred, names, result)
    gtv = None
    if gt is not None:
        from posetracker.io.formats.posetrack import read_posetrack

        gtv = read_posetrack(gt)
    return render_page(page_data(pred, media, gtv, result, title=pred.name))
