"""The OpenVINO IR network as a torch module: per input signature, one tracing run binds the
host (shape) values into the kernels and records a :class:`posetracker.estimators.runtimes.plan.Plan`
that later calls run (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posetracker.core.errors import InputError, ModelError
from posetracker.estimators.runtimes.openvino_ir.base import _HOST, _KernelContext, _static
from posetracker.estimators.runtimes.openvino_ir.compile import CompiledIR, _Node
from posetracker.estimators.runtimes.openvino_ir.io import _parse_xml
from posetracker.estimators.runtimes.openvino_ir.ops import _ShapeOf
from posetracker.estimators.runtimes.plan import Plan, PlanRecorder


class OpenVinoIR(nn.Module):
    """An OpenVINO IR network as a torch module (see the package docstring).

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
        c = CompiledIR(layers, edges, blob, xml, weights)
        self.params = nn.ParameterDict(c.params)
        self._nodes, self._consts, self._results = c.nodes, c.consts, c.results
        self._input_vid, self._ir_batch, self._data_vids = c.input_vid, c.ir_batch, c.data_vids
        self.input_name, self.input_shape, self.input_dtype = c.input_name, c.input_shape, c.input_dtype
        self.output_names = c.output_names
        self._plans: dict[tuple[Any, ...], tuple[Plan, int]] = {}
        self.select_outputs(None)

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
        cached = self._plans.get(key)
        if cached is None:
            cached, outs = self._trace(x, grad)
            if len(self._plans) >= 32:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = cached
            return outs
        plan, n_slots = cached
        slots: list[Any] = [None] * n_slots
        slots[0] = x
        return plan.run(slots)

    def _trace(self, x: torch.Tensor, grad: bool) -> tuple[tuple[Plan, int], dict[str, torch.Tensor]]:
        """Run the graph once on ``x``, binding each data op to its host values, and record
        the plan that repeats it (see the package docstring)."""
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
        recorder = PlanRecorder()
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
                ctx = _KernelContext(inplace=dying, **ctx_base)
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
            for v in set(node.ins) | set(node.outs):
                if v in self._data_vids and last.get(v, k) <= k and v in env:
                    del env[v]
            recorder.add(fn, [slot_of[v] for v, d in zip(node.ins, dynamic) if d],
                         [slot_of[v] for v in node.outs])
            k += 1
        results = {}
        for name, v in self._selected:
            t = env[v] if v in env else consts.get(v)
            if v not in self._data_vids:  # an output that does not depend on the input's values
                t = _static(t, _KernelContext(**ctx_base), False)
            results[name] = t
        outputs = [(name, slot_of[v], None) if v in self._data_vids else (name, None, results[name])
                   for name, v in self._selected]
        keep = {0} | {slot for _, slot, _ in outputs if slot is not None}
        plan = recorder.plan(outputs, keep, finish=_finish)
        return (plan, len(slot_of)), {n: _finish(t) for n, t in results.items()}

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


def load_openvino_ir(xml: str | Path, weights: str | Path | None = None) -> OpenVinoIR:
    """Load an OpenVINO IR network (``xml``; weights from ``weights`` or the ``.bin`` of the same
    stem beside it) as an :class:`OpenVinoIR` module in eval mode.

    Raises ModelError (one line naming the file) for a missing or malformed file, a weight file
    that does not match the network, or an operation this reader does not implement.
    """
    xml = Path(xml)
    bin_path = Path(weights) if weights is not None else xml.with_suffix(".bin")
    return OpenVinoIR(xml, bin_path).eval()
