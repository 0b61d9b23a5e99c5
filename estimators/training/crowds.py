"""Crowd compositor: crowded, occluded training and validation images from ordinary annotated ones.

COCO person annotations carry segmentation polygons. A *composite* is a background image with one
or two annotated people from other images cut out by their polygons and pasted over it so that
they overlap one of its real people (the way people stand in a crowd):

1. The source images are split into train and validation first (``val_fraction``, seeded); a
   composite uses a background and donors of one split only, so no source image is in both.
2. Per composite, a real person of the background is the *anchor*; each pasted person is scaled
   to ``U(0.7, 1.2)`` x the anchor's box height, stands with its feet near the anchor's, and is
   moved sideways by ``U(0.25, 0.6)`` x the two boxes' mean width (left or right), so the two
   overlap and the pasted one is in front.
3. The pasted person's keypoints, box, polygons and area (the polygon area scaled) join the
   ground truth; pasted joints outside the image become unlabelled (v = 0).
4. Every earlier person's labelled joint that now lies under the pasted cut-out is marked occluded
   (v = 1: labelled, not visible); its position is still the truth.

The output is a COCO keypoint file per split with ``crowdIndex`` per image (CrowdPose's rule,
:func:`posetracker.core.coco.crowd_index`) and ``source_image_ids`` (the background's and
donors' ids) so the split can be audited. Everything is deterministic for a seed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posetracker.core.coco import CocoDataset, crowd_index
from posetracker.core.errors import InputError


@dataclass(frozen=True)
class CrowdSettings:
    """Compositor settings.

    Attributes:
        per_image: Composites per background image.
        val_fraction: Fraction of the source images kept for validation.
        max_pasted: Most people pasted into one composite (1 or 2 drawn uniformly up to this).
        min_donor_joints: Donors need at least this many labelled joints.
        min_donor_height: Donors' boxes at least this tall, pixels (small cut-outs are mostly edge).
        height_range: Pasted height / anchor height, uniform in this range.
        shift_range: Sideways offset / mean box width, uniform in this range (left or right).
        seed: Random seed.
        jpeg_quality: Quality of the written composites.
    """

    per_image: int = 3
    val_fraction: float = 0.3
    max_pasted: int = 2
    min_donor_joints: int = 6
    min_donor_height: float = 80.0
    height_range: tuple[float, float] = (0.7, 1.2)
    shift_range: tuple[float, float] = (0.25, 0.6)
    seed: int = 0
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.per_image < 1 or self.max_pasted < 1:
            raise ValueError("per_image and max_pasted must be at least 1")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


def _polygons(ann: dict) -> list[np.ndarray]:
    seg = ann.get("segmentation")
    if not isinstance(seg, list):
        return []  # RLE (crowd regions) cannot be cut out as polygons
    return [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in seg if len(p) >= 6]


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def split_images(image_ids: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Image ids split into ``(train, val)`` (seeded shuffle; at least one image in each)."""
    ids = sorted(image_ids)
    if len(ids) < 2:
        raise InputError("the crowd compositor needs at least 2 annotated images to split")
    order = np.random.default_rng([seed, 1]).permutation(len(ids))
    n_val = min(max(1, round(val_fraction * len(ids))), len(ids) - 1)
    val = sorted(ids[i] for i in order[:n_val])
    train = sorted(ids[i] for i in order[n_val:])
    return train, val


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _paste(canvas: np.ndarray, donor: np.ndarray, polys: list[np.ndarray], M: np.ndarray
           ) -> np.ndarray:
    """Blend the donor's polygon cut-out, warped by ``M`` ``(2, 3)``, onto ``canvas`` in place;
    returns the warped cut-out mask ``(H, W)`` float in [0, 1]."""
    import cv2

    mask = np.zeros(donor.shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polys], 255)
    H, W = canvas.shape[:2]
    warped = cv2.warpAffine(donor, M, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = cv2.warpAffine(mask, M, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    a = (alpha.astype(np.float32) / 255.0)[..., None]
    canvas[:] = np.round(a * warped + (1 - a) * canvas).astype(np.uint8)
    return a[..., 0]


def _transform_person(ann: dict, s: float, t: np.ndarray, W: int, H: int) -> dict:
    """The donor's annotation moved by ``x -> s x + t`` (keypoints, box, polygons, area)."""
    kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3).copy()
    lab = kp[:, 2] > 0
    kp[lab, :2] = kp[lab, :2] * s + t
    out_of_image = lab & ((kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] > W - 1) | (kp[:, 1] > H - 1))
    kp[out_of_image] = 0
    x, y, w, h = ann["bbox"]
    x0, y0 = np.clip(np.array([x, y]) * s + t, 0, [W - 1, H - 1])
    x1, y1 = np.clip(np.array([x + w, y + h]) * s + t, 0, [W - 1, H - 1])
    polys = [p * s + t for p in _polygons(ann)]
    return {
        "keypoints": [float(round(v, 2)) for v in kp.reshape(-1)],
        "num_keypoints": int((kp[:, 2] > 0).sum()),
        "bbox": [float(round(v, 2)) for v in (x0, y0, x1 - x0, y1 - y0)],
        "segmentation": [[float(round(v, 2)) for v in p.reshape(-1)] for p in polys],
        "area": float(ann.get("area", sum(_polygon_area(p) for p in _polygons(ann)))) * s * s,
        "iscrowd": 0, "category_id": ann["category_id"],
    }


def _occlude(anns: list[dict], mask: np.ndarray) -> int:
    """Mark labelled joints of ``anns`` under the cut-out ``mask`` (> 0.5) occluded; returns how many."""
    H, W = mask.shape
    n = 0
    for a in anns:
        kp = np.asarray(a.get("keypoints") or [], dtype=np.float64).reshape(-1, 3)
        for j in range(len(kp)):
            if kp[j, 2] == 2:
                xi, yi = int(round(kp[j, 0])), int(round(kp[j, 1]))
                if 0 <= xi < W and 0 <= yi < H and mask[yi, xi] > 0.5:
                    kp[j, 2] = 1
                    n += 1
        if len(kp):
            a["keypoints"] = [float(v) for v in kp.reshape(-1)]
    return n


def make_crowds(ds: CocoDataset, images: str | Path, out: str | Path,
                settings: CrowdSettings = CrowdSettings()) -> dict[str, dict]:
    """Write ``out/{train,val}/*.jpg`` and ``out/{train,val}.json`` from the annotations ``ds``
    (read from the file ``ds.source``) and their images; returns per split the counts
    (``images``, ``people``, ``pasted``, ``sources``, ``occluded`` joints, mean ``crowd_index``).

    Raises:
        InputError: unreadable images, annotations without COCO-17 joints, or too few usable
            people.
    """
    annotations = ds.source
    if ds.num_keypoints != 17:
        raise InputError(f"{annotations}: {ds.num_keypoints} joints per person; the compositor "
                         "takes COCO-17 annotations with segmentation polygons")
    image_dir, out = Path(images), Path(out)
    if not image_dir.is_dir():
        raise InputError(f"images {image_dir}: no such folder")
    by_image = ds.annotations_by_image()
    records = {int(im["id"]): im for im in ds.images}
    annotated = [i for i, anns in by_image.items()
                 if any(a.get("num_keypoints", 0) > 0 and not a.get("iscrowd") for a in anns)]
    missing = [records[i]["file_name"] for i in annotated
               if not (image_dir / records[i]["file_name"]).is_file()]
    if missing:
        raise InputError(f"images {image_dir}: {len(missing)} of {len(annotated)} images are "
                         f"missing (e.g. {missing[0]})")
    train_ids, val_ids = split_images(annotated, settings.val_fraction, settings.seed)
    summary: dict[str, dict] = {}
    next_ann = 1
    for split, ids in (("train", train_ids), ("val", val_ids)):
        summary[split], next_ann = _make_split(ds, by_image, records, split, ids, image_dir, out,
                                               settings, next_ann)
    return summary


def _make_split(ds: CocoDataset, by_image: dict[int, list[dict]], records: dict[int, dict], split: str,
                ids: list[int], image_dir: Path, out: Path, settings: CrowdSettings,
                next_ann: int) -> tuple[dict, int]:
    """The composites of one split (``ids``: its background images; ``by_image`` and ``records``:
    the annotations and image records of ``ds`` by image id), written to ``out/{split}/`` and
    ``out/{split}.json``; returns its counts and the next free annotation id (ids run on across
    the splits from ``next_ann``)."""
    import cv2

    from posetracker.core.fileio import atomic_write, atomic_write_text

    annotations = ds.source
    rng = np.random.default_rng([settings.seed, 0 if split == "train" else 1])
    donors = [a for i in ids for a in by_image[i]
              if not a.get("iscrowd") and a.get("num_keypoints", 0) >= settings.min_donor_joints
              and a["bbox"][3] >= settings.min_donor_height and _polygons(a)]
    if not donors:
        raise InputError(f"{annotations}: no {split} person with polygons and at least "
                         f"{settings.min_donor_joints} joints to paste")
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    images_out, anns_out = [], []
    pasted_total = occluded_total = 0
    cache: dict[int, np.ndarray] = {}

    def image(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = _read_rgb(image_dir / records[i]["file_name"])
        return cache[i]

    for bg_id in ids:
        anchors = [a for a in by_image[bg_id]
                   if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
        for c in range(settings.per_image):
            canvas = image(bg_id).copy()
            H, W = canvas.shape[:2]
            people = [copy.deepcopy(dict(a)) for a in by_image[bg_id]]
            sources = [bg_id]
            count = int(rng.integers(1, settings.max_pasted + 1))
            candidates = [d for d in donors if d["image_id"] != bg_id]
            if not candidates:
                continue
            pasted, occluded = _paste_people(canvas, people, sources, anchors, candidates, count,
                                             image, rng, settings)
            pasted_total += pasted
            occluded_total += occluded
            new_id = len(images_out) + 1 + (0 if split == "train" else 10_000_000)
            name = f"{split}_{bg_id:012d}_{c}.jpg"
            ok, enc = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
            if not ok:
                raise InputError(f"cannot encode composite {name}")
            atomic_write(folder / name, lambda tmp, data=enc.tobytes(): tmp.write_bytes(data))
            for p in people:
                p["image_id"] = new_id
                p["id"] = next_ann
                next_ann += 1
                anns_out.append(p)
            images_out.append({"id": new_id, "file_name": name, "width": W, "height": H,
                               "source_image_ids": sorted(set(sources)),
                               "crowdIndex": round(crowd_index(people), 4)})
    doc = {"info": {"description": f"crowd composites ({split}) of {Path(annotations).name}, "
                    f"seed {settings.seed}"},
           "images": images_out, "annotations": anns_out, "categories": list(ds.categories)}
    atomic_write_text(out / f"{split}.json", json.dumps(doc))
    counts = {
        "images": len(images_out), "people": len(anns_out), "pasted": pasted_total,
        "sources": len(ids), "occluded": occluded_total,
        "crowd_index": float(np.mean([im["crowdIndex"] for im in images_out])) if images_out else 0.0,
    }
    return counts, next_ann


def _paste_people(canvas: np.ndarray, people: list[dict], sources: list[int], anchors: list[dict],
                  candidates: list[dict], count: int, image: Callable[[int], np.ndarray],
                  rng: np.random.Generator, settings: CrowdSettings) -> tuple[int, int]:
    """Paste ``count`` donors from ``candidates`` beside people of ``anchors`` onto the
    ``(H, W, 3)`` RGB ``canvas`` (in place), adding the pasted people to ``people`` and their
    images to ``sources``; returns how many were pasted and how many joints they occluded."""
    H, W = canvas.shape[:2]
    pasted = occluded = 0
    for _ in range(count):
        anchor = anchors[int(rng.integers(len(anchors)))]
        donor = candidates[int(rng.integers(len(candidates)))]
        ax, ay, aw, ah = anchor["bbox"]
        dx, dy, dw, dh = donor["bbox"]
        s = float(np.clip(ah * rng.uniform(*settings.height_range) / max(dh, 1.0), 0.3, 3.0))
        pw = dw * s
        side = 1.0 if rng.random() < 0.5 else -1.0
        cx = ax + aw / 2 + side * rng.uniform(*settings.shift_range) * (aw + pw) / 2
        bottom = ay + ah + rng.uniform(-0.1, 0.1) * ah
        t = np.array([cx - (dx + dw / 2) * s, bottom - (dy + dh) * s])
        donor_img = image(int(donor["image_id"]))
        M = np.array([[s, 0, t[0]], [0, s, t[1]]], dtype=np.float64)
        mask = _paste(canvas, donor_img, _polygons(donor), M)
        occluded += _occlude(people, mask)
        moved = _transform_person(donor, s, t, W, H)
        if moved["num_keypoints"] == 0:
            continue
        people.append(moved)
        sources.append(int(donor["image_id"]))
        pasted += 1
    return pasted, occluded
