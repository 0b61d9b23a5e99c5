"""What SPPE fine-tuning optimises, passed in by its caller.

The fine-tuning (:class:`~posetracker.estimators.training.loop.Trainer`, the crops of
:class:`~posetracker.estimators.training.data.CropMaker`, the STN of
:class:`~posetracker.estimators.training.stn.STNTrainer`) renders target heatmaps and compares the
network's heatmaps with them, but does not decide how: the application passes CrowdPose's
joint-candidate target and loss (:mod:`posetracker.association.loss`) in, so ``estimators`` never
imports ``association``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

#: ``(targets (b, k, 2), interference (b, k, q, 2), size (h, w), sigma, mu, target_mask (b, k),
#: interference_mask (b, k, q)) -> (b, k, h, w)`` target heatmaps; coordinates in heatmap cells,
#: ``sigma`` in cells, ``mu`` the height of the interference peaks. With ``q = 0`` (no
#: interference) the own joints' peaks alone.
TargetFn = Callable[..., torch.Tensor]

#: ``(pred (b, k, h, w), target (b, k, h, w), weights (b, k) or None) -> scalar`` loss tensor.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class TrainingLoss:
    """The target heatmaps and the loss that fine-tuning minimises.

    Attributes:
        targets: Renders a batch's target heatmaps (:data:`TargetFn`).
        loss: Compares predicted with target heatmaps, weighted per joint (:data:`LossFn`).
    """

    targets: TargetFn
    loss: LossFn
