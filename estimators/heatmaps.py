"""Joint heatmaps -> joint positions: arg-max decoding with sub-cell refinement, peaks, flip-back.

Top-down heatmap SPPEs (FastPose, PP-TinyPose, HRNet-style nets) give one map per joint on a grid
``stride`` times coarser than the crop (64x48 for a 256x192 crop). Decoding is done here, on
batched tensors ``(m, k, hh, hw)``, in heatmap *cells* (x first); the caller maps cells to crop
pixels with the convention its network was trained with (see :class:`HeatmapNet`).

Two sub-cell refinements of the arg-max cell are offered (``refine``):

- ``"quarter"``: move 0.25 cell towards the higher neighbour along x and y (Newell et al.'s
  hourglass decode, used by AlphaPose and the Simple Baselines);
- ``"dark"``: distribution-aware refinement (Zhang et al., "Distribution-Aware Coordinate
  Representation for Human Pose Estimation", CVPR 2020): smooth the map with the training
  Gaussian, take its logarithm, and move to the maximum of the second-order Taylor expansion of
  the log-map around the arg-max (one Newton step, ``-H^-1 g``);
- ``"none"``: the arg-max cell.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Refine = Literal["dark", "quarter", "none"]


def _host(t: torch.Tensor) -> np.ndarray:
    """``t`` as a NumPy array on the host (no copy for a CPU tensor)."""
    return t.detach().cpu().numpy()


def argmax_cells(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max cell and value of every map: ``(m, k, hh, hw)`` -> ``(m, k, 2)`` long x, y and
    ``(m, k)`` values, on the maps' device (the first maximum where several are equal).

    Found by NumPy on the host, on the calling thread alone (the same cells and values as
    ``torch.max``): the search is a millisecond of work, and torch would split it over its
    intra-op threads, whose hand-off stalls whenever the other cores are busy (the other
    pipeline stages, the model's own threads) and then costs ten times the work.
    """
    m, k, hh, hw = heatmaps.shape
    flat = _host(heatmaps).reshape(m, k, hh * hw)
    idx = flat.argmax(axis=2)
    values = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    cells = torch.from_numpy(np.stack((idx % hw, idx // hw), axis=-1))
    return cells.to(heatmaps.device), torch.from_numpy(values).to(heatmaps.device)


def _gather(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``maps[i, y_i, x_i]`` for flat ``maps`` ``(n, hh, hw)`` and index vectors ``(n,)``,
    indices clamped into the map (callers mask the cells where clamping happened)."""
    n, hh, hw = maps.shape
    b = torch.arange(n, device=maps.device)
    return maps[b, y.clamp(0, hh - 1), x.clamp(0, hw - 1)]


def refine_quarter(heatmaps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Quarter-cell refinement of arg-max ``cells`` ``(m, k, 2)``: ``(m, k, 2)`` float cells.

    1. Where the peak has both neighbours along an axis (``1 <= x <= hw - 2``), compare them.
    2. Move 0.25 cell towards the higher one (no move when they are equal).
    """
    m, k, hh, hw = heatmaps.shape
    maps = heatmaps.reshape(m * k, hh, hw)
    x, y = cells[..., 0].reshape(-1), cells[..., 1].reshape(-1)
    dx = _gather(maps, x + 1, y) - _gather(maps, x - 1, y)
    dy = _gather(maps, x, y + 1) - _gather(maps, x, y - 1)
    ok_x = (x >= 1) & (x <= hw - 2)
    ok_y = (y >= 1) & (y <= hh - 2)
    out = cells.to(heatmaps.dtype).reshape(-1, 2).clone()
    out[:, 0] += torch.where(ok_x, 0.25 * torch.sign(dx), torch.zeros_like(dx))
    out[:, 1] += torch.where(ok_y, 0.25 * torch.sign(dy), torch.zeros_like(dy))
    return out.reshape(m, k, 2)


def gaussian_kernel(sigma: float, size: int | None = None, dtype=torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)`` (default size ``2 * ceil(3 sigma) + 1``)."""
    size = size or 2 * math.ceil(3 * sigma) + 1
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-r * r / (2 * sigma * sigma))
    return g / g.sum()


def smooth(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every map, zero padding, each map then rescaled to keep its
    maximum (DARK's modulation: the blur only reshapes the peak)."""
    m, k, hh, hw = heatmaps.shape
    g = gaussian_kernel(sigma, dtype=heatmaps.dtype, device=heatmaps.device)
    r = (g.numel() - 1) // 2
    x = heatmaps.reshape(m * k, 1, hh, hw)
    x = F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, r))
    x = F.conv2d(x, g.view(1, 1, -1, 1), padding=(r, 0)).reshape(m, k, hh, hw)
    peak = heatmaps.amax(dim=(2, 3), keepdim=True)
    now = x.amax(dim=(2, 3), keepdim=True)
    return x * (peak / now.clamp_min(1e-12))


def _smoothed_windows(maps: np.ndarray, x: np.ndarray, y: np.ndarray, g: np.ndarray
                      ) -> np.ndarray:
    """The smoothed maps (:func:`smooth`'s blur, before its rescaling) on the 5x5 cells around
    each arg-max: ``(n, 5, 5)``, row = y offset + 2, column = x offset + 2.

    Only those 25 values enter DARK's derivatives, so each map is blurred on a window of
    ``5 + 2 r`` cells around its peak (``r`` the kernel radius; cells outside the map are 0, as
    the full blur's zero padding) instead of whole: the same values at a fraction of the cost
    (64x48 maps, ``sigma`` 2: 17x17 windows, a tenth of the cells). NumPy on the calling thread,
    as :func:`argmax_cells`.

    Args:
        maps: ``(n, hh, hw)`` heatmaps.
        x, y: ``(n,)`` integer arg-max cell of each map.
        g: ``(2 r + 1,)`` Gaussian kernel (:func:`gaussian_kernel`), the maps' dtype.
    """
    n, hh, hw = maps.shape
    r = (len(g) - 1) // 2
    span = np.arange(-r - 2, r + 3)
    rows, cols = y[:, None] + span, x[:, None] + span   # (n, 2 r + 5) map rows and columns
    flat = (np.arange(n) * (hh * hw))[:, None, None] + rows.clip(0, hh - 1)[:, :, None] * hw \
        + cols.clip(0, hw - 1)[:, None, :]
    inside = ((rows >= 0) & (rows < hh))[:, :, None] & ((cols >= 0) & (cols < hw))[:, None, :]
    win = np.where(inside, maps.reshape(-1).take(flat), 0.0).astype(maps.dtype, copy=False)
    # the valid (unpadded) blur as two matrix products: band[i, j] = g[i - j] takes the window
    # (width 2 r + 5) to width 5, along x (columns), then along y (rows)
    band = np.zeros((len(span), 5), dtype=maps.dtype)
    for j in range(5):
        band[j:j + len(g), j] = g
    return band.T @ (win @ band)


#: Values per call below which torch computes an elementwise logarithm on the calling thread.
_LOG_GRAIN = 2048


def _serial_log(values: np.ndarray) -> np.ndarray:
    """``torch.log`` of ``values`` (any shape; a new array of that shape), in pieces of
    ``_LOG_GRAIN`` values: torch's own logarithm (NumPy's may differ in the last bit), without
    its intra-op threads, whose hand-off stalls for milliseconds when the other cores are busy."""
    flat = torch.from_numpy(np.ascontiguousarray(values).reshape(-1))
    out = torch.empty_like(flat)
    for s in range(0, len(flat), _LOG_GRAIN):
        torch.log(flat[s:s + _LOG_GRAIN], out=out[s:s + _LOG_GRAIN])
    return out.numpy().reshape(values.shape)


def refine_dark(heatmaps: torch.Tensor, cells: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """DARK refinement of arg-max ``cells`` ``(m, k, 2)``: ``(m, k, 2)`` float cells, on the
    maps' device (computed by NumPy on the host, as :func:`argmax_cells`).

    1. Smooth each map with the Gaussian of the training targets (``sigma`` cells; 2 for 64x48
       maps), around its arg-max only (:func:`_smoothed_windows`). DARK rescales the smoothed
       map to its old maximum; that multiplies the map by a constant, which adds a constant to
       its logarithm and changes neither derivative below, so it is left out.
    2. Take ``L = log(max(map, 1e-10))``.
    3. At the arg-max cell, gradient ``g`` by central differences and Hessian ``H`` by the
       differences over two cells (``L[x+2] - 2 L[x] + L[x-2]``) / 4 and the mixed term.
    4. Move by ``-H^-1 g`` where the cell has two cells of room on each side and ``H`` is
       invertible; the move is clamped to one cell (a flat log-map can give a wild step).
    """
    m, k, hh, hw = heatmaps.shape
    maps = _host(heatmaps).reshape(m * k, hh, hw)
    xy = _host(cells).reshape(m * k, 2)
    x, y = xy[:, 0], xy[:, 1]
    g = _host(gaussian_kernel(sigma, dtype=heatmaps.dtype))
    logw = _serial_log(np.maximum(_smoothed_windows(maps, x, y, g), 1e-10))

    def at(ox: int, oy: int) -> np.ndarray:
        return logw[:, 2 + oy, 2 + ox]

    c = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = 0.25 * (at(2, 0) - 2 * c + at(-2, 0))
    hyy = 0.25 * (at(0, 2) - 2 * c + at(0, -2))
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    room = (x >= 2) & (x <= hw - 3) & (y >= 2) & (y <= hh - 3)
    ok = room & (np.abs(det) > 1e-12)
    safe = np.where(ok, det, 1.0).astype(det.dtype, copy=False)
    step_x = -(hyy * gx - hxy * gy) / safe
    step_y = -(-hxy * gx + hxx * gy) / safe
    step = np.stack((step_x, step_y), axis=-1).clip(-1.0, 1.0)
    step = np.where(ok[:, None], step, 0.0).astype(det.dtype, copy=False)
    out = (xy.astype(det.dtype) + step).reshape(m, k, 2)
    return torch.from_numpy(out).to(heatmaps.device)


def decode_heatmaps(heatmaps: torch.Tensor, refine: Refine = "dark", sigma: float = 2.0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint cells and scores of heatmaps ``(m, k, hh, hw)``: ``(m, k, 2)`` float cells (x, y)
    and ``(m, k)`` peak values (the raw maximum of each map)."""
    cells, values = argmax_cells(heatmaps)
    if refine == "dark":
        out = refine_dark(heatmaps, cells, sigma)
    elif refine == "quarter":
        out = refine_quarter(heatmaps, cells)
    elif refine == "none":
        out = cells.to(heatmaps.dtype)
    else:
        raise ValueError(f"unknown heatmap refinement '{refine}' (dark, quarter or none)")
    return out, values


def heatmap_peaks(heatmaps: torch.Tensor, count: int, stride: float,
                  offset: float | None = None) -> torch.Tensor:
    """Up to ``count`` local maxima per heatmap, best first: ``(m, k, hh, hw)`` ->
    ``(m, k, count, 3)`` x, y in crop pixels, value; missing peaks have value 0.

    Cell ``i`` is put at crop pixel ``i * stride + offset``; the default offset
    ``(stride - 1) / 2`` is the cell's centre (a cell covering pixels ``[i s, (i + 1) s)``).
    """
    m, k, hh, hw = heatmaps.shape
    offset = (stride - 1) / 2 if offset is None else offset
    pooled = F.max_pool2d(heatmaps, 3, stride=1, padding=1)
    peaks = torch.where(heatmaps == pooled, heatmaps, torch.full_like(heatmaps, -torch.inf))
    val, idx = peaks.reshape(m, k, -1).topk(min(count, hh * hw), dim=-1)
    x = (idx % hw).to(heatmaps.dtype) * stride + offset
    y = (idx // hw).to(heatmaps.dtype) * stride + offset
    val = torch.where(torch.isfinite(val), val, torch.zeros_like(val)).clamp_min(0)
    return torch.stack([x, y, val], dim=-1)


def flip_back(mirrored: torch.Tensor, permutation: torch.Tensor | list[int],
              shift: float) -> torch.Tensor:
    """Heatmaps of mirrored crops brought back onto the original crop's grid.

    1. Swap left/right joints (``permutation``) and mirror the maps along x.
    2. The mirrored grid is offset from the original one by ``shift`` cells (for a net whose cell
       ``i`` is crop pixel ``i * s``, mirroring a crop of width ``w = hw * s`` maps pixel ``p`` to
       ``w - 1 - p``, so the original position ``i`` lies at ``i - (1 - 1/s)`` of the flipped
       map: ``shift = 1 - 1/s``). Resample by linear interpolation along x: the value at ``i`` is
       ``shift * F[i - 1] + (1 - shift) * F[i]`` (column 0 keeps ``F[0]``).

    Args:
        mirrored: ``(m, k, hh, hw)`` maps computed on ``torch.flip(crops, [3])``.
        permutation: ``(k,)`` joint index of each joint's mirror image.
        shift: Fraction of a cell in [0, 1] (1: a whole-cell roll).
    """
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must be in [0, 1], got {shift}")
    perm = torch.as_tensor(permutation, device=mirrored.device, dtype=torch.long)
    f = torch.flip(mirrored[:, perm], dims=[3])
    prev = torch.cat([f[..., :1], f[..., :-1]], dim=3)
    return shift * prev + (1.0 - shift) * f


class HeatmapNet(nn.Module):
    """A top-down heatmap network as an SPPE network (see :mod:`posetracker.estimators.sppe`).

    Input crops ``(m, 3, h, w)`` float RGB 0..255 are normalised (``(x / 255 - mean) / std``),
    the backbone gives heatmaps ``(m, k, h / s, w / s)``, and the maps are decoded with
    :func:`decode_heatmaps`. Cell ``i`` is crop pixel ``i * s + cell_offset``: 0 for nets trained
    on targets centred at ``joint / s`` in pixel-index coordinates (HRNet, PP-TinyPose).

    With ``flip``, the mirrored crops run in the same call and their maps are averaged with the
    originals' (:func:`flip_back`) before decoding.

    Args:
        backbone: Module mapping normalised crops to heatmaps; if it returns a mapping,
            ``output`` names the heatmap entry.
        input_size: ``(h, w)`` pixels.
        flip_permutation: ``(k,)`` mirror-image joint of each joint (for ``flip``).
        mean, std: Per-channel normalisation of RGB values in [0, 1].
        output: Key of the heatmaps in a mapping output.
        refine: ``dark``, ``quarter`` or ``none`` (:func:`decode_heatmaps`; the setting is
            :attr:`posetracker.estimators.config.SPPEConfig.refine`).
        sigma: Gaussian of the model's training targets, in cells (DARK's smoothing; a property of
            the model file, not a setting).
        cell_offset: Crop pixel of cell 0.
    """

    #: :class:`posetracker.estimators.sppe.SPPE` passes ``flip=True`` instead of flipping decoded joints.
    flips_heatmaps = True

    def __init__(self, backbone: nn.Module, input_size: tuple[int, int], *,
                 flip_permutation, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 output: str | None = None, refine: Refine, sigma: float,
                 cell_offset: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.input_size = tuple(input_size)
        self.output = output
        self.refine = refine
        self.sigma = sigma
        self.cell_offset = cell_offset
        self.register_buffer("flip_perm", torch.as_tensor(flip_permutation, dtype=torch.long),
                             persistent=False)
        # Fold /255 into the scale: (x / 255 - mean) / std = x * a + b.
        a = 1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))
        b = -torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)
        self.register_buffer("scale", a.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("bias", b.view(1, 3, 1, 1), persistent=False)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """Raw heatmaps ``(m, k, hh, hw)`` of crops ``(m, 3, h, w)`` RGB 0..255."""
        out = self.backbone(self.normalise(x))
        return out[self.output] if isinstance(out, dict) else out

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input ``x * scale + bias`` of crops ``x`` ``(m, 3, h, w)`` RGB 0..255
        (same shape and dtype; ``x`` is not changed).

        CPU float32 crops (no gradient) are normalised by NumPy, crop by crop into one new
        array (the second operation finds the crop in the cache): the same two rounded float32
        operations per value, bit for bit, on the calling thread alone; torch would allocate
        twice and split the work over its intra-op threads, whose hand-off stalls whenever the
        other cores are busy (other pipeline stages, the model's threads).
        """
        if x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad:
            crops, y = x.numpy(), np.empty(tuple(x.shape), np.float32)
            scale, bias = self.scale.numpy()[0], self.bias.numpy()[0]
            for i in range(len(crops)):
                np.multiply(crops[i], scale, out=y[i])
                y[i] += bias
            return torch.from_numpy(y)
        return x * self.scale.to(x.dtype) + self.bias.to(x.dtype)

    def forward(self, x: torch.Tensor, return_heatmaps: bool = False, candidates: int = 0,
                flip: bool = False) -> dict:
        m = x.shape[0]
        if flip:
            both = self.heatmaps(torch.cat([x, torch.flip(x, dims=[3])]))
            stride = x.shape[-1] / both.shape[-1]
            hm = 0.5 * (both[:m] + flip_back(both[m:], self.flip_perm, 1.0 - 1.0 / stride))
        else:
            hm = self.heatmaps(x)
        stride = x.shape[-2] / hm.shape[-2]
        cells, scores = decode_heatmaps(hm.float(), self.refine, self.sigma)
        out = {"keypoints": cells * stride + self.cell_offset, "scores": scores.clamp(0, 1)}
        if return_heatmaps:
            out["heatmaps"] = hm
            out["heatmap_offset"] = self.cell_offset
        if candidates:
            out["candidates"] = heatmap_peaks(hm.float(), candidates, stride, self.cell_offset)
        return out
