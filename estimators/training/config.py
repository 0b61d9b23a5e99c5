"""Settings of SPPE fine-tuning (``posetracker train sppe``), as a frozen dataclass.

One source of truth for every training default; the CLI's flags override fields of
:class:`TrainSettings` and the checkpoint records the whole instance (:meth:`TrainSettings.to_json`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TrainSettings:
    """What a fine-tuning run does.

    Attributes:
        steps: Optimizer steps in total (a resumed run continues up to this count).
        batch_size: Person crops per step.
        lr: Adam learning rate.
        weight_decay: Adam's L2 penalty.
        loss: ``jc``: the joint-candidate target of CrowdPose (own joints at height 1, the same
            joint type of every other annotated person inside the crop at height ``mu``);
            ``mse``: plain heatmap regression (``mu`` ignored, 0).
        mu: Height of the interference peaks in the ``jc`` target (the paper's 0.5).
        sigma: Standard deviation of the target Gaussians, heatmap cells (TinyPose's 2).
        scale_factor: Crop region = box padded to the SPPE's aspect ratio x this (the estimator's).
        scale_jitter: Region size multiplied by a factor uniform in ``1 +- scale_jitter``.
        shift_jitter: Region centre moved by up to this fraction of the box's width / height.
        rotation: Largest rotation of a crop, degrees (uniform in +-), applied with ``rotation_prob``.
        rotation_prob: Probability of rotating a crop.
        flip_prob: Probability of mirroring a crop (left and right joints swapped).
        pgpg: Sample the crop boxes from the PGPG offset distributions (``pgpg_file``) instead
            of the uniform jitter above (RMPE's pose-guided proposal generator).
        pgpg_file: A fitted PGPG model (``posetracker train pgpg``); empty = fit one from the
            training annotations with jittered ground-truth boxes as "detections".
        stn: Train an STN in front of the SPPE, with the frozen parallel SPPE branch (RMPE).
        stn_weight: Weight of the parallel branch's loss.
        stn_lr: Learning rate of the STN.
        val_every: Validate every this many steps (0: only at the end).
        val_images: Most validation images per validation (0: all).
        checkpoint_every: Write the checkpoint every this many steps (and at the end).
        min_joints: People with fewer labelled joints are not trained on.
        seed: Random seed (crops, augmentation, order); a resumed run continues the sequence.
        threads: torch CPU threads (0: torch's default).
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    loss: Literal["jc", "mse"] = "jc"
    mu: float = 0.5
    sigma: float = 2.0
    scale_factor: float = 1.25
    scale_jitter: float = 0.25
    shift_jitter: float = 0.1
    rotation: float = 30.0
    rotation_prob: float = 0.4
    flip_prob: float = 0.5
    pgpg: bool = False
    pgpg_file: str = ""
    stn: bool = False
    stn_weight: float = 1.0
    stn_lr: float = 1e-4
    val_every: int = 200
    val_images: int = 0
    checkpoint_every: int = 50
    min_joints: int = 1
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size <= 0:
            raise ValueError("steps must be >= 0 and batch_size positive")
        if self.lr <= 0 or self.stn_lr <= 0:
            raise ValueError("learning rates must be positive")
        if self.loss not in ("jc", "mse"):
            raise ValueError(f"loss must be jc or mse, got {self.loss!r}")
        if self.mu < 0 or self.sigma <= 0:
            raise ValueError("mu must be >= 0 and sigma positive")
        if not 0 <= self.scale_jitter < 1 or self.shift_jitter < 0:
            raise ValueError("scale_jitter must be in [0, 1) and shift_jitter >= 0")
        for name in ("flip_prob", "rotation_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")

    @property
    def target_mu(self) -> float:
        """The interference height actually used: ``mu`` for ``jc``, 0 for ``mse``."""
        return self.mu if self.loss == "jc" else 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)
