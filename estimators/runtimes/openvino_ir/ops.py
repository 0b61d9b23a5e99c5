"""The OpenVINO IR op table: IR op type -> (op class, the opset versions it implements).

Elementwise, activation, type, shape/layout, reduction and TopK ops are here; the spatial ones
(convolution, pooling, padding, Interpolate) in :mod:`.spatial`. A layer whose type (or version)
is not in :data:`OP_CLASSES` is refused at load time, naming the layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.openvino_ir.base import (
    CHANNELS_LAST,
    _activation,
    _axis,
    _can_overwrite,
    _float_dtype,
    _KernelContext,
    _Op,
    _pylist,
    _static,
    _unsupported_attr,
)
from posetracker.estimators.runtimes.openvino_ir.io import _ELEMENT_TYPES, _ints, _Layer
from posetracker.estimators.runtimes.openvino_ir.spatial import _Conv, _Interpolate, _Pad, _Pool

# -- elementwise -----------------------------------------------------------------------------


def _divide(pythondiv: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.is_floating_point() or b.is_floating_point():
            return torch.div(a, b)
        return torch.div(a, b, rounding_mode="floor" if pythondiv else "trunc")
    return div


_BINARY: dict[str, tuple[Callable[..., torch.Tensor], str | None, bool]] = {
    # name: (function, in-place method, commutative)
    "Add": (torch.add, "add_", True),
    "Subtract": (torch.sub, "sub_", False),
    "Multiply": (torch.mul, "mul_", True),
    "Maximum": (torch.maximum, None, True),
    "Minimum": (torch.minimum, None, True),
    "Power": (torch.pow, "pow_", False),
    "SquaredDifference": (lambda a, b: torch.sub(a, b).square(), None, True),
}


class _Binary(_Op):
    """Elementwise binary op with numpy broadcasting (``auto_broadcast`` numpy or none)."""

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        mode = layer.data.get("auto_broadcast", "numpy")
        if mode not in ("numpy", "none"):
            raise _unsupported_attr(layer, "auto_broadcast", mode)
        if layer.type == "Divide":
            self.fn = _divide(layer.data.get("m_pythondiv", "true").lower() == "true")
            self.method: str | None = "div_"
            self.commutative = False
        else:
            self.fn, self.method, self.commutative = _BINARY[layer.type]

    def compute(self, ctx: _KernelContext, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        return [self.fn(a, b)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        fn, method = self.fn, self.method
        a, b = (args[i] if dynamic[i] else _static(args[i], ctx, False) for i in (0, 1))
        if method == "div_" and not (a.is_floating_point() or b.is_floating_point()):
            method = None  # integer division keeps its rounding mode: not in place
        shape = np.broadcast_shapes(a.shape, b.shape)
        dtype = torch.result_type(a, b)
        in_a = method is not None and dynamic[0] and _can_overwrite(a, shape, dtype, ctx, 0)
        in_b = (method is not None and self.commutative and dynamic[1] and not in_a
                and _can_overwrite(b, shape, dtype, ctx, 1))
        if dynamic[0] and dynamic[1]:
            if in_a:
                return getattr(torch.Tensor, method)
            if in_b:
                m = getattr(torch.Tensor, method)
                return lambda x, y: m(y, x)
            return fn
        if dynamic[0]:
            if in_a:
                m = getattr(torch.Tensor, method)
                return lambda x: m(x, b)
            return lambda x: fn(x, b)
        if in_b:
            m = getattr(torch.Tensor, method)
            return lambda y: m(y, a)
        return lambda y: fn(a, y)


class _Unary(_Op):
    """ReLU, Sigmoid, Tanh, HSwish, HSigmoid, HardSigmoid (alpha, beta inputs), Clamp (min, max
    attributes), Swish (optional beta input), Elu, Exp, Log, Sqrt, Abs, Negative, Floor, Ceiling."""

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.attr_inputs = frozenset(range(1, len(layer.inputs)))
        if layer.type == "Clamp":
            self.fixed: tuple[float, ...] = (float(layer.data.get("min", "-inf")),
                                             float(layer.data.get("max", "inf")))
        elif layer.type == "Elu":
            self.fixed = (float(layer.data.get("alpha", "1")),)
        else:
            self.fixed = ()

    def params(self, extra: Sequence[Any]) -> tuple[float, ...]:
        if self.layer.type == "Swish":
            return (float(_pylist(extra[0])[0]),) if extra else (1.0,)
        if self.layer.type == "HardSigmoid":
            return tuple(float(_pylist(v)[0]) for v in extra)
        return self.fixed

    def compute(self, ctx: _KernelContext, x: torch.Tensor, *extra: torch.Tensor) -> list[torch.Tensor]:
        return [_activation(self.layer.type, self.params(extra), False)(x)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        if any(dynamic[1:]):
            return super().bind(args, dynamic, ctx)
        x = args[0]
        inplace = _can_overwrite(x, x.shape, x.dtype, ctx, 0) and x.is_floating_point()
        return _activation(self.layer.type, self.params(args[1:]), inplace)


class _Convert(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.etype = layer.data.get("destination_type", "")
        if self.etype not in _ELEMENT_TYPES:
            raise _unsupported_attr(layer, "destination_type", self.etype)

    def dtype(self, ctx: _KernelContext) -> torch.dtype:
        target = _ELEMENT_TYPES[self.etype][1]
        return _float_dtype(ctx, self.etype) if target.is_floating_point else target

    def compute(self, ctx: _KernelContext, x: torch.Tensor) -> list[torch.Tensor]:
        target = self.dtype(ctx)
        if x.is_floating_point() and not target.is_floating_point and target != torch.bool:
            x = x.trunc()  # float -> integer rounds toward zero (as OpenVINO's CPU plugin)
        return [x.to(target)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        target = self.dtype(ctx)
        if args[0].dtype == target:
            return lambda x: x
        return super().bind(args, dynamic, ctx)


# -- shape and layout ------------------------------------------------------------------------

class _ShapeOf(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.dtype = torch.int32 if layer.data.get("output_type") == "i32" else torch.int64

    def compute(self, ctx: _KernelContext, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.tensor(tuple(x.shape), dtype=self.dtype)]


class _Reshape(_Op):
    attr_inputs = frozenset({1})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.special_zero = layer.data.get("special_zero", "false").lower() == "true"
        self.const_target = False  # set by the loader: the target is a load-time constant
        self.in_dims = layer.inputs[0].dims if layer.inputs else None

    def target(self, shape: Sequence[int], spec: Any, ctx: _KernelContext) -> list[int]:
        t = [int(v) for v in _pylist(spec)]
        if self.special_zero:
            t = [shape[i] if v == 0 else v for i, v in enumerate(t)]
        numel = math.prod(shape)
        if (self.const_target and t and ctx.ir_batch is not None and ctx.batch != ctx.ir_batch
                and t[0] == ctx.ir_batch and self.in_dims and self.in_dims[0] == ctx.ir_batch
                and shape and shape[0] == ctx.batch and -1 not in t
                and math.prod(t) != numel and math.prod(t) // max(t[0], 1) * ctx.batch == numel):
            t[0] = ctx.batch  # batch baked into a constant target: the IR's batch -> the input's
        return t

    def compute(self, ctx: _KernelContext, x: torch.Tensor, spec: Any) -> list[torch.Tensor]:
        return [x.reshape(self.target(x.shape, spec, ctx))]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        if dynamic[1]:
            return super().bind(args, dynamic, ctx)
        t = self.target(args[0].shape, args[1], ctx)
        return lambda x: x.reshape(t)


class _Transpose(_Op):
    attr_inputs = frozenset({1})

    def compute(self, ctx: _KernelContext, x: torch.Tensor, order: Any) -> list[torch.Tensor]:
        perm = [_axis(int(v), x.dim()) for v in _pylist(order)] or list(range(x.dim()))[::-1]
        return [x.permute(perm)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        if dynamic[1]:
            return super().bind(args, dynamic, ctx)
        x = args[0]
        perm = [_axis(int(v), x.dim()) for v in _pylist(args[1])] or list(range(x.dim()))[::-1]
        return lambda x: x.permute(perm)


class _Squeeze(_Op):
    attr_inputs = frozenset({1})

    def compute(self, ctx: _KernelContext, x: torch.Tensor, axes: Any = None) -> list[torch.Tensor]:
        if axes is None:
            return [x.squeeze()]
        dims = sorted({_axis(int(a), x.dim()) for a in _pylist(axes)}, reverse=True)
        for d in dims:
            if x.shape[d] == 1:
                x = x.squeeze(d)
        return [x]


class _Unsqueeze(_Op):
    attr_inputs = frozenset({1})

    def compute(self, ctx: _KernelContext, x: torch.Tensor, axes: Any) -> list[torch.Tensor]:
        out_rank = x.dim() + len(_pylist(axes))
        shape = list(x.shape)
        for a in sorted(_axis(int(a), out_rank) for a in _pylist(axes)):
            shape.insert(a, 1)
        return [x.reshape(shape)]


class _Concat(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.axis = int(layer.data.get("axis", "0"))

    def compute(self, ctx: _KernelContext, *xs: torch.Tensor) -> list[torch.Tensor]:
        rank = max(x.dim() for x in xs)
        return [torch.cat(xs, _axis(self.axis, rank))]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        axis = _axis(self.axis, args[0].dim())
        fixed = [None if d else _static(a, ctx, False) for a, d in zip(args, dynamic)]
        if all(dynamic):
            return lambda *xs: torch.cat(xs, axis)
        dyn = [i for i, d in enumerate(dynamic) if d]

        def run(*xs: torch.Tensor) -> torch.Tensor:
            full = list(fixed)
            for i, x in zip(dyn, xs):
                full[i] = x
            return torch.cat(full, axis)
        return run


class _Split(_Op):
    """Split (axis input, ``num_splits``) and VariadicSplit (axis, lengths with one -1)."""

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.attr_inputs = frozenset({1, 2})
        self.n_out = len(layer.outputs)
        self.num = int(layer.data.get("num_splits", "0")) if layer.type == "Split" else 0

    def sizes(self, x: torch.Tensor, axis: Any, lengths: Any = None) -> tuple[int, list[int]]:
        ax = _axis(int(_pylist(axis)[0]), x.dim())
        if self.layer.type == "Split":
            if self.num <= 0 or x.shape[ax] % self.num:
                raise ModelError(f"{self.layer.where()}: cannot split {x.shape[ax]} into {self.num}")
            return ax, [x.shape[ax] // self.num] * self.num
        ls = [int(v) for v in _pylist(lengths)]
        if -1 in ls:
            ls[ls.index(-1)] = x.shape[ax] - (sum(ls) + 1)
        return ax, ls

    def compute(self, ctx: _KernelContext, x: torch.Tensor, axis: Any, lengths: Any = None) -> list[torch.Tensor]:
        ax, ls = self.sizes(x, axis, lengths)
        return list(torch.split(x, ls, ax))

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        if any(dynamic[1:]):
            return super().bind(args, dynamic, ctx)
        ax, ls = self.sizes(*args)
        spans = [(sum(ls[:i]), n) for i, n in enumerate(ls)]
        return lambda x: [x.narrow(ax, o, n) for o, n in spans]  # views, as torch.split


def _interleave(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Channel shuffle of the concatenation of ``xs`` (each (N, c, H, W)): output channel
    ``j * g + i`` is channel j of ``xs[i]``. One copy, kept in the inputs' memory layout."""
    n, c, h, w = xs[0].shape
    if CHANNELS_LAST:
        if len(xs) == 2 and xs[0].dtype in (torch.float32, torch.float64) and not (
                torch.is_grad_enabled() and (xs[0].requires_grad or xs[1].requires_grad)):
            # A complex number is a (real, imaginary) pair in memory: building one tensor from
            # two interleaves them, ~20% faster than torch.stack's strided copy.
            z = torch.complex(xs[0].permute(0, 2, 3, 1), xs[1].permute(0, 2, 3, 1))
            return torch.view_as_real(z).view(n, h, w, 2 * c).permute(0, 3, 1, 2)
        y = torch.stack([x.permute(0, 2, 3, 1) for x in xs], dim=4)  # (N, H, W, c, g), contiguous
        return y.view(n, h, w, c * len(xs)).permute(0, 3, 1, 2)
    return torch.stack(list(xs), dim=2).view(n, c * len(xs), h, w)


class _ConcatShuffle(_Op):
    """``Concat`` of g equal channel blocks followed by a channel shuffle with g groups (fused)."""

    def compute(self, ctx: _KernelContext, *xs: torch.Tensor) -> list[torch.Tensor]:
        return [_interleave(xs)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        if not all(dynamic):
            return super().bind(args, dynamic, ctx)
        return lambda *xs: _interleave(xs)


class _ChannelShuffle(_Op):
    """``Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N, C, H, W)`` (fused)."""

    def __init__(self, layer: _Layer, groups: int) -> None:
        super().__init__(layer)
        self.groups = groups

    def compute(self, ctx: _KernelContext, x: torch.Tensor) -> list[torch.Tensor]:
        return [_interleave(torch.chunk(x, self.groups, 1))]


class _StridedSlice(_Op):
    attr_inputs = frozenset({1, 2, 3})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        d = layer.data
        self.masks = {k: _ints(d.get(k)) for k in ("begin_mask", "end_mask", "new_axis_mask",
                                                     "shrink_axis_mask", "ellipsis_mask")}

    def plan(self, shape: Sequence[int], begin: Any, end: Any, stride: Any
             ) -> tuple[list[int], tuple[Any, ...]]:
        """(axes to flip first, index tuple) that slice a tensor of ``shape`` as OpenVINO does
        (a mask entry 1 means: ignore begin/end there; new axis; shrink; ellipsis)."""
        begin, end = [int(v) for v in _pylist(begin)], [int(v) for v in _pylist(end)]
        strides = [int(v) for v in _pylist(stride)] if stride is not None else [1] * len(begin)

        def bit(name: str, i: int) -> bool:
            m = self.masks[name]
            return i < len(m) and m[i] == 1
        n = len(begin)
        consumed = sum(1 for i in range(n) if not bit("new_axis_mask", i) and not bit("ellipsis_mask", i))
        items: list[Any] = []
        flips: list[int] = []
        dim = 0
        ellipsis_seen = False
        for i in range(n):
            if bit("ellipsis_mask", i) and not ellipsis_seen:
                ellipsis_seen = True
                skip = len(shape) - consumed
                items.extend([slice(None)] * skip)
                dim += skip
                continue
            if bit("new_axis_mask", i):
                items.append(None)
                continue
            size = shape[dim]
            if bit("shrink_axis_mask", i):
                items.append(begin[i] + size if begin[i] < 0 else begin[i])
                dim += 1
                continue
            step = strides[i] if i < len(strides) else 1
            if step == 0:
                raise ModelError(f"{self.layer.where()}: stride 0")
            sl = slice(None if bit("begin_mask", i) else begin[i], None if bit("end_mask", i) else end[i], step)
            start, stop, step = sl.indices(size)
            if step < 0:  # torch slices only forwards: flip the axis, slice it forwards
                flips.append(dim)
                start, stop, step = size - 1 - start, size - 1 - stop, -step
            items.append(slice(start, max(stop, start), step))
            dim += 1
        return flips, tuple(items)

    def compute(self, ctx: _KernelContext, x: torch.Tensor, begin: Any, end: Any, stride: Any = None
                ) -> list[torch.Tensor]:
        flips, index = self.plan(x.shape, begin, end, stride)
        if flips:
            x = x.flip(flips)
        return [x[index]]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
        if any(dynamic[1:]):
            return super().bind(args, dynamic, ctx)
        flips, index = self.plan(args[0].shape, *args[1:])
        if flips:
            return lambda x: x.flip(flips)[index]
        return lambda x: x[index]


class _Gather(_Op):
    attr_inputs = frozenset({2})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        if int(layer.data.get("batch_dims", "0")) != 0:
            raise _unsupported_attr(layer, "batch_dims", layer.data["batch_dims"])

    def compute(self, ctx: _KernelContext, x: torch.Tensor, idx: torch.Tensor, axis: Any) -> list[torch.Tensor]:
        ax = _axis(int(_pylist(axis)[0]), x.dim())
        idx = idx.to(device=x.device, dtype=torch.int64)
        flat = torch.where(idx < 0, idx + x.shape[ax], idx).reshape(-1)
        out = x.index_select(ax, flat)
        return [out.reshape((*x.shape[:ax], *idx.shape, *x.shape[ax + 1:]))]


class _Broadcast(_Op):
    attr_inputs = frozenset({1, 2})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.mode = layer.data.get("mode", "numpy").lower()
        if self.mode not in ("numpy", "bidirectional", "explicit"):
            raise _unsupported_attr(layer, "mode", self.mode)

    def compute(self, ctx: _KernelContext, x: torch.Tensor, shape: Any, axes: Any = None) -> list[torch.Tensor]:
        target = [int(v) for v in _pylist(shape)]
        if self.mode == "explicit":
            view = [1] * len(target)
            for a, s in zip(_pylist(axes), x.shape):
                view[int(a)] = s
            return [x.reshape(view).expand(target)]
        if self.mode == "bidirectional":
            target = list(np.broadcast_shapes(tuple(x.shape), tuple(target)))
        return [x.expand(target)]


class _Range(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.etype = layer.data.get("output_type")
        if self.etype is not None and self.etype not in _ELEMENT_TYPES:
            raise _unsupported_attr(layer, "output_type", self.etype)

    def compute(self, ctx: _KernelContext, start: torch.Tensor, stop: torch.Tensor, step: torch.Tensor
                ) -> list[torch.Tensor]:
        if self.etype is not None:
            dtype = _ELEMENT_TYPES[self.etype][1]
            if dtype.is_floating_point:
                dtype = _float_dtype(ctx, self.etype)
        else:
            dtype = start.dtype
        s0, s1, st = (v.item() for v in (start, stop, step))
        device = start.device if ctx.dtype is None else ctx.device
        return [torch.arange(s0, s1, st, dtype=dtype, device=device)]


# -- reductions, matmul, softmax, topk -------------------------------------------------------

class _Reduce(_Op):
    attr_inputs = frozenset({1})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.keep = layer.data.get("keep_dims", "false").lower() == "true"

    def compute(self, ctx: _KernelContext, x: torch.Tensor, axes: Any) -> list[torch.Tensor]:
        dims = sorted({_axis(int(a), x.dim()) for a in _pylist(axes)})
        if not dims:
            return [x]
        t = self.layer.type
        if t == "ReduceMean":
            return [x.mean(dim=dims, keepdim=self.keep)]
        if t == "ReduceSum":
            return [x.sum(dim=dims, keepdim=self.keep)]
        y = x
        for d in reversed(dims):
            y = (y.amax if t == "ReduceMax" else y.amin)(dim=d, keepdim=self.keep)
        return [y]


class _MatMul(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.transpose_a = layer.data.get("transpose_a", "false").lower() == "true"
        self.transpose_b = layer.data.get("transpose_b", "false").lower() == "true"

    def compute(self, ctx: _KernelContext, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        if self.transpose_a and a.dim() > 1:
            a = a.transpose(-1, -2)
        if self.transpose_b and b.dim() > 1:
            b = b.transpose(-1, -2)
        return [torch.matmul(a, b)]


class _SoftMax(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.axis = int(layer.data.get("axis", "1"))

    def compute(self, ctx: _KernelContext, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.softmax(x, _axis(self.axis, x.dim()))]


class _TopK(_Op):
    attr_inputs = frozenset({1})
    n_out = 2

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        d = layer.data
        self.axis = int(d.get("axis", "-1"))
        self.largest = d.get("mode", "max") == "max"
        self.sort = d.get("sort", "none")
        if self.sort not in ("value", "index", "none"):
            raise _unsupported_attr(layer, "sort", self.sort)
        et = d.get("index_element_type", "i32")
        self.index_dtype = torch.int64 if et == "i64" else torch.int32

    def compute(self, ctx: _KernelContext, x: torch.Tensor, k: Any) -> list[torch.Tensor]:
        kk = int(_pylist(k)[0])
        ax = _axis(self.axis, x.dim())
        if kk == 1:  # max/min return the first of tied elements, as OpenVINO's TopK does
            v, i = (x.max if self.largest else x.min)(dim=ax, keepdim=True)
        else:
            v, i = torch.topk(x, kk, dim=ax, largest=self.largest, sorted=True)
            if self.sort == "index":
                i, order = i.sort(dim=ax)
                v = v.gather(ax, order)
        return [v, i.to(self.index_dtype)]


# -- registry --------------------------------------------------------------------------------

OP_CLASSES: dict[str, tuple[type[_Op], tuple[str, ...]]] = {
    **{t: (_Binary, ("opset1",)) for t in ("Add", "Subtract", "Multiply", "Divide", "Maximum",
                                             "Minimum", "Power", "SquaredDifference")},
    **{t: (_Unary, ("opset1",)) for t in ("ReLU", "Sigmoid", "Tanh", "Clamp", "Elu", "Exp", "Log",
                                            "Sqrt", "Abs", "Negative", "Floor", "Ceiling",
                                            "HardSigmoid")},
    "HSwish": (_Unary, ("opset4",)),
    "Swish": (_Unary, ("opset4",)),
    "HSigmoid": (_Unary, ("opset5",)),
    "Convert": (_Convert, ("opset1",)),
    "Convolution": (_Conv, ("opset1",)),
    "GroupConvolution": (_Conv, ("opset1",)),
    "MaxPool": (_Pool, ("opset1", "opset8")),
    "AvgPool": (_Pool, ("opset1",)),
    "Pad": (_Pad, ("opset1", "opset12")),
    "ShapeOf": (_ShapeOf, ("opset1", "opset3")),
    "Reshape": (_Reshape, ("opset1",)),
    "Transpose": (_Transpose, ("opset1",)),
    "Squeeze": (_Squeeze, ("opset1",)),
    "Unsqueeze": (_Unsqueeze, ("opset1",)),
    "Concat": (_Concat, ("opset1",)),
    "Split": (_Split, ("opset1",)),
    "VariadicSplit": (_Split, ("opset1",)),
    "StridedSlice": (_StridedSlice, ("opset1",)),
    "Gather": (_Gather, ("opset1", "opset7", "opset8")),
    "Broadcast": (_Broadcast, ("opset1", "opset3")),
    "Range": (_Range, ("opset1", "opset4")),
    "Interpolate": (_Interpolate, ("opset4",)),
    "ReduceMean": (_Reduce, ("opset1",)),
    "ReduceSum": (_Reduce, ("opset1",)),
    "ReduceMax": (_Reduce, ("opset1",)),
    "ReduceMin": (_Reduce, ("opset1",)),
    "MatMul": (_MatMul, ("opset1",)),
    "SoftMax": (_SoftMax, ("opset1", "opset8")),
    "TopK": (_TopK, ("opset1", "opset3", "opset11")),
}

_STRUCTURAL = ("Parameter", "Const", "Result")
