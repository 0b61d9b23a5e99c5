"""TensorFlow.js graph models (``model.json`` + ``.bin`` weight shards) run in torch.

A TF.js graph model is a TensorFlow GraphDef in JSON (``modelTopology.node``: name, op, inputs,
attrs) plus a ``weightsManifest`` that lists every constant tensor (name, shape, dtype, optional
quantization) in the order its bytes appear in the concatenated ``.bin`` shards of its group.

Public API
----------
``read_tfjs_weights(model_json) -> dict[str, np.ndarray]``
    Every constant of the graph, dequantized (float16 halves and uint8/uint16 affine -> float32).
``read_tfjs_topology(model_json) -> dict``
    The ``modelTopology`` dict (``node`` list of GraphDef nodes, plus ``signature``).
``load_tfjs_graph(model_json, weights=None, fuse=True) -> TfjsGraph``
    The graph compiled into a torch module; ``weights`` (e.g. from a cached safetensors file)
    replaces reading the ``.bin``.
``TfjsGraph(*inputs)``  signature inputs -> signature outputs (batch as the graph allows).
``TfjsGraph.run(feeds, fetches, channels_first=False) -> {name: tensor}``
    Any node names in and out: feed past a batch-1 preprocessing, fetch intermediate tensors.
``TfjsGraph.constant(name)``, ``.input_names``, ``.output_names``, ``.input_shapes``, ``.node_names``.

How it runs
-----------
Compilation (once): parse nodes; fold every node whose inputs are all constant; fuse
``conv -> bias -> Relu/Relu6/LeakyRelu/Elu`` chains into one op; sort topologically; turn each node
into a small ``nn.Module`` with its weights as buffers (TF filters re-laid out for torch) and its
shape/axis/size parameters bound as Python values. Running: for the requested feeds/fetches a
plan (the needed nodes in order, and when each value can be freed) is computed once and cached.

Layout: TensorFlow values are NHWC; convolutions run in torch's NCHW indexing on channels-last
memory (the fastest oneDNN depthwise kernels). Each value carries the permutation from its
stored to its logical layout, so conv outputs flow through elementwise ops, Pad, Concat, Split,
Mean and Transpose without any copy, and are converted only for ops that need the logical view.

CPU speed (float32): every conv goes to oneDNN (torch would send single-image 1x1 convs to a
slower GEMM path), dense convs with their weights kept in oneDNN's blocked layout; asymmetric
SAME padding of depthwise convs becomes zero kernel taps (no padded copy of the input); fused
activations run in place; and a batch whose ops treat images independently runs in slices whose
activations stay under 32 MiB (see ``TfjsGraph.run``).

TensorFlow semantics that differ from torch's defaults, each handled (and tested): SAME padding
is asymmetric (stride 2, even size: 0 before, 1 after); ``ResizeBilinear`` has three coordinate
conventions (half-pixel = ``F.interpolate(align_corners=False)``, align-corners, and TF1 legacy);
MaxPool SAME ignores padded cells; FloorDiv/FloorMod round toward minus infinity.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posetracker.estimators.runtimes.kernels import (PackedConvWeight, conv2d, packed_conv2d, use_packed,
                                         zero_pad_channels_last)
from posetracker.core.errors import ModelError

# Byte sizes and numpy types of the TF.js manifest dtypes (stored, i.e. before dequantization).
_NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "bool": np.dtype("u1"),
}


def _load_json(model_json: Path) -> dict[str, Any]:
    model_json = Path(model_json)
    try:
        with open(model_json, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise ModelError(f"{model_json}: TF.js model file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{model_json}: not a TF.js model.json ({e})") from None
    if not isinstance(doc, dict) or "modelTopology" not in doc or "weightsManifest" not in doc:
        raise ModelError(f"{model_json}: not a TF.js graph model (needs modelTopology and weightsManifest)")
    return doc


def read_tfjs_topology(model_json: Path) -> dict[str, Any]:
    """The graph of a TF.js graph model: ``{"node": [GraphDef node dicts], ...}``.

    Each node has ``name``, ``op``, optional ``input`` (names, ``"^name"`` for control inputs,
    ``"name:k"`` for the k-th output of a multi-output node) and ``attr``. The topology of a
    TF.js file also carries ``signature`` (inputs/outputs), copied here under ``"signature"``.
    """
    doc = _load_json(model_json)
    topology = dict(doc["modelTopology"])
    if "node" not in topology:
        raise ModelError(f"{model_json}: modelTopology has no 'node' list (layers models are not supported)")
    topology["signature"] = doc.get("signature") or {}
    return topology


def _dequantize(raw: np.ndarray, spec: dict[str, Any], quant: dict[str, Any] | None) -> np.ndarray:
    """Stored values -> values of the manifest dtype (float32 for quantized floats)."""
    if quant is None:
        if spec["dtype"] == "bool":
            return raw.astype(bool)
        return raw
    qdtype = quant["dtype"]
    if qdtype == "float16":
        return raw.astype(np.float32)
    if qdtype in ("uint8", "uint16"):
        # Affine quantization: value = q * scale + min (TF.js writes scale and min per tensor).
        values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
        return values.astype(np.int32) if spec["dtype"] == "int32" else values
    raise ModelError(f"unsupported TF.js weight quantization {qdtype!r} for {spec['name']}")


def read_tfjs_weights(model_json: Path) -> dict[str, np.ndarray]:
    """Read every weight of a TF.js graph model, in manifest order.

    Parameters
    ----------
    model_json:
        Path of ``model.json``; the ``.bin`` shards named in ``weightsManifest[*].paths`` are read
        from the same folder. The shards of one group are concatenated, then split by the weight
        specs of that group in order.

    Returns
    -------
    ``{name: array}`` with the manifest shapes. Float16-quantized weights (``quantization:
    {dtype: float16}``) are plain IEEE halves, returned as float32; uint8/uint16 affine
    quantization (``scale``, ``min``) is dequantized to float32; int32 stays int32 (4 bytes each).

    Raises
    ------
    ModelError
        Missing shard, a shard of the wrong size, or an unsupported dtype/quantization.
    """
    model_json = Path(model_json)
    doc = _load_json(model_json)
    weights: dict[str, np.ndarray] = {}
    for group in doc["weightsManifest"]:
        chunks = []
        for rel in group["paths"]:
            shard = model_json.parent / rel
            try:
                chunks.append(shard.read_bytes())
            except FileNotFoundError:
                raise ModelError(f"{shard}: weight file of {model_json.name} not found") from None
        buffer = b"".join(chunks)
        offset = 0
        for spec in group["weights"]:
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else spec["dtype"]
            if stored not in _NUMPY_DTYPES:
                raise ModelError(f"{model_json}: weight {spec['name']} has unsupported dtype {stored!r}")
            dtype = _NUMPY_DTYPES[stored]
            shape = tuple(int(d) for d in spec["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            nbytes = count * dtype.itemsize
            if offset + nbytes > len(buffer):
                raise ModelError(
                    f"{model_json}: weight data too short at {spec['name']} "
                    f"(needs {offset + nbytes} bytes, shards hold {len(buffer)}); the .bin is truncated or corrupt")
            raw = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)
            weights[spec["name"]] = np.array(_dequantize(raw, spec, quant))  # own, writable copy
            offset += nbytes
        if offset != len(buffer):
            raise ModelError(f"{model_json}: weight shards hold {len(buffer)} bytes, manifest describes {offset}")
    return weights


# --------------------------------------------------------------------------------------------
# Graph nodes and attributes
# --------------------------------------------------------------------------------------------

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


@dataclass
class _Node:
    """One GraphDef node with data inputs as value keys (``"name"`` or ``"name:k"``)."""

    name: str
    op: str
    inputs: list[str]
    attr: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """Decoded attribute: int, float, bool, str, dtype name or list of those."""
        if key not in self.attr:
            return default
        return _decode_attr(self.attr[key])


def _decode_attr(value: dict[str, Any]) -> Any:
    if "list" in value:
        lst = value["list"]
        for kind in ("i", "f", "b", "s", "type"):
            if kind in lst:
                return [_decode_attr({kind: v}) for v in lst[kind]]
        return []
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8")
    if "type" in value:
        return value["type"]
    return value


def _value_key(ref: str) -> str:
    """GraphDef input reference -> value key; ``"x:0"`` and ``"x"`` are the same value."""
    return ref[:-2] if ref.endswith(":0") else ref


def _parse_nodes(topology: dict[str, Any]) -> list[_Node]:
    nodes = []
    for raw in topology["node"]:
        inputs = [_value_key(i) for i in raw.get("input", []) if not i.startswith("^")]
        nodes.append(_Node(raw["name"], raw["op"], inputs, raw.get("attr", {})))
    return nodes


def _placeholder_shape(node: _Node) -> tuple[int, ...] | None:
    shape = node.attr.get("shape", {}).get("shape")
    if shape is None or shape.get("unknownRank"):
        return None
    return tuple(int(d.get("size", -1)) for d in shape.get("dim", []))


def _producer(key: str) -> str:
    return key.rsplit(":", 1)[0] if ":" in key and key.rsplit(":", 1)[1].isdigit() else key


# --------------------------------------------------------------------------------------------
# Layout: 4-D values may be stored permuted (convolutions keep NCHW, TF graphs speak NHWC).
# A value is (tensor, perm): the logical (TensorFlow) tensor is ``tensor.permute(perm)``;
# perm None means stored as is. Convolution outputs carry perm (0, 2, 3, 1): logical NHWC,
# stored NCHW. Elementwise ops, Transpose, Pad, Concat, Split and reductions work on the stored
# tensor directly; every other op sees the logical tensor.
# --------------------------------------------------------------------------------------------

Perm = tuple[int, ...] | None
NCHW_STORED: tuple[int, ...] = (0, 2, 3, 1)  # logical NHWC <- stored NCHW


def _logical(x: torch.Tensor, perm: Perm) -> torch.Tensor:
    return x if perm is None else x.permute(perm)


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _as_nchw(x: torch.Tensor, perm: Perm) -> torch.Tensor:
    """Stored NCHW view of a value whose logical layout is NHWC."""
    if perm == NCHW_STORED:
        return x
    return _logical(x, perm).permute(0, 3, 1, 2)


def _to_stored(x: torch.Tensor, perm: Perm) -> torch.Tensor:
    """Logical tensor ``x`` broadcast-aligned to another operand stored with ``perm``."""
    if perm is None:
        return x
    if x.dim() < len(perm):
        x = x.reshape((1,) * (len(perm) - x.dim()) + tuple(x.shape))
    return x.permute(_inverse(perm))


class _Op(nn.Module):
    """A graph op on logical tensors: ``forward(*inputs) -> Tensor | tuple[Tensor, ...]``."""

    layout_aware = False


class _LayoutOp(nn.Module):
    """A graph op on stored tensors: ``forward(xs, perms) -> (outputs, out_perms)``."""

    layout_aware = True


def _tf_same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) of one spatial axis.

    TF pads ``total = max((ceil(size/stride) - 1) * stride + (kernel-1)*dilation + 1 - size, 0)``
    and puts the odd pixel AFTER: a 3x3 stride-2 conv on an even size pads (0, 1), not (1, 1).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activation(name: str | None, alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fused activation as a function applied in place on the fresh conv output."""
    if name is None:
        return lambda y: y
    if name == "Relu":
        return torch.relu_
    if name == "Relu6":
        return lambda y: y.clamp_(0.0, 6.0)
    if name == "LeakyRelu":
        return lambda y: F.leaky_relu_(y, alpha)
    if name == "Elu":
        return F.elu_
    if name == "Sigmoid":
        return torch.sigmoid_
    if name == "Tanh":
        return torch.tanh_
    raise ModelError(f"unsupported fused activation {name!r}")


_ACTIVATIONS = ("Relu", "Relu6", "LeakyRelu", "Elu", "Sigmoid", "Tanh")


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


class _Fn(_Op):
    """A logical-layout op given as a plain function of its input tensors."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


# --------------------------------------------------------------------------------------------
# Op compilers: GraphDef node + constant inputs -> torch module
# --------------------------------------------------------------------------------------------


class _Consts:
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


def _compile_conv(node: _Node, consts: _Consts) -> _Conv:
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


def _compile_pool(node: _Node, consts: _Consts) -> _Pool:
    return _Pool(node.op, _pair(node.get("ksize"), "NHWC"), _pair(node.get("strides"), "NHWC"),
                 node.get("padding", "VALID"))


def _compile_resize(node: _Node, consts: _Consts) -> _ResizeBilinear:
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


def _strided_slice(node: _Node, consts: _Consts) -> Callable[[torch.Tensor], torch.Tensor]:
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


def _compile(node: _Node, consts: _Consts) -> nn.Module:
    """The torch module that computes ``node`` (constant inputs already bound where needed)."""
    op = node.op
    if op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
        return _compile_conv(node, consts)
    if op in ("MaxPool", "AvgPool"):
        return _compile_pool(node, consts)
    if op == "ResizeBilinear":
        return _compile_resize(node, consts)
    if op in _BINARY:
        return _Elementwise(_BINARY[op])
    if op in _UNARY:
        return _Elementwise(_UNARY[op])
    if op == "LeakyRelu":
        alpha = float(node.get("alpha", 0.2))
        return _Elementwise(lambda x: F.leaky_relu(x, alpha))
    if op in ("Identity", "StopGradient", "Snapshot"):
        return _Identity()
    if op == "Transpose":
        return _Transpose(consts.ints(node, 1))
    if op in ("Pad", "PadV2", "MirrorPad"):
        pads = consts.tensor(node, 1).reshape(-1, 2).tolist()
        if op == "MirrorPad":
            return _Pad(pads, mode="reflect" if node.get("mode") == "REFLECT" else "replicate")
        value = float(consts.tensor(node, 2).reshape(-1)[0]) if op == "PadV2" else 0.0
        return _Pad(pads, value)
    if op == "ConcatV2":
        return _Concat(consts.int(node, len(node.inputs) - 1))
    if op == "SplitV":
        return _Split(consts.ints(node, 1), consts.int(node, 2))
    if op == "Split":  # inputs: axis, value
        return _Split(int(node.get("num_split")), consts.int(node, 0))
    if op in _REDUCTIONS:
        return _Reduce(_REDUCTIONS[op], consts.ints(node, 1), bool(node.get("keep_dims", False)))
    if op == "Cast":
        dst = node.get("DstT")
        if dst not in _TF_DTYPES:
            raise ModelError(f"node {node.name}: Cast to {dst} not supported")
        return _Cast(_TF_DTYPES[dst])
    if op == "Reshape":
        return _Fn(_reshape(consts.ints(node, 1)))
    if op == "ExpandDims":
        axis = consts.int(node, 1)
        return _Fn(lambda x: x.unsqueeze(axis if axis >= 0 else x.dim() + 1 + axis))
    if op == "Squeeze":
        return _Fn(_squeeze(node.get("squeeze_dims", []) or []))
    if op == "Pack":
        axis = int(node.get("axis", 0))
        return _Fn(lambda *xs: torch.stack(xs, dim=axis if axis >= 0 else xs[0].dim() + 1 + axis))
    if op == "Unpack":
        axis = int(node.get("axis", 0))
        return _Fn(lambda x: tuple(x.unbind(axis)))
    if op in ("ArgMax", "ArgMin"):
        axis = consts.int(node, 1)
        dtype = _TF_DTYPES.get(node.get("output_type", "DT_INT64")) or torch.int64
        reduce = torch.argmax if op == "ArgMax" else torch.argmin
        return _Fn(lambda x: reduce(x, dim=axis).to(dtype))
    if op == "GatherNd":
        return _Fn(_gather_nd)
    if op == "GatherV2":
        return _Fn(_gather_v2(consts.int(node, 2), int(node.get("batch_dims", 0))))
    if op == "StridedSlice":
        return _Fn(_strided_slice(node, consts))
    if op == "Tile":
        reps = consts.ints(node, 1)
        return _Fn(lambda x: x.repeat(reps))
    if op == "TopKV2":
        return _Fn(_top_k(consts.int(node, 1)))
    if op == "SparseToDense":
        return _Fn(_sparse_to_dense)
    if op == "Softmax":
        return _Fn(lambda x: torch.softmax(x, dim=-1))
    if op == "Shape":
        return _Fn(lambda x: torch.tensor(x.shape, dtype=torch.int32, device=x.device))
    if op == "SelectV2":
        return _Fn(torch.where)
    raise ModelError(f"node {node.name}: TF op {op!r} is not supported by the TF.js importer")


# Ops whose inputs after the first are compile-time parameters (shape, axis, perm, size, ...).
_FIRST_INPUT_ONLY = frozenset({
    "Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative", "MaxPool", "AvgPool",
    "ResizeBilinear", "Transpose", "Pad", "PadV2", "MirrorPad", "SplitV", "Reshape", "ExpandDims",
    "ArgMax", "ArgMin", "StridedSlice", "Tile", "TopKV2", *_REDUCTIONS})


def _data_inputs(node: _Node) -> list[str]:
    """The inputs a node reads at run time (parameters were bound when it was compiled)."""
    if node.op in _FIRST_INPUT_ONLY:
        return node.inputs[:1]
    if node.op == "ConcatV2":
        return node.inputs[:-1]
    if node.op == "Split":
        return node.inputs[1:2]
    if node.op == "GatherV2":
        return node.inputs[:2]
    return node.inputs


# --------------------------------------------------------------------------------------------
# Graph-level passes: constant folding and conv + bias + activation fusion
# --------------------------------------------------------------------------------------------

_NO_FOLD = ("Placeholder",)


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    arr = np.asarray(value)
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _fold_constants(nodes: list[_Node], consts: dict[str, torch.Tensor]) -> list[_Node]:
    """Evaluate every node whose inputs are all constant; returns the nodes left to run."""
    remaining = []
    for node in nodes:
        if node.op == "Const":
            if node.name not in consts:
                raise ModelError(f"constant {node.name} has no weight in the manifest")
            continue
        if node.op in _NO_FOLD or not node.inputs or not all(i in consts for i in node.inputs):
            remaining.append(node)
            continue
        data = _data_inputs(node)
        outs = _run_module(_compile(node, _Consts(consts)), [consts[i] for i in data], [None] * len(data))
        for k, (value, perm) in enumerate(zip(*outs)):
            consts[node.name if k == 0 else f"{node.name}:{k}"] = _logical(value, perm).contiguous()
    return remaining


def _consumers(nodes: list[_Node]) -> dict[str, list[_Node]]:
    users: dict[str, list[_Node]] = {}
    for node in nodes:
        for key in node.inputs:
            users.setdefault(key, []).append(node)
    return users


def _conv_out_channels(op: str, filt: torch.Tensor) -> int:
    """Output channels of a TF conv filter (kh, kw, C_in, C_out) / depthwise (kh, kw, C, mult)."""
    return filt.shape[2] * filt.shape[3] if "Depthwise" in op else filt.shape[3]


def _fuse_conv_bias_activation(nodes: list[_Node], consts: dict[str, torch.Tensor]
                               ) -> tuple[list[_Node], dict[str, str]]:
    """Fold ``conv -> BiasAdd/Add(const vector) -> Relu/Relu6/LeakyRelu/Elu`` into one fused conv.

    The fused node takes the name of the last node it absorbs; the names it absorbs are returned
    (absorbed name -> surviving name) so that asking for them gives a clear error.
    Only single-consumer chains are fused, so no other node sees a changed value.
    """
    users = _consumers(nodes)
    by_name = {n.name: n for n in nodes}
    absorbed: dict[str, str] = {}
    for node in list(nodes):
        if node.name in absorbed or node.op not in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative",
                                                      "FusedDepthwiseConv2dNative"):
            continue
        fused = list(node.get("fused_ops", [])) if node.op.startswith(("_Fused", "Fused")) else []
        inputs = list(node.inputs[:2]) + (list(node.inputs[2:]) if fused else [])
        alpha = node.get("leakyrelu_alpha")
        tail = node
        while True:
            nxt = users.get(tail.name, [])
            if len(nxt) != 1:
                break
            nxt = nxt[0]
            if not fused and nxt.op in ("BiasAdd", "Add", "AddV2"):
                other = [k for k in nxt.inputs if k != tail.name]
                if len(other) != 1 or other[0] not in consts:
                    break
                vec = consts[other[0]]
                filt = consts.get(node.inputs[1])
                if filt is None or filt.dim() != 4 or vec.shape[-1] != _conv_out_channels(node.op, filt) \
                        or vec.numel() != vec.shape[-1] or vec.dim() not in (1, 4):
                    break  # not a per-channel bias vector (e.g. a scalar): leave the Add alone
                bias_key = f"{other[0]}/bias_vector"  # the original may have other consumers
                consts[bias_key] = vec.reshape(-1)
                fused, inputs = ["BiasAdd"], inputs + [bias_key]
            elif fused and fused[-1] == "BiasAdd" and nxt.op in ("Relu", "Relu6", "LeakyRelu", "Elu"):
                # Sigmoid/Tanh usually end a head: keep them apart so the logits stay fetchable.
                fused.append(nxt.op)
                alpha = nxt.get("alpha") if nxt.op == "LeakyRelu" else alpha
            else:
                break
            absorbed[tail.name] = nxt.name
            tail = nxt
        if tail is node:
            continue
        attr = dict(node.attr)
        attr["fused_ops"] = {"list": {"s": [base64.b64encode(s.encode()).decode() for s in fused]}}
        if alpha is not None:
            attr["leakyrelu_alpha"] = {"f": alpha}
        op = "FusedDepthwiseConv2dNative" if "Depthwise" in node.op else "_FusedConv2D"
        by_name[tail.name] = _Node(tail.name, op, inputs, attr)
    kept = [by_name[n.name] for n in nodes if n.name not in absorbed]
    # Absorbed chains point at their final name (a -> b -> c: a and b both map to c).
    for name in list(absorbed):
        while absorbed[name] in absorbed:
            absorbed[name] = absorbed[absorbed[name]]
    return kept, absorbed


def _run_module(module: nn.Module, xs: list[torch.Tensor], perms: list[Perm]
                ) -> tuple[list[torch.Tensor], list[Perm]]:
    if getattr(module, "layout_aware", False):
        return module(xs, perms)
    out = module(*[_logical(x, p) for x, p in zip(xs, perms)])
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return outs, [None] * len(outs)


# --------------------------------------------------------------------------------------------
# The compiled graph
# --------------------------------------------------------------------------------------------


class TfjsGraph(nn.Module):
    """A TF.js graph compiled once into a topologically sorted list of torch ops.

    Weights are buffers (``.to(device)``, ``.half()`` work; int constants keep their dtype).
    Convolutions run in NCHW with bias and activation fused; the values the graph sees stay
    NHWC (TensorFlow's layout) and are converted lazily where an op needs them (see _LayoutOp).

    Parameters
    ----------
    topology:
        ``modelTopology`` (from :func:`read_tfjs_topology`), with ``signature``.
    weights:
        ``{const node name: array}`` (numpy or torch), e.g. from :func:`read_tfjs_weights` or a
        safetensors file holding the same names.
    fuse:
        Fold conv + bias-add + activation chains into one op (default True). The intermediate
        names they absorb can then not be requested; build with ``fuse=False`` to see them.

    Use ``graph(x)`` to run signature inputs to signature outputs, or :meth:`run` for any
    feed/fetch pair of node names (e.g. to feed past a batch-1 preprocessing and fetch heads).
    """

    def __init__(self, topology: dict[str, Any], weights: dict[str, Any], *, fuse: bool = True) -> None:
        super().__init__()
        nodes = _parse_nodes(topology)
        consts = {name: _as_tensor(value) for name, value in weights.items()}
        self.placeholders = [n.name for n in nodes if n.op == "Placeholder"]
        # Declared input shapes, -1 / None for unknown sizes: {placeholder name: (d0, d1, ...)}.
        self.input_shapes = {n.name: _placeholder_shape(n) for n in nodes if n.op == "Placeholder"}
        signature = topology.get("signature") or {}
        self.input_names = [_value_key(k) for k in (signature.get("inputs") or {})] or list(self.placeholders)
        self.output_names = [_value_key(k) for k in (signature.get("outputs") or {})] or self._sinks(nodes)
        nodes = _fold_constants(nodes, consts)
        self._absorbed: dict[str, str] = {}
        if fuse:
            nodes, self._absorbed = _fuse_conv_bias_activation(nodes, consts)
        nodes = self._toposort(nodes)
        steps = _Consts(consts)
        self.ops = nn.ModuleList(_compile(n, steps) if n.op != "Placeholder" else _Identity() for n in nodes)
        self._nodes = nodes
        self._index = {n.name: i for i, n in enumerate(nodes)}
        # Constants still read at run time (most weights live inside the conv modules instead).
        self._data_in = [_data_inputs(n) for n in nodes]
        used = {k for ins in self._data_in for k in ins if k in consts}
        self._const_slot = {k: f"c{i}" for i, k in enumerate(sorted(used))}
        self.constants = nn.Module()
        for key, slot in self._const_slot.items():
            self.constants.register_buffer(slot, consts[key])
        self._plans: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[int, list[str], list[str]]]] = {}
        # Per plan: may it run in batch slices (run() on CPU), and its largest activation per image.
        self._separable: dict[tuple[tuple[str, ...], tuple[str, ...]], bool] = {}
        self._peak_bytes: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}

    @staticmethod
    def _sinks(nodes: list[_Node]) -> list[str]:
        used = {_producer(k) for n in nodes for k in n.inputs}
        return [n.name for n in nodes if n.name not in used and n.op != "Const"]

    @staticmethod
    def _toposort(nodes: list[_Node]) -> list[_Node]:
        """Kahn's algorithm, keeping the file's order among ready nodes."""
        names = {n.name for n in nodes}
        deps = {n.name: {_producer(k) for k in n.inputs if _producer(k) in names} for n in nodes}
        users: dict[str, list[str]] = {}
        for n, ds in deps.items():
            for d in ds:
                users.setdefault(d, []).append(n)
        by_name = {n.name: n for n in nodes}
        order, ready = [], [n.name for n in nodes if not deps[n.name]]
        pending = {n: len(ds) for n, ds in deps.items()}
        while ready:
            name = ready.pop(0)
            order.append(by_name[name])
            for u in users.get(name, []):
                pending[u] -= 1
                if pending[u] == 0:
                    ready.append(u)
        if len(order) != len(nodes):
            raise ModelError("TF.js graph has a cycle")
        return order

    def constant(self, name: str) -> torch.Tensor:
        """A constant the graph reads at run time (e.g. a post-processing table), on its device."""
        if name not in self._const_slot:
            raise ModelError(f"no run-time constant named {name!r} in the graph")
        return getattr(self.constants, self._const_slot[name])

    # -- planning ------------------------------------------------------------------------------

    @property
    def node_names(self) -> list[str]:
        """Names of the nodes that run (after folding and fusion), in execution order."""
        return [n.name for n in self._nodes]

    def _plan(self, feeds: tuple[str, ...], fetches: tuple[str, ...]):
        key = (feeds, fetches)
        if key in self._plans:
            return self._plans[key]
        for name in fetches:
            if name in self._absorbed:
                raise ModelError(f"{name} was fused into {self._absorbed[name]}; "
                                 f"build the graph with fuse=False to fetch it")
            if _producer(name) not in self._index and name not in self._const_slot and name not in feeds:
                raise ModelError(f"no node named {name!r} in the graph")
        needed: set[str] = set()
        stack = [_producer(f) for f in fetches if f not in feeds]
        while stack:
            name = stack.pop()
            if name in needed or name not in self._index:
                continue
            needed.add(name)
            node = self._nodes[self._index[name]]
            if node.op == "Placeholder":
                raise ModelError(f"running to {list(fetches)} needs input {name!r}, which was not fed")
            stack.extend(_producer(k) for k in self._data_in[self._index[name]] if k not in feeds)
        steps = [i for i, n in enumerate(self._nodes) if n.name in needed]
        # Free every value after its last use (keeps peak memory low at large batches).
        last_use: dict[str, int] = {}
        for pos, i in enumerate(steps):
            for k in self._data_in[i]:
                last_use[k] = pos
        plan = []
        for pos, i in enumerate(steps):
            inputs = self._data_in[i]
            free = [k for k in set(inputs) if last_use.get(k) == pos and k not in fetches]
            plan.append((i, inputs, free))
        self._plans[key] = plan
        return plan

    # -- running -------------------------------------------------------------------------------

    def _float_dtype(self) -> torch.dtype:
        for b in self.buffers():
            if b.is_floating_point():
                return b.dtype
        return torch.float32

    def run(self, feeds: dict[str, torch.Tensor], fetches: list[str] | tuple[str, ...], *,
            channels_first: bool = False) -> dict[str, torch.Tensor]:
        """Run the nodes between ``feeds`` and ``fetches``.

        Parameters
        ----------
        feeds:
            ``{node name: tensor}``; 4-D tensors are NHWC like the graph's own values, or NCHW
            when ``channels_first`` (converted without a copy). Float feeds are cast to the
            graph's float dtype and moved to its device.
        fetches:
            Node names (``"name:k"`` for the k-th output of multi-output nodes).
        channels_first:
            4-D feeds and fetches are NCHW (a fetch stored NCHW is returned without a copy).

        Returns ``{fetch name: tensor}``.

        On CPU, a batch is run in slices (see :meth:`_chunk_size`) when every op between feeds
        and fetches treats the images of a batch independently (convolutions, pools, resizes,
        elementwise ops with per-batch-constant operands): the results are those of the whole
        batch, computed with activations small enough to stay in cache and in recycled memory.
        """
        fetches = tuple(_value_key(f) for f in fetches)
        key = (tuple(sorted(feeds)), fetches)
        plan = self._plan(*key)
        dtype = self._float_dtype()
        device = next(iter(self.buffers())).device
        values: dict[str, torch.Tensor] = {}
        for name, x in feeds.items():
            x = torch.as_tensor(x, device=device)
            values[name] = x.to(dtype) if x.is_floating_point() else x
        n = self._batch_of(key, values) if device.type == "cpu" else None
        if n is None or n <= 1:
            return self._execute(key, plan, values, channels_first)
        parts, start = [], 0
        if key not in self._peak_bytes:  # first run of this plan: one image shows its peak
            parts.append(self._execute(key, plan, {k: v[:1] for k, v in values.items()}, channels_first))
            start = 1
        step = self._chunk_size(key)
        for i in range(start, n, step):
            parts.append(self._execute(key, plan, {k: v[i:i + step] for k, v in values.items()}, channels_first))
        return {name: torch.cat([part[name] for part in parts]) for name in fetches}

    # Largest activation (bytes) a CPU batch slice may produce. glibc serves blocks over its mmap
    # threshold (at most 32 MiB) with fresh pages from the kernel and unmaps them when freed, so
    # larger activations are page-faulted anew at every op (this made Thunder at batch 16 slower
    # per image than at batch 1); smaller ones are recycled. Thunder peaks at 12.6 MB per image
    # (192 x 128 x 128 floats) and runs 2 images per slice, Lightning (7.1 MB) 4.
    _CPU_SLICE_BYTES = 32 * 2**20

    def _chunk_size(self, key: tuple[tuple[str, ...], tuple[str, ...]]) -> int:
        """Images per CPU batch slice, from the largest per-image activation seen for this plan."""
        return max(1, self._CPU_SLICE_BYTES // max(self._peak_bytes[key], 1))

    def _batch_of(self, key: tuple[tuple[str, ...], tuple[str, ...]], values: dict[str, torch.Tensor]) -> int | None:
        """The batch size if the plan may run in batch slices, else None.

        Only ops that map image i of the batch to image i of the output are allowed (no reshape,
        gather or decode): convolutions, pools, resizes, casts, identities, elementwise ops whose
        constant operands are the same for every image, and concat/split off the batch axis.
        Every feed is 4-D with the same batch size and every fetch is computed by the plan.
        """
        shapes = {v.shape[0] if v.dim() == 4 else None for v in values.values()}
        if len(shapes) != 1 or None in shapes:
            return None
        if key not in self._separable:
            self._separable[key] = self._plan_is_batchwise(key)
        return shapes.pop() if self._separable[key] else None

    def _plan_is_batchwise(self, key: tuple[tuple[str, ...], tuple[str, ...]]) -> bool:
        feeds, fetches = key
        if any(f in feeds or f in self._const_slot for f in fetches):
            return False
        for i, inputs, _ in self._plan(feeds, fetches):
            op = self.ops[i]
            if isinstance(op, (_Concat, _Split)):
                if op.axis % 4 == 0:
                    return False
            elif isinstance(op, _Elementwise):
                for k in inputs:
                    if k in self._const_slot and k not in feeds:
                        c = self.constant(k)
                        if c.dim() > 4 or (c.dim() == 4 and c.shape[0] != 1):
                            return False
            elif not isinstance(op, (_Conv, _Pool, _ResizeBilinear, _Cast, _Identity)):
                return False
        return True

    def _execute(self, key: tuple[tuple[str, ...], tuple[str, ...]], plan: list[tuple[int, list[str], list[str]]],
                 feeds: dict[str, torch.Tensor], channels_first: bool) -> dict[str, torch.Tensor]:
        """Run ``plan`` on ``feeds`` (already on the device, float feeds in the graph's dtype)."""
        fetches = key[1]
        env: dict[str, torch.Tensor] = {}
        perms: dict[str, Perm] = {}
        for name, x in feeds.items():
            env[name] = x
            perms[name] = NCHW_STORED if channels_first and x.dim() == 4 else None
        for k, slot in self._const_slot.items():
            if k not in env:
                env[k] = getattr(self.constants, slot)
                perms[k] = None
        peak = 0
        ops = list(self.ops)  # plain list: ModuleList indexing costs microseconds per op
        for i, inputs, free in plan:
            node = self._nodes[i]
            outs, out_perms = _run_module(ops[i], [env[k] for k in inputs], [perms[k] for k in inputs])
            for k, (value, perm) in enumerate(zip(outs, out_perms)):
                name = node.name if k == 0 else f"{node.name}:{k}"
                env[name], perms[name] = value, perm
                peak = max(peak, value.numel() * value.element_size())
            for k in free:
                if k not in feeds and k not in self._const_slot:
                    del env[k]
        batch = next((x.shape[0] for x in feeds.values() if x.dim() == 4), 0)
        if batch > 0:
            self._peak_bytes[key] = -(-peak // batch)
        result = {}
        for name in fetches:
            x, p = env[name], perms[name]
            if channels_first and x.dim() == 4:
                result[name] = _as_nchw(x, p)
            else:
                result[name] = _logical(x, p)
        return result

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Signature inputs (in ``input_names`` order) -> signature outputs (``output_names``)."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f"graph takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}")
        out = self.run(dict(zip(self.input_names, inputs)), self.output_names)
        values = tuple(out[n] for n in self.output_names)
        return values[0] if len(values) == 1 else values


def load_tfjs_graph(model_json: Path, weights: dict[str, Any] | None = None, *, fuse: bool = True) -> TfjsGraph:
    """Compile a TF.js graph model into a :class:`TfjsGraph` (on CPU, float32).

    ``weights`` (``{name: array}``, e.g. loaded from a cached safetensors file) replaces reading
    the ``.bin`` shards; its names must be those of the manifest.
    """
    topology = read_tfjs_topology(model_json)
    cached = Path(model_json).with_suffix(".safetensors")  # `posetracker models` cache layout
    if weights is None and cached.is_file():
        from safetensors.numpy import load_file

        weights = load_file(str(cached))
    if weights is None:
        weights = read_tfjs_weights(model_json)
    else:
        manifest = _load_json(model_json)["weightsManifest"]
        missing = [w["name"] for g in manifest for w in g["weights"] if w["name"] not in weights]
        if missing:
            raise ModelError(f"{model_json}: weights given lack {len(missing)} tensors, e.g. {missing[0]!r}")
    return TfjsGraph(topology, weights, fuse=fuse)
