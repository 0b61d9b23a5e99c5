"""The viewer's data: a result file, its frames and (optionally) its ground truth, as one JSON-able
dict that the page's script reads.

Poses travel as base64 typed arrays, not as JSON numbers, so that 2,000 frames of 20 people stay a
few megabytes and decode in milliseconds: per side (``pred``, ``gt``) and per person record, in
frame order:

- ``count``: ``Uint16`` (frames,) people per frame;
- ``tid``: ``Int32`` (records,) track id, -1 untracked;
- ``xy``: ``Int16`` (records, k, 2) joint pixels rounded, :data:`ABSENT` for a missing joint;
- ``score``: ``Uint8`` (records, k) joint score times 255;
- ``box``: ``Int16`` (records, 4) x1, y1, x2, y2 pixels, :data:`ABSENT` when unknown.

The ground-truth events are the evaluation's own assignment
(:func:`posetracker.evaluation.posetrack.sequence_matching`), grouped per frame, kind and person
with the joints they concern; their joint counts sum to the evaluation's counts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.paths import printable
from posetracker.core.poses import Frame, FramePoses, VideoPoses

ABSENT = -32768  # Int16 stand-in for a missing coordinate
_INT16 = 32767


@dataclass(frozen=True)
class Media:
    """What the page plays: ``kind`` ``"video"`` (``src`` one path) or ``"frames"`` (``srcs`` one
    image per frame, relative paths or data URIs); ``fps`` frames per second, ``width`` x ``height``
    pixels, ``num_frames`` frames."""

    kind: str
    fps: float
    width: int
    height: int
    num_frames: int
    src: str = ""
    srcs: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"kind": self.kind, "fps": self.fps, "width": self.width, "height": self.height,
                "num_frames": self.num_frames, "src": self.src, "srcs": list(self.srcs)}


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _pixels(values: np.ndarray) -> np.ndarray:
    """Float pixels -> Int16, NaN (or out of Int16 range) -> :data:`ABSENT`."""
    ok = np.isfinite(values) & (np.abs(values) < _INT16)
    return np.where(ok, np.rint(np.where(ok, values, 0)), ABSENT).astype("<i2")


def encode_side(video: VideoPoses) -> dict:
    """One side's poses as base64 typed arrays (module docstring), with its schema for drawing."""
    frames = video.frames
    k = video.schema.num_keypoints

    def stack(get, shape: tuple) -> np.ndarray:
        parts = [np.asarray(get(f.poses), dtype=np.float64).reshape((-1, *shape)) for f in frames]
        return np.concatenate(parts) if parts else np.zeros((0, *shape))

    kp, sc = stack(lambda p: p.keypoints, (k, 2)), stack(lambda p: p.keypoint_scores, (k,))
    xy, box = _pixels(kp), _pixels(stack(lambda p: p.boxes, (4,)))
    score = np.clip(np.rint(np.nan_to_num(sc) * 255), 0, 255).astype(np.uint8)
    n = len(kp)
    # per frame: a frame without people may carry no ids even in a tracked file
    tid = stack(lambda p: p.track_ids if p.track_ids is not None else np.full(len(p), -1), ()).astype("<i4")
    return {
        "schema": {"name": video.schema.name, "joints": list(video.schema.keypoints),
                   "edges": [list(e) for e in video.schema.skeleton]},
        "k": k, "records": n, "tracked": bool(n and (tid >= 0).any()),
        "count": _b64(np.array([len(f.poses) for f in frames], "<u2")),
        "tid": _b64(tid), "xy": _b64(xy), "score": _b64(score), "box": _b64(box),
    }


def track_spans(video: VideoPoses) -> list[dict]:
    """Per track id (ascending): ``first`` and ``last`` frame and ``frames`` present (a gap is a
    frame between first and last without the id)."""
    seen: dict[int, list[int]] = {}
    for i, f in enumerate(video.frames):
        if f.poses.track_ids is not None:
            for t in np.asarray(f.poses.track_ids).tolist():
                seen.setdefault(int(t), []).append(i)
    return [{"id": t, "first": fs[0], "last": fs[-1], "frames": len(fs)}
            for t, fs in sorted(seen.items())]


def gt_events(gt: VideoPoses, pred: VideoPoses) -> tuple[list[dict], dict]:
    """The evaluation's events, grouped: ``[{frame, kind, gt, pred, joints}]`` (kind ``switch``,
    ``miss`` or ``fp``; ``gt``/``pred`` the track ids, ``None`` for poseval's stand-in), and the
    counts summed over joints ``{switches, misses, fps, matches, objects}``."""
    from posetracker.evaluation.posetrack import JOINTS, sequence_matching

    grouped: dict[tuple, list[str]] = {}
    counts = {"switches": 0, "misses": 0, "fps": 0, "matches": 0, "objects": 0}
    for fm in sequence_matching(gt, pred):
        for joint, ev in zip(JOINTS, fm.joints):
            counts["matches"] += len(ev.matches)
            counts["switches"] += len(ev.switches)
            counts["misses"] += len(ev.misses)
            counts["fps"] += len(ev.false_positives)
            counts["objects"] += len(ev.matches) + len(ev.switches) + len(ev.misses)
            keys = ([("switch", o, h) for o, h in ev.switches]
                    + [("miss", None if fm.stand_in else o, None) for o in ev.misses]
                    + [("fp", None, None if fm.stand_in else h) for h in ev.false_positives])
            for kind, o, h in keys:
                grouped.setdefault((fm.frame, kind, o, h), []).append(joint)
    order = {"switch": 0, "miss": 1, "fp": 2}
    events = [{"frame": f, "kind": kind, "gt": o, "pred": h, "joints": joints}
              for (f, kind, o, h), joints in sorted(
                  grouped.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], str(kv[0][2:])))]
    return events, counts


def _check_frame_count(pred: VideoPoses, media: Media, result_path: str) -> None:
    if len(pred) != media.num_frames:
        raise InputError(f"{printable(result_path)}: {len(pred)} frames, but the video has "
                         f"{media.num_frames}")


def coco_as_video(results: VideoPoses, frame_names: list[str], result_path: str) -> VideoPoses:
    """COCO results (one image per frame) laid out on the media's frames: frame ``i`` gets the
    results of the image id ``estimate`` gives it (:func:`image_id_for`); frames without results
    are empty, and a result of no frame is an error."""
    from posetracker.app.commands.estimate_cmd import image_id_for

    by_id = {f.image_id if f.image_id is not None else f.image: f.poses for f in results.frames}
    frames = []
    for i, name in enumerate(frame_names):
        key = image_id_for(name, i, None) if results.frames[0].image_id is not None else Path(name).name
        poses = by_id.pop(key, None)
        frames.append(Frame(i, poses if poses is not None else FramePoses.empty(results.schema), name))
    if by_id:
        raise InputError(f"{printable(result_path)}: results for image {next(iter(by_id))!r}, which "
                         f"is none of the {len(frame_names)} frames")
    return VideoPoses(results.name, frames, results.schema, dict(results.meta))


def page_data(pred: VideoPoses, media: Media, gt: VideoPoses | None, result_path: str,
              title: str) -> dict:
    """Everything the page shows, as a JSON-able dict (``media``, ``pred``, ``gt``, ``tracks``,
    ``events``, ``counts``). Raises InputError when the frame counts disagree."""
    _check_frame_count(pred, media, result_path)
    data = {"title": title, "media": media.as_dict(), "pred": encode_side(pred),
            "tracks": track_spans(pred), "gt": None, "events": [], "counts": None}
    if gt is not None:
        if len(gt) != len(pred):
            raise InputError(f"{printable(result_path)}: {len(pred)} frames, but the ground truth "
                             f"has {len(gt)}")
        data["gt"] = encode_side(gt)
        data["events"], data["counts"] = gt_events(gt, pred)
    return data
