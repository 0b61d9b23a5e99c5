"""Per-frame pose results as a video: COCO keypoint results and AlphaPose results JSON.

Both are a JSON list of ``{image_id, keypoints (3k), score, ...}``. COCO results name frames by an
integer ``image_id`` and may give ``bbox`` (xywh); AlphaPose names them by image file name
(``"000123.jpg"``) and gives ``box`` (xywh) and sometimes ``idx`` (a track id, ignored here). Frames
are ordered by id (numbers) or by file name (strings, digit runs compared as numbers).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.poses import Frame, FramePoses, VideoPoses, keypoint_boxes
from posetracker.core.schemas import COCO17, CROWDPOSE14, MPII16, POSETRACK17, KeypointSchema
from posetracker.io.formats.coco import load_json
from posetracker.io.sources import natural_key

# Joint count -> the schema results with that many joints are read in.
SCHEMA_BY_COUNT: dict[int, KeypointSchema] = {17: COCO17, 15: POSETRACK17, 16: MPII16,
                                              14: CROWDPOSE14}


def _finite_numbers(v) -> bool:
    return isinstance(v, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)


def read_results_video(path: str | Path, schema: KeypointSchema | None = None,
                       name: str | None = None) -> VideoPoses:
    """Read a COCO or AlphaPose results file as one untracked :class:`VideoPoses`.

    Args:
        path: The JSON list of results.
        schema: The joints' schema; default: from the joint count (17 COCO, 15 PoseTrack 2017,
            16 MPII, 14 CrowdPose).
        name: Video name; default: the file stem.

    Joints stored as ``(0, 0, 0)`` are absent. Each frame's ``image`` is the image file name when
    the ids are names, else ``""``; ``image_id`` the integer id when the ids are numbers.
    Raises :class:`InputError` naming the file and entry for malformed content.
    """
    p = Path(path)
    data = load_json(p)
    if not isinstance(data, list):
        raise InputError(f"{p}: expected a JSON list of results (image_id, keypoints, score)")
    groups: dict = {}
    k = None
    for i, r in enumerate(data):
        where = f"{p}: result {i}"
        if not isinstance(r, dict):
            raise InputError(f"{where}: expected an object")
        iid = r.get("image_id")
        if isinstance(iid, bool) or not isinstance(iid, (int, str)):
            raise InputError(f"{where}: 'image_id' must be an integer or an image file name")
        kp = r.get("keypoints")
        if not _finite_numbers(kp) or len(kp) % 3:
            raise InputError(f"{where}: 'keypoints' must be a list of 3k finite numbers")
        if k is None:
            k = len(kp) // 3
            if schema is None:
                if k not in SCHEMA_BY_COUNT:
                    raise InputError(f"{where}: {k} joints per person; known counts: "
                                     f"{', '.join(map(str, SCHEMA_BY_COUNT))}")
                schema = SCHEMA_BY_COUNT[k]
            if k != schema.num_keypoints:
                raise InputError(f"{where}: {k} joints, schema {schema.name} has "
                                 f"{schema.num_keypoints}")
        elif len(kp) != 3 * k:
            raise InputError(f"{where}: {len(kp) // 3} joints, earlier results have {k}")
        score = r.get("score", 1.0)
        if not _finite_numbers([score]):
            raise InputError(f"{where}: 'score' must be a finite number")
        box = r.get("bbox", r.get("box"))
        if box is not None and not (_finite_numbers(box) and len(box) == 4):
            raise InputError(f"{where}: 'bbox'/'box' must be 4 finite numbers x, y, w, h")
        groups.setdefault(iid, []).append((kp, float(score), box))
    if not groups:
        raise InputError(f"{p}: no results")
    kinds = {type(i) for i in groups}
    if len(kinds) > 1:
        raise InputError(f"{p}: image ids mix numbers and names")
    order = sorted(groups, key=natural_key if str in kinds else None)
    frames = []
    for index, iid in enumerate(order):
        rs = groups[iid]
        flat = np.array([r[0] for r in rs], dtype=np.float64).reshape(len(rs), k, 3)
        absent = np.all(flat == 0, axis=-1)
        kp = np.where(absent[..., None], np.nan, flat[..., :2])
        sc = np.where(absent, 0.0, flat[..., 2])
        boxes = keypoint_boxes(kp)
        for i, r in enumerate(rs):
            if r[2] is not None:
                x, y, w, h = r[2]
                boxes[i] = (x, y, x + w, y + h)
        poses = FramePoses(kp, sc, boxes, np.array([r[1] for r in rs]), schema)
        frames.append(Frame(index, poses, image=iid if isinstance(iid, str) else "",
                            image_id=iid if isinstance(iid, int) else None))
    return VideoPoses(name or p.stem, frames, schema)
