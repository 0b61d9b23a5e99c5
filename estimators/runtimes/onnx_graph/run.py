"""The compiled ONNX graph as a torch module: per (input shapes, device, float type) key one
tracing run binds the meta values and constants into a :class:`posetracker.estimators.runtimes.plan.Plan`
that later calls with the key run."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.onnx_graph.compile import CompiledOnnx, _bind_meta
from posetracker.estimators.runtimes.onnx_graph.io import _one_line, read_onnx
from posetracker.estimators.runtimes.onnx_graph.ops import _HOST, _INDEX, _TENSOR, _host, _RunState
from posetracker.estimators.runtimes.plan import Plan, PlanRecorder

_MAX_CACHED_KEYS = 16  # per (input shapes, device, dtype) plans kept (LRU)


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
        self._state = _RunState()
        c = CompiledOnnx(model, outputs, source, self._state)
        self.source = source
        self.input_names, self.input_shapes, self.output_names = c.input_names, c.input_shapes, c.output_names
        self.params = nn.ParameterDict(c.params)
        self._param_keys, self._param_order = c.param_keys, c.param_order
        self._input_slots, self._param_slots, self._output_slots = c.input_slots, c.param_slots, c.output_slots
        self._steps, self._consts, self._output_static = c.steps, c.consts, c.output_static
        self._num_slots = c.num_slots
        self._plans: OrderedDict[tuple, Plan] = OrderedDict()

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
        return plan.run(env)

    def _trace(self, env: list[Any], key: tuple) -> dict[str, torch.Tensor]:
        """Run every step, binding the meta and constant values into a plan for ``key``."""
        device, dtype = self._state.device, self._state.float_dtype
        for s, v in self._consts:
            env[s] = v
        recorder = PlanRecorder()
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
                    positions = [pos for pos, _ in dyn]
                    if positions == list(range(len(template))):  # every argument a slot
                        recorder.add(st.fn, [s for _, s in dyn], st.outs)
                    else:
                        recorder.add(st.fn, [s for _, s in dyn], st.outs, template, positions)
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
        # Each dynamic value is freed after its last reader (inputs, parameters, outputs kept).
        keep = set(self._output_slots) | set(self._input_slots) | set(self._param_slots)
        outputs = [(name, None, _bind(env[s], _TENSOR, device, dtype)) if static else (name, s, None)
                   for name, s, static in zip(self.output_names, self._output_slots, self._output_static)]
        plan = recorder.plan(outputs, keep)
        self._plans[key] = plan
        while len(self._plans) > _MAX_CACHED_KEYS:
            self._plans.popitem(last=False)
        return plan.read_outputs(env)


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
