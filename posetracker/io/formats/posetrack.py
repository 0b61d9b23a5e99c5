"""PoseTrack 2017 (``annolist``) and 2018 (COCO-like) JSON files: one file per video sequence.

Reading autodetects the version: a top-level ``annolist`` means 2017 (schema
:data:`~posetracker.core.schemas.POSETRACK17`), ``images``/``annotations`` means 2018 (schema
:data:`~posetracker.core.schemas.POSETRACK18`). Ground truth and predictions share the format.

Conventions the official evaluation (poseval) fixes and this module follows:

- 2018 keypoints are ``x, y, v`` triplets; a joint is absent when ``x == y == v == 0`` (poseval's
  2018 -> 2017 conversion skips exactly those), so a present joint may have ``v == 0``.
- Per-joint scores are ``scores`` (2018, one per slot) or ``score`` per point (2017). A file without
  any per-joint score (ground truth) gets score 1 for visible and 0 for occluded joints, and
  ``meta["has_scores"] = False``; the evaluation then ranks its joints as poseval ranks missing
  scores.
- Frames keep file order; a prediction's frame ``i`` is scored against the ground truth's
  frame ``i``.
- Head boxes (``bbox_head`` or ``x1, y1, x2, y2``) go to ``FramePoses.head_boxes`` (NaN rows where a
  person has none); ignore regions to ``Frame.ignore_regions``.

Writers produce files poseval accepts: per-joint scores, integer track ids unique within a frame
(people of untracked frames are numbered 0..n-1), one entry per frame, written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write_text, read_input_text
from posetracker.core.poses import Frame, FramePoses, VideoPoses, mean_joint_scores
from posetracker.core.schemas import POSETRACK17, POSETRACK18, KeypointSchema, convert_keypoints

__all__ = [
    "read_posetrack", "read_posetrack_dir", "posetrack_files",
    "write_posetrack17", "write_posetrack18",
]


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _load_json(path: Path):
    try:
        return json.loads(read_input_text(path))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: malformed JSON ({e})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def read_posetrack(path: str | Path) -> VideoPoses:
    """Read one PoseTrack 2017 or 2018 file (ground truth or predictions), version autodetected.

    Returns a :class:`VideoPoses` named by the file stem, schema POSETRACK17 or POSETRACK18.
    Raises :class:`InputError` naming the file (and frame) for anything malformed.
    """
    p = Path(path)
    data = _load_json(p)
    if isinstance(data, dict) and "annolist" in data:
        return _read_2017(data, p)
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return _read_2018(data, p)
    raise InputError(f"{p}: not a PoseTrack file (expected 'annolist' or 'images'+'annotations')")


def posetrack_files(path: str | Path) -> list[Path]:
    """The ``*.json`` files of a folder, sorted by name, or ``[path]`` for a single file."""
    p = Path(path)
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.suffix == ".json" and q.is_file())
        if not files:
            raise InputError(f"{p}: no .json files in this folder")
        return files
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    return [p]


def read_posetrack_dir(path: str | Path) -> list[VideoPoses]:
    """Read every ``*.json`` of a folder (sorted by name), or the one file ``path`` names."""
    return [read_posetrack(f) for f in posetrack_files(path)]


def _first(value, what: str, where: str):
    """PoseTrack 2017 wraps scalars in one-element lists; accept both."""
    if isinstance(value, list):
        if len(value) != 1:
            raise InputError(f"{where}: '{what}' should hold one value, got {len(value)}")
        value = value[0]
    return value


def _number(value, what: str, where: str) -> float:
    value = _first(value, what, where)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: '{what}' is not a number: {value!r}") from None


def _track_id(value, where: str) -> int:
    v = _number(value, "track_id", where)
    if not np.isfinite(v) or v != round(v) or v < 0:
        raise InputError(f"{where}: track_id must be a non-negative integer, got {v!r}")
    return int(v)


def _tight_boxes(kp: np.ndarray) -> np.ndarray:
    """``(n, k, 2) -> (n, 4)`` xyxy boxes of the present joints; zeros for joint-less people."""
    present = np.isfinite(kp).all(-1)
    if not len(kp):
        return np.zeros((0, 4))
    lo = np.where(present[..., None], kp, np.inf).min(1)
    hi = np.where(present[..., None], kp, -np.inf).max(1)
    return np.where(present.any(1)[:, None], np.concatenate([lo, hi], 1), 0.0)


def _build_frame(
    people: list[dict], schema: KeypointSchema, where: str
) -> FramePoses:
    """``people``: dicts with kp (k,2), sc (k,), head (4,) or None, box (4,) or None, score, tid."""
    k = schema.num_keypoints
    n = len(people)
    kp = np.array([q["kp"] for q in people], dtype=np.float64).reshape(n, k, 2)
    sc = np.array([q["sc"] for q in people], dtype=np.float64).reshape(n, k)
    tids = [q["tid"] for q in people]
    if n and any(t is None for t in tids) and not all(t is None for t in tids):
        raise InputError(f"{where}: some people have a track_id and some do not")
    boxes = _tight_boxes(kp)
    for i, q in enumerate(people):
        if q["box"] is not None:
            boxes[i] = q["box"]
    mean_sc = mean_joint_scores(kp, sc)  # a person without a stored score
    scores = np.array([mean_sc[i] if q["score"] is None else q["score"]
                       for i, q in enumerate(people)], dtype=np.float64)
    heads = None
    if any(q["head"] is not None for q in people):
        heads = np.array([q["head"] if q["head"] is not None else [np.nan] * 4 for q in people],
                         dtype=np.float64).reshape(n, 4)
    track_ids = None if (not n or tids[0] is None) else np.array(tids, dtype=np.int64)
    try:
        return FramePoses(kp, sc, boxes, scores, schema, track_ids=track_ids, head_boxes=heads)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def _point_2017(pt, k: int, where: str) -> tuple[int, float, float, float | None]:
    """``(joint id, x, y, score or None)`` of a 2017 point ``{"id": [j], "x": [x], "y": [y]}``."""
    try:  # fast path: the usual one-element lists
        j, x, y = pt["id"][0], float(pt["x"][0]), float(pt["y"][0])
        score = float(pt["score"][0]) if "score" in pt else None
    except (KeyError, TypeError, IndexError, ValueError):
        if not isinstance(pt, dict):
            raise InputError(f"{where}: a point is not an object") from None
        j = _number(pt.get("id"), "id", where)
        x, y = _number(pt.get("x"), "x", where), _number(pt.get("y"), "y", where)
        score = _number(pt["score"], "score", where) if "score" in pt else None
    if not isinstance(j, (int, float)) or j != int(j) or not 0 <= j < k:
        raise InputError(f"{where}: joint id {j!r} is not an integer in 0..{k - 1} "
                         "(PoseTrack 2017)")
    return int(j), x, y, score


def _polygons_2017(regions, where: str) -> tuple[np.ndarray, ...]:
    out = []
    for r in regions or []:
        pts = r.get("point", []) if isinstance(r, dict) else []
        xy = [(_number(q["x"], "x", where), _number(q["y"], "y", where)) for q in pts]
        if len(xy) >= 3:
            out.append(np.array(xy, dtype=np.float64))
    return tuple(out)


def _points_2017_fast(points: list, k: int):
    """``(joint ids, (m, 2) xy, (m,) scores, any score given)`` of well-formed 2017 points whose
    values are one-element lists and which all carry ``score`` or all lack it; None otherwise."""
    try:
        ids = np.array([p["id"][0] for p in points], dtype=np.float64)
        xy = np.array([(p["x"][0], p["y"][0]) for p in points], dtype=np.float64).reshape(-1, 2)
        with_score = ["score" in p for p in points]
        if all(with_score):
            score = np.array([p["score"][0] for p in points], dtype=np.float64)
        elif not any(with_score) and all("is_visible" in p for p in points):
            score = (np.array([p["is_visible"][0] for p in points], dtype=np.float64) > 0) * 1.0
        else:
            return None
    except (KeyError, TypeError, IndexError, ValueError):
        return None
    if ids.size and (ids.min() < 0 or ids.max() >= k or np.any(ids != np.round(ids))):
        return None  # the point-by-point path names the bad id
    return ids.astype(np.int64), xy, score, bool(points) and all(with_score)


def _person_2017(rect: dict, k: int, where: str) -> dict:
    """One 2017 ``annorect`` -> the person dict :func:`_build_frame` takes (+ ``has_scores``)."""
    kp = np.full((k, 2), np.nan)
    sc = np.zeros(k)
    has_scores = False
    annopoints = rect.get("annopoints") or []
    points = annopoints[0].get("point", []) if annopoints and isinstance(
        annopoints[0], dict) else []
    fast = _points_2017_fast(points or [], k)
    if fast is not None:  # the common, well-formed case, column-wise
        j, xy, score, has_scores = fast
        kp[j], sc[j] = xy, score
        points = []
    for pt in points or []:  # point by point, with precise messages for malformed input
        j, x, y, score = _point_2017(pt, k, where)
        kp[j] = (x, y)
        if score is not None:
            sc[j] = score
            has_scores = True
        elif "is_visible" in pt:
            sc[j] = 1.0 if _number(pt["is_visible"], "is_visible", where) > 0 else 0.0
        else:
            sc[j] = 1.0
    head = None
    if all(c in rect for c in ("x1", "y1", "x2", "y2")):
        head = [_number(rect[c], c, where) for c in ("x1", "y1", "x2", "y2")]
    return {
        "kp": kp, "sc": sc, "head": head, "box": None, "has_scores": has_scores,
        "score": _number(rect["score"], "score", where) if "score" in rect else None,
        "tid": _track_id(rect["track_id"], where) if "track_id" in rect else None,
    }


def _read_2017(data: dict, path: Path) -> VideoPoses:
    schema = POSETRACK17
    k = schema.num_keypoints
    annolist = data["annolist"]
    if not isinstance(annolist, list):
        raise InputError(f"{path}: 'annolist' must be a list")
    frames = []
    has_scores = False
    for fi, entry in enumerate(annolist):
        where = f"{path}: frame {fi}"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: annolist entry is not an object")
        image = entry.get("image", [{}])
        image = image[0] if isinstance(image, list) and image else image
        name = image.get("name", "") if isinstance(image, dict) else ""
        people = []
        for ri, rect in enumerate(entry.get("annorect", []) or []):
            pwhere = f"{where}, person {ri}"
            try:
                person = _person_2017(rect, k, pwhere)
            except (TypeError, ValueError, AttributeError, IndexError) as e:
                raise InputError(f"{pwhere}: malformed annorect ({e})") from None
            has_scores |= person.pop("has_scores")
            people.append(person)
        if "is_labeled" in entry:
            labeled = bool(_number(entry["is_labeled"], "is_labeled", where))
        else:
            labeled = bool(people)
        frames.append(Frame(
            index=fi, poses=_build_frame(people, schema, where), image=str(name), labeled=labeled,
            ignore_regions=_polygons_2017(entry.get("ignore_regions"), where),
            image_id=int(_number(entry["imgnum"], "imgnum", where)) if "imgnum" in entry else None,
        ))
    meta = {"format": "posetrack17", "source": str(path), "has_scores": has_scores}
    return VideoPoses(path.stem, frames, schema, meta=meta)


def _slot_map_2018(data: dict, path: Path) -> np.ndarray:
    """For each keypoint slot of the file, its index in POSETRACK18 (-1: a slot we drop)."""
    cats = data.get("categories") or []
    if not isinstance(cats, list):
        raise InputError(f"{path}: 'categories' must be a list")
    names = None
    for c in cats:
        if isinstance(c, dict) and c.get("keypoints"):
            names = c["keypoints"]
            break
    if names is None:
        return np.arange(POSETRACK18.num_keypoints)
    # Files written with COCO's names keep head_bottom/head_top in the eye slots (PoseTrack 2018's
    # layout); 2017-style names (neck, head) mean the same points.
    alias = {"neck": "head_bottom", "head": "head_top",
             "left_eye": "head_bottom", "right_eye": "head_top"}
    out = []
    for n in names:
        n = alias.get(n, n)
        if n not in POSETRACK18.keypoints:
            raise InputError(f"{path}: unknown keypoint name {n!r} in 'categories' "
                             f"(expected PoseTrack 2018 names: {', '.join(POSETRACK18.keypoints)})")
        out.append(POSETRACK18.index(n))
    if len(set(out)) != len(out):
        raise InputError(f"{path}: duplicate keypoint names in 'categories'")
    return np.array(out, dtype=np.int64)


def _polygons_2018(image: dict, where: str) -> tuple[np.ndarray, ...]:
    xs, ys = image.get("ignore_regions_x") or [], image.get("ignore_regions_y") or []
    if len(xs) != len(ys):
        raise InputError(f"{where}: ignore_regions_x and ignore_regions_y differ in length")
    out = []
    for px, py in zip(xs, ys):
        if len(px) != len(py):
            raise InputError(f"{where}: an ignore region has {len(px)} x and {len(py)} y values")
        if len(px) >= 3:
            out.append(np.column_stack([np.asarray(px, float), np.asarray(py, float)]))
    return tuple(out)


def _person_2018(ann: dict, slots: np.ndarray, k: int, where: str) -> dict:
    """One 2018 annotation -> the person dict :func:`_build_frame` takes (+ ``has_scores``)."""
    raw = ann.get("keypoints") or []
    if len(raw) != 3 * len(slots):
        raise InputError(f"{where}: {len(raw)} keypoint values, expected "
                         f"{3 * len(slots)} ({len(slots)} joints x 3)")
    trip = np.asarray(raw, dtype=np.float64).reshape(len(slots), 3)
    scores = ann.get("scores") or []
    if scores and len(scores) != len(slots):
        raise InputError(f"{where}: {len(scores)} scores for {len(slots)} joints")
    kp = np.full((k, 2), np.nan)
    sc = np.zeros(k)
    absent = (trip[:, 0] == 0) & (trip[:, 1] == 0) & (trip[:, 2] == 0)  # poseval's rule
    for s, j in enumerate(slots):
        if j < 0 or absent[s]:
            continue
        kp[j] = trip[s, :2]
        sc[j] = float(scores[s]) if scores else (1.0 if trip[s, 2] > 0 else 0.0)
    head = box = None
    if ann.get("bbox_head") is not None:
        x, y, w, h = (float(v) for v in ann["bbox_head"])
        head = [x, y, x + w, y + h]
    if ann.get("bbox") is not None and len(ann["bbox"]) == 4:
        x, y, w, h = (float(v) for v in ann["bbox"])
        box = [x, y, x + w, y + h]
    return {
        "kp": kp, "sc": sc, "head": head, "box": box, "has_scores": bool(scores),
        "score": float(ann["score"]) if ann.get("score") is not None else None,
        "tid": _track_id(ann["track_id"], where) if ann.get("track_id") is not None else None,
    }


def _read_2018(data: dict, path: Path) -> VideoPoses:
    schema = POSETRACK18
    k = schema.num_keypoints
    slots = _slot_map_2018(data, path)
    images, annotations = data["images"], data["annotations"]
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise InputError(f"{path}: 'images' and 'annotations' must be lists")
    by_image: dict = {}
    for ai, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise InputError(f"{path}: annotation {ai} has no image_id")
        if not isinstance(ann["image_id"], (int, float, str)):
            raise InputError(f"{path}: annotation {ai}: image_id must be a number or a string")
        by_image.setdefault(ann["image_id"], []).append(ann)
    has_scores = False
    frames = []
    seen = set()
    vid_id = None
    for fi, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise InputError(f"{path}: image {fi} has no id")
        if not isinstance(img["id"], (int, float, str)):
            raise InputError(f"{path}: image {fi}: id must be a number or a string")
        where = f"{path}: frame {fi} ({img.get('file_name', img['id'])})"
        if img["id"] in seen:
            raise InputError(f"{where}: duplicate image id {img['id']}")
        seen.add(img["id"])
        vid_id = img.get("vid_id", vid_id)
        people = []
        for ann in by_image.get(img["id"], []):
            pwhere = f"{where}, annotation {ann.get('id', '?')}"
            try:
                person = _person_2018(ann, slots, k, pwhere)
            except (TypeError, ValueError) as e:  # a field of the wrong type or length
                raise InputError(f"{pwhere}: malformed annotation ({e})") from None
            has_scores |= person.pop("has_scores")
            people.append(person)
        labeled = bool(img.get("is_labeled", bool(people)))
        frames.append(Frame(
            index=fi, poses=_build_frame(people, schema, where),
            image=str(img.get("file_name", "")),
            labeled=labeled, ignore_regions=_polygons_2018(img, where),
            image_id=int(img["frame_id"]) if isinstance(img.get("frame_id"), (int, float))
            else (int(img["id"]) if isinstance(img["id"], (int, float)) else None),
        ))
    unknown = set(by_image) - seen
    if unknown:
        raise InputError(f"{path}: annotations refer to unknown image ids, "
                         f"e.g. {sorted(unknown, key=str)[0]}")
    meta = {"format": "posetrack18", "source": str(path), "has_scores": has_scores}
    if vid_id is not None:
        meta["vid_id"] = vid_id
    return VideoPoses(path.stem, frames, schema, meta=meta)


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------
def _in_schema(poses: FramePoses, schema: KeypointSchema, derive_head: bool = False,
               min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``(n, k, 2)`` and scores ``(n, k)`` in ``schema``; joints scored below
    ``min_score`` become absent (NaN, score 0)."""
    if poses.schema is schema:
        kp, sc = np.asarray(poses.keypoints), np.asarray(poses.keypoint_scores)
    else:
        kp, sc = convert_keypoints(poses.keypoints, poses.keypoint_scores, poses.schema, schema,
                                   derive_head=derive_head)
    if min_score > 0:
        low = sc < min_score
        kp = np.where(low[..., None], np.nan, kp)
        sc = np.where(low, 0.0, sc)
    return kp, sc


def _track_ids_for_file(poses: FramePoses) -> list[int]:
    if poses.track_ids is None:
        return list(range(len(poses)))  # poseval needs ids; untracked people get 0..n-1
    return [int(t) for t in poses.track_ids]


def _image_name(video: VideoPoses, frame: Frame) -> str:
    return frame.image or f"images/{video.name}/{frame.index:06d}.jpg"


def _dump(obj, path: str | Path) -> None:
    """Write JSON atomically; ``dumps`` (not ``dump``) uses the C encoder."""
    atomic_write_text(path, json.dumps(obj, separators=(",", ":")))


def _finite_row(arr: np.ndarray | None, i: int) -> list[float] | None:
    if arr is None or not np.all(np.isfinite(arr[i])):
        return None
    return [float(v) for v in arr[i]]


def write_posetrack18(video: VideoPoses, path: str | Path, derive_head: bool = False,
                      min_score: float = 0.0) -> None:
    """Write ``video`` as a PoseTrack 2018 JSON file (converting its schema to POSETRACK18).

    Every frame becomes an image (``is_labeled`` from ``Frame.labeled``), every person an
    annotation with ``keypoints`` triplets (``[0, 0, 0]`` for absent joints, ``v = 1`` when the
    joint's score is > 0 else 0), per-joint ``scores``, ``track_id``, ``bbox`` (xywh), ``score``
    and, when known, ``bbox_head``.

    Options for writing an estimator's output (``posetracker track``): ``derive_head`` fills
    ``head_bottom``/``head_top`` from the face joints and shoulders when the poses' schema lacks
    them (COCO; :func:`posetracker.core.schemas.derive_head_joints`), and joints scored below
    ``min_score`` are written as absent: the MOT metrics count every written joint that matches
    no ground truth as a false positive, whatever its score.
    """
    schema = POSETRACK18
    vid = str(video.meta.get("vid_id", video.name))  # a read file's own vid_id, else the stem
    images, anns = [], []
    for frame in video.frames:
        # a frame's id is its index in the source (the tracker's output may start past frame 0
        # or miss damaged frames; a renumbering would part ids from file names)
        image_id = int(frame.image_id) if frame.image_id is not None else int(frame.index)
        img = {"file_name": _image_name(video, frame), "id": image_id, "frame_id": image_id,
               "vid_id": vid, "nframes": len(video.frames), "is_labeled": bool(frame.labeled)}
        if frame.ignore_regions:
            img["ignore_regions_x"] = [[float(v) for v in r[:, 0]] for r in frame.ignore_regions]
            img["ignore_regions_y"] = [[float(v) for v in r[:, 1]] for r in frame.ignore_regions]
        images.append(img)
        poses = frame.poses
        kp, sc = _in_schema(poses, schema, derive_head, min_score)
        tids = _track_ids_for_file(poses)
        for i in range(len(poses)):
            trip = []
            for j in range(schema.num_keypoints):
                if np.all(np.isfinite(kp[i, j])):
                    trip += [float(kp[i, j, 0]), float(kp[i, j, 1]), 1 if sc[i, j] > 0 else 0]
                else:
                    trip += [0, 0, 0]
            x1, y1, x2, y2 = (float(v) for v in poses.boxes[i])
            ann = {"id": image_id * 100 + i, "image_id": image_id, "category_id": 1,
                   "track_id": tids[i], "keypoints": trip,
                   "scores": [float(s) for s in sc[i]],
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(poses.scores[i])}
            head = _finite_row(poses.head_boxes, i)
            if head is not None:
                ann["bbox_head"] = [head[0], head[1], head[2] - head[0], head[3] - head[1]]
            anns.append(ann)
    names = list(schema.keypoints)
    skeleton = [[a + 1, b + 1] for a, b in schema.skeleton]  # the file format is 1-based
    _dump({"images": images, "annotations": anns,
           "categories": [{"supercategory": "person", "id": 1, "name": "person",
                           "keypoints": names, "skeleton": skeleton}]}, path)


def write_posetrack17(video: VideoPoses, path: str | Path, derive_head: bool = False,
                      min_score: float = 0.0) -> None:
    """Write ``video`` as a PoseTrack 2017 ``annolist`` file (schema converted to POSETRACK17).

    One ``annolist`` entry per frame with ``image``, ``imgnum``, ``is_labeled``, ignore regions
    and one ``annorect`` per person: ``track_id``, head box ``x1 y1 x2 y2`` when known, ``score``,
    and ``annopoints`` with ``id``, ``x``, ``y``, ``score`` and ``is_visible`` (score > 0) per
    present joint.

    Options for writing an estimator's output (``posetracker track``): ``derive_head`` fills
    ``head_bottom``/``head_top`` from the face joints and shoulders when the poses' schema lacks
    them (COCO; :func:`posetracker.core.schemas.derive_head_joints`), and joints scored below
    ``min_score`` are written as absent: the MOT metrics count every written joint that matches
    no ground truth as a false positive, whatever its score.
    """
    schema = POSETRACK17
    annolist = []
    for frame in video.frames:
        poses = frame.poses
        kp, sc = _in_schema(poses, schema, derive_head, min_score)
        tids = _track_ids_for_file(poses)
        rects = []
        for i in range(len(poses)):
            points = [{"id": [j], "x": [float(kp[i, j, 0])], "y": [float(kp[i, j, 1])],
                       "score": [float(sc[i, j])], "is_visible": [1 if sc[i, j] > 0 else 0]}
                      for j in range(schema.num_keypoints) if np.all(np.isfinite(kp[i, j]))]
            rect = {"track_id": [tids[i]], "score": [float(poses.scores[i])],
                    "annopoints": [{"point": points}]}
            head = _finite_row(poses.head_boxes, i)
            if head is not None:
                rect.update(x1=[head[0]], y1=[head[1]], x2=[head[2]], y2=[head[3]])
            rects.append(rect)
        entry = {"image": [{"name": _image_name(video, frame)}],
                 "imgnum": [int(frame.image_id) if frame.image_id is not None
                            else int(frame.index) + 1],
                 "is_labeled": [1 if frame.labeled else 0], "annorect": rects}
        if frame.ignore_regions:
            entry["ignore_regions"] = [
                {"point": [{"x": [float(x)], "y": [float(y)]} for x, y in r]}
                for r in frame.ignore_regions]
        annolist.append(entry)
    _dump({"annolist": annolist}, path)
