"""Compiling an ONNX graph: keep the nodes the requested outputs need (refusing an op outside
the table, naming op type and node), fuse SiLU, fold constants, tell shape arithmetic (meta) from
data, make the float operands parameters, and number the value slots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.onnx_graph.io import _Node, _one_line, _read_nodes, _to_tensor
from posetracker.estimators.runtimes.onnx_graph.ops import (
    _HOST,
    _INDEX,
    _OPS,
    _TENSOR,
    _BuildContext,
    _host,
    _OpDef,
    _RunState,
)

_PARAM = "\x00param:"  # slot-name prefix of a parameter as data ops read it


def _constant_value(node: _Node, ctx: _BuildContext) -> torch.Tensor:
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
    """One compiled op of :class:`CompiledOnnx`, in run order: its kernel and the value slots it
    reads and writes."""

    node: _Node
    fn: Callable[..., Any]
    meta: bool                 # depends on input shapes only: run once per key
    ins: list[int | None]      # slots (None: optional input left out)
    kinds: list[int]           # _HOST / _INDEX / _TENSOR per input
    static: list[bool]         # input is a constant or meta value (bound per key)
    outs: list[int]


class CompiledOnnx:
    """An ONNX graph (or the part ``outputs`` need) compiled for :class:`OnnxGraph`: its steps in
    order, the constants by slot, the parameters (``params``: key -> ``nn.Parameter``, with
    ``param_keys`` from ONNX names) and the slots of inputs, parameters and outputs.

    ``state`` is the run state the built ops read (device, float type, batch of the call).
    """

    def __init__(self, model: Any, outputs: Sequence[str] | None, source: str, state: _RunState):
        graph = model.graph
        opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [1])
        self.source = source
        consts = self._read_interface(graph, outputs)
        ctx = _BuildContext(source, opset, state, consts)
        nodes = _needed(_read_nodes(graph), self.output_names,
                        set(consts) | set(self.input_names), source)
        for node in nodes:  # refuse before any work, naming the first op we lack
            if node.op not in _OPS and node.op != "Constant":
                raise ModelError(f"{source}: unsupported ONNX op {node.op} (node {node.name!r})")
        nodes = _fuse_silu(nodes, set(self.output_names))
        kept, meta_vals = self._fold_and_classify(nodes, ctx)
        param_names = self._make_params(kept, consts)
        self._number_slots(kept, meta_vals, param_names, ctx)

    def _read_interface(self, graph: Any, outputs: Sequence[str] | None) -> dict[str, torch.Tensor]:
        """The initializers (returned, by name) and the graph's inputs and outputs (set here)."""
        source = self.source
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
        return consts

    def _fold_and_classify(self, nodes: list[_Node],
                           ctx: _BuildContext) -> tuple[list[tuple[_Node, bool]], set[str]]:
        """Fold constants into ``ctx.consts``; the other nodes with whether each is meta (shapes
        only), and the names of the meta values."""
        consts = ctx.consts
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
        return kept, meta_vals

    def _make_params(self, kept: list[tuple[_Node, bool]],
                     consts: dict[str, torch.Tensor]) -> list[str]:
        """Float constants read as tensor operands by data ops are the trainable parameters:
        set ``params`` and ``param_keys``; returns their ONNX names in order."""
        param_names: list[str] = []
        for node, meta in kept:
            if meta:
                continue
            spec = _OPS[node.op]
            for pos, name in enumerate(node.inputs):
                if name in consts and pos not in spec.host and pos not in spec.index \
                        and consts[name].is_floating_point() and name not in param_names:
                    param_names.append(name)
        self.params: dict[str, nn.Parameter] = {}
        self.param_keys: dict[str, str] = {}
        for name in param_names:
            key = "".join(c if c.isalnum() else "_" for c in name) or "p"
            while key in self.params:
                key += "_"
            value = consts[name].float()
            if value.dim() == 4:  # conv weights: channels-last, what oneDNN's fast kernels read
                value = value.contiguous(memory_format=torch.channels_last)
            self.params[key] = nn.Parameter(value)
            self.param_keys[name] = key
        return param_names

    def _number_slots(self, kept: list[tuple[_Node, bool]], meta_vals: set[str],
                      param_names: list[str], ctx: _BuildContext) -> None:
        """Build each step's op and number the value slots: one per value; a parameter's data
        readers get its own slot (its meta readers, shape arithmetic on the CPU, keep reading the
        constant)."""
        consts = ctx.consts
        shapes = {n: tuple(v.shape) for n, v in consts.items()}
        slots: dict[str, int] = {}

        def slot(name: str) -> int:
            if name not in slots:
                slots[name] = len(slots)
            return slots[name]

        params = set(param_names)
        self.input_slots = [slot(n) for n in self.input_names]
        self.param_slots = [slot(_PARAM + n) for n in param_names]
        self.param_order = [self.param_keys[n] for n in param_names]
        self.steps: list[_Step] = []
        for node, meta in kept:
            spec = _OPS[node.op]
            fn = spec.build(node, _BuildContext(ctx.source, ctx.opset, ctx.state, consts, shapes, meta=meta))
            kinds = _kinds(spec, len(node.inputs))
            as_param = [not meta and i in params and k == _TENSOR
                        for i, k in zip(node.inputs, kinds)]
            ins = [None if not i else slot(_PARAM + i) if p else slot(i)
                   for i, p in zip(node.inputs, as_param)]
            static = [bool(i) and not p and (i in consts or i in meta_vals)
                      for i, p in zip(node.inputs, as_param)]
            self.steps.append(_Step(node, fn, meta, ins, kinds, static,
                                     [slot(o) for o in node.outputs]))
        for name in self.output_names:
            slot(name)
        self.consts = [(slots[n], v) for n, v in consts.items() if n in slots]
        self.output_slots = [slots[n] for n in self.output_names]
        self.output_static = [n in consts or n in meta_vals for n in self.output_names]
        self.num_slots = len(slots)

    def _fold(self, node: _Node, spec: _OpDef, ctx: _BuildContext) -> None:
        ctx = _BuildContext(ctx.source, ctx.opset, ctx.state, ctx.consts, meta=True)
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


def _kinds(spec: _OpDef, n: int) -> list[int]:
    return [_HOST if p in spec.host else _INDEX if p in spec.index else _TENSOR for p in range(n)]


def _bind_meta(v: Any, kind: int) -> Any:
    """An input of a meta (CPU shape arithmetic) step."""
    if kind == _HOST:
        return _host(v)
    if kind == _INDEX and v.dim() == 0:
        return int(v)
    return v
