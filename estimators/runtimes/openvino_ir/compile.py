"""Building an OpenVINO IR network for the runtime: connect the layers, fold constants, and
rewrite the graph (the fusion passes of the package docstring), then sort out which values are
shape arithmetic (host) and which float constants become trainable parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.openvino_ir.base import _FUSABLE_ACTIVATIONS, _HOST, CHANNELS_LAST, _axis, _Op
from posetracker.estimators.runtimes.openvino_ir.io import _dims, _Layer, _Port, _read_const
from posetracker.estimators.runtimes.openvino_ir.ops import (
    OP_CLASSES,
    _ChannelShuffle,
    _ConcatShuffle,
    _Reshape,
    _ShapeOf,
    _Unary,
)
from posetracker.estimators.runtimes.openvino_ir.spatial import _FusedConv, _Pool


@dataclass
class _Node:
    """One operation of the compiled IR: its layer, its op, and the value ids it reads and
    writes."""

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


class CompiledIR:
    """An IR network ready to run: its nodes in order (constants folded, convolutions fused),
    the constants still read as such, the parameters (``params``: name -> ``nn.Parameter``, in
    registration order), the input (``input_vid``, ``input_name``, ``input_shape``,
    ``input_dtype``, ``ir_batch``), the outputs (``results``: (name, value id), ``output_names``)
    and the value ids that depend on the input's values (``data_vids``)."""

    def __init__(self, layers: dict[str, _Layer], edges: dict[tuple[str, str], tuple[str, str]],
                 blob: bytes, xml: Path, bin_path: Path) -> None:
        self.params: dict[str, nn.Parameter] = {}
        self._build(layers, edges, blob, xml, bin_path)

    def _build(self, layers: dict[str, _Layer], edges: dict[tuple[str, str], tuple[str, str]],
               blob: bytes, xml: Path, bin_path: Path) -> None:
        vid = self._number_values(layers)
        consts, nodes, params_in, results = self._read_layers(layers, edges, vid, blob, xml, bin_path)
        self._read_input(params_in, results, xml)
        self._name_results(layers, vid, results)

        nodes = self._toposort(nodes, xml)
        nodes = self._fold_constants(nodes, consts, xml)
        self.consts = consts
        result_vids = {v for _, v in self.results}
        nodes = self._drop_identities(nodes, result_vids)
        nodes = self._fuse_convs(nodes, result_vids, consts)
        nodes = self._fuse_shuffles(nodes, result_vids, consts)
        self._classify(nodes)
        self._make_params(nodes, consts)
        self.nodes = nodes
        # Keep only the constants still read as constants (weights now live in ``params``).
        used = {v for n in nodes for i, v in enumerate(n.ins) if i not in n.params} | result_vids
        self.consts = {v: t for v, t in consts.items() if v in used}

    def _number_values(self, layers: dict[str, _Layer]) -> dict[tuple[str, str], int]:
        """Value ids for every output port (``(layer id, port id) -> id``); sets ``dims`` and
        ``precision`` per id."""
        vid: dict[tuple[str, str], int] = {}
        self.dims: list[tuple[int, ...] | None] = []
        self.precision: list[str] = []
        for layer in layers.values():
            for p in layer.outputs:
                vid[(layer.id, p.id)] = len(self.dims)
                self.dims.append(p.dims)
                self.precision.append(p.precision)
        return vid

    def _read_layers(self, layers: dict[str, _Layer], edges: dict[tuple[str, str], tuple[str, str]],
                     vid: dict[tuple[str, str], int], blob: bytes, xml: Path, bin_path: Path
                     ) -> tuple[dict[int, torch.Tensor], list[_Node], list[tuple[_Layer, int]],
                                list[tuple[_Layer, int]]]:
        """Each layer as a constant, the input (Parameter), a Result or an op node (refusing an
        unconnected port or an operation outside the table); sets ``const_names``."""
        consts: dict[int, torch.Tensor] = {}
        self.const_names: dict[int, str] = {}  # constant value -> the layer that made it
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
                self.const_names[outs[0]] = layer.name
                continue
            if layer.type == "Parameter":
                params_in.append((layer, outs[0]))
                continue
            if layer.type == "Result":
                results.append((layer, ins[0]))
                continue
            spec = OP_CLASSES.get(layer.type)
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
        return consts, nodes, params_in, results

    def _read_input(self, params_in: list[tuple[_Layer, int]], results: list[tuple[_Layer, int]],
                    xml: Path) -> None:
        """The one input's value id, name, shape, element type and batch (``None``: dynamic)."""
        if len(params_in) != 1:
            raise ModelError(f"{xml}: expected one input (Parameter layer), found {len(params_in)}")
        if not results:
            raise ModelError(f"{xml}: the network has no Result layer")
        player, self.input_vid = params_in[0]
        self.input_name = (player.outputs[0].names or [player.name])[0]
        self.input_shape = _dims(player.data.get("shape")) or (player.outputs[0].dims or ())
        self.input_dtype = player.data.get("element_type", "f32")
        self.ir_batch = (self.input_shape[0] if self.input_shape and self.input_shape[0] > 0 else None)

    def _name_results(self, layers: dict[str, _Layer], vid: dict[tuple[str, str], int],
                      results: list[tuple[_Layer, int]]) -> None:
        """Output names: the producing port's tensor name, else the producing layer's name (the
        Result layer's own name where that one is taken)."""
        producer_port: dict[int, tuple[_Layer, _Port]] = {}
        for layer in layers.values():
            for p in layer.outputs:
                producer_port[vid[(layer.id, p.id)]] = (layer, p)
        self.results: list[tuple[str, int]] = []
        taken: set[str] = set()
        for rlayer, v in results:
            layer, port = producer_port[v]
            name = port.names[0] if port.names else layer.name
            if name in taken:
                name = rlayer.name
            taken.add(name)
            self.results.append((name, v))
        self.output_names = [n for n, _ in self.results]

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
                self.const_names[v] = node.layer.name
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
                    c = self.consts.get(node.ins[ci])
                    x_vid = node.ins[1 - ci]
                    dims = self.dims[x_vid]
                    if (c is not None and x_vid not in self.consts and c.is_floating_point()
                            and self.precision[x_vid] in ("FP32", "FP16")
                            and self.precision[x_vid] == self.precision[node.outs[0]]
                            and dims is not None and -1 not in dims and c.dim() <= len(dims)
                            and bool((c == 1).all())
                            and tuple(np.broadcast_shapes(tuple(c.shape), dims)) == dims):
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
            d_in, d1 = self.dims[r1.ins[0]], self.dims[r1.outs[0]]
            tr = only_user(r1.outs[0])
            if (tr is None or tr.layer.type != "Transpose" or tr.ins[1] not in consts
                    or not d_in or not d1 or len(d_in) != 4 or len(d1) != 5 or -1 in d_in[1:]):
                continue
            if consts[tr.ins[1]].tolist() != [0, 2, 1, 3, 4]:
                continue
            r2 = only_user(tr.outs[0])
            if r2 is None or r2.layer.type != "Reshape" or self.dims[r2.outs[0]] != d_in:
                continue
            n, c, h, w = d_in
            g = d1[1]
            if d1[1:] != (g, c // g, h, w) or g * (c // g) != c:
                continue
            src = producer.get(r1.ins[0])
            if (src is not None and src.layer.type == "Concat" and only_user(src.outs[0]) is r1
                    and _axis(int(src.layer.data.get("axis", "0")), 4) == 1 and len(src.ins) == g
                    and all(self.dims[v] == (n, c // g, h, w) and v not in consts for v in src.ins)):
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
        data = {self.input_vid}
        for node in nodes:
            unused = node.op.unused_inputs()
            is_data = (not isinstance(node.op, _ShapeOf)
                       and any(v in data for i, v in enumerate(node.ins) if i not in unused))
            node.host = not is_data
            if is_data:
                data.update(node.outs)
            if isinstance(node.op, _Reshape):
                node.op.const_target = node.ins[1] in self.consts
        self.data_vids = data

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
                    key = _sanitize(self.const_names.get(v, f"const_{v}"), taken)
                    self.params[key] = nn.Parameter(c.float().clone())
                    by_vid[v] = key
                node.params[i] = by_vid[v]
