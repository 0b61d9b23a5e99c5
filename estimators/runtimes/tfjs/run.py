"""The compiled TF.js graph (:class:`TfjsGraph`): plans per (feeds, fetches), run on values that
carry their stored layout, CPU batches in slices (see the package docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.tfjs.compile import (
    _as_tensor,
    _fold_constants,
    _fuse_conv_bias_activation,
    sinks,
    toposort,
)
from posetracker.estimators.runtimes.tfjs.io import (
    _load_json,
    _parse_nodes,
    _placeholder_shape,
    _producer,
    _value_key,
    read_tfjs_topology,
    read_tfjs_weights,
)
from posetracker.estimators.runtimes.tfjs.layers import (
    _Cast,
    _Concat,
    _Conv,
    _Elementwise,
    _Identity,
    _Pool,
    _ResizeBilinear,
    _Split,
)
from posetracker.estimators.runtimes.tfjs.layout import NCHW_STORED, Perm, _as_nchw, _logical, _run_module
from posetracker.estimators.runtimes.tfjs.ops import _Constants, build_op, data_inputs


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
        self.output_names = [_value_key(k) for k in (signature.get("outputs") or {})] or sinks(nodes)
        nodes = _fold_constants(nodes, consts)
        self._absorbed: dict[str, str] = {}
        if fuse:
            nodes, self._absorbed = _fuse_conv_bias_activation(nodes, consts)
        nodes = toposort(nodes)
        steps = _Constants(consts)
        self.ops = nn.ModuleList(build_op(n, steps) if n.op != "Placeholder" else _Identity() for n in nodes)
        self._nodes = nodes
        self._index = {n.name: i for i, n in enumerate(nodes)}
        # Constants still read at run time (most weights live inside the conv modules instead).
        self._data_in = [data_inputs(n) for n in nodes]
        used = {k for ins in self._data_in for k in ins if k in consts}
        self._const_slot = {k: f"c{i}" for i, k in enumerate(sorted(used))}
        self.constants = nn.Module()
        for key, slot in self._const_slot.items():
            self.constants.register_buffer(slot, consts[key])
        self._plans: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[int, list[str], list[str]]]] = {}
        # Per plan: may it run in batch slices (run() on CPU), and its largest activation per image.
        self._separable: dict[tuple[tuple[str, ...], tuple[str, ...]], bool] = {}
        self._peak_bytes: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}

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
