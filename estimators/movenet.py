"""MoveNet SinglePose (Thunder / Lightning) as a batched torch single-person pose estimator (SPPE).

The TF.js graph of MoveNet (``movenet-thunder.json``, ``movenet-lightning.json``) is a MobileNetV2
+ FPN CenterNet with four heads on a grid of stride 4 (64x64 for Thunder's 256x256 input, 48x48 for
Lightning's 192x192), followed by a batch-1 single-person decode. Here the backbone and heads run
through :mod:`posetracker.estimators.runtimes.tfjs` for any batch size, and the decode is the graph's own, written in
batched torch (steps below, read from the graph's post-processing nodes).

Public API (what the estimator and association code call)
---------------------------------------------------------
``MoveNet.from_tfjs(model_json, device="cpu", weights=None)``
    Build from the TF.js files (``weights``: ``{name: array}``, e.g. a cached safetensors file).
``MoveNet.input_size``  (256 Thunder, 192 Lightning), ``MoveNet.grid_size`` (64 / 48),
``MoveNet.schema`` (``COCO17``), ``MoveNet.variant`` ("thunder" / "lightning").
``MoveNet.forward(crops, return_maps=False) -> MoveNetOutput``
    crops: (N, 3, S, S) or (N, S, S, 3) float RGB 0..255 (uint8 accepted), S = ``input_size``.
    keypoints (N, 17, 2): x, y in pixels of the input crop (the graph's normalized output times
    S); scores (N, 17) in 0..1; with ``return_maps`` also the head tensors (see MoveNetOutput).
``MoveNet.heads(crops) -> MoveNetHeads``  raw head tensors only.
``MoveNet.candidates(crops_or_heads, k_max=5, threshold=0.1) -> MoveNetCandidates``
    several peaks per joint for multi-person association (CrowdPose).
``square_crop(image, box, size, scale=1.25)``  a deterministic nearest-neighbour person crop.

Graph decode (single person), per crop
--------------------------------------
1. Heatmaps ``H = sigmoid(heatmap logits)`` (17, h, w); centre map ``C = sigmoid(centre logits)``.
2. Centre: argmax of ``C * W`` where ``W[y, x] = 1 / (dist((y, x), (h/2, w/2)) + 1.8)`` prefers
   the person in the middle of the crop (``W`` is a float16 constant of the graph).
3. Regression at the centre cell (cy, cx) gives each joint's rough position
   ``(ry, rx) = (cy + dy_j, cx + dx_j)`` in grid cells.
4. Joint cell: argmax of ``H_j / (dist((y, x), (ry, rx)) + 1.8)`` (the heatmap, damped away from
   the regressed point).
5. Sub-cell offsets at that cell: ``(y, x) = (ky + oy_j, kx + ox_j)``; output = ``(y, x) / h`` and
   score ``H_j[ky, kx]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posetracker.core.errors import InputError, ModelError
from posetracker.core.schemas import COCO17, KeypointSchema
from posetracker.estimators.runtimes.tfjs import TfjsGraph, load_tfjs_graph

# Node names inside both MoveNet v4 TF.js graphs (Thunder and Lightning share them).
_PREFIX = "StatefulPartitionedCall/"
FEED_NODE = _PREFIX + "stack"  # float NHWC 0..255 after the batch-1 input reshuffle, before scaling
HEATMAP_NODE = _PREFIX + "kpt_heatmap_0/conv2d_5/BiasAdd"  # (N, h, w, 17) logits
CENTRE_NODE = _PREFIX + "center_0/conv2d_4/BiasAdd"  # (N, h, w, 1) logits
REGRESSION_NODE = _PREFIX + "kpt_regress_0/conv2d_6/BiasAdd"  # (N, h, w, 34): joint j -> (dy, dx) at 2j, 2j+1
OFFSET_NODE = _PREFIX + "kpt_offset_0/conv2d_7/BiasAdd"  # (N, h, w, 34): joint j -> (oy, ox) at 2j, 2j+1
CENTRE_WEIGHT_CONST = "ConstantFolding/" + _PREFIX + "truediv_2_recip"  # (h, w, 1)
DISTANCE_BIAS_CONST = _PREFIX + "add_5/y"  # 1.8 (as float16: 1.7998047)
OUTPUT_SCALE_CONST = _PREFIX + "Reshape_13"  # (1, 1, 1, 2): 1/h as float16

_VARIANTS = {256: "thunder", 192: "lightning"}


@dataclass(frozen=True)
class MoveNetHeads:
    """Raw MoveNet head outputs for a batch, channels first, on the grid of stride 4.

    heatmap_logits (N, 17, h, w); centre_logits (N, h, w); regression (N, 17, 2, h, w) and
    offsets (N, 17, 2, h, w), both in grid cells with the last-but-two axis ordered (dx, dy) /
    (ox, oy) -- x first, like every keypoint array in posetracker.
    """

    heatmap_logits: torch.Tensor
    centre_logits: torch.Tensor
    regression: torch.Tensor
    offsets: torch.Tensor


@dataclass(frozen=True)
class MoveNetOutput:
    """Single-person result for N crops.

    keypoints (N, 17, 2) float: x, y in pixels of the input crop (cell + offset) * S / h;
    scores (N, 17): heatmap value (sigmoid) at the chosen cell;
    heatmaps (N, 17, h, w) sigmoid, centres (N, h, w) sigmoid, regression / offsets
    (N, 17, 2, h, w) in grid cells (x first) -- only with ``return_maps=True``, else None.
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    heatmaps: torch.Tensor | None = None
    centres: torch.Tensor | None = None
    regression: torch.Tensor | None = None
    offsets: torch.Tensor | None = None


@dataclass(frozen=True)
class MoveNetCandidates:
    """Several candidate peaks per joint, best first.

    keypoints (N, 17, K, 2): x, y in crop pixels (NaN where not valid); scores (N, 17, K)
    heatmap values (0 where not valid); valid (N, 17, K) bool: a local 3x3 maximum of the
    joint's heatmap with score >= threshold.
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    valid: torch.Tensor


class MoveNet(nn.Module):
    """MoveNet SinglePose on batches of person crops (see the module docstring for the API).

    Parameters
    ----------
    graph:
        The compiled TF.js graph of a MoveNet v4 SinglePose model.
    """

    schema: KeypointSchema = COCO17

    def __init__(self, graph: TfjsGraph) -> None:
        super().__init__()
        self.graph = graph
        shape = graph.input_shapes.get(graph.input_names[0]) if graph.input_names else None
        size = shape[1] if shape is not None and len(shape) == 4 else None
        if size not in _VARIANTS:
            raise ModelError(f"not a MoveNet SinglePose graph: input size {size} (expected 256 or 192)")
        self.input_size = size
        self.grid_size = size // 4
        self.variant = _VARIANTS[size]
        for name in (CENTRE_WEIGHT_CONST, DISTANCE_BIAS_CONST, OUTPUT_SCALE_CONST):
            graph.constant(name)  # fails early with a clear message if the graph is not MoveNet

    @classmethod
    def from_tfjs(cls, model_json: Path | str, device: str | torch.device = "cpu",
                  weights: dict[str, Any] | None = None) -> MoveNet:
        """Load ``movenet-{thunder,lightning}.json`` (+ .bin, or ``weights``) onto ``device``."""
        return cls(load_tfjs_graph(Path(model_json), weights)).to(device).eval()

    # -- the network ---------------------------------------------------------------------------

    def _prepare(self, crops: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
        """(N,3,S,S) or (N,S,S,3) RGB 0..255 -> (tensor, channels_first)."""
        x = torch.as_tensor(np.ascontiguousarray(crops) if isinstance(crops, np.ndarray) else crops)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        s = self.input_size
        if x.dim() != 4 or not (x.shape[1:] == (3, s, s) or x.shape[1:] == (s, s, 3)):
            raise InputError(f"MoveNet {self.variant} takes (N, 3, {s}, {s}) or (N, {s}, {s}, 3) RGB crops, "
                             f"got shape {tuple(x.shape)}")
        return x.float() if not x.is_floating_point() else x, x.shape[1] == 3

    def heads(self, crops: torch.Tensor | np.ndarray) -> MoveNetHeads:
        """Run backbone and heads on RGB crops (0..255); see :class:`MoveNetHeads`."""
        x, channels_first = self._prepare(crops)
        out = self.graph.run({FEED_NODE: x}, [HEATMAP_NODE, CENTRE_NODE, REGRESSION_NODE, OFFSET_NODE],
                             channels_first=channels_first)
        if not channels_first:  # run() returned NHWC: view them channels first
            out = {k: v.permute(0, 3, 1, 2) for k, v in out.items()}
        # 34 channels = 17 joints x (y, x) -> (N, 17, 2, h, w) with x first (one copy).
        regression, offsets = (torch.stack((out[k][:, 1::2], out[k][:, 0::2]), dim=2)
                               for k in (REGRESSION_NODE, OFFSET_NODE))
        return MoveNetHeads(out[HEATMAP_NODE], out[CENTRE_NODE][:, 0], regression, offsets)

    def forward(self, crops: torch.Tensor | np.ndarray, return_maps: bool = False) -> MoveNetOutput:
        """Single-person keypoints for each crop; see :class:`MoveNetOutput`."""
        heads = self.heads(crops)
        return self.decode(heads, return_maps=return_maps)

    # -- decoding ------------------------------------------------------------------------------

    def _grid(self, heads: MoveNetHeads) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = heads.heatmap_logits.shape[2:]
        ys = torch.arange(h, device=heads.heatmap_logits.device, dtype=heads.heatmap_logits.dtype)
        xs = torch.arange(w, device=heads.heatmap_logits.device, dtype=heads.heatmap_logits.dtype)
        return ys.reshape(h, 1), xs.reshape(1, w)

    def _to_pixels(self, cells_xy: torch.Tensor) -> torch.Tensor:
        """Grid cells (x, y) -> crop pixels, with the graph's own 1/h factor (a float16 constant)."""
        scale = self.graph.constant(OUTPUT_SCALE_CONST).reshape(-1)[:2].flip(0)  # (y, x) -> (x, y)
        return cells_xy * scale.float() * self.input_size

    def decode(self, heads: MoveNetHeads, return_maps: bool = False) -> MoveNetOutput:
        """The graph's single-person decode (module docstring, steps 1-5), batched, in float32
        whatever the network's precision (keypoint pixels need more than a half's 11 bits)."""
        heads = _float32(heads)
        n, k, h, w = heads.heatmap_logits.shape
        batch = torch.arange(n, device=heads.heatmap_logits.device)
        # 1. Sigmoid maps.
        heat = torch.sigmoid(heads.heatmap_logits)
        centre = torch.sigmoid(heads.centre_logits)
        # 2. Centre cell: the centre map weighted towards the middle of the crop.
        weight = self.graph.constant(CENTRE_WEIGHT_CONST).reshape(h, w).float()
        c = torch.argmax((centre * weight).reshape(n, h * w), dim=1)
        cy, cx = c // w, c % w
        # 3. Regressed joint positions from the centre cell, in cells: (N, 17).
        reg = heads.regression[batch, :, :, cy, cx]  # (N, 17, 2) = (dx, dy)
        ry = cy.to(reg.dtype).unsqueeze(1) + reg[..., 1]
        rx = cx.to(reg.dtype).unsqueeze(1) + reg[..., 0]
        # 4. Joint cell: heatmap divided by (distance to the regressed point + 1.8), same op order as the graph.
        ys, xs = self._grid(heads)
        dist = torch.sqrt(torch.square(ys - ry[..., None, None]) + torch.square(xs - rx[..., None, None]))
        bias = self.graph.constant(DISTANCE_BIAS_CONST).reshape(()).float()
        j = torch.argmax((heat / (dist + bias)).reshape(n, k, h * w), dim=2)  # (N, 17)
        ky, kx = j // w, j % w
        # 5. Sub-cell offsets of joint j at its own cell; score = heatmap value there.
        joints = torch.arange(k, device=j.device)
        off = heads.offsets[batch[:, None], joints[None, :], :, ky, kx]  # (N, 17, 2) = (ox, oy)
        cells = torch.stack((kx.to(off.dtype) + off[..., 0], ky.to(off.dtype) + off[..., 1]), dim=-1)
        scores = heat[batch[:, None], joints[None, :], ky, kx]
        keypoints = self._to_pixels(cells)
        if not return_maps:
            return MoveNetOutput(keypoints, scores)
        return MoveNetOutput(keypoints, scores, heat, centre, heads.regression, heads.offsets)

    def candidates(self, crops_or_heads: torch.Tensor | np.ndarray | MoveNetHeads, k_max: int = 5,
                   threshold: float = 0.1) -> MoveNetCandidates:
        """Up to ``k_max`` peaks per joint: local 3x3 maxima of the heatmap (max-pool NMS) with
        score >= ``threshold``, refined by the sub-cell offsets, best first."""
        heads = crops_or_heads if isinstance(crops_or_heads, MoveNetHeads) else self.heads(crops_or_heads)
        heads = _float32(heads)
        heat = torch.sigmoid(heads.heatmap_logits)
        n, k, h, w = heat.shape
        peak = heat == F.max_pool2d(heat, 3, stride=1, padding=1)
        masked = torch.where(peak & (heat >= threshold), heat, torch.zeros_like(heat))
        kk = min(k_max, h * w)
        scores, idx = torch.topk(masked.reshape(n, k, h * w), kk, dim=2)  # (N, 17, K)
        valid = scores > 0
        ky, kx = idx // w, idx % w
        off = heads.offsets.reshape(n, k, 2, h * w).gather(3, idx.unsqueeze(2).expand(n, k, 2, kk))  # (N,17,2,K)
        cells = torch.stack((kx.to(off.dtype) + off[:, :, 0], ky.to(off.dtype) + off[:, :, 1]), dim=-1)
        keypoints = torch.where(valid.unsqueeze(-1), self._to_pixels(cells), torch.full_like(cells, float("nan")))
        return MoveNetCandidates(keypoints, torch.where(valid, scores, torch.zeros_like(scores)), valid)


def _float32(heads: MoveNetHeads) -> MoveNetHeads:
    if heads.heatmap_logits.dtype == torch.float32:
        return heads
    return MoveNetHeads(*(t.float() for t in (heads.heatmap_logits, heads.centre_logits, heads.regression,
                                               heads.offsets)))


def square_crop(image: np.ndarray, box_xyxy: np.ndarray | list[float], size: int,
                scale: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic square person crop by nearest-neighbour sampling (pure integer indexing).

    Parameters
    ----------
    image: (H, W, 3) uint8 RGB.
    box_xyxy: person box (x1, y1, x2, y2) in image pixels.
    size: output side (MoveNet ``input_size``).
    scale: side of the square = ``scale * max(box w, box h)``, centred on the box.

    Returns
    -------
    crop (size, size, 3) uint8 (zeros outside the image) and ``(x0, y0, step)`` float64 such that
    crop pixel coordinates map back as ``image_xy = (x0, y0) + crop_xy * step``.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    side = scale * max(x2 - x1, y2 - y1, 1.0)
    step = side / size
    x0, y0 = (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2
    centres = (np.arange(size) + 0.5) * step  # crop pixel i samples image coordinate origin + centre_i
    cols = np.floor(x0 + centres).astype(np.int64)
    rows = np.floor(y0 + centres).astype(np.int64)
    h, w = image.shape[:2]
    crop = np.zeros((size, size, 3), dtype=np.uint8)
    ok_r, ok_c = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    crop[np.ix_(ok_r, ok_c)] = image[np.ix_(rows[ok_r], cols[ok_c])]
    return crop, np.array([x0, y0, step])
