"""The TF.js op table (:data:`OPS`): TF op name -> builder (GraphDef node + constant inputs ->
torch module) and the inputs the op reads at run time. An op outside the table is refused when
the graph is built, naming the node and the op."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.tfjs.io import _Node
from posetracker.estimators.runtimes.tfjs.layers import (
    _ACTIVATIONS,
    _Cast,
    _Concat,
    _Conv,
    _Elementwise,
    _FunctionOp,
    _Identity,
    _Pad,
    _Pool,
    _Reduce,
    _ResizeBilinear,
    _Split,
    _Transpose,
)

_TF_DTYPES: dict[str, torch.dtype | None] = {
    "DT_FLOAT": None,  # None = the graph's float dtype (float32, or what .half()/.to() made it)
    "DT_HALF": torch.float16,
    "DT_DOUBLE": torch.float64,
    "DT_INT32": torch.int32,
    "DT_INT64": torch.int64,
    "DT_INT16": torch.int16,
    "DT_INT8": torch.int8,
    "DT_UINT8": torch.uint8,
    "DT_BOOL": torch.bool,
}


class _Constants:
    """Constant values known at compile time (weights and folded subgraphs), as torch tensors."""

    def __init__(self, values: dict[str, torch.Tensor]) -> None:
        self.values = values

    def tensor(self, node: _Node, i: int) -> torch.Tensor:
        key = node.inputs[i]
        if key not in self.values:
            raise ModelError(f"node {node.name} ({node.op}): input {i} ({key}) must be a constant "
                             f"(data-dependent shapes and axes are not supported)")
        return self.values[key]

    def ints(self, node: _Node, i: int) -> list[int]:
        return [int(v) for v in self.tensor(node, i).reshape(-1).tolist()]

    def int(self, node: _Node, i: int) -> int:
        return int(self.tensor(node, i).reshape(-1)[0])


def _pair(values: list[int] | None, data_format: str) -> tuple[int, int]:
    if not values:
        return 1, 1
    if len(values) == 4:
        return (values[1], values[2]) if data_format == "NHWC" else (values[2], values[3])
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _conv_padding(node: _Node, data_format: str):
    padding = node.get("padding", "VALID")
    if padding != "EXPLICIT":
        return padding
    p = node.get("explicit_paddings")  # 8 ints: (before, after) per NHWC/NCHW axis
    h, w = (1, 2) if data_format == "NHWC" else (2, 3)
    return (p[2 * h], p[2 * h + 1]), (p[2 * w], p[2 * w + 1])


def _build_conv(node: _Node, consts: _Constants) -> _Conv:
    """Conv2D / DepthwiseConv2dNative and their fused forms -> one conv with bias + activation."""
    data_format = node.get("data_format", "NHWC")
    if data_format != "NHWC":
        raise ModelError(f"node {node.name}: data_format {data_format} not supported (TF.js graphs are NHWC)")
    filt = consts.tensor(node, 1).float()  # (kh, kw, C_in, C_out) or depthwise (kh, kw, C, multiplier)
    depthwise = "Depthwise" in node.op
    if depthwise:
        kh, kw, c, mult = filt.shape
        weight = filt.permute(2, 3, 0, 1).reshape(c * mult, 1, kh, kw)  # out channel = c*mult + m
    else:
        weight = filt.permute(3, 2, 0, 1)
    bias = None
    activation, alpha = None, float(node.get("leakyrelu_alpha", 0.2))
    fused = node.get("fused_ops", []) if node.op in ("_FusedConv2D", "FusedDepthwiseConv2dNative") else []
    for op in fused:
        if op == "BiasAdd":
            bias = consts.tensor(node, 2).float().reshape(-1)
        elif op == "FusedBatchNorm":
            scale, offset, mean, var = (consts.tensor(node, i).float().reshape(-1) for i in range(2, 6))
            k = scale / torch.sqrt(var + float(node.get("epsilon", 1e-3)))
            weight = weight * k.reshape(-1, 1, 1, 1)
            bias = offset - mean * k
        elif op in _ACTIVATIONS:
            activation = op
        else:
            raise ModelError(f"node {node.name}: unsupported fused op {op!r} in {node.op}")
    return _Conv(weight, bias, stride=_pair(node.get("strides"), data_format),
                 dilation=_pair(node.get("dilations"), data_format), padding=_conv_padding(node, data_format),
                 activation=activation, alpha=alpha)


def _build_pool(node: _Node, consts: _Constants) -> _Pool:
    return _Pool(node.op, _pair(node.get("ksize"), "NHWC"), _pair(node.get("strides"), "NHWC"),
                 node.get("padding", "VALID"))


def _build_resize(node: _Node, consts: _Constants) -> _ResizeBilinear:
    h, w = consts.ints(node, 1)
    return _ResizeBilinear((h, w), bool(node.get("align_corners", False)), bool(node.get("half_pixel_centers", False)))


def _floordiv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="floor")


def _realdiv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if not a.is_floating_point():  # TF integer Div truncates toward zero
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


_BINARY: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "Add": torch.add, "AddV2": torch.add, "BiasAdd": torch.add, "Sub": torch.sub, "Mul": torch.mul,
    "RealDiv": _realdiv, "Div": _realdiv, "FloorDiv": _floordiv, "FloorMod": torch.remainder,
    "Maximum": torch.maximum, "Minimum": torch.minimum, "Pow": torch.pow,
    "SquaredDifference": lambda a, b: torch.square(a - b),
    "Equal": torch.eq, "NotEqual": torch.ne, "Greater": torch.gt, "GreaterEqual": torch.ge,
    "Less": torch.lt, "LessEqual": torch.le, "LogicalAnd": torch.logical_and, "LogicalOr": torch.logical_or,
}

_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Sigmoid": torch.sigmoid, "Relu": torch.relu, "Relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "Elu": F.elu, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt,
    "Rsqrt": torch.rsqrt, "Square": torch.square, "Neg": torch.neg, "Abs": torch.abs,
    "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "Reciprocal": torch.reciprocal,
    "Softplus": F.softplus, "LogicalNot": torch.logical_not, "Sign": torch.sign,
}

_REDUCTIONS: dict[str, Callable[[torch.Tensor, tuple[int, ...], bool], torch.Tensor]] = {
    "Mean": lambda x, d, k: torch.mean(x, dim=d, keepdim=k),
    "Sum": lambda x, d, k: torch.sum(x, dim=d, keepdim=k),
    "Max": lambda x, d, k: torch.amax(x, dim=d, keepdim=k),
    "Min": lambda x, d, k: torch.amin(x, dim=d, keepdim=k),
    "Prod": lambda x, d, k: x.prod(dim=d[0], keepdim=k) if len(d) == 1 else _prod(x, d, k),
    "All": lambda x, d, k: torch.all(x, dim=d, keepdim=k) if len(d) == 1 else _prod(x, d, k).bool(),
    "Any": lambda x, d, k: torch.any(x, dim=d, keepdim=k),
}


def _prod(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for d in sorted(dims, reverse=True):
        x = x.prod(dim=d, keepdim=keep)
    return x


def _gather_nd(params: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """TF GatherNd: ``out[i...] = params[indices[i..., 0], ..., indices[i..., M-1]]``."""
    return params[tuple(indices.long().unbind(-1))]


def _gather_v2(axis: int, batch_dims: int) -> Callable[..., torch.Tensor]:
    if batch_dims != 0:
        raise ModelError("GatherV2 with batch_dims != 0 is not supported")

    def gather(params: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        ax = axis % params.dim()
        flat = torch.index_select(params, ax, indices.reshape(-1).long())
        return flat.reshape(params.shape[:ax] + indices.shape + params.shape[ax + 1:])
    return gather


def _strided_slice(node: _Node, consts: _Constants) -> Callable[[torch.Tensor], torch.Tensor]:
    """TF StridedSlice with begin/end/ellipsis/new-axis/shrink-axis masks; negative strides flip."""
    begin, end, strides = consts.ints(node, 1), consts.ints(node, 2), consts.ints(node, 3)
    mask = {k: int(node.get(k + "_mask", 0)) for k in ("begin", "end", "ellipsis", "new_axis", "shrink_axis")}

    def bit(kind: str, i: int) -> bool:
        return bool((mask[kind] >> i) & 1)

    def slice_(x: torch.Tensor) -> torch.Tensor:
        explicit = sum(1 for i in range(len(begin)) if not bit("new_axis", i) and not bit("ellipsis", i))
        index: list[Any] = []
        flip: list[int] = []  # output axes taken with a negative stride
        dim = out_dim = 0
        for i in range(len(begin)):
            if bit("ellipsis", i):
                skip = x.dim() - explicit
                index += [slice(None)] * skip
                dim, out_dim = dim + skip, out_dim + skip
            elif bit("new_axis", i):
                index.append(None)
                out_dim += 1
            elif bit("shrink_axis", i):
                index.append(begin[i] + (x.shape[dim] if begin[i] < 0 else 0))
                dim += 1
            else:
                b = None if bit("begin", i) else begin[i]
                e = None if bit("end", i) else end[i]
                r = range(*slice(b, e, strides[i]).indices(x.shape[dim]))
                if r.step > 0 or len(r) == 0:
                    index.append(slice(r.start, r.start if len(r) == 0 else r[-1] + 1, max(r.step, 1)))
                else:  # torch slices need a positive step: take the same cells ascending, then flip
                    index.append(slice(r[-1], r[0] + 1, -r.step))
                    flip.append(out_dim)
                dim, out_dim = dim + 1, out_dim + 1
        out = x[tuple(index)]
        return out.flip(flip) if flip else out
    return slice_


def _reshape(shape: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.reshape(shape)


def _squeeze(axes: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    def squeeze(x: torch.Tensor) -> torch.Tensor:
        if not axes:
            return x.squeeze()
        for a in sorted((a % x.dim() for a in axes), reverse=True):
            x = x.squeeze(a)
        return x
    return squeeze


def _top_k(k: int) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    def top_k(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = torch.topk(x, k, dim=-1, sorted=True)
        return values, indices.to(torch.int32)
    return top_k


def _sparse_to_dense(indices: torch.Tensor, shape: torch.Tensor, values: torch.Tensor,
                     default: torch.Tensor) -> torch.Tensor:
    dense = torch.full(tuple(int(s) for s in shape.reshape(-1).tolist()), default.item(),
                       dtype=values.dtype, device=values.device)
    if indices.numel():
        idx = indices.long().reshape(indices.shape[0], -1) if indices.dim() > 0 else indices.long().reshape(1, 1)
        dense[tuple(idx.unbind(-1))] = values
    return dense


Builder = Callable[[_Node, _Constants], nn.Module]


# --------------------------------------------------------------------------------------------
# More builders: GraphDef node + constant inputs -> torch module
# --------------------------------------------------------------------------------------------

def _build_elementwise(fn: Callable[..., torch.Tensor]) -> Builder:
    return lambda node, consts: _Elementwise(fn)


def _build_leaky_relu(node: _Node, consts: _Constants) -> nn.Module:
    alpha = float(node.get("alpha", 0.2))
    return _Elementwise(lambda x: F.leaky_relu(x, alpha))


def _build_identity(node: _Node, consts: _Constants) -> nn.Module:
    return _Identity()


def _build_transpose(node: _Node, consts: _Constants) -> nn.Module:
    return _Transpose(consts.ints(node, 1))


def _build_pad(node: _Node, consts: _Constants) -> nn.Module:
    """Pad, PadV2 (constant value input) and MirrorPad (REFLECT or SYMMETRIC)."""
    pads = consts.tensor(node, 1).reshape(-1, 2).tolist()
    if node.op == "MirrorPad":
        return _Pad(pads, mode="reflect" if node.get("mode") == "REFLECT" else "replicate")
    value = float(consts.tensor(node, 2).reshape(-1)[0]) if node.op == "PadV2" else 0.0
    return _Pad(pads, value)


def _build_concat(node: _Node, consts: _Constants) -> nn.Module:
    return _Concat(consts.int(node, len(node.inputs) - 1))


def _build_split_v(node: _Node, consts: _Constants) -> nn.Module:
    return _Split(consts.ints(node, 1), consts.int(node, 2))


def _build_split(node: _Node, consts: _Constants) -> nn.Module:  # inputs: axis, value
    return _Split(int(node.get("num_split")), consts.int(node, 0))


def _build_reduce(node: _Node, consts: _Constants) -> nn.Module:
    return _Reduce(_REDUCTIONS[node.op], consts.ints(node, 1), bool(node.get("keep_dims", False)))


def _build_cast(node: _Node, consts: _Constants) -> nn.Module:
    dst = node.get("DstT")
    if dst not in _TF_DTYPES:
        raise ModelError(f"node {node.name}: Cast to {dst} not supported")
    return _Cast(_TF_DTYPES[dst])


def _build_reshape(node: _Node, consts: _Constants) -> nn.Module:
    return _FunctionOp(_reshape(consts.ints(node, 1)))


def _build_expand_dims(node: _Node, consts: _Constants) -> nn.Module:
    axis = consts.int(node, 1)
    return _FunctionOp(lambda x: x.unsqueeze(axis if axis >= 0 else x.dim() + 1 + axis))


def _build_squeeze(node: _Node, consts: _Constants) -> nn.Module:
    return _FunctionOp(_squeeze(node.get("squeeze_dims", []) or []))


def _build_pack(node: _Node, consts: _Constants) -> nn.Module:
    axis = int(node.get("axis", 0))
    return _FunctionOp(lambda *xs: torch.stack(xs, dim=axis if axis >= 0 else xs[0].dim() + 1 + axis))


def _build_unpack(node: _Node, consts: _Constants) -> nn.Module:
    axis = int(node.get("axis", 0))
    return _FunctionOp(lambda x: tuple(x.unbind(axis)))


def _build_arg_reduce(node: _Node, consts: _Constants) -> nn.Module:
    """ArgMax / ArgMin along a constant axis, in the node's output type."""
    axis = consts.int(node, 1)
    dtype = _TF_DTYPES.get(node.get("output_type", "DT_INT64")) or torch.int64
    reduce = torch.argmax if node.op == "ArgMax" else torch.argmin
    return _FunctionOp(lambda x: reduce(x, dim=axis).to(dtype))


def _build_gather_v2(node: _Node, consts: _Constants) -> nn.Module:
    return _FunctionOp(_gather_v2(consts.int(node, 2), int(node.get("batch_dims", 0))))


def _build_strided_slice(node: _Node, consts: _Constants) -> nn.Module:
    return _FunctionOp(_strided_slice(node, consts))


def _build_tile(node: _Node, consts: _Constants) -> nn.Module:
    reps = consts.ints(node, 1)
    return _FunctionOp(lambda x: x.repeat(reps))


def _build_top_k(node: _Node, consts: _Constants) -> nn.Module:
    return _FunctionOp(_top_k(consts.int(node, 1)))


def _build_fn(fn: Callable[..., Any]) -> Builder:
    return lambda node, consts: _FunctionOp(fn)


def _shape(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(x.shape, dtype=torch.int32, device=x.device)


# --------------------------------------------------------------------------------------------
# The op table
# --------------------------------------------------------------------------------------------

def _all_inputs(inputs: list[str]) -> list[str]:
    return inputs


def _first_input(inputs: list[str]) -> list[str]:
    return inputs[:1]


@dataclass(frozen=True)
class OpDef:
    """How one TF op is built (``build(node, consts) -> module``) and which of its inputs it
    reads at run time (``data(node.inputs)``; the others, shapes, axes and sizes, are bound when
    it is built)."""

    build: Builder
    data: Callable[[list[str]], list[str]] = _all_inputs


CONV_OPS = ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")

OPS: dict[str, OpDef] = {
    **{op: OpDef(_build_conv, _first_input) for op in CONV_OPS},
    "MaxPool": OpDef(_build_pool, _first_input),
    "AvgPool": OpDef(_build_pool, _first_input),
    "ResizeBilinear": OpDef(_build_resize, _first_input),
    **{op: OpDef(_build_elementwise(fn)) for op, fn in _BINARY.items()},
    **{op: OpDef(_build_elementwise(fn)) for op, fn in _UNARY.items()},
    "LeakyRelu": OpDef(_build_leaky_relu),
    "Identity": OpDef(_build_identity),
    "StopGradient": OpDef(_build_identity),
    "Snapshot": OpDef(_build_identity),
    "Transpose": OpDef(_build_transpose, _first_input),
    "Pad": OpDef(_build_pad, _first_input),
    "PadV2": OpDef(_build_pad, _first_input),
    "MirrorPad": OpDef(_build_pad, _first_input),
    "ConcatV2": OpDef(_build_concat, lambda inputs: inputs[:-1]),
    "SplitV": OpDef(_build_split_v, _first_input),
    "Split": OpDef(_build_split, lambda inputs: inputs[1:2]),
    **{op: OpDef(_build_reduce, _first_input) for op in _REDUCTIONS},
    "Cast": OpDef(_build_cast),
    "Reshape": OpDef(_build_reshape, _first_input),
    "ExpandDims": OpDef(_build_expand_dims, _first_input),
    "Squeeze": OpDef(_build_squeeze),
    "Pack": OpDef(_build_pack),
    "Unpack": OpDef(_build_unpack),
    "ArgMax": OpDef(_build_arg_reduce, _first_input),
    "ArgMin": OpDef(_build_arg_reduce, _first_input),
    "GatherNd": OpDef(_build_fn(_gather_nd)),
    "GatherV2": OpDef(_build_gather_v2, lambda inputs: inputs[:2]),
    "StridedSlice": OpDef(_build_strided_slice, _first_input),
    "Tile": OpDef(_build_tile, _first_input),
    "TopKV2": OpDef(_build_top_k, _first_input),
    "SparseToDense": OpDef(_build_fn(_sparse_to_dense)),
    "Softmax": OpDef(_build_fn(lambda x: torch.softmax(x, dim=-1))),
    "Shape": OpDef(_build_fn(_shape)),
    "SelectV2": OpDef(_build_fn(torch.where)),
}


def build_op(node: _Node, consts: _Constants) -> nn.Module:
    """The torch module that computes ``node`` (constant inputs already bound where needed);
    ModelError naming the node and the op when the op is not in :data:`OPS`."""
    spec = OPS.get(node.op)
    if spec is None:
        raise ModelError(f"node {node.name}: TF op {node.op!r} is not supported by the TF.js importer")
    return spec.build(node, consts)


def data_inputs(node: _Node) -> list[str]:
    """The inputs a node reads at run time (parameters were bound when it was built)."""
    spec = OPS.get(node.op)
    return node.inputs if spec is None else spec.data(node.inputs)
