"""ONNX models (``.onnx``, a protobuf ``ModelProto``) run in torch by a small op-table interpreter.

Public API
----------
``read_onnx(path) -> onnx.ModelProto``
    The file parsed and checked; a missing, truncated or corrupt file is one ``ModelError`` line
    naming it.
``load_onnx_graph(path, outputs=None) -> OnnxGraph``
    The graph compiled into a torch module. ``outputs`` names intermediate tensors to return
    instead of the graph outputs; only the nodes they need are kept, so a graph can be cut before
    an op this runtime lacks (RTMDet's in-graph ``NonMaxSuppression``).
``OnnxGraph(*inputs) -> {name: tensor}``; ``.input_names``, ``.input_shapes`` (ints, ``None`` for
symbolic dims), ``.output_names``, ``.parameter(onnx_name)``.

How it runs
-----------
Load: initializers and ``Constant`` nodes become tensors; every node whose inputs are all constant
is evaluated once (folding). ``Conv -> Sigmoid -> Mul`` (SiLU) chains become one conv. Float
constants that an op reads as a tensor operand become ``nn.Parameter`` s (float32, trainable);
integer constants, and anything read as a shape, axis, size or index, stay constants. An op
outside the table that the requested outputs need is refused here, naming op type and node.

Values that depend only on the inputs' *shapes* ("meta": ``Shape``, and the arithmetic on shapes
and constants that builds reshape targets and anchor grids) stay dynamic, so any batch size runs,
but they are computed once per (input shapes, device, float dtype) key: the first call with a
key runs every node and binds the meta values into that key's flat plan of the remaining ops (a
list of (function, argument template, input slots, output slots) with slot-indexed storage, no
name lookups); later calls with the key run only that plan. One call at a time per module (the
call's device, dtype and batch are shared state of its ops).

Types: a ``Cast`` to any float type, and float constants bound into the plan, take the float type
of the call's input (so ``.half()`` / CUDA work end to end); integer shape arithmetic stays int64
on the CPU until an op needs it as a tensor on the device.

Batch: a constant ``Reshape`` target that bakes batch 1 in as its leading dim (exports fixed at
batch 1) gets the call's batch substituted when its input carries the batch, and the element
count is checked.

CPU speed (float32): convs run on channels-last memory with the kernels the TF.js and OpenVINO IR
runtimes share (:mod:`posetracker.estimators.runtimes.kernels`): small 1x1 convs as one GEMM, the others on
oneDNN with the weight kept in its blocked layout and SiLU fused in; under autograd, plain
differentiable convs.

Ops: Add Sub Mul Div, Equal Less Greater LessOrEqual GreaterOrEqual And Or Not Where, Sigmoid
HardSigmoid Relu LeakyRelu Clip Exp Sqrt Neg Abs Identity, Cast Shape Size ConstantOfShape Range
Constant, Concat Transpose Reshape Flatten Unsqueeze Squeeze Expand Tile Gather Slice, ReduceMax
ReduceMin ReduceMean ReduceSum TopK, Conv MaxPool AveragePool GlobalAveragePool GlobalMaxPool
Resize (nearest asymmetric/floor, nearest half-pixel/round-prefer-ceil, bilinear), all 2-D.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posetracker.estimators.runtimes.kernels import (PackedConvWeight, conv1x1_mm, conv2d, packed_conv2d,
                                         use_packed, zero_pad_channels_last)
from posetracker.core.errors import ModelError

# How an op reads each input: a Python list/scalar (shapes, axes, sizes), an index (0-d -> int),
# or a tensor operand.
_HOST, _INDEX, _TENSOR = 0, 1, 2

_MAX_CACHED_KEYS = 16  # per (input shapes, device, dtype) plans kept (LRU)
# 1x1 convs up to this many multiply-adds run as one GEMM on the CPU (kernels.conv1x1_mm), as in
# the OpenVINO IR runtime: below it oneDNN's fixed cost per call outweighs its faster arithmetic.
_MM_MAX_MACS = 4_000_000
_PARAM = "\x00param:"  # slot-name prefix of a parameter as data ops read it


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_onnx(path: str | Path) -> Any:
    """Parse and check an ONNX file -> ``onnx.ModelProto``; ModelError naming the file otherwise."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: ONNX model not found")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # DecodeError, ValidationError, OSError: all mean "not this file"
        raise ModelError(f"{path}: not a valid ONNX model (truncated or corrupt?): "
                         f"{type(e).__name__}: {_one_line(e)[:200]}") from None
    return model


def _to_tensor(proto: Any) -> torch.Tensor:
    """A TensorProto -> CPU tensor (a copy; bool, ints, floats; float64 kept)."""
    from onnx import numpy_helper

    arr = np.array(numpy_helper.to_array(proto))  # writable copy (to_array may return a view)
    if arr.dtype == np.uint16 or arr.dtype == np.uint32 or arr.dtype == np.uint64:
        arr = arr.astype(np.int64)  # torch lacks these as general-purpose dtypes
    return torch.from_numpy(arr)


def _torch_dtype(onnx_type: int) -> torch.dtype:
    from onnx import helper

    np_type = np.dtype(helper.tensor_dtype_to_np_dtype(onnx_type))
    if np_type in (np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64)):
        return torch.int64
    return torch.from_numpy(np.zeros(0, np_type)).dtype


@dataclass
class _Node:
    name: str
    op: str
    inputs: list[str]    # "" = optional input left out
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


def _attr_value(attr: Any) -> Any:
    from onnx import AttributeProto, helper

    value = helper.get_attribute_value(attr)
    if attr.type == AttributeProto.TENSOR:
        return _to_tensor(value)
    return value.decode() if isinstance(value, bytes) else value


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
class _Ctx:
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
    build: Callable[[_Node, _Ctx], Callable[..., Any]]
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
def _build_div(node: _Node, ctx: _Ctx):
    def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.is_floating_point() or b.is_floating_point():
            return torch.div(a, b)
        return torch.div(a, b, rounding_mode="trunc")  # ONNX integer division truncates
    return div


@_op("HardSigmoid")
def _build_hard_sigmoid(node: _Node, ctx: _Ctx):
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    return lambda x: (x * alpha + beta).clamp_(0.0, 1.0)


@_op("LeakyRelu")
def _build_leaky(node: _Node, ctx: _Ctx):
    alpha = float(node.attrs.get("alpha", 0.01))
    return lambda x: F.leaky_relu(x, alpha)


@_op("Clip", host=(1, 2))
def _build_clip(node: _Node, ctx: _Ctx):
    lo, hi = node.attrs.get("min"), node.attrs.get("max")  # opset < 11: attributes

    def clip(x: torch.Tensor, a: Any = None, b: Any = None) -> torch.Tensor:
        a, b = (_host(a) if a is not None else lo), (_host(b) if b is not None else hi)
        return x if a is None and b is None else torch.clamp(x, a, b)
    return clip


@_op("Cast")
def _build_cast(node: _Node, ctx: _Ctx):
    target = _torch_dtype(node.attrs["to"])
    if target.is_floating_point and not ctx.meta:
        state = ctx.state
        return lambda x: x.to(state.float_dtype)  # the call's float type, not the file's
    return lambda x: x.to(target)


@_op("Shape")
def _build_shape(node: _Node, ctx: _Ctx):
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    return lambda x: torch.tensor(x.shape[start:end], dtype=torch.int64)


@_op("Size")
def _build_size(node: _Node, ctx: _Ctx):
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64)


@_op("ConstantOfShape", host=(0,))
def _build_constant_of_shape(node: _Node, ctx: _Ctx):
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
def _build_range(node: _Node, ctx: _Ctx):
    def range_(start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype,
                            device=start.device)
    return range_


@_op("Concat")
def _build_concat(node: _Node, ctx: _Ctx):
    axis = int(node.attrs["axis"])
    return lambda *xs: torch.cat(xs, axis)


@_op("Transpose")
def _build_transpose(node: _Node, ctx: _Ctx):
    perm = node.attrs.get("perm")
    if perm is None:
        return lambda x: x.permute(*range(x.dim() - 1, -1, -1))
    perm = tuple(perm)
    return lambda x: x.permute(perm)


@_op("Unsqueeze", host=(1,))
def _build_unsqueeze(node: _Node, ctx: _Ctx):
    def unsqueeze(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
        axes_ = _axes(node, axes)
        rank = x.dim() + len(axes_)
        for a in sorted(a % rank for a in axes_):
            x = x.unsqueeze(a)
        return x
    return unsqueeze


@_op("Squeeze", host=(1,))
def _build_squeeze(node: _Node, ctx: _Ctx):
    def squeeze(x: torch.Tensor, axes: Any = None) -> torch.Tensor:
        axes_ = _axes(node, axes)
        if axes_ is None:
            return x.squeeze()
        return x.squeeze(tuple(a % x.dim() for a in axes_))
    return squeeze


@_op("Flatten")
def _build_flatten(node: _Node, ctx: _Ctx):
    axis = int(node.attrs.get("axis", 1))

    def flatten(x: torch.Tensor) -> torch.Tensor:
        a = axis % x.dim() if axis < 0 else axis
        return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))
    return flatten


@_op("Reshape", host=(1,))
def _build_reshape(node: _Node, ctx: _Ctx):
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
def _build_expand(node: _Node, ctx: _Ctx):
    def expand(x: torch.Tensor, shape: Any) -> torch.Tensor:
        # ONNX broadcasts both ways (a 1 in ``shape`` keeps x's dim); torch.expand does not.
        return x.expand(torch.broadcast_shapes(x.shape, tuple(_host(shape))))
    return expand


@_op("Tile", host=(1,))
def _build_tile(node: _Node, ctx: _Ctx):
    return lambda x, repeats: x.repeat(tuple(_host(repeats)))


@_op("Where")
def _build_where(node: _Node, ctx: _Ctx):
    return lambda cond, a, b: torch.where(cond, a, b)


@_op("Gather", index=(1,))
def _build_gather(node: _Node, ctx: _Ctx):
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
def _build_slice(node: _Node, ctx: _Ctx):
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
def _build_reduce(node: _Node, ctx: _Ctx):
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
def _build_topk(node: _Node, ctx: _Ctx):
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
def _build_global_pool(node: _Node, ctx: _Ctx):
    if node.op == "GlobalAveragePool":
        return lambda x: x.mean(tuple(range(2, x.dim())), keepdim=True)
    return lambda x: x.amax(tuple(range(2, x.dim())), keepdim=True)


def _spatial(node: _Node, ctx: _Ctx, name: str, default: int, rank: int = 2) -> tuple[int, ...]:
    value = node.attrs.get(name)
    if value is None:
        return (default,) * rank
    if len(value) != rank:
        raise ctx.fail(node, f"{name} {list(value)}: only 2-D (N, C, H, W) is supported")
    return tuple(int(v) for v in value)


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """(before, after) of ONNX SAME_UPPER / SAME_LOWER padding for one spatial dim."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


def _pads_fn(node: _Node, ctx: _Ctx, kernel: tuple[int, int], strides: tuple[int, int],
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
def _build_pool(node: _Node, ctx: _Ctx):
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
def _build_resize(node: _Node, ctx: _Ctx):
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
def _build_conv(node: _Node, ctx: _Ctx):
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
# Convolution (CPU fast path shared with the TF.js runtime)
# --------------------------------------------------------------------------------------------


def _conv_function(pads: Callable[[int, int], tuple[int, int, int, int]], strides: tuple[int, int],
                   dilations: tuple[int, int], groups: int, activation: str | None):
    """-> conv(x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) | None) -> (N, O, H', W'),
    with SiLU applied when ``activation == "silu"`` (a fused Conv -> Sigmoid -> Mul).

    Channels-last memory throughout (oneDNN's and cuDNN's fast layout). On the CPU (float32):
    small 1x1 convs as one GEMM (below ``_MM_MAX_MACS`` oneDNN's fixed cost per call dominates),
    the others on oneDNN with the weight packed once and SiLU fused in ("swish" post-op).
    """
    silu = activation == "silu"
    packed = PackedConvWeight()
    pointwise = strides == (1, 1)

    def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        top, bottom, left, right = pads(x.shape[2], x.shape[3])
        if top == bottom and left == right:
            pad = (top, left)
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = zero_pad_channels_last(x, top, bottom, left, right)
            pad = (0, 0)
        o, c, kh, kw = weight.shape
        if pointwise and kh == kw == 1 and groups == 1 and pad == (0, 0) \
                and x.device.type == "cpu" and x.dtype == torch.float32 \
                and x.shape[0] * x.shape[2] * x.shape[3] * o * c <= _MM_MAX_MACS:
            y = conv1x1_mm(x, weight.view(o, c).t(), bias)
        elif use_packed(x, weight):
            return packed_conv2d(x, packed.get(weight, x, pad, strides, dilations, groups), bias,
                                 pad, strides, dilations, groups, "swish" if silu else "none")
        else:
            y = conv2d(x, weight, bias, strides, pad, dilations, groups)
        if silu:  # in place unless autograd needs the conv output
            return F.silu(y, inplace=not (torch.is_grad_enabled() and y.requires_grad))
        return y
    return conv


# --------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------


def _read_nodes(graph: Any) -> list[_Node]:
    nodes = []
    for i, n in enumerate(graph.node):
        op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        nodes.append(_Node(n.name or f"{n.op_type}_{i}", op, list(n.input), list(n.output), attrs))
    return nodes


def _constant_value(node: _Node, ctx: _Ctx) -> torch.Tensor:
    a = node.attrs
    if "value" in a:
        return a["value"]
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                       ("value_int", torch.int64), ("value_ints", torch.int64)):
        if key in a:
            return torch.tensor(a[key], dtype=dtype)
    raise ctx.fail(node, f"unsupported Constant attributes {sorted(a)}")


def _needed(nodes: list[_Node], wanted: Sequence[str], known: set[str], source: str) -> list[_Node]:
    """The nodes ``wanted`` depends on, in a topological order (the file's where it is one)."""
    producer = {}
    for node in nodes:
        for out in node.outputs:
            if out:
                producer[out] = node
    keep: dict[int, _Node] = {}
    stack = [w for w in wanted if w not in known]
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None:
            raise ModelError(f"{source}: no node, input or initializer defines {name!r}")
        if id(node) in keep:
            continue
        keep[id(node)] = node
        stack.extend(i for i in node.inputs if i and i not in known)
    order, done = [], set(known)
    pending = [n for n in nodes if id(n) in keep]
    while pending:  # Kahn's algorithm, stable: a sorted file passes once
        rest = []
        for node in pending:
            if all(not i or i in done for i in node.inputs):
                order.append(node)
                done.update(node.outputs)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ModelError(f"{source}: graph has a cycle or undefined inputs at node "
                             f"{rest[0].name!r} ({rest[0].op})")
        pending = rest
    return order


def _fuse_silu(nodes: list[_Node], protected: set[str]) -> list[_Node]:
    """``y = Conv(...); Mul(y, Sigmoid(y))`` -> one conv with SiLU; a lone ``x * Sigmoid(x)``
    -> ``_Silu``. Only where the intermediate values have no other reader and are not requested."""
    users: dict[str, list[_Node]] = {}
    for node in nodes:
        for i in node.inputs:
            users.setdefault(i, []).append(node)
    producer = {o: n for n in nodes for o in n.outputs}
    dropped: set[int] = set()
    replaced: dict[int, _Node] = {}
    for sig in nodes:
        if sig.op != "Sigmoid" or sig.outputs[0] in protected:
            continue
        x = sig.inputs[0]
        s_users = users.get(sig.outputs[0], [])
        if len(s_users) != 1 or s_users[0].op != "Mul" or sorted(s_users[0].inputs) != sorted(
                [x, sig.outputs[0]]):
            continue
        mul = s_users[0]
        conv = producer.get(x)
        if conv is not None and conv.op == "Conv" and x not in protected \
                and "_activation" not in conv.attrs \
                and sorted(id(u) for u in users.get(x, [])) == sorted([id(sig), id(mul)]):
            fused = _Node(conv.name, "Conv", conv.inputs, mul.outputs,
                          {**conv.attrs, "_activation": "silu"})
            replaced[id(conv)] = fused
            dropped.update((id(sig), id(mul)))
        else:
            replaced[id(mul)] = _Node(mul.name, "_Silu", [x], mul.outputs)
            dropped.add(id(sig))
    return [replaced.get(id(n), n) for n in nodes if id(n) not in dropped]


@dataclass
class _Step:
    node: _Node
    fn: Callable[..., Any]
    meta: bool                 # depends on input shapes only: run once per key
    ins: list[int | None]      # slots (None: optional input left out)
    kinds: list[int]           # _HOST / _INDEX / _TENSOR per input
    static: list[bool]         # input is a constant or meta value (bound per key)
    outs: list[int]


class _Plan:
    """One key's data steps with the meta values bound in."""

    def __init__(self, steps: list[tuple], outputs: list[tuple[int | None, Any]]):
        self.steps = steps
        self.outputs = outputs


class OnnxGraph(nn.Module):
    """An ONNX graph (or the part of it that ``outputs`` need) as a torch module.

    Args:
        model: A parsed ``onnx.ModelProto`` (:func:`read_onnx`).
        outputs: Names of the tensors to return (intermediate ones allowed); default: the graph's
            outputs.
        source: Shown in errors (the file name).

    Call with the graph inputs in order (tensors on the module's device; float inputs set the
    float type the graph computes in) -> ``{output name: tensor}``.
    """

    def __init__(self, model: Any, outputs: Sequence[str] | None = None, source: str = "<onnx>"):
        super().__init__()
        graph = model.graph
        opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [1])
        self.source = source
        self._state = _RunState()
        consts: dict[str, torch.Tensor] = {}
        try:
            for init in graph.initializer:
                consts[init.name] = _to_tensor(init)
        except Exception as e:
            raise ModelError(f"{source}: unreadable initializer: {_one_line(e)[:200]}") from None
        self.input_names = [i.name for i in graph.input if i.name not in consts]
        self.input_shapes: dict[str, tuple[int | None, ...]] = {}
        for i in graph.input:
            if i.name in consts:
                continue
            dims = i.type.tensor_type.shape.dim
            self.input_shapes[i.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                              for d in dims)
        self.output_names = list(outputs) if outputs else [o.name for o in graph.output]
        if len(set(self.output_names)) != len(self.output_names):
            raise ModelError(f"{source}: output names repeat: {self.output_names}")

        ctx = _Ctx(source, opset, self._state, consts)
        nodes = _needed(_read_nodes(graph), self.output_names,
                        set(consts) | set(self.input_names), source)
        for node in nodes:  # refuse before any work, naming the first op we lack
            if node.op not in _OPS and node.op != "Constant":
                raise ModelError(f"{source}: unsupported ONNX op {node.op} (node {node.name!r})")
        nodes = _fuse_silu(nodes, set(self.output_names))

        # Fold constants; classify the rest as meta (shapes only) or data.
        meta_vals: set[str] = set()
        shape_dynamic: set[str] = set()   # values whose shape depends on data values
        kept: list[tuple[_Node, bool]] = []
        for node in nodes:
            if node.op == "Constant":
                consts[node.outputs[0]] = _constant_value(node, ctx)
                continue
            spec = _OPS[node.op]
            ins = [i for i in node.inputs if i]
            if all(i in consts for i in ins):
                self._fold(node, spec, ctx)
                continue
            if node.op in ("Shape", "Size"):
                meta = ins[0] not in shape_dynamic
            else:
                meta = all(i in consts or i in meta_vals for i in ins)
            if meta:
                meta_vals.update(node.outputs)
            if any(i in shape_dynamic for i in ins) or any(
                    p < len(node.inputs) and node.inputs[p] and node.inputs[p] not in consts
                    and node.inputs[p] not in meta_vals for p in spec.host):
                shape_dynamic.update(node.outputs)  # output shape follows data values
            kept.append((node, meta))

        # Float constants read as tensor operands by data ops are the trainable parameters.
        param_names: list[str] = []
        for node, meta in kept:
            if meta:
                continue
            spec = _OPS[node.op]
            for pos, name in enumerate(node.inputs):
                if name in consts and pos not in spec.host and pos not in spec.index \
                        and consts[name].is_floating_point() and name not in param_names:
                    param_names.append(name)
        self.params = nn.ParameterDict()
        self._param_keys: dict[str, str] = {}
        for name in param_names:
            key = "".join(c if c.isalnum() else "_" for c in name) or "p"
            while key in self.params:
                key += "_"
            value = consts[name].float()
            if value.dim() == 4:  # conv weights: channels-last, what oneDNN's fast kernels read
                value = value.contiguous(memory_format=torch.channels_last)
            self.params[key] = nn.Parameter(value)
            self._param_keys[name] = key
        shapes = {n: tuple(v.shape) for n, v in consts.items()}

        # Slots: one per value; a parameter's data readers get its own slot (its meta readers,
        # shape arithmetic on the CPU, keep reading the constant).
        slots: dict[str, int] = {}

        def slot(name: str) -> int:
            if name not in slots:
                slots[name] = len(slots)
            return slots[name]

        params = set(param_names)
        self._input_slots = [slot(n) for n in self.input_names]
        self._param_slots = [slot(_PARAM + n) for n in param_names]
        self._param_order = [self._param_keys[n] for n in param_names]
        self._steps: list[_Step] = []
        for node, meta in kept:
            spec = _OPS[node.op]
            fn = spec.build(node, _Ctx(source, opset, self._state, consts, shapes, meta=meta))
            kinds = _kinds(spec, len(node.inputs))
            as_param = [not meta and i in params and k == _TENSOR
                        for i, k in zip(node.inputs, kinds)]
            ins = [None if not i else slot(_PARAM + i) if p else slot(i)
                   for i, p in zip(node.inputs, as_param)]
            static = [bool(i) and not p and (i in consts or i in meta_vals)
                      for i, p in zip(node.inputs, as_param)]
            self._steps.append(_Step(node, fn, meta, ins, kinds, static,
                                     [slot(o) for o in node.outputs]))
        for name in self.output_names:
            slot(name)
        self._consts = [(slots[n], v) for n, v in consts.items() if n in slots]
        self._output_slots = [slots[n] for n in self.output_names]
        self._output_static = [n in consts or n in meta_vals for n in self.output_names]
        self._num_slots = len(slots)
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()

    def _fold(self, node: _Node, spec: _OpDef, ctx: _Ctx) -> None:
        ctx = _Ctx(ctx.source, ctx.opset, ctx.state, ctx.consts, meta=True)
        if node.op == "Conv":
            ctx.shapes = {n: tuple(v.shape) for n, v in ctx.consts.items() if n in node.inputs}
        fn = spec.build(node, ctx)
        args = [_bind_meta(ctx.consts[i], k) if i else None
                for i, k in zip(node.inputs, _kinds(spec, len(node.inputs)))]
        try:
            out = fn(*args)
        except ModelError:
            raise
        except Exception as e:
            raise ctx.fail(node, f"failed on constant inputs: {_one_line(e)[:200]}") from None
        outs = out if isinstance(out, (tuple, list)) else [out]
        for name, value in zip(node.outputs, outs):
            if name:
                ctx.consts[name] = value

    # ---------------------------------------------------------------------------------------

    def parameter(self, onnx_name: str) -> nn.Parameter:
        """The parameter made from the initializer (or folded constant) ``onnx_name``."""
        return self.params[self._param_keys[onnx_name]]

    def _apply(self, fn, *args, **kwargs):
        self._plans.clear()  # bound constants live on the old device/dtype
        return super()._apply(fn, *args, **kwargs)

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(inputs) != len(self._input_slots):
            raise ValueError(f"expected {len(self._input_slots)} inputs {self.input_names}, "
                             f"got {len(inputs)}")
        state = self._state
        floats = [x.dtype for x in inputs if x.is_floating_point()]
        params = [self.params[k] for k in self._param_order]
        state.float_dtype = floats[0] if floats else (params[0].dtype if params else torch.float32)
        state.device = inputs[0].device if inputs else torch.device("cpu")
        state.batch = inputs[0].shape[0] if inputs and inputs[0].dim() else 1
        env: list[Any] = [None] * self._num_slots
        for s, x in zip(self._input_slots, inputs):
            env[s] = x
        for s, p in zip(self._param_slots, params):
            env[s] = p
        key = (tuple(tuple(x.shape) for x in inputs), state.device, state.float_dtype,
               torch.is_inference_mode_enabled())
        plan = self._plans.get(key)
        if plan is None:
            return self._trace(env, key)
        self._plans.move_to_end(key)
        for fn, template, dyn, outs, free in plan.steps:
            args = list(template)
            for pos, s in dyn:
                args[pos] = env[s]
            out = fn(*args)
            if len(outs) == 1:
                env[outs[0]] = out
            else:
                for s, v in zip(outs, out):
                    env[s] = v
            for s in free:
                env[s] = None
        return {name: env[s] if s is not None else v
                for name, (s, v) in zip(self.output_names, plan.outputs)}

    def _trace(self, env: list[Any], key: tuple) -> dict[str, torch.Tensor]:
        """Run every step, binding the meta and constant values into a plan for ``key``."""
        device, dtype = self._state.device, self._state.float_dtype
        for s, v in self._consts:
            env[s] = v
        steps: list[list[Any]] = []
        for st in self._steps:
            try:
                if st.meta:
                    out = st.fn(*[None if s is None else _bind_meta(env[s], k)
                                  for s, k in zip(st.ins, st.kinds)])
                else:
                    template: list[Any] = []
                    dyn = []
                    for pos, (s, k, static) in enumerate(zip(st.ins, st.kinds, st.static)):
                        if s is not None and static:
                            template.append(_bind(env[s], k, device, dtype))
                        else:
                            template.append(None)
                            if s is not None:
                                dyn.append((pos, s))
                    args = list(template)
                    for pos, s in dyn:
                        args[pos] = env[s]
                    out = st.fn(*args)
                    steps.append([st.fn, tuple(template), tuple(dyn), tuple(st.outs), ()])
            except ModelError:
                raise
            except Exception as e:
                raise RuntimeError(f"{self.source}: {st.node.op} node {st.node.name!r}: "
                                   f"{_one_line(e)[:300]}") from e
            if len(st.outs) == 1:
                env[st.outs[0]] = out
            else:
                for s, v in zip(st.outs, out):
                    env[s] = v
        # Free each dynamic value after its last reader (outputs are kept).
        keep = set(self._output_slots) | set(self._input_slots) | set(self._param_slots)
        seen: set[int] = set()
        for step in reversed(steps):
            free = tuple(s for _, s in step[2] if s not in keep and s not in seen)
            seen.update(s for _, s in step[2])
            step[4] = free
        outputs = [(None, _bind(env[s], _TENSOR, device, dtype)) if static else (s, None)
                   for s, static in zip(self._output_slots, self._output_static)]
        self._plans[key] = _Plan([tuple(st) for st in steps], outputs)
        while len(self._plans) > _MAX_CACHED_KEYS:
            self._plans.popitem(last=False)
        return {name: env[s] if s is not None else v
                for name, (s, v) in zip(self.output_names, outputs)}


def _kinds(spec: _OpDef, n: int) -> list[int]:
    return [_HOST if p in spec.host else _INDEX if p in spec.index else _TENSOR for p in range(n)]


def _bind_meta(v: Any, kind: int) -> Any:
    """An input of a meta (CPU shape arithmetic) step."""
    if kind == _HOST:
        return _host(v)
    if kind == _INDEX and v.dim() == 0:
        return int(v)
    return v


def _bind(v: torch.Tensor, kind: int, device: torch.device, float_dtype: torch.dtype) -> Any:
    """A constant or meta value as a data step reads it for one key: Python values for shapes,
    tensors on the call's device in its float type."""
    if kind == _HOST:
        return _host(v)
    if kind == _INDEX and v.dim() == 0:
        return int(v)
    if v.is_floating_point() and v.dtype != float_dtype:
        v = v.to(float_dtype)
    return v.to(device)


def load_onnx_graph(path: str | Path, outputs: Sequence[str] | None = None) -> OnnxGraph:
    """An ONNX file as an :class:`OnnxGraph` returning ``outputs`` (default: the graph's)."""
    return OnnxGraph(read_onnx(path), outputs, source=str(path))
