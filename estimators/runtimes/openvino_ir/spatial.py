"""OpenVINO IR ops on spatial maps: convolutions (plain, and fused with their bias and
activation, on the CPU kernels of :mod:`posetracker.estimators.runtimes.kernels`), pooling,
padding and Interpolate."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.kernels import PackedConvWeight, fast_conv2d, same_pads
from posetracker.estimators.runtimes.openvino_ir.base import (
    _activation,
    _axis,
    _KernelContext,
    _Op,
    _pylist,
    _unsupported_attr,
)
from posetracker.estimators.runtimes.openvino_ir.io import _ints, _Layer

# -- convolution -----------------------------------------------------------------------------

def _auto_pads(mode: str, size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """SAME_UPPER / SAME_LOWER padding (before, after) of one axis in pixels."""
    return same_pads(size, kernel, stride, dilation, upper=mode == "same_upper")


class _ConvAttrs:
    """Strides, dilations and padding of a Convolution/GroupConvolution/pooling layer."""

    def __init__(self, layer: _Layer, spatial: int, kernel: Sequence[int] | None = None) -> None:
        d = layer.data
        self.strides = tuple(_ints(d.get("strides")) or [1] * spatial)
        self.dilations = tuple(_ints(d.get("dilations")) or [1] * spatial)
        self.pads_begin = tuple(_ints(d.get("pads_begin")) or [0] * spatial)
        self.pads_end = tuple(_ints(d.get("pads_end")) or [0] * spatial)
        self.auto_pad = (d.get("auto_pad") or "explicit").lower()
        if self.auto_pad == "notset":
            self.auto_pad = "explicit"
        if self.auto_pad not in ("explicit", "valid", "same_upper", "same_lower"):
            raise _unsupported_attr(layer, "auto_pad", self.auto_pad)
        if not (len(self.strides) == len(self.dilations) == len(self.pads_begin) == len(self.pads_end)
                == spatial):
            raise ModelError(f"{layer.where()}: strides/dilations/pads do not match {spatial} spatial axes")

    def pads(self, sizes: Sequence[int], kernel: Sequence[int]) -> list[tuple[int, int]]:
        """(before, after) padding of each spatial axis for input ``sizes``."""
        if self.auto_pad == "valid":
            return [(0, 0)] * len(sizes)
        if self.auto_pad in ("same_upper", "same_lower"):
            return [_auto_pads(self.auto_pad, s, k, st, dl)
                    for s, k, st, dl in zip(sizes, kernel, self.strides, self.dilations)]
        return list(zip(self.pads_begin, self.pads_end))


class _FusedConv(_Op):
    """A Convolution/GroupConvolution with a constant weight, its bias and activation folded in.

    The weight ``params[weight_key]`` is (C_out, C_in / groups, *kernel) in torch's layout and the
    bias ``params[bias_key]`` (C_out,); ``activation`` is (IR op type, constant parameters).
    """

    def __init__(self, layer: _Layer, weight_key: str, bias_key: str | None, groups: int,
                 spatial: int, activation: tuple[str, tuple[float, ...]] | None) -> None:
        super().__init__(layer)
        self.attrs = _ConvAttrs(layer, spatial)
        self.weight_key, self.bias_key, self.groups = weight_key, bias_key, groups
        self.spatial, self.activation = spatial, activation
        self.packed = PackedConvWeight()

    def __deepcopy__(self, memo: dict[int, Any]) -> _FusedConv:
        new = _FusedConv.__new__(_FusedConv)
        new.__dict__.update(self.__dict__)
        new.packed = PackedConvWeight()
        return new

    def compute(self, ctx: _KernelContext, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.bind([x], [True], ctx)(x)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        x = args[0]
        w: torch.Tensor = ctx.params[self.weight_key]
        b: torch.Tensor | None = ctx.params[self.bias_key] if self.bias_key else None
        pads = self.attrs.pads(x.shape[2:], w.shape[2:])
        stride, dilation, groups = self.attrs.strides, self.attrs.dilations, self.groups
        act = (_activation(self.activation[0], self.activation[1], not ctx.grad)
               if self.activation else None)
        if self.spatial != 2:
            conv = (F.conv1d, F.conv2d, F.conv3d)[self.spatial - 1]
            flat = [p for before_after in reversed(pads) for p in before_after]

            def run_nd(x: torch.Tensor) -> torch.Tensor:
                y = conv(F.pad(x, flat), w, b, stride, 0, dilation, groups)
                return act(y) if act else y
            return run_nd
        (top, bottom), (left, right) = pads
        pads4 = (top, bottom, left, right)
        cache = self.packed
        # ReLU fuses into the conv (a oneDNN post-op where the packed path runs); other
        # activations follow it
        relu = self.activation is not None and self.activation[0] == "ReLU"
        post = None if relu else act

        def run(x: torch.Tensor) -> torch.Tensor:
            y = fast_conv2d(x, w, b, pads4, stride, dilation, groups, cache, "relu" if relu else "none")
            return post(y) if post else y
        return run


class _Conv(_Op):
    """Convolution / GroupConvolution with a weight computed at run time (no fusion)."""

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        dims = layer.inputs[1].dims if len(layer.inputs) > 1 else None
        grouped = layer.type == "GroupConvolution"
        self.spatial = (len(dims) - (3 if grouped else 2)) if dims else 2
        if self.spatial not in (1, 2, 3):
            raise ModelError(f"{layer.where()}: {self.spatial}-D convolution is not supported")
        self.attrs = _ConvAttrs(layer, self.spatial)

    def compute(self, ctx: _KernelContext, x: torch.Tensor, w: torch.Tensor) -> list[torch.Tensor]:
        groups = 1
        if self.layer.type == "GroupConvolution":
            groups = w.shape[0]
            w = w.reshape(w.shape[0] * w.shape[1], *w.shape[2:])
        pads = self.attrs.pads(x.shape[2:], w.shape[2:])
        x = F.pad(x, [p for ba in reversed(pads) for p in ba])
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.spatial - 1]
        return [conv(x, w.to(x.dtype), None, self.attrs.strides, 0, self.attrs.dilations, groups)]


# -- pooling and padding ---------------------------------------------------------------------

class _Pool(_Op):
    """MaxPool (opset1, opset8 without its indices output) and AvgPool."""

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        d = layer.data
        self.kernel = tuple(_ints(d.get("kernel")))
        spatial = len(self.kernel)
        if spatial not in (1, 2, 3):
            raise ModelError(f"{layer.where()}: kernel {d.get('kernel')!r} is not 1-3 D")
        self.attrs = _ConvAttrs(layer, spatial)
        self.ceil = d.get("rounding_type", "floor").lower() == "ceil"
        self.exclude_pad = d.get("exclude-pad", "false").lower() == "true"
        if layer.type == "MaxPool" and layer.version == "opset8" and len(layer.outputs) > 1:
            self.n_out = 2

    def compute(self, ctx: _KernelContext, x: torch.Tensor) -> list[torch.Tensor]:
        sizes = x.shape[2:]
        dil = self.attrs.dilations if self.layer.type == "MaxPool" else (1,) * len(self.kernel)
        eff = [(k - 1) * d + 1 for k, d in zip(self.kernel, dil)]
        pads = self.attrs.pads(sizes, self.kernel)
        extra = []
        for s, (b, e), k, st in zip(sizes, pads, eff, self.attrs.strides):
            span = s + b + e - k
            out = (-(-span // st) if self.ceil else span // st) + 1
            if self.ceil and (out - 1) * st >= s + b:
                out -= 1  # the last window would start in the end padding
            extra.append(max((out - 1) * st + k - (s + b + e), 0))
        flat = [p for (b, e), ex in zip(reversed(pads), reversed(extra)) for p in (b, e + ex)]
        pool = {"MaxPool": (F.max_pool1d, F.max_pool2d, F.max_pool3d),
                "AvgPool": (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)}[self.layer.type][len(sizes) - 1]
        if self.layer.type == "MaxPool":
            y = pool(F.pad(x, flat, value=float("-inf")), self.kernel, self.attrs.strides, 0, dil)
        else:
            y = pool(F.pad(x, flat), self.kernel, self.attrs.strides, 0)
            ones = F.pad(torch.ones_like(x[:1, :1]), flat)
            if not self.exclude_pad:  # padding counts, the rounding extension does not
                real = [p for (b, e) in reversed(pads) for p in (b, e)]
                inner = F.pad(torch.ones((1, 1, *sizes), dtype=x.dtype, device=x.device), real, value=1.0)
                ones = F.pad(inner, [p for ex in reversed(extra) for p in (0, ex)])
            y = y / pool(ones, self.kernel, self.attrs.strides, 0)
        return [y, None] if self.n_out == 2 else [y]  # type: ignore[list-item]  # unused indices


class _Pad(_Op):
    """Pad opset1/opset12: constant (pad_value input), edge, reflect."""

    attr_inputs = frozenset({1, 2, 3})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.mode = layer.data.get("pad_mode", "constant")
        if self.mode not in ("constant", "edge", "reflect"):
            raise _unsupported_attr(layer, "pad_mode", self.mode)

    def compute(self, ctx: _KernelContext, x: torch.Tensor, begin: Any, end: Any, value: Any = None
                ) -> list[torch.Tensor]:
        begin, end = _pylist(begin), _pylist(end)
        flat = [p for b, e in zip(reversed(begin), reversed(end)) for p in (b, e)]
        if self.mode == "constant":
            v = float(_pylist(value)[0]) if value is not None else 0.0
            return [F.pad(x, flat, value=v)]
        lead = 2 * (len(begin) - 2)
        if any(flat[len(flat) - lead:]) or x.dim() not in (3, 4, 5):
            raise ModelError(f"{self.layer.where()}: {self.mode} padding only on spatial axes")
        return [F.pad(x, flat[:len(flat) - lead] if lead else flat,
                      mode="replicate" if self.mode == "edge" else "reflect")]


# -- interpolation ---------------------------------------------------------------------------

class _Interpolate(_Op):
    """Interpolate-4: nearest (coordinate_transformation_mode asymmetric, nearest_mode simple or
    floor) and linear_onnx (align_corners), scales or sizes, no pads, no antialias: the modes
    these exports use. Others are refused at load time."""

    attr_inputs = frozenset({1, 2, 3})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        d = layer.data
        self.mode = d.get("mode", "")
        self.calc = d.get("shape_calculation_mode", "")
        self.coord = d.get("coordinate_transformation_mode", "half_pixel")
        self.nearest = d.get("nearest_mode", "round_prefer_floor")
        if self.mode == "nearest":
            if self.coord != "asymmetric":
                raise _unsupported_attr(layer, "coordinate_transformation_mode", self.coord)
            if self.nearest not in ("simple", "floor"):
                raise _unsupported_attr(layer, "nearest_mode", self.nearest)
        elif self.mode == "linear_onnx":
            if self.coord != "align_corners":
                raise _unsupported_attr(layer, "coordinate_transformation_mode", self.coord)
        else:
            raise _unsupported_attr(layer, "mode", self.mode)
        if self.calc not in ("sizes", "scales"):
            raise _unsupported_attr(layer, "shape_calculation_mode", self.calc)
        if d.get("antialias", "false").lower() not in ("false", "0"):
            raise _unsupported_attr(layer, "antialias", d["antialias"])
        for k in ("pads_begin", "pads_end"):
            if any(_ints(d.get(k))):
                raise _unsupported_attr(layer, k, d[k])

    def unused_inputs(self) -> frozenset[int]:
        return frozenset({2 if self.calc == "sizes" else 1})

    def resize_plan(self, shape: Sequence[int], sizes: Any, scales: Any, axes: Any
                    ) -> list[tuple[int, int, int, float]]:
        """(axis, input size, output size, scale) of every axis that changes size or scale."""
        rank = len(shape)
        ax = [_axis(int(a), rank) for a in _pylist(axes)] if axes is not None else list(range(rank))
        out = []
        if self.calc == "sizes":
            for a, s in zip(ax, _pylist(sizes)):
                out.append((a, shape[a], int(s), int(s) / shape[a]))
        else:
            for a, sc in zip(ax, _pylist(scales)):
                sc = float(np.float32(sc))
                out.append((a, shape[a], int(math.floor(shape[a] * sc + 1e-5)), sc))
        return [p for p in out if p[1] != p[2] or p[3] != 1.0]

    @staticmethod
    def _nearest_index(n_in: int, n_out: int, scale: float, mode: str) -> np.ndarray:
        src = np.arange(n_out, dtype=np.float32) / np.float32(scale)  # asymmetric, in float32
        idx = np.ceil(src) if mode == "simple" and scale < 1 else np.floor(src)
        return np.clip(idx.astype(np.int64), 0, n_in - 1)

    def kernel(self, x: torch.Tensor, plan: list[tuple[int, int, int, float]], device: torch.device
               ) -> Callable[[torch.Tensor], torch.Tensor]:
        if not plan:
            return lambda x: x
        rank = x.dim()
        axes = [p[0] for p in plan]
        if self.mode == "nearest":
            idx = [self._nearest_index(n_in, n_out, sc, self.nearest) for _, n_in, n_out, sc in plan]
            pow2 = all(n_out % n_in == 0 and (n_out // n_in) in (1, 2, 4, 8, 16) and
                       np.array_equal(i, np.arange(n_out) // (n_out // n_in))
                       for i, (_, n_in, n_out, _) in zip(idx, plan))
            if pow2 and 3 <= rank <= 5 and min(axes) >= 2:
                size = [x.shape[a] for a in range(2, rank)]
                for a, _, n_out, _ in plan:
                    size[a - 2] = n_out
                if rank == 4:  # F.interpolate's argument checks cost as much as the copy
                    up = torch._C._nn.upsample_nearest2d
                    return lambda x: up(x, size)
                return lambda x: F.interpolate(x, size=size, mode="nearest")
            tensors = [(a, torch.from_numpy(i).to(device)) for a, i in zip(axes, idx)]

            def gather(x: torch.Tensor) -> torch.Tensor:
                for a, i in tensors:
                    x = x.index_select(a, i)
                return x
            return gather
        # linear_onnx, align_corners
        if rank == 4 and min(axes) >= 2:
            size = [x.shape[2], x.shape[3]]
            for a, _, n_out, _ in plan:
                size[a - 2] = n_out
            up2 = torch._C._nn.upsample_bilinear2d
            return lambda x: up2(x, size, True)
        steps = []
        for a, n_in, n_out, _ in plan:
            src = (np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1)) if n_out > 1
                   else np.zeros(1))
            i0 = np.clip(np.floor(src).astype(np.int64), 0, n_in - 1)
            i1 = np.minimum(i0 + 1, n_in - 1)
            wt = (src - i0).astype(np.float32)
            view = [1] * rank
            view[a] = n_out
            steps.append((a, torch.from_numpy(i0).to(device), torch.from_numpy(i1).to(device),
                          torch.from_numpy(wt).reshape(view).to(device=device, dtype=x.dtype)))

        def lerp(x: torch.Tensor) -> torch.Tensor:
            for a, i0, i1, wt in steps:
                x0, x1 = x.index_select(a, i0), x.index_select(a, i1)
                x = x0 + (x1 - x0) * wt
            return x
        return lerp

    def compute(self, ctx: _KernelContext, x: torch.Tensor, sizes: Any, scales: Any, axes: Any = None
                ) -> list[torch.Tensor]:
        return [self.kernel(x, self.resize_plan(x.shape, sizes, scales, axes), x.device)(x)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        x = args[0]
        axes = args[3] if len(args) > 3 else None
        return self.kernel(x, self.resize_plan(x.shape, args[1], args[2], axes), ctx.device)
