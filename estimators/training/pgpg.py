"""Pose-guided proposal generator (PGPG) of RMPE (Fang et al., ICCV 2017, Sec. 3.4).

Training crops should look like the detector's boxes, not like ground-truth boxes, and how a
detector's box sits around a person depends on the pose (an outstretched arm, a crouch). PGPG:

1. **align** every annotated pose: translate the hip midpoint to the origin and scale so that the
   torso (shoulder midpoint to hip midpoint) has length 1 (people without both shoulders and both
   hips are not aligned; they use the pooled distribution);
2. **atomic poses**: k-means of the aligned poses (missing joints filled with the mean aligned
   pose) into ``clusters`` centres;
3. **offsets**: run the detector on the training images, match its boxes to the ground-truth
   boxes (greedy by IoU >= ``min_iou``), and record each match's offset
   ``(dx1 / w, dy1 / h, dx2 / w, dy2 / h)``: the detector box's corners minus the ground-truth
   box's, over the ground-truth box's width ``w`` and height ``h``;
4. **sampling**: for a training person, take its atomic pose, draw one of that pose's recorded
   offsets (the pooled ones when the pose has fewer than ``min_samples``) plus Gaussian noise
   of ``bandwidth`` (a kernel density estimate of the distribution), and crop that box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posetracker.core.boxes import box_iou, greedy_pairs
from posetracker.core.errors import InputError
from posetracker.core.schemas import COCO17
from posetracker.estimators.training.data import Person, TrainingData

_LS, _RS, _LH, _RH = (COCO17.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip",
                                                 "right_hip"))


def align_pose(keypoints: np.ndarray) -> np.ndarray | None:
    """``(17, 3)`` keypoints -> ``(17, 2)`` torso-aligned xy (NaN where unlabelled), or ``None``
    without both shoulders and both hips (or a zero-length torso)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if not (kp[[_LS, _RS, _LH, _RH], 2] > 0).all():
        return None
    hip = (kp[_LH, :2] + kp[_RH, :2]) / 2
    torso = np.linalg.norm((kp[_LS, :2] + kp[_RS, :2]) / 2 - hip)
    if torso < 1e-6:
        return None
    out = (kp[:, :2] - hip) / torso
    out[kp[:, 2] <= 0] = np.nan
    return out


def box_offset(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(4,)`` offset of a detection box from a ground-truth box (xyxy), in ground-truth box
    widths / heights."""
    w, h = max(gt[2] - gt[0], 1.0), max(gt[3] - gt[1], 1.0)
    return (np.asarray(det[:4], float) - gt) / np.array([w, h, w, h])


@dataclass(frozen=True)
class PGPG:
    """A fitted PGPG.

    Attributes:
        centres: ``(c, 17, 2)`` atomic poses (torso-aligned).
        offsets: Per centre, ``(n_i, 4)`` recorded offsets (:func:`box_offset`).
        pooled: ``(n, 4)`` all recorded offsets.
        fill: ``(17, 2)`` mean aligned pose (fills unlabelled joints before assignment).
        bandwidth: Standard deviation of the noise added to a drawn offset.
        min_samples: A centre with fewer offsets samples from ``pooled``.
        people, matched: How many people were aligned, and detections matched (for reports).
        source: ``detector`` or ``jittered ground truth``.
    """

    centres: np.ndarray
    offsets: tuple[np.ndarray, ...]
    pooled: np.ndarray
    fill: np.ndarray
    bandwidth: float = 0.02
    min_samples: int = 5
    people: int = 0
    matched: int = 0
    source: str = "detector"

    def assign(self, keypoints: np.ndarray) -> int | None:
        """Atomic pose of a person ``(17, 3)``, or ``None`` when it cannot be aligned."""
        a = align_pose(keypoints)
        if a is None:
            return None
        a = np.where(np.isnan(a), self.fill, a)
        return int(np.argmin(((self.centres - a[None]) ** 2).sum(axis=(1, 2))))

    def sample_box(self, person: Person, rng: np.random.Generator) -> np.ndarray:
        """A detector-like box ``(4,)`` xyxy for ``person``."""
        c = self.assign(person.keypoints)
        pool = self.offsets[c] if c is not None and len(self.offsets[c]) >= self.min_samples \
            else self.pooled
        off = pool[int(rng.integers(len(pool)))] + rng.normal(0, self.bandwidth, 4)
        g = person.box
        w, h = g[2] - g[0], g[3] - g[1]
        box = g + off * np.array([w, h, w, h])
        # Keep a valid box: at least a quarter of the person's size in each direction.
        box[2] = max(box[2], box[0] + 0.25 * w)
        box[3] = max(box[3], box[1] + 0.25 * h)
        return box

    def sampler(self):
        """``(person, rng) -> box`` for :class:`posetracker.estimators.training.data.CropMaker`."""
        return self.sample_box

    # -- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": "posetracker-pgpg/1", "centres": self.centres.round(5).tolist(),
                "offsets": [o.round(5).tolist() for o in self.offsets],
                "pooled": self.pooled.round(5).tolist(), "fill": self.fill.round(5).tolist(),
                "bandwidth": self.bandwidth, "min_samples": self.min_samples,
                "people": self.people, "matched": self.matched, "source": self.source}

    def save(self, path: str | Path) -> None:
        from posetracker.core.fileio import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> PGPG:
        try:
            d = json.loads(Path(path).read_text())
            if d.get("format") != "posetracker-pgpg/1":
                raise ValueError("not a PGPG file")
            centres = np.asarray(d["centres"], dtype=np.float64).reshape(-1, 17, 2)
            offsets = tuple(np.asarray(o, dtype=np.float64).reshape(-1, 4) for o in d["offsets"])
            pooled = np.asarray(d["pooled"], dtype=np.float64).reshape(-1, 4)
            fill = np.asarray(d["fill"], dtype=np.float64).reshape(17, 2)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"cannot read PGPG file {path}: {e}") from None
        if len(offsets) != len(centres) or not len(pooled):
            raise InputError(f"PGPG file {path}: {len(centres)} centres, {len(offsets)} offset "
                             f"lists, {len(pooled)} pooled offsets")
        return cls(centres, offsets, pooled, fill, float(d.get("bandwidth", 0.02)),
                   int(d.get("min_samples", 5)), int(d.get("people", 0)),
                   int(d.get("matched", 0)), str(d.get("source", "detector")))


def match_detections(data: TrainingData, detections: dict[int, np.ndarray], min_iou: float = 0.5
                     ) -> list[tuple[Person, np.ndarray]]:
    """Greedy IoU matching (best pairs first, one-to-one) of each image's detections ``(m, 4+)``
    to its trainable people; returns ``(person, offset)`` pairs."""
    by_image: dict[int, list[Person]] = {}
    for p in data.people:
        by_image.setdefault(p.image_id, []).append(p)
    pairs = []
    for image_id, people in by_image.items():
        det = np.asarray(detections.get(image_id, np.zeros((0, 4))), dtype=np.float64)
        if not len(det):
            continue
        iou = box_iou(np.stack([p.box for p in people]), det[:, :4])
        for i, j in greedy_pairs(iou, min_iou):
            pairs.append((people[i], box_offset(det[j], people[i].box)))
    return pairs


def fit_pgpg(data: TrainingData, detections: dict[int, np.ndarray], clusters: int = 8,
             seed: int = 0, min_iou: float = 0.5, source: str = "detector") -> PGPG:
    """Fit atomic poses on ``data``'s people and the per-pose offset distributions of
    ``detections`` (``{image_id: (m, 4+) xyxy}``).

    Raises:
        InputError: no person can be aligned, or no detection matches a person.
    """
    from scipy.cluster.vq import kmeans2

    aligned = [a for a in (align_pose(p.keypoints) for p in data.people) if a is not None]
    if not aligned:
        raise InputError(f"{data.source}: no person with both shoulders and hips labelled for PGPG")
    A = np.stack(aligned)
    fill = np.nan_to_num(np.nanmean(A, axis=0))
    X = np.where(np.isnan(A), fill[None], A).reshape(len(A), -1)
    k = max(1, min(clusters, len(X)))
    centres, _ = kmeans2(X, k, minit="++", seed=np.random.default_rng(seed), iter=50)
    pg = PGPG(centres.reshape(k, 17, 2), tuple(np.zeros((0, 4)) for _ in range(k)),
              np.zeros((0, 4)), fill)
    pairs = match_detections(data, detections, min_iou)
    if not pairs:
        raise InputError(f"{data.source}: no detection matched a ground-truth person "
                         f"(IoU >= {min_iou}); cannot fit PGPG offsets")
    per: list[list[np.ndarray]] = [[] for _ in range(k)]
    for person, off in pairs:
        c = pg.assign(person.keypoints)
        if c is not None:
            per[c].append(off)
    pooled = np.stack([off for _, off in pairs])
    return PGPG(pg.centres, tuple(np.array(o).reshape(-1, 4) for o in per), pooled, fill,
                people=len(A), matched=len(pairs), source=source)


def jittered_boxes(data: TrainingData, seed: int = 0, scale: float = 0.08) -> dict[int, np.ndarray]:
    """Stand-in "detections" when no detector is run: every ground-truth box with Gaussian corner
    noise of ``scale`` x its size."""
    rng = np.random.default_rng([seed, 7])
    out: dict[int, list] = {}
    for p in data.people:
        w, h = p.box[2] - p.box[0], p.box[3] - p.box[1]
        out.setdefault(p.image_id, []).append(p.box + rng.normal(0, scale, 4) * [w, h, w, h])
    return {i: np.array(b) for i, b in out.items()}


def fit_pgpg_from_ground_truth(data: TrainingData, clusters: int = 8, seed: int = 0) -> PGPG:
    """PGPG with jittered ground-truth boxes as the detections (no detector run)."""
    return fit_pgpg(data, jittered_boxes(data, seed), clusters, seed,
                    source="jittered ground truth")


def detector_boxes(detector, data: TrainingData) -> dict[int, np.ndarray]:
    """The product's person detector (:class:`posetracker.estimators.rmpe.PersonDetector`) run on
    every training image with a trainable person: ``{image_id: (m, 5)}``."""
    from posetracker.estimators.training.data import ImageCache

    cache = ImageCache(capacity=2)
    ids = sorted({p.image_id for p in data.people})
    return {i: np.asarray(detector([cache(data.image_path(i))])[0]) for i in ids}
