"""The SPPE fine-tuning loop: Adam on the caller's heatmap targets and loss (the application passes
the joint-candidate ones), periodic validation by the caller's score, atomic checkpoints, resume.

Every step draws its batch from a generator seeded with ``(seed, step)``, so a resumed run sees the
same crops the uninterrupted run would have seen. The checkpoint (:mod:`posetracker.estimators.checkpoint`)
is rewritten atomically every ``checkpoint_every`` steps, at the end, and when the run is
interrupted (Ctrl-C): a reader never sees a partial file, and an interrupted run keeps its last
complete state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from posetracker.core.errors import InputError
from posetracker.core.fileio import sha256_file
from posetracker.core.schemas import COCO17
from posetracker.estimators.checkpoint import (
    OPTIM_PREFIX,
    SPPE_PREFIX,
    STN_PREFIX,
    load_module_weights,
    prefixed,
    read_checkpoint,
    write_checkpoint,
)
from posetracker.estimators.sppe import SPPE
from posetracker.estimators.training.config import TrainSettings
from posetracker.estimators.training.data import BoxSampler, CropMaker, TrainingData
from posetracker.estimators.training.objective import TrainingLoss


@dataclass(frozen=True)
class BaseModel:
    """The network a run starts from: its name (registry name, or the file as the user gave it)
    and its topology file (hashed into the checkpoint)."""

    name: str
    topology: Path


@dataclass
class TrainResult:
    """What a run did: steps taken in this run, wall seconds, the loss of every step of this run,
    and ``(step, AP)`` of every validation."""

    start_step: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    validations: list[tuple[int, float]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def steps_per_second(self) -> float:
        return (self.steps - self.start_step) / self.seconds if self.seconds > 0 else float("nan")


def heatmap_geometry(sppe: SPPE) -> tuple[tuple[int, int], float]:
    """The SPPE's heatmap size ``(hh, hw)`` and cell offset (crop pixel of cell 0), from one
    forward pass of a blank crop."""
    net = sppe.network
    if not hasattr(net, "heatmaps"):
        raise InputError(f"{sppe.name}: not a heatmap SPPE; training takes a heatmap network "
                         "(PP-TinyPose or a checkpoint of one)")
    with torch.no_grad():
        hm = net.heatmaps(torch.zeros(1, 3, *sppe.input_size, device=sppe.device))
    return (int(hm.shape[-2]), int(hm.shape[-1])), float(getattr(net, "cell_offset", 0.0))


#: ``(sppe, data, max_images) -> AP in [0, 1]`` of the SPPE on the first ``max_images`` images of
#: ``data`` (0: all); the application scores with the COCO or CrowdPose evaluation.
ValidationScore = Callable[[SPPE, TrainingData, int], float]


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for slot, v in st.items():
            out[f"{OPTIM_PREFIX}{i}.{slot}"] = torch.as_tensor(v).detach().clone()
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict] = {}
    for key, v in prefixed(tensors, OPTIM_PREFIX).items():
        i, slot = key.split(".", 1)
        state.setdefault(int(i), {})[slot] = v
    if state:
        sd = opt.state_dict()
        opt.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


class Trainer:
    """Fine-tunes an SPPE's heatmap network.

    Args:
        sppe: The SPPE to train in place (its ``network`` must be a heatmap net).
        base: The network it was built from (for the checkpoint's record).
        data: Training people.
        settings: See :class:`TrainSettings`.
        out: Checkpoint path (``.safetensors``).
        loss: The target heatmaps and the loss to minimise.
        val: Validation people (a separate file), or ``None``.
        score: How ``val`` is scored (needed with ``val``).
        box_sampler: Crop boxes to use instead of the jittered ground truth (PGPG).
        stn: An :class:`~posetracker.estimators.training.stn.STNTrainer`, or ``None``.
        log: One line per event (validation, checkpoint).
    """

    def __init__(self, sppe: SPPE, base: BaseModel, data: TrainingData, settings: TrainSettings,
                 out: str | Path, loss: TrainingLoss, *, val: TrainingData | None = None,
                 score: ValidationScore | None = None, box_sampler: BoxSampler | None = None,
                 stn=None, log: Callable[[str], None] = lambda s: None):
        if val is not None and score is None:
            raise ValueError("validation data needs a score")
        self.sppe = sppe
        self.loss = loss
        self.score = score
        self.base = base
        self.data = data
        self.settings = settings
        self.out = Path(out)
        self.val = val
        self.box_sampler = box_sampler
        self.stn = stn
        self.log = log
        self.device = sppe.device
        self.net = sppe.network
        size, cell0 = heatmap_geometry(sppe)
        self.heatmap_size = size
        self.crops = CropMaker(data, sppe.input_size, size, settings, loss, cell0)
        self.params = [p for p in self.net.backbone.parameters()]
        for p in self.params:
            p.requires_grad_(True)
        self.opt = torch.optim.Adam(self.params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.amp = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.step = 0
        self.base_sha256 = sha256_file(base.topology)

    # -- checkpoints ---------------------------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        data = {"train": self.data.sha256}
        if self.val is not None:
            data["val"] = self.val.sha256
        return {
            "base_model": self.base.name, "base_sha256": self.base_sha256, "schema": COCO17.name,
            "input_size": "x".join(map(str, self.sppe.input_size)),
            "heatmap_size": "x".join(map(str, self.heatmap_size)), "step": str(self.step),
            "settings": self.settings.to_json(), "data": json.dumps(data, sort_keys=True),
        }

    def save(self) -> None:
        tensors = {SPPE_PREFIX + k: v for k, v in self.net.backbone.state_dict().items()}
        tensors.update(_optimizer_tensors(self.opt))
        if self.stn is not None:
            tensors.update({STN_PREFIX + k: v for k, v in self.stn.stn.state_dict().items()})
            tensors.update({f"stnopt.{k}": v for k, v in _optimizer_tensors(self.stn.opt).items()})
        write_checkpoint(self.out, tensors, self.metadata())

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint of this run: weights, optimizer state, step. The base
        network and the training data must be the ones it was trained with."""
        tensors, meta = read_checkpoint(path)
        if meta.get("base_sha256") != self.base_sha256:
            raise InputError(f"--resume {path}: trained from {meta.get('base_model')}, not from "
                             f"{self.base.name}")
        recorded = json.loads(meta.get("data", "{}")).get("train")
        if recorded != self.data.sha256:
            raise InputError(f"--resume {path}: trained on other annotations (sha256 "
                             f"{str(recorded)[:12]}), not {self.data.source}")
        load_module_weights(self.net.backbone, tensors, SPPE_PREFIX, path)
        _load_optimizer(self.opt, tensors)
        if self.stn is not None:
            if not prefixed(tensors, STN_PREFIX):
                raise InputError(f"--resume {path}: trained without --stn")
            load_module_weights(self.stn.stn, tensors, STN_PREFIX, path)
            _load_optimizer(self.stn.opt, prefixed(tensors, "stnopt."))
        self.step = int(meta.get("step", 0))

    # -- steps ---------------------------------------------------------------------------------
    def train_step(self) -> float:
        """One optimizer step; returns its loss (the SPPE's heatmap loss)."""
        s = self.settings
        rng = np.random.default_rng([s.seed, self.step])
        n = len(self.data.people)
        idx = rng.choice(n, size=s.batch_size, replace=n < s.batch_size)
        plan = self.crops.plan(idx, rng, augment=True,
                               box_sampler=self.box_sampler if s.pgpg else None)
        # With an STN, the SPPE trains on the STN's crops (as the estimator will show them).
        batch = self.crops.make(plan) if self.stn is None else self.stn.refine_and_step(plan, self.crops)
        self.net.train()
        ctx = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        crops = batch.crops.to(self.device)
        with ctx:
            hm = self.net.heatmaps(crops)
        loss = self.loss.loss(hm.float(), batch.targets.to(self.device),
                              batch.weights.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        self.step += 1
        self.net.eval()
        return float(loss.detach())

    def validate(self) -> float | None:
        if self.val is None or self.score is None:
            return None
        return self.score(self.sppe, self.val, self.settings.val_images)

    def run(self, progress: bool = False) -> TrainResult:
        """Train up to ``settings.steps``; validate and checkpoint on schedule; on Ctrl-C write
        the checkpoint of the last finished step and re-raise ``KeyboardInterrupt``. (The torch
        thread count, ``settings.threads``, is the caller's to set around this call.)"""
        from tqdm import tqdm

        s = self.settings
        result = TrainResult(start_step=self.step, steps=self.step, seconds=0.0)
        bar = tqdm(total=s.steps, initial=self.step, disable=not progress, unit="step",
                   dynamic_ncols=True)
        t0 = time.perf_counter()
        ema = None
        try:
            while self.step < s.steps:
                loss = self.train_step()
                result.losses.append(loss)
                result.steps = self.step
                result.seconds = time.perf_counter() - t0
                ema = loss if ema is None else 0.9 * ema + 0.1 * loss
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.3g}", steps_s=f"{result.steps_per_second:.2f}")
                if s.val_every and self.step % s.val_every == 0 and self.step < s.steps:
                    ap = self.validate()
                    if ap is not None:
                        result.validations.append((self.step, ap))
                        self.log(f"step {self.step}: validation AP {ap:.4f}")
                if s.checkpoint_every and self.step % s.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            bar.close()
            self.save()
            result.interrupted = True
            self.log(f"interrupted at step {self.step}; checkpoint {self.out} written")
            raise
        bar.close()
        result.seconds = time.perf_counter() - t0
        self.save()
        ap = self.validate()
        if ap is not None:
            result.validations.append((self.step, ap))
            self.log(f"step {self.step}: validation AP {ap:.4f}")
        return result
