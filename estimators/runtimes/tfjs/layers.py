"""The torch modules that run TF.js graph ops: convolutions (bias and activation fused, on the
CPU kernels of :mod:`posetracker.estimators.runtimes.kernels`), pools, bilinear resizes with
TensorFlow's three coordinate conventions, and the layout-aware elementwise/shape ops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.kernels import (
    PackedConvWeight,
    conv2d,
    packed_conv2d,
    same_pads,
    use_packed,
    zero_pad_channels_last,
)
from posetracker.estimators.runtimes.tfjs.layout import NCHW_STORED, _as_nchw, _LayoutOp, _logical, _Op, _to_stored


def _tf_same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) of one spatial axis: the odd pixel goes AFTER, so
    a 3x3 stride-2 conv on an even size pads (0, 1), not (1, 1) (see
    :func:`posetracker.estimators.runtimes.kernels.same_pads`)."""
    return same_pads(size, kernel, stride, dilation)


# Fused activations, applied in place on the fresh conv output: TF op -> alpha -> function
# (alpha is LeakyRelu's slope).
_FUSED: dict[str, Callable[[float], Callable[[torch.Tensor], torch.Tensor]]] = {
    "Relu": lambda alpha: torch.relu_,
    "Relu6": lambda alpha: lambda y: y.clamp_(0.0, 6.0),
    "LeakyRelu": lambda alpha: lambda y: F.leaky_relu_(y, alpha),
    "Elu": lambda alpha: F.elu_,
    "Sigmoid": lambda alpha: torch.sigmoid_,
    "Tanh": lambda alpha: torch.tanh_,
}
_ACTIVATIONS = tuple(_FUSED)


def _activation(name: str | None, alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fused activation as a function applied in place on the fresh conv output."""
    if name is None:
        return lambda y: y
    if name not in _FUSED:
        raise ModelError(f"unsupported fused activation {name!r}")
    return _FUSED[name](alpha)


class _Conv(_LayoutOp):
    """Conv2D / DepthwiseConv2dNative with bias and activation folded in; stores NCHW.

    ``weight`` (C_out, C_in/groups, kh, kw) and ``bias`` (C_out,) are torch-layout buffers;
    padding "SAME" is TensorFlow's (asymmetric when the total is odd), "VALID" none, or
    explicit ((top, bottom), (left, right)). Asymmetric padding is folded into the kernel for
    depthwise convs and applied to the input for dense ones (the cheaper of the two for each).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, *, stride: tuple[int, int],
                 dilation: tuple[int, int], padding: str | tuple[tuple[int, int], tuple[int, int]],
                 activation: str | None = None, alpha: float = 0.2) -> None:
        super().__init__()
        # Channels-last memory (NHWC bytes, NCHW indexing): oneDNN's depthwise kernels are several
        # times faster on it than on plain NCHW, 1x1 convs are as fast, and NHWC graph inputs
        # permuted to NCHW already have this memory layout.
        self.register_buffer("weight", weight.contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", None if bias is None else bias.contiguous())
        self.stride, self.dilation, self.padding = stride, dilation, padding
        self.act = _activation(activation, alpha)
        # The weight in oneDNN's own blocked layout for dense float32 CPU convs: reordering the
        # weight on every call costs as much as a 1x1 conv on an 8x8 map with 1680 channels.
        self._packed = PackedConvWeight()

    def _pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        if self.padding == "VALID":
            return 0, 0, 0, 0
        if self.padding == "SAME":
            kh, kw = self.weight.shape[2:]
            top, bottom = _tf_same_pads(h, kh, self.stride[0], self.dilation[0])
            left, right = _tf_same_pads(w, kw, self.stride[1], self.dilation[1])
            return top, bottom, left, right
        (top, bottom), (left, right) = self.padding
        return top, bottom, left, right

    def forward(self, xs, perms):
        x = _as_nchw(xs[0], perms[0])
        top, bottom, left, right = self._pads(x.shape[2], x.shape[3])
        weight = self.weight
        groups = x.shape[1] // weight.shape[1]  # depthwise: C groups; Conv2D: usually 1
        if top == bottom and left == right:
            pad: tuple[int, int] = (top, left)
            x = x.contiguous(memory_format=torch.channels_last)
        elif groups > 1 and self.dilation == (1, 1):
            # Asymmetric TF padding folded into the kernel: zero taps added on the side that pads
            # less, then symmetric padding. Output i of a stride-s conv reads rows s*i - top + k either
            # way, and no padded copy of the (large, expanded) depthwise input is made.
            dh, dw = bottom - top, right - left
            weight = F.pad(weight, (max(dw, 0), max(-dw, 0), max(dh, 0), max(-dh, 0)))
            weight = weight.contiguous(memory_format=torch.channels_last)
            pad = (max(top, bottom), max(left, right))
            x = x.contiguous(memory_format=torch.channels_last)
        else:  # dense conv: 7/9 more multiply-adds would cost more than padding the input once
            x = zero_pad_channels_last(x, top, bottom, left, right)
            pad = (0, 0)
        if groups == 1 and use_packed(x, weight):  # not under autograd: the packed op has no gradient
            packed = self._packed.get(weight, x, pad, self.stride, self.dilation)
            y = packed_conv2d(x, packed, self.bias, pad, self.stride, self.dilation)
        else:
            y = conv2d(x, weight, self.bias, self.stride, pad, self.dilation, groups)
        return [self.act(y)], [NCHW_STORED]


class _Pool(_LayoutOp):
    def __init__(self, kind: str, ksize: tuple[int, int], stride: tuple[int, int], padding: str) -> None:
        super().__init__()
        self.kind, self.ksize, self.stride, self.padding = kind, ksize, stride, padding

    def forward(self, xs, perms):
        x = _as_nchw(xs[0], perms[0])
        if self.padding == "SAME":
            top, bottom = _tf_same_pads(x.shape[2], self.ksize[0], self.stride[0], 1)
            left, right = _tf_same_pads(x.shape[3], self.ksize[1], self.stride[1], 1)
        else:
            top = bottom = left = right = 0
        if self.kind == "MaxPool":
            if top or bottom or left or right:  # TF ignores padded cells: pad with -inf
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
            y = F.max_pool2d(x, self.ksize, self.stride)
        else:  # AvgPool: TF averages over the valid (unpadded) cells only
            ones = torch.ones_like(x[:1, :1])
            x = F.pad(x, (left, right, top, bottom))
            ones = F.pad(ones, (left, right, top, bottom))
            y = F.avg_pool2d(x, self.ksize, self.stride) / F.avg_pool2d(ones, self.ksize, self.stride)
        return [y], [NCHW_STORED]


def resize_bilinear_nchw(x: torch.Tensor, size: tuple[int, int], *, align_corners: bool,
                         half_pixel_centers: bool) -> torch.Tensor:
    """TensorFlow ``ResizeBilinear`` on an (N, C, H, W) tensor.

    * ``half_pixel_centers`` (TF2 default): source = (dst + 0.5) * in/out - 0.5, clamped at 0;
      identical to ``F.interpolate(mode="bilinear", align_corners=False)``.
    * ``align_corners``: source = dst * (in-1)/(out-1); identical to ``align_corners=True``.
    * neither (TF1 legacy): source = dst * in/out, no half-pixel shift; torch has no such mode,
      so it is computed here by gathering the two neighbours per axis.
    """
    if align_corners:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    if half_pixel_centers:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    for axis, n_in, n_out in zip((2, 3), tuple(x.shape[2:]), size):
        src = torch.arange(n_out, device=x.device, dtype=torch.float32) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (src - lo).to(x.dtype)
        shape = [1, 1, 1, 1]
        shape[axis] = n_out
        frac = frac.reshape(shape)
        a, b = x.index_select(axis, lo), x.index_select(axis, hi)
        x = a + (b - a) * frac
    return x


class _ResizeBilinear(_LayoutOp):
    def __init__(self, size: tuple[int, int], align_corners: bool, half_pixel_centers: bool) -> None:
        super().__init__()
        self.size, self.align_corners, self.half_pixel_centers = size, align_corners, half_pixel_centers

    def forward(self, xs, perms):
        y = resize_bilinear_nchw(_as_nchw(xs[0], perms[0]), self.size, align_corners=self.align_corners,
                                 half_pixel_centers=self.half_pixel_centers)
        return [y], [NCHW_STORED]


class _Elementwise(_LayoutOp):
    """Unary or binary elementwise op (with TF broadcasting) on stored tensors."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, xs, perms):
        # Work in the stored layout of the first permuted 4-D operand; align the others to it.
        perm = next((p for x, p in zip(xs, perms) if p is not None and x.dim() == len(p)), None)
        if perm is None:
            args = list(xs)
        else:
            args = [x if p == perm else _to_stored(_logical(x, p), perm) for x, p in zip(xs, perms)]
        return [self.fn(*args)], [perm]


class _Transpose(_LayoutOp):
    """Transpose: free, only the stored-to-logical permutation changes."""

    def __init__(self, perm: list[int]) -> None:
        super().__init__()
        self.perm = tuple(perm)

    def forward(self, xs, perms):
        p = perms[0] if perms[0] is not None else tuple(range(xs[0].dim()))
        new = tuple(p[i] for i in self.perm)
        return [xs[0]], [None if new == tuple(range(len(new))) else new]


class _Pad(_LayoutOp):
    def __init__(self, paddings: list[list[int]], value: float = 0.0, mode: str = "constant") -> None:
        super().__init__()
        self.paddings, self.value, self.mode = [tuple(p) for p in paddings], value, mode

    def forward(self, xs, perms):
        x, p = xs[0], perms[0]
        stored = [(0, 0)] * x.dim()
        for i, pad in enumerate(self.paddings):  # logical axis i is stored axis p[i]
            stored[i if p is None else p[i]] = pad
        flat = [v for pad in reversed(stored) for v in pad]  # F.pad: last axis first
        if self.mode == "constant":
            return [F.pad(x, flat, value=self.value)], [p]
        return [F.pad(x, flat[: 2 * (x.dim() - 2)], mode=self.mode)], [p]


class _Concat(_LayoutOp):
    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, xs, perms):  # xs: the tensors to join (the axis was bound at compile time)
        p0 = perms[0]
        if p0 is not None and all(p == p0 for p in perms):
            return [torch.cat(list(xs), dim=p0[self.axis % len(p0)])], [p0]
        return [torch.cat([_logical(x, p) for x, p in zip(xs, perms)], dim=self.axis)], [None]


class _Split(_LayoutOp):
    def __init__(self, sizes: list[int] | int, axis: int) -> None:
        super().__init__()
        self.sizes, self.axis = sizes, axis

    def forward(self, xs, perms):
        x, p = xs[0], perms[0]
        axis = self.axis % x.dim()
        dim = axis if p is None else p[axis]
        sizes = self.sizes
        if isinstance(sizes, list) and -1 in sizes:
            known = sum(s for s in sizes if s != -1)
            sizes = [x.shape[dim] - known if s == -1 else s for s in sizes]
        elif isinstance(sizes, int):
            sizes = x.shape[dim] // sizes
        parts = torch.split(x, sizes, dim=dim)
        return list(parts), [p] * len(parts)


class _Reduce(_LayoutOp):
    def __init__(self, fn: Callable[..., torch.Tensor], axes: list[int], keep_dims: bool) -> None:
        super().__init__()
        self.fn, self.axes, self.keep_dims = fn, axes, keep_dims

    def forward(self, xs, perms):
        x, p = xs[0], perms[0]
        if p is None or not self.keep_dims:
            x, p = _logical(x, p), None
        axes = [a % x.dim() for a in self.axes]
        dims = tuple(a if p is None else p[a] for a in axes)
        if not dims:
            return [x], [p]
        return [self.fn(x, dims, self.keep_dims)], [p]


class _Identity(_LayoutOp):
    def forward(self, xs, perms):
        return [xs[0]], [perms[0]]


class _Cast(_Op):
    def __init__(self, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.dtype = dtype
        # An empty float buffer follows .to()/.half(): DT_FLOAT means "the graph's float dtype".
        self.register_buffer("float_ref", torch.zeros(0))

    def forward(self, x):
        return x.to(self.float_ref.dtype if self.dtype is None else self.dtype)


class _FunctionOp(_Op):
    """A logical-layout op given as a plain function of its input tensors."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)
