"""The STN of RMPE trained with the parallel SPPE (Fang et al., ICCV 2017, Sec. 3.2).

The spatial transformer (:class:`posetracker.estimators.transform.STN`) refines each box crop with
a learned affine. Trained only through the main SPPE it could drift anywhere the SPPE copes with;
RMPE adds a *parallel* SPPE branch: a frozen copy of the SPPE looks at the STN's crops, and its
targets are the ground-truth poses moved to the centre of the crop. Its error can only be reduced
by the STN, which thus learns to centre people in their crops (the regulariser the paper
describes); the frozen branch is discarded after training.

Per step (:meth:`STNTrainer.refine_and_step`):

1. the STN predicts refined crop -> image affines from the box crops;
2. the image is re-cropped with them (one differentiable ``grid_sample``,
   :func:`posetracker.estimators.transform.crop_boxes`);
3. the frozen SPPE gives heatmaps of the new crops; the target is the own joints' Gaussians after
   translating the labelled joints' bounding-box centre to the crop centre;
4. MSE (weighted by the labelled joints) x ``stn_weight``, back-propagated into the STN only.

The main SPPE then trains on the STN's (detached) crops, as it will see them in the estimator.
"""

from __future__ import annotations

import copy

import torch

from posetracker.estimators.sppe import SPPE
from posetracker.estimators.training.config import TrainSettings
from posetracker.estimators.training.data import Batch, CropMaker, CropPlan
from posetracker.estimators.training.objective import TrainingLoss
from posetracker.estimators.transform import STN, crop_boxes


def centred_cells(cells: torch.Tensor, mask: torch.Tensor, heatmap_size: tuple[int, int],
                  cell_offset: float, stride: float, input_size: tuple[int, int]) -> torch.Tensor:
    """Joints ``(b, k, 2)`` (heatmap cells) translated so that the centre of the labelled joints'
    bounding box lies at the crop centre (crop pixel ``((w - 1) / 2, (h - 1) / 2)``)."""
    big = torch.tensor(1e9, dtype=cells.dtype)
    m = mask[..., None]
    lo = torch.where(m, cells, big).amin(dim=1)
    hi = torch.where(m, cells, -big).amax(dim=1)
    centre = (lo + hi) / 2
    h, w = input_size
    target = (torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=cells.dtype) - cell_offset) / stride
    shift = torch.where(mask.any(1, keepdim=True), target - centre, torch.zeros_like(centre))
    return cells + shift[:, None, :]


class STNTrainer:
    """The STN and its frozen parallel SPPE branch.

    Args:
        sppe: The SPPE being fine-tuned (its current network is copied and frozen as the parallel
            branch).
        settings: ``stn_lr``, ``stn_weight``, ``sigma``.
        loss: The parallel branch's target (its ``targets`` of the own joints alone) and loss.
    """

    def __init__(self, sppe: SPPE, settings: TrainSettings, loss: TrainingLoss):
        self.device = sppe.device
        self.loss = loss
        self.input_size = tuple(sppe.input_size)
        self.settings = settings
        self.stn = STN().to(self.device)
        self.parallel = copy.deepcopy(sppe.network).eval()
        for p in self.parallel.parameters():
            p.requires_grad_(False)
        self.opt = torch.optim.Adam(self.stn.parameters(), lr=settings.stn_lr)
        self.last_loss = float("nan")

    def refine_and_step(self, plan: CropPlan, maker: CropMaker) -> Batch:
        """One STN step on a planned batch; returns the batch cropped with the refined affines
        (for the main SPPE)."""
        box = maker.make(plan)
        self.stn.train()
        crops0 = box.crops.to(self.device)
        A1 = self.stn.refine(crops0, box.affines.to(self.device), self.input_size)
        images = box.images.to(self.device)
        crops1 = crop_boxes(images, box.image_index.to(self.device), A1, self.input_size,
                            frame_sizes=box.frame_sizes, keep_regions=box.keep)
        refined = maker.make(plan, A1.detach())
        hm = self.parallel.heatmaps(crops1)
        cells = centred_cells(refined.own_cells.double(), refined.weights > 0, maker.heatmap_size,
                              maker.cell_offset, maker.stride, self.input_size)
        no_others = cells.new_zeros((*cells.shape[:2], 0, 2), dtype=torch.float32)
        target = self.loss.targets(cells.float(), no_others, maker.heatmap_size,
                                   self.settings.sigma, 0.0, refined.weights > 0).to(self.device)
        loss = self.settings.stn_weight * self.loss.loss(
            hm.float(), target, refined.weights.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.stn.eval()
        self.last_loss = float(loss.detach())
        return refined
