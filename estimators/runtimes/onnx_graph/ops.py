"""The ONNX op table: op type -> builder (``_OPS``, filled by the ``@_op`` decorator). A builder
gets the node and the compile context and returns the function that computes the node; ``host``
and ``index`` name the inputs it reads as Python values (shapes, axes, sizes) or indices.

Convolutions run on the CPU kernels shared with the TF.js and OpenVINO IR runtimes
(:mod:`posetracker.estimators.runtimes.kernels`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.kernels import PackedConvWeight, fast_conv2d, same_pads
from posetracker.estimators.runtimes.onnx_graph.io import _Node, _torch_dtype

# How an op reads each input: a Python list/scalar (shapes, axes, sizes), an index (0-d -> int),
# or a tensor operand.
_HOST, _INDEX, _TENSOR = 0, 1, 2


# --------------------------------------------------------------------------------------------
# The op table
# --------------------------------------------------------------------------------------------


@dataclass
class _RunState:
    """What the ops of one call share: set at the start of each ``forward``."""
    device: torch.device = torch.device("cpu")
    float_dtype: torch.dtype = torch.float32
    batch: int = 1


@dataclass
class _BuildContext:
    """Compile-time facts an op builder may use."""
    source: str
    opset: int
    state: _RunState
    consts: dict[str, torch.Tensor]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # of every constant
    meta: bool = False  # building the variant that runs on CPU shape values (float32 kept)

    def fail(self, node: _Node, what: str) -> ModelError:
        return ModelError(f"{self.source}: {node.op} node {node.name!r}: {what}")


@dataclass
class _OpDef:
    """How the table builds one ONNX op: ``build`` makes its kernel; ``host`` and ``index`` are
    the input positions read as host values (shapes, axes) and as integer indices."""

    build: Callable[[_Node, _BuildContext], Callable[..., Any]]
    host: tuple[int, ...] = ()
    index: tuple[int, ...] = ()


_OPS: dict[str, _OpDef] = {}


def _op(*names: str, host: tuple[int, ...] = (), index: tuple[int, ...] = ()):
    def register(build):
        for name in names:
            _OPS[name] = _OpDef(build, host, index)
        return build
    return register


def _host(v: Any) -> Any:
    """A shape/axis/size input as Python values (bound ones already are)."""
    return v.tolist() if isinstance(v, torch.Tensor) else v


def _axes(node: _Node, given: Any) -> list[int] | None:
    """Axes from the attribute (older opsets) or the input (newer ones); ``None`` = all."""
    if "axes" in node.attrs:
        return list(node.attrs["axes"])
    if given is None:
        return None
    given = _host(given)
    return [given] if isinstance(given, int) else list(given)


def _simple(fn: Callable[..., Any]):
    return lambda node, ctx: fn


for _name, _fn in {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Equal": torch.eq,
                   "Less": torch.lt, "Greater": torch.gt, "LessOrEqual": torch.le,
                   "GreaterOrEqual": torch.ge, "And": torch.logical_and, "Or": torch.logical_or,
                   "Not": torch.logical_not, "Sigmoid": torch.sigmoid, "Relu": torch.relu,
                   "Exp": torch.exp, "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs,
                   "Identity": lambda x: x, "_Silu": F.silu}.items():  # _Silu: fused here
    _op(_name)(_simple(_fn))


@_op("Div")
def _build_div(node: _Node, ctx: _BuildContext):
    def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.is_floating_point() or b.is_floating_point():
            return torch.div(a, b)
        return torch.div(a, b, rounding_mode="trunc")  # ONNX integer division truncates
    return div


@_op("HardSigmoid")
def _build_hard_sigmoid(node: _Node, ctx: _BuildContext):
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    return lambda x: (x * alpha + beta).clamp_(0.0, 1.0)


@_op("LeakyRelu")
def _build_leaky(node: _Node, ctx: _BuildContext):
    alpha = float(node.attrs.get("alpha", 0.01))
    return lambda x: F.leaky_relu(x, alpha)


@_op("Clip", host=(1, 2))
def _build_clip(node: _Node, ctx: _BuildContext):
    lo, hi = node.attrs.get("min"), node.attrs.get("max")  # opset < 11: attributes

    def clip(x: torch.Tensor, a: Any = None, b: Any = None) -> torch.Tensor:
        a, b = (_host(a) if a is not None else lo), (_host(b) if b is not None else hi)
        return x if a is None and b is None else torch.clamp(x, a, b)
    return clip


@_op("Cast")
def _build_cast(node: _Node, ctx: _BuildContext):
    target = _torch_dtype(node.attrs["to"])
    if target.is_floating_point and not ctx.meta:
        state = ctx.state
        return lambda x: x.to(state.float_dtype)  # the call's float type, not the file's
    return lambda x: x.to(target)


@_op("Shape")
def _build_shape(node: _Node, ctx: _BuildContext):
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    return lambda x: torch.tensor(x.shape[start:end], dtype=torch.int64)


@_op("Size")
def _build_size(node: _Node, ctx: _BuildContext):
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64)


@_op("ConstantOfShape", host=(0,))
def _build_constant_of_shape(node: _Node, ctx: _BuildContext):
    value = node.attrs.get("value", torch.zeros(1))
    fill, dtype = value.reshape(-1)[0].item(), value.dtype
    state, meta = ctx.state, ctx.meta

    def constant_of_shape(shape: Any) -> torch.Tensor:
        if meta:
            return torch.full(tuple(_host(shape)), fill, dtype=dtype)
        dt = state.float_dtype if dtype.is_floating_point else dtype
        return torch.full(tuple(_host(shape)), fill, dtype=dt, device=state.device)
    return constant_of_shape


@_op("Range")
def _build_range(node: _Node, ctx: _BuildContext):
    def range_(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype,
                            device=start.device)
    return range_


@_op("Concat")
def _build_concat(node: _Node, ctx: _BuildContext):
    axis = int(node.attrs["axis"])
    return lambda *xs: torch.cat(xs, axis)


@_op("Transpose")
def _build_transpose(node: _Node, ctx: _BuildContext):
    perm = node.attrs.get("perm")
    if perm is None:
        return lambda x: x.permute(*range(x.dim() - 1, -1, -1))
    perm = tuple(perm)
    return lambda x: x.permute(perm)


@_op("Unsqueeze", host=(1,))
def _build_unsqueeze(node: _Node, ctx: _BuildContext):
    def unsqueeze(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
        axes_ = _axes(node, axes)
        rank = x.dim() + len(axes_)
        for a in sorted(a % rank for a in axes_):
            x = x.unsqueeze(a)
        return x
    return unsqueeze


@_op("Squeeze", host=(1,))
def _build_squeeze(node: _Node, ctx: _BuildContext):
    def squeeze(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
        axes_ = _axes(node, axes)
        if axes_ is None:
            return x.squeeze()
        return x.squeeze(tuple(a % x.dim() for a in axes_))
    return squeeze


@_op("Flatten")
def _build_flatten(node: _Node, ctx: _BuildContext):
    axis = int(node.attrs.get("axis", 1))

    def flatten(x: torch.Tensor) -> torch.Tensor:
        a = axis % x.dim() if axis < 0 else axis
        return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))
    return flatten


@_op("Reshape", host=(1,))
def _build_reshape(node: _Node, ctx: _BuildContext):
    allow_zero = bool(node.attrs.get("allowzero", 0))
    # A constant target whose leading 1 was the export's batch (see _fix_batch).
    fix_batch = not ctx.meta and node.inputs[1] in ctx.consts
    state, source = ctx.state, ctx.source

    def reshape(x: torch.Tensor, shape: Any) -> torch.Tensor:
        shape = list(_host(shape))
        if not allow_zero:  # 0 = keep that input dim
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        if fix_batch and state.batch > 1 and shape and shape[0] == 1 and x.dim() \
                and x.shape[0] == state.batch:
            shape = _fix_batch(x, shape, state.batch, f"{source}: Reshape node {node.name!r}")
        return x.reshape(shape)
    return reshape


def _fix_batch(x: torch.Tensor, shape: list[int], batch: int, where: str) -> list[int]:
    """Target ``[1, ...]`` of an export fixed at batch 1, for an input of ``batch`` images:
    ``[batch, ...]``, checked to hold exactly the input's elements."""
    fixed = [batch] + shape[1:]
    known = math.prod(s for s in fixed if s != -1)
    if fixed.count(-1) > 1 or known == 0 or x.numel() % known \
            or (-1 not in fixed and known != x.numel()):
        raise ModelError(f"{where}: constant target shape {shape} fixes batch 1; cannot run "
                         f"batch {batch} (input {tuple(x.shape)})")
    return fixed


@_op("Expand", host=(1,))
def _build_expand(node: _Node, ctx: _BuildContext):
    def expand(x: torch.Tensor, shape: Any) -> torch.Tensor:
        # ONNX broadcasts both ways (a 1 in ``shape`` keeps x's dim); torch.expand does not.
        return x.expand(np.broadcast_shapes(x.shape, tuple(_host(shape))))
    return expand


@_op("Tile", host=(1,))
def _build_tile(node: _Node, ctx: _BuildContext):
    return lambda x, repeats: x.repeat(tuple(_host(repeats)))


@_op("Where")
def _build_where(node: _Node, ctx: _BuildContext):
    return lambda cond, a, b: torch.where(cond, a, b)


@_op("Gather", index=(1,))
def _build_gather(node: _Node, ctx: _BuildContext):
    axis = int(node.attrs.get("axis", 0))

    def gather(x: torch.Tensor, idx: int | torch.Tensor) -> torch.Tensor:
        if isinstance(idx, int):
            return x.select(axis, idx)
        if idx.dim() == 0:
            return x.select(axis, int(idx))
        a = axis % x.dim()
        flat = idx.reshape(-1)
        flat = torch.where(flat < 0, flat + x.shape[a], flat)  # ONNX allows negative indices
        return x.index_select(a, flat).reshape(x.shape[:a] + idx.shape + x.shape[a + 1:])
    return gather


@_op("Slice", host=(1, 2, 3, 4))
def _build_slice(node: _Node, ctx: _BuildContext):
    if ctx.opset < 10:
        raise ctx.fail(node, "Slice before opset 10 (attribute form) is not supported")

    def slice_(x: torch.Tensor, starts: Any, ends: Any, axes: Any = None,
               steps: Any = None) -> torch.Tensor:
        starts, ends = _host(starts), _host(ends)
        axes = list(range(len(starts))) if axes is None else _host(axes)
        steps = [1] * len(starts) if steps is None else _host(steps)
        for s, e, a, st in zip(starts, ends, axes, steps):
            a %= x.dim()
            lo, hi, step = slice(s, e, st).indices(x.shape[a])  # ONNX clamps as Python does
            if step > 0:
                x = x[(slice(None),) * a + (slice(lo, hi, step),)]
            else:  # torch slicing has no negative steps
                x = x.index_select(a, torch.arange(lo, hi, step, device=x.device))
        return x
    return slice_


@_op("ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", host=(1,))
def _build_reduce(node: _Node, ctx: _BuildContext):
    keep = bool(node.attrs.get("keepdims", 1))
    fn = {"ReduceMax": torch.amax, "ReduceMin": torch.amin, "ReduceMean": torch.mean,
          "ReduceSum": torch.sum}[node.op]

    def reduce(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
        axes_ = _axes(node, axes)
        if not axes_:
            if node.attrs.get("noop_with_empty_axes", 0) and axes_ is not None:
                return x
            axes_ = list(range(x.dim()))
        return fn(x, tuple(axes_), keepdim=keep)
    return reduce


@_op("TopK", host=(1,))
def _build_topk(node: _Node, ctx: _BuildContext):
    axis = int(node.attrs.get("axis", -1))
    largest = bool(node.attrs.get("largest", 1))

    def topk(x: torch.Tensor, k: Any) -> tuple[torch.Tensor, torch.Tensor]:
        k = _host(k)
        k = int(k[0] if isinstance(k, list) else k)
        # A stable sort: ONNX wants the lower index first among equal values (torch.topk does
        # not promise an order for ties).
        values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
        return values.narrow(axis, 0, k), indices.narrow(axis, 0, k)
    return topk


@_op("GlobalAveragePool", "GlobalMaxPool")
def _build_global_pool(node: _Node, ctx: _BuildContext):
    if node.op == "GlobalAveragePool":
        return lambda x: x.mean(tuple(range(2, x.dim())), keepdim=True)
    return lambda x: x.amax(tuple(range(2, x.dim())), keepdim=True)


def _spatial(node: _Node, ctx: _BuildContext, name: str, default: int, rank: int = 2) -> tuple[int, ...]:
    value = node.attrs.get(name)
    if value is None:
        return (default,) * rank
    if len(value) != rank:
        raise ctx.fail(node, f"{name} {list(value)}: only 2-D (N, C, H, W) is supported")
    return tuple(int(v) for v in value)


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """(before, after) of ONNX SAME_UPPER / SAME_LOWER padding for one spatial dim."""
    return same_pads(size, kernel, stride, dilation, upper)


def _pads_fn(node: _Node, ctx: _BuildContext, kernel: tuple[int, int], strides: tuple[int, int],
             dilations: tuple[int, int]) -> Callable[[int, int], tuple[int, int, int, int]]:
    """-> f(H, W) = (top, bottom, left, right)."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        upper = auto == "SAME_UPPER"

        def same(h: int, w: int) -> tuple[int, int, int, int]:
            return (*_same_pads(h, kernel[0], strides[0], dilations[0], upper),
                    *_same_pads(w, kernel[1], strides[1], dilations[1], upper))
        return same
    if auto == "VALID":
        return lambda h, w: (0, 0, 0, 0)
    pads = node.attrs.get("pads", [0, 0, 0, 0])
    if len(pads) != 4:
        raise ctx.fail(node, f"pads {list(pads)}: only 2-D (N, C, H, W) is supported")
    top, left, bottom, right = (int(p) for p in pads)  # ONNX: all begins, then all ends
    return lambda h, w: (top, bottom, left, right)


@_op("MaxPool", "AveragePool")
def _build_pool(node: _Node, ctx: _BuildContext):
    if len(node.outputs) > 1 and node.outputs[1]:
        raise ctx.fail(node, "the Indices output is not supported")
    kernel = _spatial(node, ctx, "kernel_shape", 1)
    strides = _spatial(node, ctx, "strides", 1)
    dilations = _spatial(node, ctx, "dilations", 1)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    pads = _pads_fn(node, ctx, kernel, strides, dilations)
    is_max = node.op == "MaxPool"
    source = ctx.source  # closures keep no compile context (it holds every constant)
    count_pad = bool(node.attrs.get("count_include_pad", 0))
    if not is_max and dilations != (1, 1):
        raise ctx.fail(node, "dilated AveragePool is not supported")

    def pool(x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = pads(x.shape[2], x.shape[3])
        if top == bottom and left == right and top <= kernel[0] // 2 and left <= kernel[1] // 2:
            pad = (top, left)
        else:  # asymmetric: pad outside (max: -inf, never chosen; average: zeros, see below)
            x = F.pad(x, (left, right, top, bottom), value=-math.inf if is_max else 0.0)
            pad = (0, 0)
            if not is_max and not count_pad and (top or bottom or left or right):
                raise ModelError(f"{source}: AveragePool node {node.name!r}: asymmetric "
                                 "padding without count_include_pad is not supported")
        if is_max:
            return F.max_pool2d(x, kernel, strides, pad, dilations, ceil)
        return F.avg_pool2d(x, kernel, strides, pad, ceil, count_pad)
    return pool


@_op("Resize", host=(1, 2, 3))
def _build_resize(node: _Node, ctx: _BuildContext):
    mode = node.attrs.get("mode", "nearest")
    coords = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
    if ctx.opset < 11:
        coords = "asymmetric"  # opset 10 Resize: asymmetric, floor
        nearest = "floor"
    # The torch modes that compute the same source pixels.
    if mode == "nearest" and coords == "asymmetric" and nearest == "floor":
        kw: dict[str, Any] = {"mode": "nearest"}
    elif mode == "nearest" and coords in ("half_pixel", "pytorch_half_pixel") \
            and nearest == "round_prefer_ceil":
        kw = {"mode": "nearest-exact"}
    elif mode == "linear" and coords in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        kw = {"mode": "bilinear", "align_corners": coords == "align_corners"}
    else:
        raise ctx.fail(node, f"mode {mode!r} with coordinate_transformation_mode {coords!r} "
                       f"and nearest_mode {nearest!r} is not supported")
    scales_at = 1 if ctx.opset < 11 else 2
    source = ctx.source

    def resize(x: torch.Tensor, *args: Any) -> torch.Tensor:
        args = [_host(a) for a in args] + [None] * 3
        scales, sizes = args[scales_at - 1], (args[2] if scales_at == 2 else None)
        if sizes:
            return F.interpolate(x, size=tuple(int(s) for s in sizes[2:]), **kw)
        if len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
            raise ModelError(f"{source}: Resize node {node.name!r}: scales {scales}: only "
                             "spatial scaling of (N, C, H, W) is supported")
        # ONNX output size floor(in * scale) and source coordinate dst / scale: torch's with
        # the scale kept as given.
        return F.interpolate(x, scale_factor=tuple(float(s) for s in scales[2:]),
                             recompute_scale_factor=False, **kw)
    return resize


@_op("Conv")
def _build_conv(node: _Node, ctx: _BuildContext):
    weight = ctx.shapes.get(node.inputs[1])
    if weight is None or len(weight) != 4:
        raise ctx.fail(node, "only 2-D convolutions with a constant weight are supported")
    kernel = tuple(int(k) for k in weight[2:])
    strides = _spatial(node, ctx, "strides", 1)
    dilations = _spatial(node, ctx, "dilations", 1)
    groups = int(node.attrs.get("group", 1))
    pads = _pads_fn(node, ctx, kernel, strides, dilations)
    return _conv_function(pads, strides, dilations, groups, node.attrs.get("_activation"))


# --------------------------------------------------------------------------------------------
# Convolution (kernels.fast_conv2d, shared with the OpenVINO reader)
# --------------------------------------------------------------------------------------------


def _conv_function(pads: Callable[[int, int], tuple[int, int, int, int]], strides: tuple[int, int],
                   dilations: tuple[int, int], groups: int, activation: str | None):
    """-> conv(x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) | None) -> (N, O, H', W'),
    with SiLU applied when ``activation == "silu"`` (a fused Conv -> Sigmoid -> Mul).

    Channels-last memory throughout; the path (GEMM, packed oneDNN with SiLU fused in, or plain)
    is :func:`posetracker.estimators.runtimes.kernels.fast_conv2d`'s.
    """
    post = "swish" if activation == "silu" else "none"
    packed = PackedConvWeight()

    def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return fast_conv2d(x, weight, bias, pads(x.shape[2], x.shape[3]), strides, dilations, groups,
                           packed, post)
    return conv
