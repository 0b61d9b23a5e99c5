"""COCO keypoint data in memory: ground truth (COCO, CrowdPose) and keypoint results, the layout
every COCO-style reader, writer, evaluation and training set shares.

Ground truth is the COCO annotation layout: ``images``, ``annotations`` (``keypoints`` as a flat
``x, y, v`` list with ``v = 0`` for an unlabelled joint, ``bbox`` as ``x, y, w, h``), ``categories``
(the person category names its joints under ``keypoints``). CrowdPose uses the same layout with 14
joints and a per-image ``crowdIndex`` (:func:`crowd_index`).

A results list has one entry per predicted person::

    {"image_id": 785, "category_id": 1, "keypoints": [x1, y1, s1, ...], "score": 0.93,
     "bbox": [x, y, w, h], "track_id": 3}             # bbox and track_id optional

where the third value of each joint is the joint's score; absent joints are ``0, 0, 0``. The files
are read and written by :mod:`posetracker.io.formats.coco`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.poses import FramePoses, VideoPoses, keypoint_boxes
from posetracker.core.schemas import SCHEMAS, KeypointSchema, convert_keypoints

#: Fewest labelled joints (``num_keypoints``) for a person to enter the crowd-index mean.
MIN_JOINTS_FOR_CROWD_INDEX = 4


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def _numbers(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(_is_number(x) for x in v)


def schema_for_names(names: Iterable[str]) -> KeypointSchema | None:
    """The known schema whose joint names are exactly ``names`` in that order, else ``None``."""
    names = tuple(names)
    for s in SCHEMAS.values():
        if s.keypoints == names:
            return s
    return None


@dataclass(frozen=True, eq=False)
class CocoDataset:
    """A validated COCO-layout keypoint ground truth.

    Attributes:
        images: Image records (``id``, ``file_name``, ``width``, ``height``, CrowdPose's
            ``crowdIndex`` ...), in file order.
        annotations: Person records, normalised: ``iscrowd`` (default 0) and ``num_keypoints``
            (default: the count of joints with ``v > 0``) are always present.
        categories: Category records; keypoint categories list their joint names.
        source: Where the data came from (file name, or ``"<memory>"``), for messages.

    The records are plain dicts, shared and not to be modified; :meth:`to_dict` returns a deep
    copy for libraries (pycocotools) that write into them.
    """

    images: tuple[dict, ...]
    annotations: tuple[dict, ...]
    categories: tuple[dict, ...]
    source: str = "<memory>"

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<memory>") -> CocoDataset:
        """Validate a parsed annotation file; problems raise :class:`InputError` naming ``source``."""
        if isinstance(data, list):
            raise InputError(f"{source}: a JSON list (a results file?), expected a ground-truth "
                             "object with images, annotations and categories")
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a JSON object with images, annotations, categories")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise InputError(f"{source}: missing or non-list '{key}'")

        cat_k: dict[int, int | None] = {}
        for i, c in enumerate(data["categories"]):
            if not isinstance(c, dict) or not _is_int(c.get("id")):
                raise InputError(f"{source}: category {i} has no integer 'id'")
            kp = c.get("keypoints")
            cat_k[int(c["id"])] = len(kp) if isinstance(kp, list) else None

        image_ids: set[int] = set()
        for i, im in enumerate(data["images"]):
            if not isinstance(im, dict) or not _is_int(im.get("id")):
                raise InputError(f"{source}: image {i} has no integer 'id'")
            if im["id"] in image_ids:
                raise InputError(f"{source}: duplicate image id {im['id']}")
            image_ids.add(int(im["id"]))

        anns, ann_ids = [], set()
        for i, a in enumerate(data["annotations"]):
            where = f"{source}: annotation {i}"
            if not isinstance(a, dict) or not _is_int(a.get("id")):
                raise InputError(f"{where} has no integer 'id'")
            where += f" (id {a['id']})"
            if a["id"] in ann_ids:
                raise InputError(f"{where}: duplicate annotation id")
            ann_ids.add(a["id"])
            if a.get("image_id") not in image_ids:
                raise InputError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'")
            if a.get("category_id") not in cat_k:
                raise InputError(f"{where}: category_id {a.get('category_id')!r} is not in 'categories'")
            bbox = a.get("bbox")
            if not (_numbers(bbox) and len(bbox) == 4 and bbox[2] >= 0 and bbox[3] >= 0):
                raise InputError(f"{where}: 'bbox' must be 4 finite numbers x, y, w, h with w, h >= 0")
            k = cat_k[a["category_id"]]
            kp = a.get("keypoints")
            if k is not None or kp is not None:
                if not _numbers(kp):
                    raise InputError(f"{where}: 'keypoints' must be a list of numbers")
                if k is not None and len(kp) != 3 * k:
                    raise InputError(f"{where}: 'keypoints' has {len(kp)} values, expected {3 * k} "
                                     f"({k} joints x 3)")
            norm = dict(a)
            norm.setdefault("iscrowd", 0)
            if kp is not None and "num_keypoints" not in norm:
                norm["num_keypoints"] = int(np.count_nonzero(np.asarray(kp[2::3]) > 0))
            anns.append(norm)
        return cls(tuple(data["images"]), tuple(anns), tuple(data["categories"]), source)

    # -- queries ---------------------------------------------------------------------------
    @property
    def image_ids(self) -> list[int]:
        """Image ids in file order."""
        return [int(im["id"]) for im in self.images]

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """Joint names of the (first) keypoint category; empty when no category has keypoints."""
        for c in self.categories:
            if isinstance(c.get("keypoints"), list):
                return tuple(c["keypoints"])
        return ()

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def schema(self) -> KeypointSchema | None:
        """The known schema matching the category's joint names, or ``None``."""
        return schema_for_names(self.keypoint_names)

    def annotations_by_image(self) -> dict[int, list[dict]]:
        """Annotations grouped by image id; every image has an entry (maybe empty)."""
        out: dict[int, list[dict]] = {i: [] for i in self.image_ids}
        for a in self.annotations:
            out[int(a["image_id"])].append(a)
        return out

    def stored_crowd_index(self) -> dict[int, float]:
        """CrowdPose's per-image ``crowdIndex`` as stored in the file (images lacking it are left out)."""
        return {int(im["id"]): float(im["crowdIndex"]) for im in self.images
                if _is_number(im.get("crowdIndex"))}

    def to_dict(self) -> dict:
        """A deep copy in the file layout, safe to hand to code that modifies it."""
        return copy.deepcopy({"images": list(self.images), "annotations": list(self.annotations),
                              "categories": list(self.categories)})


def check_crowdpose_gt(ds: CocoDataset) -> None:
    """Raise :class:`InputError` unless ``ds`` has 14 joints and a ``crowdIndex`` on every image."""
    if ds.num_keypoints != 14:
        raise InputError(f"{ds.source}: CrowdPose ground truth has 14 joints, this file has "
                         f"{ds.num_keypoints}")
    for im in ds.images:
        if not _is_number(im.get("crowdIndex")):
            raise InputError(f"{ds.source}: image {im['id']} has no numeric 'crowdIndex' "
                             "(not CrowdPose ground truth?)")



# -- results ---------------------------------------------------------------------------------
def validate_coco_results(
    results: Any, source: str, num_keypoints: int, image_ids: Iterable[int] | None = None
) -> list[dict]:
    """Check a parsed results list and return clean copies of its entries.

    Each entry must have an integer ``image_id`` (one of ``image_ids`` when given), an integer
    ``category_id``, ``3 * num_keypoints`` finite ``keypoints`` values and a finite ``score``;
    ``bbox`` (4 numbers) is kept when present, other keys are dropped.
    """
    if not isinstance(results, list):
        raise InputError(f"{source}: expected a JSON list of results "
                         "(image_id, category_id, keypoints, score)")
    out = []
    for i, r in enumerate(results):
        where = f"{source}: result {i}"
        if not isinstance(r, dict):
            raise InputError(f"{where}: expected an object")
        if not _is_int(r.get("image_id")):
            raise InputError(f"{where}: 'image_id' must be an integer, got {r.get('image_id')!r}")
        where += f" (image_id {r['image_id']})"
        if not _is_int(r.get("category_id")):
            raise InputError(f"{where}: 'category_id' must be an integer")
        kp = r.get("keypoints")
        if not _numbers(kp):
            raise InputError(f"{where}: 'keypoints' must be a list of finite numbers")
        if len(kp) != 3 * num_keypoints:
            raise InputError(f"{where}: 'keypoints' has {len(kp)} values, expected "
                             f"{3 * num_keypoints} ({num_keypoints} joints x 3)")
        if not _is_number(r.get("score")):
            raise InputError(f"{where}: 'score' must be a finite number")
        clean = {"image_id": int(r["image_id"]), "category_id": int(r["category_id"]),
                 "keypoints": [float(v) for v in kp], "score": float(r["score"])}
        if "bbox" in r:
            if not (_numbers(r["bbox"]) and len(r["bbox"]) == 4):
                raise InputError(f"{where}: 'bbox' must be 4 finite numbers x, y, w, h")
            clean["bbox"] = [float(v) for v in r["bbox"]]
        out.append(clean)
    if image_ids is not None:
        known = set(int(i) for i in image_ids)
        unknown = sorted({r["image_id"] for r in out} - known)
        if unknown:
            shown = ", ".join(str(i) for i in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise InputError(f"{source}: results for {len(unknown)} image id(s) not in the ground "
                             f"truth: {shown}")
    return out


def results_to_frames(results: list[dict], schema: KeypointSchema) -> dict[int, FramePoses]:
    """Group validated results by image into :class:`FramePoses` (file order within an image)."""
    k = schema.num_keypoints
    grouped: dict[int, list[dict]] = {}
    for r in results:
        grouped.setdefault(r["image_id"], []).append(r)
    frames = {}
    for image_id, rs in grouped.items():
        flat = np.array([r["keypoints"] for r in rs], dtype=np.float64).reshape(len(rs), k, 3)
        absent = np.all(flat == 0, axis=-1)
        kp = np.where(absent[..., None], np.nan, flat[..., :2])
        sc = np.where(absent, 0.0, flat[..., 2])
        boxes = keypoint_boxes(kp)
        for i, r in enumerate(rs):
            if "bbox" in r:
                x, y, w, h = r["bbox"]
                boxes[i] = (x, y, x + w, y + h)
        frames[image_id] = FramePoses(kp, sc, boxes, np.array([r["score"] for r in rs]), schema)
    return frames


CocoFrames = Iterable[tuple[int, FramePoses]] | Mapping[int, FramePoses] | VideoPoses


def frames_to_coco_results(
    frames: CocoFrames, category_id: int = 1, schema: KeypointSchema | None = None
) -> list[dict]:
    """Results-list entries for ``(image_id, poses)`` pairs, a mapping image_id -> poses, or a
    :class:`VideoPoses` (image id: the frame's ``image_id``, else its index).

    Keypoints are flattened ``x, y, score`` with absent joints ``0, 0, 0``; ``score`` is the person
    score (:attr:`FramePoses.scores`); ``bbox`` is the box as ``x, y, w, h``; ``track_id`` is
    written for tracked poses. ``schema``: re-index the joints into this schema first (a tracked
    video of any schema written as COCO-17 results); ``None`` writes the poses' own joints.
    """
    if isinstance(frames, VideoPoses):
        items: Iterable = [(f.image_id if f.image_id is not None else f.index, f.poses)
                           for f in frames.frames]
    else:
        items = frames.items() if isinstance(frames, Mapping) else frames
    out = []
    for image_id, poses in items:
        if not _is_int(image_id):
            raise InputError(f"image id must be an integer, got {image_id!r}")
        kp, sc = poses.keypoints, poses.keypoint_scores
        if schema is not None and schema is not poses.schema:
            kp, sc = convert_keypoints(kp, sc, poses.schema, schema)
        present = np.isfinite(kp).all(-1)
        kp = np.where(present[..., None], kp, 0.0)
        sc = np.where(present, sc, 0.0)
        flat = np.concatenate([kp, sc[..., None]], axis=-1).reshape(len(poses), 3 * kp.shape[1])
        for i in range(len(poses)):
            x1, y1, x2, y2 = poses.boxes[i]
            rec = {"image_id": int(image_id), "category_id": int(category_id),
                   "keypoints": [float(v) for v in flat[i]],
                   "score": float(poses.scores[i]),
                   "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
            if poses.track_ids is not None:
                rec["track_id"] = int(poses.track_ids[i])
            out.append(rec)
    return out


@dataclass(frozen=True)
class CocoResults:
    """A parsed results list as read from ``source`` (a file name), not yet checked: the
    evaluations check it against their ground truth (:func:`validate_coco_results`) and name
    ``source`` in their errors.

    Attributes:
        entries: The parsed JSON (a list of result objects when the file is right).
        source: Where it came from, for messages.
    """

    entries: Any
    source: str


# -- ground truth as poses -------------------------------------------------------------------
def coco_gt_to_frames(
    dataset: CocoDataset, schema: KeypointSchema | None = None, include_crowd: bool = False
) -> dict[int, FramePoses]:
    """Ground-truth people as ``{image_id: FramePoses}``, one entry per image in file order.

    Labelled joints (``v > 0``) get their coordinates and score 1; unlabelled joints are NaN with
    score 0. Boxes are the annotated ``bbox`` (xywh -> xyxy) with box score 1, so these frames can
    stand in for a detector ("pose AP with ground-truth boxes"). ``iscrowd`` regions are left out
    unless ``include_crowd``. ``schema`` defaults to the one the category's joint names match.
    """
    if schema is None:
        schema = dataset.schema
        if schema is None:
            raise InputError(f"{dataset.source}: joint names {list(dataset.keypoint_names)} match "
                             "no known schema; pass one")
    k = schema.num_keypoints
    if dataset.num_keypoints != k:
        raise InputError(f"{dataset.source}: {dataset.num_keypoints} joints per person, schema "
                         f"{schema.name} has {k}")
    frames = {}
    for image_id, anns in dataset.annotations_by_image().items():
        anns = [a for a in anns if "keypoints" in a and (include_crowd or not a["iscrowd"])]
        if not anns:
            frames[image_id] = FramePoses.empty(schema)
            continue
        flat = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), k, 3)
        labelled = flat[..., 2] > 0
        kp = np.where(labelled[..., None], flat[..., :2], np.nan)
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64)
        boxes[:, 2:] += boxes[:, :2]
        frames[image_id] = FramePoses(kp, labelled.astype(np.float64), boxes, np.ones(len(anns)),
                                      schema)
    return frames


# -- crowd index ------------------------------------------------------------------------------
def crowd_index(annotations: Iterable[dict], min_joints: int = MIN_JOINTS_FOR_CROWD_INDEX) -> float:
    """Crowd index of one image from its ground-truth annotations (COCO layout dicts).

    Each annotation needs ``keypoints`` (flat ``x, y, v``) and ``bbox`` (``x, y, w, h``);
    ``iscrowd`` defaults to 0 and ``num_keypoints`` to the count of ``v > 0``.

    The rule (the CrowdPose paper, Sec. 3): ``CI = 1/n sum_i N_b(i) / N_a(i)`` where, for person
    ``i``, ``N_a(i)`` counts ``i``'s own labelled joints and ``N_b(i)`` the labelled joints of
    *other* people that lie inside ``i``'s box. The paper leaves out which people take part; the
    released ``crowdIndex`` values of CrowdPose val are reproduced exactly (all 2000 images, after
    rounding to the stored two decimals) by this reading:

    - persons ``i`` are the non-crowd annotations with at least ``min_joints`` (4) labelled
      joints, counted by the file's ``num_keypoints`` (CrowdPose counts its 12 body joints there,
      COCO all 17);
    - ``N_a(i)`` counts all of ``i``'s labelled joints (``v > 0``);
    - ``N_b(i)`` counts every other annotation's labelled joints inside the closed box
      ``[x, x+w] x [y, y+h]`` (crowd annotations and people with few joints included);
    - an image without such persons has index 0.
    """
    anns = [a for a in annotations if "keypoints" in a]
    if not anns:
        return 0.0
    points = []
    for a in anns:
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        points.append(kp[kp[:, 2] > 0, :2])
    boxes = np.array([[float(v) for v in a["bbox"]] for a in anns], dtype=np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    counted = np.array([not a.get("iscrowd", 0) and a.get("num_keypoints", len(p)) >= min_joints
                        for a, p in zip(anns, points)], dtype=bool)
    return crowd_index_of(points, boxes, counted)


def crowd_index_of(points: list[np.ndarray], boxes: np.ndarray, counted: np.ndarray) -> float:
    """The crowd index ``1/n sum_i N_b(i) / N_a(i)`` of people given as arrays (the rule of
    :func:`crowd_index`, which reads annotations; this also serves predicted poses).

    Args:
        points: Per person an ``(n_i, 2)`` array of its joints (labelled, or confident enough).
        boxes: ``(m, 4)`` xyxy boxes, pixels; a joint inside the closed box counts.
        counted: ``(m,)`` bool, the person is one of the ``i`` averaged over (its own joints
            count as others' ``N_b`` either way).
    """
    pts = np.concatenate(points) if points else np.zeros((0, 2))
    own = np.concatenate([np.full(len(p), i) for i, p in enumerate(points)]) if points else \
        np.zeros(0, dtype=int)
    ratios = []
    for i, p in enumerate(points):
        if not counted[i] or len(p) == 0:
            continue
        x0, y0, x1, y1 = boxes[i]
        inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
        ratios.append(int(np.count_nonzero(inside & (own != i))) / len(p))
    return float(np.mean(ratios)) if ratios else 0.0


def oks_terms(ref: np.ndarray, other: np.ndarray, area: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """COCO's per-joint OKS term ``exp(-d^2 / (2 area (2 sigma)^2))`` of every joint of each
    ``other`` pose against the same joint of each ``ref`` pose.

    Args:
        ref: ``(n, k, 2)`` joints, NaN where absent.
        other: ``(m, k, 2)`` joints, NaN where absent.
        area: ``(n,)`` the scale ``s^2`` of each ``ref`` pose, squared pixels (positive).
        sigmas: ``(k,)`` the schema's OKS sigmas.

    Returns:
        ``(n, m, k)``; NaN where either joint is absent (the OKS mean over ``ref``'s joints is the
        caller's: which joints count, and what an absent prediction scores, differ by use).
    """
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((np.asarray(ref, np.float64)[:, None] - np.asarray(other, np.float64)[None]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * var * np.asarray(area, np.float64)[:, None, None]))
