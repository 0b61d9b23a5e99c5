"""Graph-level passes of the TF.js importer: constant folding, ``conv -> bias -> activation``
fusion, the graph's sinks, and the topological order of the nodes left to run."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.tfjs.io import _Node, _producer
from posetracker.estimators.runtimes.tfjs.layout import _logical, _run_module
from posetracker.estimators.runtimes.tfjs.ops import CONV_OPS, _Constants, build_op, data_inputs

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
        data = data_inputs(node)
        outs = _run_module(build_op(node, _Constants(consts)), [consts[i] for i in data], [None] * len(data))
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
        if node.name in absorbed or node.op not in CONV_OPS:
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


def sinks(nodes: list[_Node]) -> list[str]:
    """The nodes no other node reads (the outputs of a graph without a signature)."""
    used = {_producer(k) for n in nodes for k in n.inputs}
    return [n.name for n in nodes if n.name not in used and n.op != "Const"]


def toposort(nodes: list[_Node]) -> list[_Node]:
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
