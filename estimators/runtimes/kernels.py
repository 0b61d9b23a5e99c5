"""Convolution execution shared by the model-format runtimes (:mod:`posetracker.estimators.runtimes.tfjs`,
:mod:`posetracker.estimators.runtimes.openvino_ir`): the CPU speed choices measured for small mobile nets.

- Every float32 CPU convolution goes to oneDNN (:func:`conv2d`): ``F.conv2d`` sends 1x1
  convolutions of a single image on one thread to an im2col + GEMM fallback that is about half
  as fast.
- Convolutions keep their weight in oneDNN's own blocked layout (:class:`PackedConvWeight`,
  :func:`packed_conv2d`): reordering the weight on every call costs as much as a small 1x1 conv.
  The packed op has no gradient, so :func:`use_packed` says no when autograd would record.
- Tensors live in channels-last memory (NHWC bytes, NCHW indexing): oneDNN's depthwise kernels
  are several times faster on it than on plain NCHW, and 1x1 convs are as fast.
- Small 1x1 convolutions are one GEMM on the channels-last bytes (:func:`conv1x1_mm`): a
  oneDNN call has ~20 us of fixed cost on the CPU, a GEMM ~3 us.
- Asymmetric zero padding writes only the border (:func:`zero_pad_channels_last`).

:func:`fast_conv2d` makes these choices for one convolution; the ONNX and OpenVINO readers call it.

Also the SAME padding rule every format shares (:func:`same_pads`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# oneDNN convolution on a weight reordered once into its blocked layout (the ops torch's own
# compiler uses for CPU convs); absent from torch builds without oneDNN.
HAS_PACKED_CONV = hasattr(torch.ops.mkldnn, "_reorder_convolution_weight") and \
    hasattr(torch.ops.mkldnn, "_convolution_pointwise")


# 1x1 convs up to this many multiply-adds run as one GEMM on the CPU (:func:`conv1x1_mm`): below
# it oneDNN's fixed cost per call outweighs its faster arithmetic.
MM_MAX_MACS = 4_000_000


def same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool = True) -> tuple[int, int]:
    """SAME padding (before, after) of one spatial axis in pixels: the output has
    ``ceil(size / stride)`` cells and the padding totals
    ``max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)``; an odd pixel goes after
    (``upper``: TensorFlow's SAME, ONNX/OpenVINO SAME_UPPER) or before (SAME_LOWER). A 3x3
    stride-2 conv on an even size pads (0, 1) upper, not (1, 1).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, big = total // 2, total - total // 2
    return (small, big) if upper else (big, small)


def onednn_float32(x: torch.Tensor) -> bool:
    """Whether a conv of ``x`` runs on oneDNN: float32 on the CPU, with oneDNN built and enabled."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled)


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
           padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """``F.conv2d`` (symmetric ``padding`` (h, w) in pixels), but float32 CPU convolutions always
    go to oneDNN.

    ``F.conv2d`` sends 1x1 convolutions of a single image on one thread to its im2col + GEMM
    fallback (and copies the result into channels-last memory); oneDNN on channels-last input and
    weight is about twice as fast there, and it is already the choice for every other conv.
    ``torch.mkldnn_convolution`` has a gradient, so this path also trains.
    """
    if onednn_float32(x):
        return torch.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def use_packed(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`packed_conv2d` may run a conv of ``x`` with ``weight``: a float32 oneDNN
    conv that autograd does not record (the packed op has no gradient)."""
    if not HAS_PACKED_CONV or not onednn_float32(x):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))


class PackedConvWeight:
    """One conv weight kept in oneDNN's blocked layout, rebuilt when the weight (its storage or
    in-place version) or the input's per-image shape changes.

    A cache, not a buffer: ``copy.deepcopy``/pickle drop it (oneDNN tensors have no storage).
    Not keyed on the batch size: batch slices of 1 and 2 images share the packed weight (oneDNN
    reorders it itself should another batch size want another layout).
    """

    __slots__ = ("_key", "_packed")

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._packed: torch.Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._key, self._packed = None, None

    def __deepcopy__(self, memo: dict[int, Any]) -> PackedConvWeight:
        return PackedConvWeight()

    def get(self, weight: torch.Tensor, x: torch.Tensor, padding: tuple[int, int],
            stride: tuple[int, int], dilation: tuple[int, int], groups: int = 1) -> torch.Tensor:
        """The packed form of ``weight`` (C_out, C_in / groups, kh, kw) for input ``x``
        (N, C_in, H, W)."""
        key = (weight.data_ptr(), weight._version, tuple(x.shape[1:]), padding, stride, dilation,
               groups)
        if self._key != key:
            with torch.no_grad():
                self._packed = torch.ops.mkldnn._reorder_convolution_weight(
                    weight.detach(), list(padding), list(stride), list(dilation), groups,
                    list(x.shape))
            self._key = key
        return self._packed  # type: ignore[return-value]


def packed_conv2d(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None,
                  padding: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                  groups: int = 1, attr: str = "none", scalars: list[float] | None = None,
                  algorithm: str = "") -> torch.Tensor:
    """oneDNN conv of channels-last float32 ``x`` (N, C_in, H, W) with a weight from
    :meth:`PackedConvWeight.get` (same groups); ``attr`` a oneDNN post-op fused into the conv
    ("none", "relu", "hardswish", "sigmoid", "hardtanh" with ``scalars`` (min, max), ...)."""
    return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, list(padding), list(stride),
                                                   list(dilation), groups, attr, scalars or [],
                                                   algorithm)


def conv1x1_mm(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1, stride-1, unpadded convolution of ``x`` (N, C_in, H, W) as one GEMM:
    ``weight_t`` is the weight as (C_in, C_out) (a transposed view is fine), ``bias`` (C_out,).
    Returns (N, C_out, H, W) in channels-last memory.

    On the CPU a oneDNN convolution call costs about 20 us before any arithmetic, a GEMM about
    3 us: for single images of small mobile nets (1x1 convs of 20-320 channels on 64x48 maps
    and smaller) the GEMM is faster. A channels-last ``x``, even a channel slice of one (a
    Split output), is read in place as a row-strided matrix, without a copy.
    """
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
    y = torch.mm(rows, weight_t) if bias is None else torch.addmm(bias, rows, weight_t)
    return y.view(n, h, w, -1).permute(0, 3, 1, 2)


def zero_pad_channels_last(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Zero-pad an (N, C, H, W) tensor into channels-last memory (pads in pixels).

    Same result as ``F.pad``, which fills the whole output with zeros before copying; here only
    the border is zeroed (such a pad sits before stride-2 convs, on the largest tensors).
    """
    n, c, h, w = x.shape
    out = torch.empty((n, c, top + h + bottom, left + w + right), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    out[:, :, top:top + h, left:left + w].copy_(x)
    out[:, :, :top].zero_()
    out[:, :, top + h:].zero_()
    out[:, :, top:top + h, :left].zero_()
    out[:, :, top:top + h, left + w:].zero_()
    return out


def fast_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                pads: tuple[int, int, int, int], stride: tuple[int, int], dilation: tuple[int, int],
                groups: int, packed: PackedConvWeight, post: str = "none") -> torch.Tensor:
    """One 2-D convolution by the fastest path this module knows, in channels-last memory.

    ``x`` (N, C_in, H, W); ``weight`` (C_out, C_in / groups, kh, kw); ``bias`` (C_out,) or None;
    ``pads`` (top, bottom, left, right) in pixels; ``packed`` this conv's own weight cache;
    ``post`` a pointwise activation applied to the output: ``none``, ``relu`` or ``swish`` (SiLU),
    fused into oneDNN's conv where the packed path runs. Returns (N, C_out, H', W').

    Paths: small float32 CPU 1x1 convs as one GEMM (:func:`conv1x1_mm`), other float32 CPU convs
    on the packed weight when autograd does not record (:func:`use_packed`), the rest
    :func:`conv2d` (which trains).
    """
    top, bottom, left, right = pads
    if top == bottom and left == right:
        pad = (top, left)
        x = x.contiguous(memory_format=torch.channels_last)
    else:  # asymmetric padding: one padded copy of the input
        x = zero_pad_channels_last(x, top, bottom, left, right)
        pad = (0, 0)
    o, c, kh, kw = weight.shape
    if kh == kw == 1 and groups == 1 and tuple(stride) == (1, 1) and pad == (0, 0) \
            and x.device.type == "cpu" and x.dtype == torch.float32 \
            and x.shape[0] * x.shape[2] * x.shape[3] * o * c <= MM_MAX_MACS:
        y = conv1x1_mm(x, weight.view(o, c).t(), bias)
    elif use_packed(x, weight):
        return packed_conv2d(x, packed.get(weight, x, pad, stride, dilation, groups), bias, pad,
                             stride, dilation, groups, post)
    else:
        y = conv2d(x, weight, bias, stride, pad, dilation, groups)
    if post == "none":
        return y
    inplace = not (torch.is_grad_enabled() and y.requires_grad)  # autograd may need the conv output
    return F.relu(y, inplace=inplace) if post == "relu" else F.silu(y, inplace=inplace)

