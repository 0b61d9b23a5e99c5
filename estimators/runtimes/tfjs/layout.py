"""Stored vs logical layout of TF.js graph values, and the two kinds of op module.

4-D values may be stored permuted (convolutions keep NCHW, TF graphs speak NHWC). A value is
(tensor, perm): the logical (TensorFlow) tensor is ``tensor.permute(perm)``; perm None means
stored as is. Convolution outputs carry perm (0, 2, 3, 1): logical NHWC, stored NCHW.
Elementwise ops, Transpose, Pad, Concat, Split and reductions work on the stored tensor
directly (:class:`_LayoutOp`); every other op sees the logical tensor (:class:`_Op`).
"""

from __future__ import annotations

import torch
from torch import nn

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


def _run_module(module: nn.Module, xs: list[torch.Tensor], perms: list[Perm]
                ) -> tuple[list[torch.Tensor], list[Perm]]:
    if getattr(module, "layout_aware", False):
        return module(xs, perms)
    out = module(*[_logical(x, p) for x, p in zip(xs, perms)])
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return outs, [None] * len(outs)
