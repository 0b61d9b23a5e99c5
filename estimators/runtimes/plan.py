"""Flat execution plans: the executor shared by the OpenVINO IR and ONNX runtimes.

Both runtimes trace a graph once per input signature (shapes, dtype, device), binding every
shape-dependent value into the kernels, and record what remains as a :class:`Plan`: a list of
steps over numbered slots (no name lookups, no shape arithmetic). Later calls with the same
signature run only the plan.

A step is ``(fn, template, positions, ins, outs, frees)``:

- ``template`` None: ``fn(*[slots[i] for i in ins])``; else ``fn`` gets ``template`` (a tuple of
  the values bound at trace time) with the slot values ``ins`` put at ``positions``;
- ``outs``: the slots of its outputs (one output: the return value; several: a sequence);
- ``frees``: the slots it is the last step to read (or that no step reads), emptied after it so
  that peak memory stays low at large batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Step = tuple[Callable[..., Any], "tuple[Any, ...] | None", tuple[int, ...], tuple[int, ...],
             tuple[int, ...], tuple[int, ...]]


class Plan:
    """The recorded steps of one input signature (see the module docstring).

    ``outputs``: ``(name, slot, fixed)`` per output; ``fixed`` (slot None) is a value bound at
    trace time (an output that does not depend on the inputs' values). ``finish`` is applied to
    every output (e.g. ``Tensor.contiguous``), or None.
    """

    __slots__ = ("steps", "outputs", "finish")

    def __init__(self, steps: Sequence[Step], outputs: Sequence[tuple[str, int | None, Any]],
                 finish: Callable[[Any], Any] | None = None) -> None:
        self.steps, self.outputs, self.finish = tuple(steps), tuple(outputs), finish

    def run(self, slots: list[Any]) -> dict[str, Any]:
        """Run the steps on ``slots`` (inputs and parameters already in their slots; the list is
        overwritten) -> ``{output name: value}``."""
        for fn, template, positions, ins, outs, frees in self.steps:
            if template is None:
                r = fn(*[slots[i] for i in ins])
            else:
                args = list(template)
                for p, i in zip(positions, ins):
                    args[p] = slots[i]
                r = fn(*args)
            if len(outs) == 1:
                slots[outs[0]] = r
            else:
                for o, t in zip(outs, r):
                    slots[o] = t
            for f in frees:
                slots[f] = None
        return self.read_outputs(slots)

    def read_outputs(self, slots: list[Any]) -> dict[str, Any]:
        """The outputs from ``slots`` after the steps ran."""
        finish = self.finish
        out = {}
        for name, slot, fixed in self.outputs:
            value = fixed if slot is None else slots[slot]
            out[name] = value if finish is None else finish(value)
        return out


class PlanRecorder:
    """Collects the steps of a tracing run, then works out when each slot may be freed."""

    def __init__(self) -> None:
        self._steps: list[tuple[Callable[..., Any], tuple[Any, ...] | None, tuple[int, ...],
                                tuple[int, ...], tuple[int, ...]]] = []

    def add(self, fn: Callable[..., Any], ins: Sequence[int], outs: Sequence[int],
            template: Sequence[Any] | None = None, positions: Sequence[int] = ()) -> None:
        """One step: ``fn`` reads the slots ``ins`` (all its arguments, or those at
        ``positions`` of ``template``) and writes ``outs``."""
        self._steps.append((fn, None if template is None else tuple(template), tuple(positions),
                            tuple(ins), tuple(outs)))

    def plan(self, outputs: Sequence[tuple[str, int | None, Any]], keep: set[int],
             finish: Callable[[Any], Any] | None = None) -> Plan:
        """The :class:`Plan` of the recorded steps; slots in ``keep`` (inputs, parameters,
        outputs) are never freed, every other one after its last reader (or at once, when no
        step reads it)."""
        read_later: set[int] = set()
        steps: list[Step] = []
        for fn, template, positions, ins, outs in reversed(self._steps):
            frees = tuple(s for s in dict.fromkeys(ins + outs)
                          if s not in keep and s not in read_later)
            read_later.update(ins)
            steps.append((fn, template, positions, ins, outs, frees))
        return Plan(steps[::-1], outputs, finish)
