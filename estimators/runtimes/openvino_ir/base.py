"""What every OpenVINO IR op shares: the binding context, the :class:`_Op` base class, the
activation functions (standalone or fused into a convolution) and small value helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.openvino_ir.io import _ELEMENT_TYPES, _Layer

# Convolutions (and so most values) live in channels-last memory: see the package docstring.
CHANNELS_LAST = True


@dataclass
class _KernelContext:
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


_HOST = _KernelContext(None, torch.device("cpu"))


def _float_dtype(ctx: _KernelContext, etype: str) -> torch.dtype:
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

    def compute(self, ctx: _KernelContext, *xs: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def bind(self, args: list[Any], dynamic: list[bool], ctx: _KernelContext) -> Callable[..., Any]:
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


def _static(a: Any, ctx: _KernelContext, attr: bool) -> Any:
    """A bound (non-data) input of a data op on the run's device and float dtype."""
    if attr or not isinstance(a, torch.Tensor) or isinstance(a, nn.Parameter):
        return a
    if a.is_floating_point():
        return a.to(device=ctx.device, dtype=ctx.dtype or a.dtype)
    return a.to(ctx.device)


def _can_overwrite(t: Any, result_shape: Sequence[int], result_dtype: torch.dtype, ctx: _KernelContext,
                   i: int) -> bool:
    """Whether input ``i`` (tensor ``t``) may hold the op's result in place."""
    return (not ctx.grad and i in ctx.inplace and isinstance(t, torch.Tensor)
            and tuple(t.shape) == tuple(result_shape) and t.dtype == result_dtype
            and (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)))


def _hard_sigmoid(x: torch.Tensor, alpha: float, beta: float, inplace: bool) -> torch.Tensor:
    if inplace:
        return x.mul_(alpha).add_(beta).clamp_(0.0, 1.0)
    return (x * alpha + beta).clamp(0.0, 1.0)


def _clamp(params: tuple[float, ...], inplace: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    lo, hi = params
    return (lambda x: x.clamp_(lo, hi)) if inplace else (lambda x: x.clamp(lo, hi))


def _swish(params: tuple[float, ...], inplace: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    (beta,) = params
    if beta == 1.0:
        return lambda x: F.silu(x, inplace=inplace)
    return lambda x: x * torch.sigmoid(x * beta)


def _elu(params: tuple[float, ...], inplace: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    (alpha,) = params
    return lambda x: F.elu(x, alpha, inplace=inplace)


def _hard_sigmoid_fn(params: tuple[float, ...], inplace: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    alpha, beta = params
    return lambda x: _hard_sigmoid(x, alpha, beta, inplace)


# Activations without parameters: IR op type -> (out-of-place, in-place) function.
_PLAIN_ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {
    "ReLU": (torch.relu, torch.relu_),
    "Sigmoid": (torch.sigmoid, torch.sigmoid_),
    "Tanh": (torch.tanh, torch.tanh_),
    "HSwish": (F.hardswish, lambda x: F.hardswish(x, inplace=True)),
    "HSigmoid": (F.hardsigmoid, lambda x: F.hardsigmoid(x, inplace=True)),
    "Exp": (torch.exp, torch.exp_),
    "Log": (torch.log, torch.log_),
    "Sqrt": (torch.sqrt, torch.sqrt_),
    "Abs": (torch.abs, torch.abs_),
    "Negative": (torch.neg, torch.neg_),
    "Floor": (torch.floor, torch.floor_),
    "Ceiling": (torch.ceil, torch.ceil_),
}
# Activations with constant operands: IR op type -> (params, inplace) -> function.
_PARAM_ACTIVATIONS: dict[str, Callable[[tuple[float, ...], bool], Callable[[torch.Tensor], torch.Tensor]]] = {
    "HardSigmoid": _hard_sigmoid_fn, "Clamp": _clamp, "Swish": _swish, "Elu": _elu,
}


def _activation(name: str, params: tuple[float, ...], inplace: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation ``name`` (an IR op type) as a one-argument function; ``params`` are its
    constant operands (HardSigmoid alpha, beta; Clamp min, max; Swish beta; Elu alpha)."""
    plain = _PLAIN_ACTIVATIONS.get(name)
    if plain is not None:
        return plain[1] if inplace else plain[0]
    return _PARAM_ACTIVATIONS[name](params, inplace)


# Activations a conv may absorb (each with the inputs that are its constant parameters).
_FUSABLE_ACTIVATIONS = ("ReLU", "Sigmoid", "Tanh", "HSwish", "HSigmoid", "HardSigmoid", "Clamp",
                        "Swish", "Elu")


def _unsupported_attr(layer: _Layer, name: str, value: str) -> ModelError:
    return ModelError(f"{layer.where()}: {name}={value!r} is not supported")
