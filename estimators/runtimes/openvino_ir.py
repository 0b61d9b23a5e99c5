"""OpenVINO IR (``.xml`` network + ``.bin`` weights, IR v10/v11) run as a torch module.

Public API
----------
``load_openvino_ir(xml, weights=None) -> OpenVinoIR``
    ``weights`` is the ``.bin`` (default: the same stem beside the ``.xml``).
``OpenVinoIR(x) -> {output name: tensor}``
    ``x`` (N, C, H, W) float; any batch N, on CPU or CUDA, float32 or (after ``.half()``) float16.
``.input_name``, ``.input_shape`` (the IR's static shape, e.g. (1, 3, 256, 192)), ``.output_names``
    (the tensor names on the ports that feed the Result layers), ``.select_outputs(names)`` (run
    only what those outputs need), ``.params`` (every float weight, an ``nn.ParameterDict``).

How it loads
------------
The XML is read with ``xml.etree`` (no OpenVINO needed). ``Const`` layers are read from the
``.bin`` (offset, size, element type; f16/bf16/f32/f64, signed and unsigned ints, boolean) and
checked against the file. Every layer whose inputs are all constant is folded at load time
(the f16 -> f32 ``Convert`` of each weight among them). Then, on the graph:

- ``Multiply`` by a constant of ones is dropped (PicoDet has one after most activations).
- ``Convolution``/``GroupConvolution`` absorb the single-consumer chain after them: ``Multiply``
  by a per-channel constant (folded into the weights), ``Add``/``Subtract`` of a per-channel
  constant (the bias), then one activation (ReLU, HSwish, Sigmoid, HardSigmoid, Clamp, ...),
  applied in place on the fresh conv output.
- The ShuffleNet channel shuffle ``Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) ->
  Reshape(N, C, H, W)`` becomes one op, and with the ``Concat`` of g equal parts before it a
  single interleaving copy (``torch.stack``).
- Float constants consumed by the network's ops become ``nn.Parameter``s (float32, registered in
  ``params`` under sanitised layer names) so that the network can be fine-tuned; integer
  constants (shapes, axes, indices) stay plain values.

How it runs
-----------
Values are either *data* (depend on the input's values: torch tensors on the input's device) or
*host* (shape arithmetic: ``ShapeOf`` and what is computed from it, on small CPU tensors). Host
values depend only on the input's shape, so for each input signature (shape, dtype, device,
autograd) the first call runs the graph once while binding every data op to its host values
(target shapes, interpolation sizes, slice bounds as Python values), and records a flat plan:
a list of ``(kernel, input slots, output slots, slots freed)``. Later calls with that signature
run the plan only: no shape arithmetic, no name lookups. The IR's static batch size is not
baked in: shapes come from ``ShapeOf`` at run time, and a constant ``Reshape`` target whose first
dimension is the IR's batch is given the input's batch when that is what makes it fit.

CPU speed (float32; :mod:`posetracker.estimators.runtimes.kernels`, shared with the TF.js and ONNX
runtimes): values live in channels-last memory; small 1x1 convolutions are one GEMM on those
bytes (a oneDNN call costs ~20 us before any arithmetic, a GEMM ~3 us; a Split half is read in
place as a row-strided matrix); the other convolutions go to oneDNN with their weight kept in
its blocked layout, ReLU fused; activations and elementwise ops run in place where the plan
shows the operand dies there. Under autograd (grad enabled and a parameter or the input
requiring grad) every op is a differentiable out-of-place torch op.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
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
from posetracker.core.errors import InputError, ModelError

# Convolutions (and so most values) live in channels-last memory: see the module docstring.
CHANNELS_LAST = True
# 1x1 convs up to this many multiply-adds run as one GEMM on the CPU (kernels.conv1x1_mm): below
# it oneDNN's fixed cost per call outweighs its faster arithmetic.
_MM_MAX_MACS = 4_000_000

# IR element type -> (numpy dtype as stored in the .bin, torch dtype of the value).
_ELEMENT_TYPES: dict[str, tuple[str, torch.dtype]] = {
    "f32": ("<f4", torch.float32),
    "f16": ("<f2", torch.float16),
    "f64": ("<f8", torch.float64),
    "bf16": ("<u2", torch.bfloat16),
    "i64": ("<i8", torch.int64),
    "i32": ("<i4", torch.int32),
    "i16": ("<i2", torch.int16),
    "i8": ("i1", torch.int8),
    "u8": ("u1", torch.uint8),
    "u16": ("<u2", torch.int32),   # torch has no full uint16/32/64: widened (u64 -1 wraps as IR
    "u32": ("<u4", torch.int64),   # exporters use it for "last axis")
    "u64": ("<u8", torch.int64),
    "boolean": ("u1", torch.bool),
}


# ------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------

@dataclass
class _Port:
    id: str
    dims: tuple[int, ...] | None  # -1 for a dynamic dimension; None when the port lists none
    names: list[str]
    precision: str = ""  # "FP32", "I64", ...


@dataclass
class _Layer:
    id: str
    name: str
    type: str
    version: str
    data: dict[str, str]
    inputs: list[_Port]
    outputs: list[_Port]

    def where(self) -> str:
        return f"layer {self.name!r} (id {self.id}, {self.type} {self.version})"


def _dims(text: str | None) -> tuple[int, ...]:
    """``"1, 3, 256, 192"`` -> (1, 3, 256, 192); ``"?"`` or ``"-1"`` -> -1; ``""`` -> ()."""
    if not text or not text.strip():
        return ()
    out = []
    for part in text.replace(" ", "").split(","):
        out.append(-1 if part in ("?", "-1") or ".." in part else int(part))
    return tuple(out)


def _ints(text: str | None) -> list[int]:
    return [int(v) for v in text.replace(" ", "").split(",") if v] if text else []


def _port(elem: ET.Element) -> _Port:
    dims = [d.text or "" for d in elem.findall("dim")]
    names = [n.strip() for n in (elem.get("names") or "").split(",") if n.strip()]
    return _Port(elem.get("id", ""), tuple(-1 if d.strip() in ("?", "-1") else int(d) for d in dims),
                 names, (elem.get("precision") or "").upper())


def _parse_xml(xml: Path) -> tuple[dict[str, _Layer], dict[tuple[str, str], tuple[str, str]]]:
    """Layers by id (in file order) and edges ``(to layer, to port) -> (from layer, from port)``."""
    try:
        root = ET.parse(xml).getroot()
    except FileNotFoundError:
        raise ModelError(f"{xml}: OpenVINO IR file not found") from None
    except ET.ParseError as e:
        raise ModelError(f"{xml}: not an OpenVINO IR .xml (malformed XML: {e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{xml}: cannot read the OpenVINO IR .xml ({e})") from None
    layers_elem, edges_elem = root.find("layers"), root.find("edges")
    if root.tag != "net" or layers_elem is None or edges_elem is None:
        raise ModelError(f"{xml}: not an OpenVINO IR .xml (expected <net> with <layers> and <edges>)")
    if root.get("version") not in ("10", "11"):
        raise ModelError(f"{xml}: OpenVINO IR version {root.get('version')!r} is not supported "
                         "(IR v10 and v11 are)")
    layers: dict[str, _Layer] = {}
    for elem in layers_elem.findall("layer"):
        try:
            data_elem = elem.find("data")
            inp, outp = elem.find("input"), elem.find("output")
            layer = _Layer(elem.get("id", ""), elem.get("name", ""), elem.get("type", ""),
                           elem.get("version", ""), dict(data_elem.attrib) if data_elem is not None else {},
                           [_port(p) for p in (inp.findall("port") if inp is not None else [])],
                           [_port(p) for p in (outp.findall("port") if outp is not None else [])])
        except ValueError as e:
            raise ModelError(f"{xml}: malformed layer {elem.get('name')!r} (id {elem.get('id')}): {e}") from None
        if not layer.id or layer.id in layers:
            raise ModelError(f"{xml}: layer {layer.name!r} has a missing or duplicate id {layer.id!r}")
        layers[layer.id] = layer
    edges: dict[tuple[str, str], tuple[str, str]] = {}
    for e in edges_elem.findall("edge"):
        src = (e.get("from-layer", ""), e.get("from-port", ""))
        dst = (e.get("to-layer", ""), e.get("to-port", ""))
        if src[0] not in layers or dst[0] not in layers:
            raise ModelError(f"{xml}: edge {src} -> {dst} names a layer that does not exist")
        edges[dst] = src
    return layers, edges


def _read_const(layer: _Layer, blob: bytes | memoryview, xml: Path, bin_path: Path) -> torch.Tensor:
    """The value of a ``Const`` layer (a CPU tensor of its element type, see ``_ELEMENT_TYPES``)."""
    d = layer.data
    etype = d.get("element_type", "")
    if etype not in _ELEMENT_TYPES:
        raise ModelError(f"{xml}: {layer.where()} has unsupported element type {etype!r}")
    try:
        shape = _dims(d["shape"]) if "shape" in d else (layer.outputs[0].dims or ())
        offset, size = int(d["offset"]), int(d["size"])
    except (KeyError, ValueError, IndexError) as e:
        raise ModelError(f"{xml}: {layer.where()} lacks a valid shape/offset/size ({e})") from None
    np_dtype = np.dtype(_ELEMENT_TYPES[etype][0])
    count = math.prod(shape)
    if size != count * np_dtype.itemsize or offset < 0:
        raise ModelError(f"{bin_path}: {layer.where()} declares {size} bytes at offset {offset} for "
                         f"{count} {etype} values (shape {list(shape)}); the .xml is corrupt")
    if offset + size > len(blob):
        raise ModelError(f"{bin_path}: weight file holds {len(blob)} bytes but {layer.where()} reads "
                         f"bytes {offset}..{offset + size}; the .bin is truncated or not this model's")
    arr = np.frombuffer(blob, dtype=np_dtype, count=count, offset=offset).reshape(shape)
    if etype == "bf16":
        return torch.from_numpy(arr.astype(np.int16)).view(torch.bfloat16).clone()
    if etype == "boolean":
        return torch.from_numpy(arr != 0)
    if etype in ("u16", "u32", "u64"):
        arr = arr.astype(np.int64 if etype != "u16" else np.int32)  # u64 max wraps to -1
    return torch.from_numpy(arr.copy())


# ------------------------------------------------------------------------------------------
# Ops
# ------------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    """What a kernel is bound for: the run's float dtype (None on the host: each value keeps its
    own), device, whether autograd records, the input batch and the IR's, the parameters, and
    which inputs die at this op (so may be overwritten in place)."""

    dtype: torch.dtype | None
    device: torch.device
    grad: bool = False
    batch: int = 1
    ir_batch: int | None = None
    params: Any = None
    inplace: frozenset[int] = frozenset()


_HOST = _Ctx(None, torch.device("cpu"))


def _float_dtype(ctx: _Ctx, etype: str) -> torch.dtype:
    """A float destination type in a data context is the run's float dtype (float16 after
    ``.half()``), so that no op mixes float32 into a float16 network."""
    return ctx.dtype if ctx.dtype is not None else _ELEMENT_TYPES[etype][1]


def _py(t: torch.Tensor | float | int | Sequence[Any]) -> Any:
    return t.tolist() if isinstance(t, torch.Tensor) else t


def _pylist(t: Any) -> list[Any]:
    v = _py(t)
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


class _Op:
    """One layer's computation.

    ``compute(ctx, *inputs)`` is the generic form (every input a tensor, outputs a list): it
    folds constants at load time and does the shape arithmetic on the host. ``bind(args,
    dynamic, ctx)`` returns the kernel for one input signature: ``args[i]`` is the actual value
    of input i (data tensors of the tracing run included), ``dynamic[i]`` whether it changes
    from call to call (the kernel's arguments, in order); the others are bound into the kernel.
    """

    attr_inputs: frozenset[int] = frozenset()  # inputs read as Python values (axes, shapes, k)
    n_out = 1

    def __init__(self, layer: _Layer) -> None:
        self.layer = layer

    def unused_inputs(self) -> frozenset[int]:
        return frozenset()

    def compute(self, ctx: _Ctx, *xs: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
        fixed = [None if d else _static(a, ctx, i in self.attr_inputs) for i, (a, d) in
                 enumerate(zip(args, dynamic))]
        dyn = [i for i, d in enumerate(dynamic) if d]
        compute, single = self.compute, self.n_out == 1

        def run(*xs: torch.Tensor) -> Any:
            full = list(fixed)
            for i, x in zip(dyn, xs):
                full[i] = x
            out = compute(ctx, *full)
            return out[0] if single else tuple(out)
        return run


def _static(a: Any, ctx: _Ctx, attr: bool) -> Any:
    """A bound (non-data) input of a data op on the run's device and float dtype."""
    if attr or not isinstance(a, torch.Tensor) or isinstance(a, nn.Parameter):
        return a
    if a.is_floating_point():
        return a.to(device=ctx.device, dtype=ctx.dtype or a.dtype)
    return a.to(ctx.device)


def _can_overwrite(t: Any, result_shape: Sequence[int], result_dtype: torch.dtype, ctx: _Ctx,
                   i: int) -> bool:
    """Whether input ``i`` (tensor ``t``) may hold the op's result in place."""
    return (not ctx.grad and i in ctx.inplace and isinstance(t, torch.Tensor)
            and tuple(t.shape) == tuple(result_shape) and t.dtype == result_dtype
            and (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)))


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

    def compute(self, ctx: _Ctx, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        return [self.fn(a, b)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
        fn, method = self.fn, self.method
        a, b = (args[i] if dynamic[i] else _static(args[i], ctx, False) for i in (0, 1))
        if method == "div_" and not (a.is_floating_point() or b.is_floating_point()):
            method = None  # integer division keeps its rounding mode: not in place
        shape = torch.broadcast_shapes(a.shape, b.shape)
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


def _hard_sigmoid(x: torch.Tensor, alpha: float, beta: float, inplace: bool) -> torch.Tensor:
    if inplace:
        return x.mul_(alpha).add_(beta).clamp_(0.0, 1.0)
    return (x * alpha + beta).clamp(0.0, 1.0)


def _activation(name: str, params: tuple[float, ...], inplace: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation ``name`` (an IR op type) as a one-argument function; ``params`` are its
    constant operands (HardSigmoid alpha, beta; Clamp min, max; Swish beta; Elu alpha)."""
    if name == "ReLU":
        return torch.relu_ if inplace else torch.relu
    if name == "Sigmoid":
        return torch.sigmoid_ if inplace else torch.sigmoid
    if name == "Tanh":
        return torch.tanh_ if inplace else torch.tanh
    if name == "HSwish":
        return lambda x: F.hardswish(x, inplace=inplace)
    if name == "HSigmoid":
        return lambda x: F.hardsigmoid(x, inplace=inplace)
    if name == "HardSigmoid":
        alpha, beta = params
        return lambda x: _hard_sigmoid(x, alpha, beta, inplace)
    if name == "Clamp":
        lo, hi = params
        return (lambda x: x.clamp_(lo, hi)) if inplace else (lambda x: x.clamp(lo, hi))
    if name == "Swish":
        (beta,) = params
        if beta == 1.0:
            return lambda x: F.silu(x, inplace=inplace)
        return lambda x: x * torch.sigmoid(x * beta)
    if name == "Elu":
        (alpha,) = params
        return lambda x: F.elu(x, alpha, inplace=inplace)
    if name == "Exp":
        return torch.exp_ if inplace else torch.exp
    if name == "Log":
        return torch.log_ if inplace else torch.log
    if name == "Sqrt":
        return torch.sqrt_ if inplace else torch.sqrt
    if name == "Abs":
        return torch.abs_ if inplace else torch.abs
    if name == "Negative":
        return torch.neg_ if inplace else torch.neg
    if name == "Floor":
        return torch.floor_ if inplace else torch.floor
    if name == "Ceiling":
        return torch.ceil_ if inplace else torch.ceil
    raise AssertionError(name)


# Activations a conv may absorb (each with the inputs that are its constant parameters).
_FUSABLE_ACTIVATIONS = ("ReLU", "Sigmoid", "Tanh", "HSwish", "HSigmoid", "HardSigmoid", "Clamp",
                        "Swish", "Elu")


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

    def compute(self, ctx: _Ctx, x: torch.Tensor, *extra: torch.Tensor) -> list[torch.Tensor]:
        return [_activation(self.layer.type, self.params(extra), False)(x)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
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

    def dtype(self, ctx: _Ctx) -> torch.dtype:
        target = _ELEMENT_TYPES[self.etype][1]
        return _float_dtype(ctx, self.etype) if target.is_floating_point else target

    def compute(self, ctx: _Ctx, x: torch.Tensor) -> list[torch.Tensor]:
        target = self.dtype(ctx)
        if x.is_floating_point() and not target.is_floating_point and target != torch.bool:
            x = x.trunc()  # float -> integer rounds toward zero (as OpenVINO's CPU plugin)
        return [x.to(target)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
        target = self.dtype(ctx)
        if args[0].dtype == target:
            return lambda x: x
        return super().bind(args, dynamic, ctx)


# -- convolution -----------------------------------------------------------------------------

def _auto_pads(mode: str, size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """SAME_UPPER / SAME_LOWER padding (before, after) of one axis in pixels."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, big = total // 2, total - total // 2
    return (small, big) if mode == "same_upper" else (big, small)


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

    def compute(self, ctx: _Ctx, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.bind([x], [True], ctx)(x)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
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
        fmt = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
        if top == bottom and left == right:
            pad = (top, left)
            prepare = (lambda x: x.contiguous(memory_format=fmt))
        else:  # asymmetric padding: one padded copy of the input
            pad = (0, 0)
            prepare = ((lambda x: zero_pad_channels_last(x, top, bottom, left, right)) if CHANNELS_LAST
                       else (lambda x: F.pad(x, (left, right, top, bottom))))
        if (w.shape[2:] == (1, 1) and groups == 1 and stride == (1, 1) and pad == (0, 0)
                and x.device.type == "cpu"
                and x.shape[0] * x.shape[2] * x.shape[3] * w.shape[0] * w.shape[1] <= _MM_MAX_MACS):
            wt = w.view(w.shape[0], w.shape[1]).t()

            def run_mm(x: torch.Tensor) -> torch.Tensor:
                y = conv1x1_mm(x, wt, b)
                return act(y) if act else y
            return run_mm
        if ctx.grad:
            def run_grad(x: torch.Tensor) -> torch.Tensor:
                y = conv2d(prepare(x), w, b, stride, pad, dilation, groups)
                return act(y) if act else y
            return run_grad
        probe = prepare(x)
        if use_packed(probe, w):
            cache = self.packed
            fused = self.activation is not None and self.activation[0] == "ReLU"
            attr = "relu" if fused else "none"
            post = None if fused else act

            def run_packed(x: torch.Tensor) -> torch.Tensor:
                x = prepare(x)
                y = packed_conv2d(x, cache.get(w, x, pad, stride, dilation, groups), b, pad, stride,
                                  dilation, groups, attr)
                return post(y) if post else y
            return run_packed

        def run(x: torch.Tensor) -> torch.Tensor:
            y = conv2d(prepare(x), w, b, stride, pad, dilation, groups)
            return act(y) if act else y
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, w: torch.Tensor) -> list[torch.Tensor]:
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

    def compute(self, ctx: _Ctx, x: torch.Tensor) -> list[torch.Tensor]:
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, begin: Any, end: Any, value: Any = None
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


# -- shape and layout ------------------------------------------------------------------------

class _ShapeOf(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.dtype = torch.int32 if layer.data.get("output_type") == "i32" else torch.int64

    def compute(self, ctx: _Ctx, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.tensor(tuple(x.shape), dtype=self.dtype)]


class _Reshape(_Op):
    attr_inputs = frozenset({1})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.special_zero = layer.data.get("special_zero", "false").lower() == "true"
        self.const_target = False  # set by the loader: the target is a load-time constant
        self.in_dims = layer.inputs[0].dims if layer.inputs else None

    def target(self, shape: Sequence[int], spec: Any, ctx: _Ctx) -> list[int]:
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, spec: Any) -> list[torch.Tensor]:
        return [x.reshape(self.target(x.shape, spec, ctx))]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
        if dynamic[1]:
            return super().bind(args, dynamic, ctx)
        t = self.target(args[0].shape, args[1], ctx)
        return lambda x: x.reshape(t)


class _Transpose(_Op):
    attr_inputs = frozenset({1})

    def compute(self, ctx: _Ctx, x: torch.Tensor, order: Any) -> list[torch.Tensor]:
        perm = [_axis(int(v), x.dim()) for v in _pylist(order)] or list(range(x.dim()))[::-1]
        return [x.permute(perm)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
        if dynamic[1]:
            return super().bind(args, dynamic, ctx)
        x = args[0]
        perm = [_axis(int(v), x.dim()) for v in _pylist(args[1])] or list(range(x.dim()))[::-1]
        return lambda x: x.permute(perm)


class _Squeeze(_Op):
    attr_inputs = frozenset({1})

    def compute(self, ctx: _Ctx, x: torch.Tensor, axes: Any = None) -> list[torch.Tensor]:
        if axes is None:
            return [x.squeeze()]
        dims = sorted({_axis(int(a), x.dim()) for a in _pylist(axes)}, reverse=True)
        for d in dims:
            if x.shape[d] == 1:
                x = x.squeeze(d)
        return [x]


class _Unsqueeze(_Op):
    attr_inputs = frozenset({1})

    def compute(self, ctx: _Ctx, x: torch.Tensor, axes: Any) -> list[torch.Tensor]:
        out_rank = x.dim() + len(_pylist(axes))
        shape = list(x.shape)
        for a in sorted(_axis(int(a), out_rank) for a in _pylist(axes)):
            shape.insert(a, 1)
        return [x.reshape(shape)]


class _Concat(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.axis = int(layer.data.get("axis", "0"))

    def compute(self, ctx: _Ctx, *xs: torch.Tensor) -> list[torch.Tensor]:
        rank = max(x.dim() for x in xs)
        return [torch.cat(xs, _axis(self.axis, rank))]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, axis: Any, lengths: Any = None) -> list[torch.Tensor]:
        ax, ls = self.sizes(x, axis, lengths)
        return list(torch.split(x, ls, ax))

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
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

    def compute(self, ctx: _Ctx, *xs: torch.Tensor) -> list[torch.Tensor]:
        return [_interleave(xs)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
        if not all(dynamic):
            return super().bind(args, dynamic, ctx)
        return lambda *xs: _interleave(xs)


class _ChannelShuffle(_Op):
    """``Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N, C, H, W)`` (fused)."""

    def __init__(self, layer: _Layer, groups: int) -> None:
        super().__init__(layer)
        self.groups = groups

    def compute(self, ctx: _Ctx, x: torch.Tensor) -> list[torch.Tensor]:
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, begin: Any, end: Any, stride: Any = None
                ) -> list[torch.Tensor]:
        flips, index = self.plan(x.shape, begin, end, stride)
        if flips:
            x = x.flip(flips)
        return [x[index]]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, idx: torch.Tensor, axis: Any) -> list[torch.Tensor]:
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, shape: Any, axes: Any = None) -> list[torch.Tensor]:
        target = [int(v) for v in _pylist(shape)]
        if self.mode == "explicit":
            view = [1] * len(target)
            for a, s in zip(_pylist(axes), x.shape):
                view[int(a)] = s
            return [x.reshape(view).expand(target)]
        if self.mode == "bidirectional":
            target = list(torch.broadcast_shapes(tuple(x.shape), tuple(target)))
        return [x.expand(target)]


class _Range(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.etype = layer.data.get("output_type")
        if self.etype is not None and self.etype not in _ELEMENT_TYPES:
            raise _unsupported_attr(layer, "output_type", self.etype)

    def compute(self, ctx: _Ctx, start: torch.Tensor, stop: torch.Tensor, step: torch.Tensor
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, sizes: Any, scales: Any, axes: Any = None
                ) -> list[torch.Tensor]:
        return [self.kernel(x, self.resize_plan(x.shape, sizes, scales, axes), x.device)(x)]

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _Ctx) -> Callable[..., Any]:
        x = args[0]
        axes = args[3] if len(args) > 3 else None
        return self.kernel(x, self.resize_plan(x.shape, args[1], args[2], axes), ctx.device)


# -- reductions, matmul, softmax, topk -------------------------------------------------------

class _Reduce(_Op):
    attr_inputs = frozenset({1})

    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.keep = layer.data.get("keep_dims", "false").lower() == "true"

    def compute(self, ctx: _Ctx, x: torch.Tensor, axes: Any) -> list[torch.Tensor]:
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
        self.ta = layer.data.get("transpose_a", "false").lower() == "true"
        self.tb = layer.data.get("transpose_b", "false").lower() == "true"

    def compute(self, ctx: _Ctx, a: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        if self.ta and a.dim() > 1:
            a = a.transpose(-1, -2)
        if self.tb and b.dim() > 1:
            b = b.transpose(-1, -2)
        return [torch.matmul(a, b)]


class _SoftMax(_Op):
    def __init__(self, layer: _Layer) -> None:
        super().__init__(layer)
        self.axis = int(layer.data.get("axis", "1"))

    def compute(self, ctx: _Ctx, x: torch.Tensor) -> list[torch.Tensor]:
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

    def compute(self, ctx: _Ctx, x: torch.Tensor, k: Any) -> list[torch.Tensor]:
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

_OP_CLASSES: dict[str, tuple[type[_Op], tuple[str, ...]]] = {
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


def _unsupported_attr(layer: _Layer, name: str, value: str) -> ModelError:
    return ModelError(f"{layer.where()}: {name}={value!r} is not supported")


# ------------------------------------------------------------------------------------------
# Graph
# ------------------------------------------------------------------------------------------

@dataclass
class _Node:
    layer: _Layer
    op: _Op
    ins: list[int]    # value ids
    outs: list[int]
    host: bool = False  # computes shape arithmetic on the host (no data input)
    params: dict[int, str] = field(default_factory=dict)  # input index -> parameter key


def _sanitize(name: str, taken: set[str]) -> str:
    key = re.sub(r"\W", "_", name) or "param"
    if key[0].isdigit():
        key = "p_" + key
    base, k = key, 2
    while key in taken:
        key, k = f"{base}_{k}", k + 1
    taken.add(key)
    return key


def _per_channel(c: torch.Tensor, channels: int, out_rank: int) -> torch.Tensor | None:
    """``c`` as a (channels,) vector when it broadcasts as (1, channels, 1, ...) against a
    rank-``out_rank`` conv output, else None."""
    if not c.is_floating_point() or c.dim() > out_rank or c.numel() not in (1, channels):
        return None
    shape = [1] * (out_rank - c.dim()) + list(c.shape)
    if any(s != 1 for i, s in enumerate(shape) if i != 1):
        return None
    return c.reshape(-1).float().expand(channels).clone()


class OpenVinoIR(nn.Module):
    """An OpenVINO IR network as a torch module (see the module docstring).

    ``forward(x)``: ``x`` (N, C, H, W) float (the IR's single Parameter; N any) -> ``{name:
    tensor}`` for ``output_names`` (or the selection of :meth:`select_outputs`), in that order.
    """

    def __init__(self, xml: Path, weights: Path) -> None:
        super().__init__()
        self.source = str(xml)
        layers, edges = _parse_xml(xml)
        try:
            blob: bytes = weights.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{weights}: weight file of {xml.name} not found") from None
        except OSError as e:
            raise ModelError(f"{weights}: cannot read the weight file ({e})") from None
        self.params = nn.ParameterDict()
        self._build(layers, edges, blob, xml, weights)
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self.select_outputs(None)

    # -- loading -----------------------------------------------------------------------------

    def _build(self, layers: dict[str, _Layer], edges: dict[tuple[str, str], tuple[str, str]],
               blob: bytes, xml: Path, bin_path: Path) -> None:
        # Value ids for every output port.
        vid: dict[tuple[str, str], int] = {}
        self._dims: list[tuple[int, ...] | None] = []
        self._precision: list[str] = []
        for layer in layers.values():
            for p in layer.outputs:
                vid[(layer.id, p.id)] = len(self._dims)
                self._dims.append(p.dims)
                self._precision.append(p.precision)
        consts: dict[int, torch.Tensor] = {}
        self._const_names: dict[int, str] = {}  # constant value -> the layer that made it
        nodes: list[_Node] = []
        params_in: list[tuple[_Layer, int]] = []
        results: list[tuple[_Layer, int]] = []
        for layer in layers.values():
            ins = []
            for p in layer.inputs:
                src = edges.get((layer.id, p.id))
                if src is None or src not in vid:
                    raise ModelError(f"{xml}: input port {p.id} of {layer.where()} is not connected")
                ins.append(vid[src])
            outs = [vid[(layer.id, p.id)] for p in layer.outputs]
            if layer.type == "Const":
                if len(outs) != 1:
                    raise ModelError(f"{xml}: {layer.where()} must have one output")
                consts[outs[0]] = _read_const(layer, blob, xml, bin_path)
                self._const_names[outs[0]] = layer.name
                continue
            if layer.type == "Parameter":
                params_in.append((layer, outs[0]))
                continue
            if layer.type == "Result":
                results.append((layer, ins[0]))
                continue
            spec = _OP_CLASSES.get(layer.type)
            if spec is None or layer.version not in spec[1]:
                raise ModelError(f"{xml}: unsupported operation {layer.type} (version "
                                 f"{layer.version or '?'}) in layer {layer.name!r} (id {layer.id})")
            try:
                op = spec[0](layer)
            except ModelError as e:
                raise ModelError(f"{xml}: {e}") from None
            nodes.append(_Node(layer, op, ins, outs))
        for node in nodes:
            if isinstance(node.op, _Pool) and node.op.n_out == 2 and any(
                    node.outs[1] in n.ins for n in nodes) | any(v == node.outs[1] for _, v in results):
                raise ModelError(f"{xml}: {node.layer.where()}: the indices output is not supported")
        if len(params_in) != 1:
            raise ModelError(f"{xml}: expected one input (Parameter layer), found {len(params_in)}")
        if not results:
            raise ModelError(f"{xml}: the network has no Result layer")
        player, self._input_vid = params_in[0]
        self.input_name = (player.outputs[0].names or [player.name])[0]
        self.input_shape = _dims(player.data.get("shape")) or (player.outputs[0].dims or ())
        self.input_dtype = player.data.get("element_type", "f32")
        self._ir_batch = (self.input_shape[0] if self.input_shape and self.input_shape[0] > 0 else None)

        # Output names: the producing port's tensor name, else the producing layer's name.
        producer_port: dict[int, tuple[_Layer, _Port]] = {}
        for layer in layers.values():
            for p in layer.outputs:
                producer_port[vid[(layer.id, p.id)]] = (layer, p)
        self._results: list[tuple[str, int]] = []
        taken: set[str] = set()
        for rlayer, v in results:
            layer, port = producer_port[v]
            name = port.names[0] if port.names else layer.name
            if name in taken:
                name = rlayer.name
            taken.add(name)
            self._results.append((name, v))
        self.output_names = [n for n, _ in self._results]

        nodes = self._toposort(nodes, xml)
        nodes = self._fold_constants(nodes, consts, xml)
        self._consts = consts
        result_vids = {v for _, v in self._results}
        nodes = self._drop_identities(nodes, result_vids)
        nodes = self._fuse_convs(nodes, result_vids, consts)
        nodes = self._fuse_shuffles(nodes, result_vids, consts)
        self._classify(nodes)
        self._make_params(nodes, consts)
        self._nodes = nodes
        # Keep only the constants still read as constants (weights now live in ``params``).
        used = {v for n in nodes for i, v in enumerate(n.ins) if i not in n.params} | result_vids
        self._consts = {v: t for v, t in consts.items() if v in used}

    @staticmethod
    def _toposort(nodes: list[_Node], xml: Path) -> list[_Node]:
        producer = {v: i for i, n in enumerate(nodes) for v in n.outs}
        order: list[_Node] = []
        state = [0] * len(nodes)  # 0 new, 1 on the stack, 2 done
        for start in range(len(nodes)):
            if state[start]:
                continue
            stack = [(start, 0)]
            while stack:
                i, k = stack.pop()
                if k == 0:
                    if state[i] == 2:
                        continue
                    state[i] = 1
                ins = nodes[i].ins
                while k < len(ins):
                    j = producer.get(ins[k])
                    k += 1
                    if j is not None and state[j] != 2:
                        if state[j] == 1:
                            raise ModelError(f"{xml}: the graph has a cycle through "
                                             f"{nodes[j].layer.where()}")
                        stack.append((i, k))
                        stack.append((j, 0))
                        break
                else:
                    state[i] = 2
                    order.append(nodes[i])
        return order

    def _fold_constants(self, nodes: list[_Node], consts: dict[int, torch.Tensor], xml: Path
                        ) -> list[_Node]:
        """Evaluate (on the CPU, at load time) every node whose used inputs are all constant."""
        kept = []
        for node in nodes:
            unused = node.op.unused_inputs()
            used = [v for i, v in enumerate(node.ins) if i not in unused]
            if isinstance(node.op, _ShapeOf) or not all(v in consts for v in used):
                kept.append(node)
                continue
            args = [consts.get(v) for v in node.ins]
            try:
                with torch.no_grad():
                    outs = node.op.compute(_HOST, *args)
            except ModelError as e:
                raise ModelError(f"{xml}: {e}") from None
            except (RuntimeError, ValueError, IndexError, TypeError) as e:
                raise ModelError(f"{xml}: cannot evaluate constant {node.layer.where()}: {e}") from None
            for v, t in zip(node.outs, outs):
                consts[v] = t.contiguous()
                self._const_names[v] = node.layer.name
        return kept

    @staticmethod
    def _consumers(nodes: list[_Node]) -> dict[int, list[tuple[_Node, int]]]:
        users: dict[int, list[tuple[_Node, int]]] = {}
        for n in nodes:
            for i, v in enumerate(n.ins):
                users.setdefault(v, []).append((n, i))
        return users

    @staticmethod
    def _rewire(nodes: list[_Node], old: int, new: int) -> None:
        for n in nodes:
            n.ins = [new if v == old else v for v in n.ins]

    def _drop_identities(self, nodes: list[_Node], result_vids: set[int]) -> list[_Node]:
        """Remove ``Multiply`` by constant ones that does not broadcast its other operand."""
        kept = []
        for node in nodes:
            if node.layer.type == "Multiply" and node.outs[0] not in result_vids:
                for ci in (0, 1):
                    c = self._consts.get(node.ins[ci])
                    x_vid = node.ins[1 - ci]
                    dims = self._dims[x_vid]
                    if (c is not None and x_vid not in self._consts and c.is_floating_point()
                            and self._precision[x_vid] in ("FP32", "FP16")
                            and self._precision[x_vid] == self._precision[node.outs[0]]
                            and dims is not None and -1 not in dims and c.dim() <= len(dims)
                            and bool((c == 1).all())
                            and tuple(torch.broadcast_shapes(tuple(c.shape), dims)) == dims):
                        self._rewire(nodes, node.outs[0], x_vid)
                        break
                else:
                    kept.append(node)
                    continue
                continue
            kept.append(node)
        return kept

    def _fuse_convs(self, nodes: list[_Node], result_vids: set[int], consts: dict[int, torch.Tensor]
                    ) -> list[_Node]:
        users = self._consumers(nodes)
        absorbed: set[int] = set()
        replaced: dict[int, _Node] = {}
        taken = set(self.params.keys())
        for node in nodes:
            t = node.layer.type
            if t not in ("Convolution", "GroupConvolution") or node.ins[1] not in consts:
                continue
            w = consts[node.ins[1]].float()
            groups = 1
            if t == "GroupConvolution":
                groups = w.shape[0]
                w = w.reshape(w.shape[0] * w.shape[1], *w.shape[2:])
            spatial = w.dim() - 2
            if spatial not in (1, 2, 3):
                continue
            channels, out_rank = w.shape[0], spatial + 2
            bias: torch.Tensor | None = None
            act: tuple[str, tuple[float, ...]] | None = None
            tail = node.outs[0]
            chain: list[_Node] = []
            while act is None and tail not in result_vids:
                u = users.get(tail, [])
                if len(u) != 1:
                    break
                nxt, pos = u[0]
                nt = nxt.layer.type
                if nt in ("Multiply", "Add", "Subtract"):
                    if nt == "Subtract" and pos != 0:
                        break
                    other = consts.get(nxt.ins[1 - pos])
                    vec = None if other is None else _per_channel(other, channels, out_rank)
                    if vec is None:
                        break
                    if nt == "Multiply":
                        w = w * vec.view(-1, *([1] * (w.dim() - 1)))
                        bias = None if bias is None else bias * vec
                    else:
                        vec = -vec if nt == "Subtract" else vec
                        bias = vec if bias is None else bias + vec
                elif nt in _FUSABLE_ACTIVATIONS:
                    extra = [consts.get(v) for v in nxt.ins[1:]]
                    if any(e is None for e in extra):
                        break
                    act = (nt, nxt.op.params(extra) if isinstance(nxt.op, _Unary) else ())
                else:
                    break
                chain.append(nxt)
                tail = nxt.outs[0]
            wkey = _sanitize(node.layer.name + "_weight", taken)
            fmt = torch.channels_last if CHANNELS_LAST and w.dim() == 4 else torch.contiguous_format
            self.params[wkey] = nn.Parameter(w.contiguous(memory_format=fmt))
            bkey = None
            if bias is not None:
                bkey = _sanitize(node.layer.name + "_bias", taken)
                self.params[bkey] = nn.Parameter(bias.contiguous())
            op = _FusedConv(node.layer, wkey, bkey, groups, spatial, act)
            replaced[id(node)] = _Node(node.layer, op, [node.ins[0]], [tail])
            absorbed.update(id(n) for n in chain)
        return [replaced.get(id(n), n) for n in nodes if id(n) not in absorbed]

    def _fuse_shuffles(self, nodes: list[_Node], result_vids: set[int],
                       consts: dict[int, torch.Tensor]) -> list[_Node]:
        """Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape(N, C, H, W) -> one op,
        with the Concat of g equal channel blocks before it when there is one."""
        users = self._consumers(nodes)
        producer = {v: n for n in nodes for v in n.outs}
        drop: set[int] = set()
        replaced: dict[int, _Node] = {}

        def only_user(v: int) -> _Node | None:
            u = users.get(v, [])
            return u[0][0] if len(u) == 1 and v not in result_vids and u[0][1] == 0 else None

        for r1 in nodes:
            if r1.layer.type != "Reshape" or id(r1) in drop:
                continue
            d_in, d1 = self._dims[r1.ins[0]], self._dims[r1.outs[0]]
            tr = only_user(r1.outs[0])
            if (tr is None or tr.layer.type != "Transpose" or tr.ins[1] not in consts
                    or not d_in or not d1 or len(d_in) != 4 or len(d1) != 5 or -1 in d_in[1:]):
                continue
            if consts[tr.ins[1]].tolist() != [0, 2, 1, 3, 4]:
                continue
            r2 = only_user(tr.outs[0])
            if r2 is None or r2.layer.type != "Reshape" or self._dims[r2.outs[0]] != d_in:
                continue
            n, c, h, w = d_in
            g = d1[1]
            if d1[1:] != (g, c // g, h, w) or g * (c // g) != c:
                continue
            src = producer.get(r1.ins[0])
            if (src is not None and src.layer.type == "Concat" and only_user(src.outs[0]) is r1
                    and _axis(int(src.layer.data.get("axis", "0")), 4) == 1 and len(src.ins) == g
                    and all(self._dims[v] == (n, c // g, h, w) and v not in consts for v in src.ins)):
                op: _Op = _ConcatShuffle(r2.layer)
                replaced[id(r2)] = _Node(r2.layer, op, list(src.ins), list(r2.outs))
                drop.update({id(src), id(r1), id(tr)})
            else:
                replaced[id(r2)] = _Node(r2.layer, _ChannelShuffle(r2.layer, g), [r1.ins[0]], list(r2.outs))
                drop.update({id(r1), id(tr)})
        return [replaced.get(id(n), n) for n in nodes if id(n) not in drop]

    def _classify(self, nodes: list[_Node]) -> None:
        """Mark host nodes (shape arithmetic: ShapeOf and what only depends on it and
        constants) and note which Reshape targets are load-time constants."""
        data = {self._input_vid}
        for node in nodes:
            unused = node.op.unused_inputs()
            is_data = (not isinstance(node.op, _ShapeOf)
                       and any(v in data for i, v in enumerate(node.ins) if i not in unused))
            node.host = not is_data
            if is_data:
                data.update(node.outs)
            if isinstance(node.op, _Reshape):
                node.op.const_target = node.ins[1] in self._consts
        self._data_vids = data

    def _make_params(self, nodes: list[_Node], consts: dict[int, torch.Tensor]) -> None:
        """Float constants that data ops consume as tensors become parameters (shared)."""
        taken = set(self.params.keys())
        by_vid: dict[int, str] = {}
        producer_name: dict[int, str] = {}
        for n in nodes:
            for v in n.outs:
                producer_name[v] = n.layer.name
        for node in nodes:
            if node.host:
                continue
            for i, v in enumerate(node.ins):
                c = consts.get(v)
                if c is None or i in node.op.attr_inputs or not c.is_floating_point():
                    continue
                if v not in by_vid:
                    key = _sanitize(self._const_names.get(v, f"const_{v}"), taken)
                    self.params[key] = nn.Parameter(c.float().clone())
                    by_vid[v] = key
                node.params[i] = by_vid[v]

    # -- outputs -----------------------------------------------------------------------------

    def select_outputs(self, names: Sequence[str] | None) -> None:
        """Restrict ``forward`` to the outputs ``names`` (in that order; None: all of them) and
        drop the ops only the others need."""
        available = dict(self._results)
        if names is None:
            names = [n for n, _ in self._results]
        missing = [n for n in names if n not in available]
        if missing or not names:
            raise ValueError(f"{self.source}: no output {missing or '(none selected)'}; outputs: "
                             f"{', '.join(available)}")
        self._selected = [(n, available[n]) for n in names]
        needed_vids = {v for _, v in self._selected}
        keep: list[_Node] = []
        for node in reversed(self._nodes):
            if any(v in needed_vids for v in node.outs):
                keep.append(node)
                unused = node.op.unused_inputs()
                needed_vids.update(v for i, v in enumerate(node.ins) if i not in unused)
        self._order = keep[::-1]
        self._plans = {}

    # -- running -----------------------------------------------------------------------------

    def _apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> OpenVinoIR:
        self._plans = {}  # plans hold tensors converted for the old device/dtype
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_plans"] = {}  # kernels are closures over this instance's tensors
        return state

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.dim() != len(self.input_shape) or (
                len(self.input_shape) > 1 and self.input_shape[1] > 0 and x.shape[1] != self.input_shape[1]):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{self.source}: input {self.input_name} must be shaped like "
                             f"{tuple(self.input_shape)} (any batch), got {shape}")
        grad = torch.is_grad_enabled() and (x.requires_grad or any(
            p.requires_grad for p in self.params.values()))
        key = (tuple(x.shape), x.dtype, x.device, grad)
        plan = self._plans.get(key)
        if plan is None:
            plan, outs = self._trace(x, grad)
            if len(self._plans) >= 32:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = plan
            return outs
        return plan.run(x)

    def _trace(self, x: torch.Tensor, grad: bool) -> tuple[_Plan, dict[str, torch.Tensor]]:
        """Run the graph once on ``x``, binding each data op to its host values, and record
        the plan that repeats it (see the module docstring)."""
        ctx_base = dict(dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device,
                        grad=grad, batch=int(x.shape[0]) if x.dim() else 1, ir_batch=self._ir_batch,
                        params=self.params)
        consts = self._consts
        data_nodes = [n for n in self._order if not n.host]
        # Last data step reading each data value (values read by Results live to the end; one
        # read by a ShapeOf lives until the data step after it, which runs later).
        last: dict[int, int] = {}
        k = 0
        for node in self._order:
            for v in node.ins:
                if v in self._data_vids:
                    last[v] = max(last.get(v, -1), k)
            k += not node.host
        for _, v in self._selected:
            last[v] = len(data_nodes)
        slot_of: dict[int, int] = {self._input_vid: 0}
        for node in data_nodes:
            for v in node.outs:
                slot_of.setdefault(v, len(slot_of))
        env: dict[int, Any] = {self._input_vid: x}
        in_ptr = x.untyped_storage().data_ptr()
        steps: list[tuple[Callable[..., Any], tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = []
        k = 0
        for node in self._order:
            try:
                if node.host:
                    args = [env[v] if v in env else consts.get(v) for v in node.ins]
                    with torch.no_grad():
                        outs = node.op.compute(_HOST, *[a.cpu() if isinstance(a, torch.Tensor)
                                                        and not isinstance(node.op, _ShapeOf)
                                                        else a for a in args])
                    env.update(zip(node.outs, outs))
                    continue
                args, dynamic = [], []
                for i, v in enumerate(node.ins):
                    if i in node.params:
                        args.append(self.params[node.params[i]])
                        dynamic.append(False)
                    elif v in self._data_vids:
                        args.append(env[v])
                        dynamic.append(True)
                    else:
                        args.append(env[v] if v in env else consts.get(v))
                        dynamic.append(False)
                dying = frozenset(i for i, v in enumerate(node.ins)
                                  if dynamic[i] and last.get(v) == k and v != self._input_vid
                                  and node.ins.count(v) == 1
                                  and not self._aliased(env[v], v, env, in_ptr))
                ctx = _Ctx(inplace=dying, **ctx_base)
                fn = node.op.bind(args, dynamic, ctx)
                dyn_args = [a for a, d in zip(args, dynamic) if d]
                out = fn(*dyn_args)
                outs = [out] if len(node.outs) == 1 else list(out)
            except (ModelError, InputError):
                raise
            except (RuntimeError, ValueError, IndexError, TypeError) as e:
                raise ModelError(f"{self.source}: {node.layer.where()} failed on input "
                                 f"{tuple(x.shape)} {x.dtype}: {e}") from None
            env.update(zip(node.outs, outs))
            frees = tuple(slot_of[v] for v in set(node.ins) | set(node.outs)
                          if v in self._data_vids and last.get(v, k) <= k and v != self._input_vid)
            for v in set(node.ins) | set(node.outs):
                if v in self._data_vids and last.get(v, k) <= k and v in env:
                    del env[v]
            steps.append((fn, tuple(slot_of[v] for v, d in zip(node.ins, dynamic) if d),
                          tuple(slot_of[v] for v in node.outs), frees))
            k += 1
        results = {}
        for name, v in self._selected:
            t = env[v] if v in env else consts.get(v)
            if v not in self._data_vids:  # an output that does not depend on the input's values
                t = _static(t, _Ctx(**ctx_base), False)
            results[name] = t
        outputs = tuple((name, slot_of.get(v, -1), None if v in self._data_vids else results[name])
                        for name, v in self._selected)
        plan = _Plan(steps, len(slot_of), outputs)
        return plan, {n: _finish(t) for n, t in results.items()}

    def _aliased(self, t: torch.Tensor, v: int, env: dict[int, Any], in_ptr: int) -> bool:
        """Whether another live data value shares ``t``'s memory (then it is not overwritten)."""
        if not isinstance(t, torch.Tensor):
            return True
        ptr = t.untyped_storage().data_ptr()
        for u, other in env.items():
            if u == v or not isinstance(other, torch.Tensor) or u not in self._data_vids:
                continue
            if other.untyped_storage().data_ptr() == ptr:
                return True
        return ptr == in_ptr

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, input={self.input_name} {tuple(self.input_shape)}, "
                f"outputs={[n for n, _ in self._selected]}, ops={len(self._order)}")


def _finish(t: torch.Tensor) -> torch.Tensor:
    """Outputs in plain contiguous memory (convs leave channels-last tensors behind)."""
    return t.contiguous()


class _Plan:
    """The recorded kernels of one input signature: ``(kernel, input slots, output slots,
    slots to free after it)``; slot 0 holds the input."""

    __slots__ = ("steps", "n_slots", "outputs")

    def __init__(self, steps: list[tuple[Callable[..., Any], tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
                 n_slots: int, outputs: tuple[tuple[str, int, torch.Tensor | None], ...]) -> None:
        self.steps, self.n_slots, self.outputs = steps, n_slots, outputs

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s: list[Any] = [None] * self.n_slots
        s[0] = x
        for fn, ins, outs, frees in self.steps:
            r = fn(*[s[i] for i in ins])
            if len(outs) == 1:
                s[outs[0]] = r
            else:
                for o, t in zip(outs, r):
                    s[o] = t
            for f in frees:
                s[f] = None
        return {name: _finish(s[slot] if fixed is None else fixed) for name, slot, fixed in self.outputs}


def load_openvino_ir(xml: str | Path, weights: str | Path | None = None) -> OpenVinoIR:
    """Load an OpenVINO IR network (``xml``; weights from ``weights`` or the ``.bin`` of the same
    stem beside it) as an :class:`OpenVinoIR` module in eval mode.

    Raises ModelError (one line naming the file) for a missing or malformed file, a weight file
    that does not match the network, or an operation this reader does not implement.
    """
    xml = Path(xml)
    bin_path = Path(weights) if weights is not None else xml.with_suffix(".bin")
    return OpenVinoIR(xml, bin_path).eval()
