"""Training data for the SPPE: annotated people, their crops, and their target heatmaps (rendered by
the caller's :class:`~posetracker.estimators.training.objective.TrainingLoss`: the joint-candidate
targets in the application).

Annotations are COCO-layout files with 17 COCO joints or 14 CrowdPose joints per person (CrowdPose's
12 body joints map onto COCO's; its head and neck have no COCO joint and are not trained; COCO's
face joints of a CrowdPose person are unlabelled, weight 0).

A crop is made exactly as the estimator makes it (:mod:`posetracker.estimators.transform`): the box
padded to the SPPE's aspect ratio and enlarged by ``scale_factor``, then, for training, jittered in
scale and position, rotated and mirrored by composing the crop -> image affine; pixels outside the
box enlarged by the estimator's ``mask_margin`` are blanked as the estimator does (when its
``mask_outside_box`` is on). Targets are on the SPPE's heatmap grid: cell ``i`` is crop pixel
``i * stride + cell_offset`` (0 for TinyPose).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from posetracker.core.coco import CocoDataset
from posetracker.core.errors import InputError
from posetracker.core.schemas import COCO17, CROWDPOSE14, index_map
from posetracker.estimators.config import SPPEConfig
from posetracker.estimators.training.config import TrainSettings
from posetracker.estimators.training.objective import TrainingLoss
from posetracker.estimators.transform import box_regions, crop_affines, crop_boxes, frames_to_tensor, image_to_crop

K = COCO17.num_keypoints


@dataclass(frozen=True)
class Person:
    """One annotated person to train on.

    Attributes:
        image_id: Its image.
        slot: Its index among the image's annotated people (:attr:`TrainingData.people_of_image`).
        box: ``(4,)`` xyxy image pixels.
        keypoints: ``(17, 3)`` COCO-17 x, y (pixel-index coordinates), v (0 = not labelled,
            1 = labelled but occluded, 2 = visible).
    """

    image_id: int
    slot: int
    box: np.ndarray
    keypoints: np.ndarray


@dataclass(frozen=True)
class TrainingData:
    """An annotation file's trainable people and where their images are.

    Attributes:
        source: The annotation file.
        image_dir: Folder of the images.
        images: ``{image_id: image record}`` (``file_name``, ``width``, ``height`` ...).
        people: People with at least ``min_joints`` labelled joints (not ``iscrowd``).
        people_of_image: ``{image_id: (n, 17, 3)}`` every annotated person of the image with
            keypoints (the interference joints of the joint-candidate target).
        schema_name: ``coco17`` or ``crowdpose14``: what the file holds.
        sha256: Hex sha256 of the annotation file's bytes.
    """

    source: str
    image_dir: Path
    images: dict
    people: tuple[Person, ...]
    people_of_image: dict
    schema_name: str
    sha256: str

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.images[image_id]["file_name"]


def _to_coco17(kp: np.ndarray, crowdpose: bool) -> np.ndarray:
    """``(k, 3)`` keypoints of the file's schema -> ``(17, 3)`` COCO-17."""
    if not crowdpose:
        return kp
    out = np.zeros((K, 3))
    m = index_map(CROWDPOSE14, COCO17)
    have = m >= 0
    out[m[have]] = kp[have]
    return out


def training_data(ds: CocoDataset, images: str | Path, sha256: str, min_joints: int = 1
                  ) -> TrainingData:
    """Check a training (or validation) ground truth, already read, and its image folder.

    Args:
        ds: The annotations (COCO layout; ``ds.source`` names the file).
        images: Folder of the images.
        sha256: Hex sha256 of the annotation file's bytes (recorded in checkpoints).
        min_joints: People with fewer labelled joints are not trained on.

    Raises:
        InputError: a joint count other than 17 (COCO) or 14 (CrowdPose), no trainable person, a
            missing image folder or missing images (one line with the count and the first
            missing file).
    """
    annotations, image_dir = ds.source, Path(images)
    k = ds.num_keypoints
    schema = ds.schema
    if schema is None and k in (K, CROWDPOSE14.num_keypoints):
        schema = COCO17 if k == K else CROWDPOSE14  # names spelled differently, count decides
    if schema not in (COCO17, CROWDPOSE14):
        raise InputError(f"{annotations}: {k} joints per person; training takes COCO-17 or "
                         f"CrowdPose-14 keypoints")
    crowdpose = schema is CROWDPOSE14
    if not image_dir.is_dir():
        raise InputError(f"images {image_dir}: no such folder")

    records = {int(im["id"]): im for im in ds.images}
    people: list[Person] = []
    of_image: dict[int, np.ndarray] = {}
    for image_id, anns in ds.annotations_by_image().items():
        kps = []
        for a in anns:
            if a.get("keypoints") is None:
                continue
            kp = _to_coco17(np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3), crowdpose)
            slot = len(kps)
            kps.append(kp)
            x, y, w, h = (float(v) for v in a["bbox"])
            if a.get("iscrowd") or w < 1 or h < 1 or int((kp[:, 2] > 0).sum()) < min_joints:
                continue
            people.append(Person(image_id, slot, np.array([x, y, x + w, y + h]), kp))
        of_image[image_id] = np.stack(kps) if kps else np.zeros((0, K, 3))
    if not people:
        raise InputError(f"{annotations}: no person with at least {min_joints} labelled joint(s)")
    needed = sorted({p.image_id for p in people})
    missing = [records[i]["file_name"] for i in needed
               if not (image_dir / str(records[i].get("file_name", ""))).is_file()]
    if missing:
        raise InputError(f"images {image_dir}: {len(missing)} of {len(needed)} images are missing "
                         f"(e.g. {missing[0]})")
    return TrainingData(annotations, image_dir, records, tuple(people), of_image, schema.name,
                        sha256)


class ImageCache:
    """Decoded RGB images ``(H, W, 3)`` uint8, the most recently used ``capacity`` kept."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._images: OrderedDict[Path, np.ndarray] = OrderedDict()

    def __call__(self, path: Path) -> np.ndarray:
        import cv2

        if path in self._images:
            self._images.move_to_end(path)
            return self._images[path]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read image {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self._images[path] = rgb
        if len(self._images) > self.capacity:
            self._images.popitem(last=False)
        return rgb


@dataclass
class Batch:
    """One training batch of ``b`` person crops.

    Attributes:
        crops: ``(b, 3, h, w)`` float32 RGB 0..255 (what the SPPE takes).
        targets: ``(b, 17, hh, hw)`` float32 target heatmaps.
        weights: ``(b, 17)`` float32: 1 where the crop's own joint is labelled and inside the map.
        own_cells: ``(b, 17, 2)`` float32 the own joints in heatmap cells (labels already mirrored).
        affines: ``(b, 2, 3)`` float64 crop pixel -> image pixel maps.
        image_index: ``(b,)`` int64 index of each crop's image in ``images``.
        images: The frames of the batch, ``(f, 3, H, W)`` float32 (for re-cropping, the STN).
        frame_sizes: ``(f, 2)`` true ``(h, w)`` of the frames.
        keep: ``(b, 4)`` xyxy image regions outside which the crop is blanked, or ``None``.
        flips: Whether each crop is mirrored (its joint labels are swapped).
    """

    crops: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    own_cells: torch.Tensor
    affines: torch.Tensor
    image_index: torch.Tensor
    images: torch.Tensor
    frame_sizes: np.ndarray
    keep: np.ndarray | None = None
    flips: list = field(default_factory=list)


#: ``(person, rng) -> (4,)`` xyxy box to crop instead of the ground-truth box (PGPG).
BoxSampler = Callable[[Person, np.random.Generator], np.ndarray]


class CropMaker:
    """Person crops and their target heatmaps for an SPPE.

    Args:
        data: The annotated people.
        input_size: SPPE input ``(h, w)`` pixels.
        heatmap_size: SPPE heatmap ``(hh, hw)`` cells.
        settings: Augmentation, ``scale_factor``, ``sigma`` and the target's ``mu``.
        loss: Its ``targets`` renders the target heatmaps.
        cell_offset: Crop pixel of heatmap cell 0 (the SPPE's convention; 0 for TinyPose).
        sppe_config: The estimator's crop masking (``mask_outside_box``, ``mask_margin``).
    """

    def __init__(self, data: TrainingData, input_size: tuple[int, int],
                 heatmap_size: tuple[int, int], settings: TrainSettings, loss: TrainingLoss,
                 cell_offset: float = 0.0, sppe_config: SPPEConfig = SPPEConfig(),
                 cache: ImageCache | None = None):
        self.data = data
        self.loss = loss
        self.input_size = tuple(input_size)
        self.heatmap_size = tuple(heatmap_size)
        self.stride = self.input_size[0] / self.heatmap_size[0]
        self.settings = settings
        self.cell_offset = cell_offset
        self.sppe_config = sppe_config
        self.cache = cache or ImageCache()
        self.flip = torch.as_tensor(COCO17.flip_permutation, dtype=torch.long)

    def _augment(self, box: np.ndarray, rng: np.random.Generator, augment: bool
                 ) -> tuple[torch.Tensor, bool]:
        """Crop -> image affine ``(1, 2, 3)`` of a box, with the random scale, shift, rotation
        and mirroring; and whether it mirrors."""
        s = self.settings
        h, w = self.input_size
        region = box_regions(box[None], self.input_size, s.scale_factor)
        flip = False
        R = torch.eye(3, dtype=torch.float64)
        if augment:
            bw, bh = box[2] - box[0], box[3] - box[1]
            scale = 1.0 + rng.uniform(-s.scale_jitter, s.scale_jitter)
            region[:, 2:] *= scale
            region[:, 0] += rng.uniform(-s.shift_jitter, s.shift_jitter) * bw
            region[:, 1] += rng.uniform(-s.shift_jitter, s.shift_jitter) * bh
            # Rotation and mirroring act on crop pixels (square in the image: W/w == H/h),
            # about the crop's centre.
            c = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)
            if rng.random() < s.rotation_prob:
                a = math.radians(rng.uniform(-s.rotation, s.rotation))
                rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]],
                                   dtype=torch.float64)
                R[:2, :2] = rot
                R[:2, 2] = c - rot @ c
            if rng.random() < s.flip_prob:
                flip = True
                F = torch.tensor([[-1.0, 0, w - 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
                R = R @ F
        A = crop_affines(region, self.input_size)
        A3 = torch.cat([A[0], torch.tensor([[0, 0, 1.0]], dtype=torch.float64)])
        return (A3 @ R)[:2][None], flip

    def to_cells(self, image_points: np.ndarray, affine: torch.Tensor) -> torch.Tensor:
        """Image pixels ``(n, 2)`` -> heatmap cells ``(n, 2)`` of the crop ``affine`` ``(1, 2, 3)``."""
        crop = image_to_crop(torch.as_tensor(image_points, dtype=torch.float64)[None], affine)[0]
        return (crop - self.cell_offset) / self.stride

    def _inside(self, cells: torch.Tensor) -> torch.Tensor:
        hh, hw = self.heatmap_size
        return ((cells[..., 0] >= -0.5) & (cells[..., 0] <= hw - 0.5)
                & (cells[..., 1] >= -0.5) & (cells[..., 1] <= hh - 0.5))

    def plan(self, indices: list[int] | np.ndarray, rng: np.random.Generator, augment: bool = True,
             box_sampler: BoxSampler | None = None) -> CropPlan:
        """Choose the crops of ``data.people[indices]``: boxes (ground truth, or ``box_sampler``'s)
        and crop -> image affines with the random augmentation."""
        people = [self.data.people[int(i)] for i in indices]
        boxes, affines, flips = [], [], []
        for p in people:
            box = p.box if box_sampler is None else np.asarray(box_sampler(p, rng), dtype=np.float64)
            A, flip = self._augment(box, rng, augment)
            boxes.append(box)
            affines.append(A[0])
            flips.append(flip)
        return CropPlan(people, np.stack(boxes), torch.stack(affines), flips)

    def batch(self, indices: list[int] | np.ndarray, rng: np.random.Generator, augment: bool = True,
              box_sampler: BoxSampler | None = None) -> Batch:
        """The crops and targets of ``data.people[indices]``."""
        return self.make(self.plan(indices, rng, augment, box_sampler))

    def make(self, plan: CropPlan, affines: torch.Tensor | None = None) -> Batch:
        """Crops and targets of a plan, optionally with other crop -> image ``affines``
        ``(b, 2, 3)`` (e.g. the STN's refinement of the plan's)."""
        people = plan.people
        A_all = (plan.affines if affines is None else affines).detach().to("cpu", torch.float64)
        frames: list[np.ndarray] = []
        frame_of: dict[int, int] = {}
        for p in people:
            if p.image_id not in frame_of:
                frame_of[p.image_id] = len(frames)
                frames.append(self.cache(self.data.image_path(p.image_id)))
        own, own_mask, others, others_mask, keep = [], [], [], [], []
        for p, box, A1, flip in zip(people, plan.boxes, A_all, plan.flips):
            A = A1[None]
            cells = self.to_cells(p.keypoints[:, :2], A)
            mask = torch.as_tensor(p.keypoints[:, 2] > 0) & self._inside(cells)
            region = None
            if self.sppe_config.mask_outside_box:
                pad = self.sppe_config.mask_margin * (box[2:] - box[:2])
                region = np.concatenate([box[:2] - pad, box[2:] + pad])
                keep.append(region)
            rest = np.delete(self.data.people_of_image[p.image_id], p.slot, axis=0)  # (q, 17, 3)
            q = len(rest)
            if q:
                oc = self.to_cells(rest[..., :2].reshape(-1, 2), A).reshape(q, K, 2)
                om = torch.as_tensor(rest[..., 2] > 0) & self._inside(oc)
                if region is not None:  # blanked joints cannot be seen: no interference peak
                    xy = torch.as_tensor(rest[..., :2])
                    om &= ((xy[..., 0] >= region[0]) & (xy[..., 0] <= region[2])
                           & (xy[..., 1] >= region[1]) & (xy[..., 1] <= region[3]))
            else:
                oc, om = torch.zeros(0, K, 2, dtype=torch.float64), torch.zeros(0, K, dtype=torch.bool)
            if flip:  # a mirrored left wrist looks like a right wrist
                cells, mask = cells[self.flip], mask[self.flip]
                oc, om = oc[:, self.flip], om[:, self.flip]
            own.append(cells)
            own_mask.append(mask)
            others.append(oc.permute(1, 0, 2))   # (17, q, 2)
            others_mask.append(om.T)            # (17, q)
        b = len(people)
        qmax = max(o.shape[1] for o in others)
        interf = torch.zeros(b, K, qmax, 2, dtype=torch.float64)
        interf_mask = torch.zeros(b, K, qmax, dtype=torch.bool)
        for i, (o, m) in enumerate(zip(others, others_mask)):
            interf[i, :, : o.shape[1]] = o
            interf_mask[i, :, : m.shape[1]] = m
        own_t = torch.stack(own)
        own_m = torch.stack(own_mask)
        targets = self.loss.targets(own_t.float(), interf.float(), self.heatmap_size,
                                    self.settings.sigma, self.settings.target_mu, own_m, interf_mask)
        images = frames_to_tensor(frames)
        sizes = np.array([f.shape[:2] for f in frames])
        fidx = torch.tensor([frame_of[p.image_id] for p in people], dtype=torch.long)
        keep_arr = np.stack(keep) if keep else None
        crops = crop_boxes(images, fidx, A_all, self.input_size, frame_sizes=sizes,
                           keep_regions=keep_arr)
        return Batch(crops=crops, targets=targets.float(), weights=own_m.float(),
                     own_cells=own_t.float(), affines=A_all, image_index=fidx, images=images,
                     frame_sizes=sizes, keep=keep_arr, flips=list(plan.flips))


@dataclass
class CropPlan:
    """The chosen crops of a batch: its people, their boxes ``(b, 4)`` xyxy, crop -> image
    affines ``(b, 2, 3)`` float64 (augmentation included) and whether each crop is mirrored."""

    people: list
    boxes: np.ndarray
    affines: torch.Tensor
    flips: list
