"""Channel shuffles folded into the weights of an OpenVINO graph: the same outputs, no shuffle run.

ShuffleNet-style blocks (PP-TinyPose's) split a tensor's channels in halves, transform one half,
concatenate the halves and shuffle the channels (a ``Reshape -> Transpose -> Reshape``, which
OpenVINO runs as ``ShuffleChannels``). OpenVINO's CPU plugin keeps these tensors channels-last
(NHWC), where a shuffle, split or concat moves every pixel's channels a few at a time: in
TinyPose 256x192 that data movement is 45 % of the call on one thread, the shuffles alone 30 %
(``tools/openvino_op_profile.py``; docs/models.md, "CPU backends").

A channel permutation costs nothing where the next layer mixes channels anyway. This pass
rebuilds the graph with each tensor's channel order carried along as data:

1. Fold the constants (weights become plain constants).
2. Walk the layers in order. Each tensor is held as pieces (tensors of the rebuilt graph,
   concatenated along channels only when a layer needs one tensor) and an order: logical
   channel ``c`` is physical channel ``order[c]`` of the pieces.
3. A shuffle only changes the order; a concat joins the pieces. A split takes each half's
   channels from the pieces (a piece wholly inside one half is taken as it is, the others are
   cut into runs by one ``VariadicSplit``). The walk runs twice: the first finds every cut each
   piece will need and which pieces some layer takes whole; the second cuts each piece once, at
   all of them, and a convolution's output that no layer takes whole (through its per-channel
   bias and ReLU) is made as one smaller convolution per run instead of cut.
4. A convolution absorbs its input's order into its weights' input axis; per-channel layers
   (depthwise convolution, a per-channel bias or scale, ReLU, spatial resizing) keep the order,
   their per-channel weights permuted to it. An addition of two tensors held in different orders
   has the branch that ends in a convolution write its output channels in the other's order.
5. Outputs, and any layer not listed above, get their channels in the original order; a graph
   where that would need a gather is left unchanged (:func:`fold_channel_shuffles` returns
   ``None``).

The arithmetic is the original's; only a convolution's sum over input channels runs in another
order, so outputs agree to float rounding (``tests/test_channel_order.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Element-wise layers with one tensor input that act on each channel alike.
_UNARY = {"Relu", "Clamp", "Sigmoid", "HSwish", "Swish", "Exp", "Abs", "Sqrt", "Tanh", "Elu",
          "Gelu", "Negative", "Floor", "Ceiling", "HSigmoid", "Mish", "SoftPlus", "Convert"}
#: Element-wise layers with two inputs.
_BINARY = {"Add", "Multiply", "Subtract", "Divide", "Maximum", "Minimum"}


class Unsupported(Exception):
    """The graph needs a layer in an order this pass cannot give it without a gather."""


@dataclass
class _Value:
    """A tensor of the original graph in the rebuilt one: ``pieces`` (rebuilt outputs, joined
    along channels) and ``order`` ``(C,)``: logical channel ``c`` is physical ``order[c]``."""

    pieces: list[Any]
    order: np.ndarray
    joined: Any = field(default=None, repr=False)

    @property
    def identity(self) -> bool:
        return bool(np.array_equal(self.order, np.arange(len(self.order))))


def _channels(output: Any) -> int:
    shape = output.get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() < 2 or shape[1].is_dynamic:
        raise Unsupported("a tensor without a static channel count")
    return shape[1].get_length()


def _rank(output: Any) -> int:
    rank = output.get_partial_shape().rank
    if rank.is_dynamic:
        raise Unsupported("a tensor of unknown rank")
    return rank.get_length()


def _const(output: Any) -> np.ndarray | None:
    node = output.get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None


def _reorder(values: np.ndarray, old: np.ndarray, new: np.ndarray, axis: int) -> np.ndarray:
    """Per-channel ``values`` along ``axis`` held in physical order ``old`` moved to ``new``
    (logical channel ``c`` from ``old[c]`` to ``new[c]``)."""
    out = np.empty_like(values)
    src = [slice(None)] * values.ndim
    dst = [slice(None)] * values.ndim
    src[axis], dst[axis] = old, new
    out[tuple(dst)] = values[tuple(src)]
    return out


def _scatter(order: np.ndarray, values: np.ndarray, axis: int) -> np.ndarray:
    """``values`` in the original order with index ``c`` of ``axis`` moved to ``order[c]``."""
    return _reorder(values, np.arange(len(order)), order, axis)


def _users(output: Any) -> set[Any]:
    """The layers reading ``output``, but for ``ShapeOf`` (a shape needs no channel order)."""
    return {t.get_node() for t in output.get_target_inputs()
            if t.get_node().get_type_name() != "ShapeOf"}


def _per_channel(c: np.ndarray, rank: int, channels: int) -> int | None:
    """The axis of constant ``c`` that runs along the channels of a rank-``rank`` tensor it is
    broadcast against (``None``: the same for every channel); raises if neither."""
    shape = (1,) * (rank - c.ndim) + c.shape
    if shape[1] == 1 or channels == 1:
        return None
    if shape[1] == channels and c.ndim == rank:
        return 1
    raise Unsupported("a constant along the channels in a shape not handled")


def is_shuffle(node: Any) -> bool:
    """The ``Transpose (0, 2, 1, 3, 4)`` of a channel shuffle."""
    if node.get_type_name() != "Transpose":
        return False
    order = _const(node.input_value(1))
    return order is not None and list(order) == [0, 2, 1, 3, 4]


class _Rebuild:
    """The walk of steps 2-5, rewiring the (folded) model's layers in place."""

    def __init__(self, ops: Any, plan: dict[tuple[str, int], set[int]] | None = None,
                 whole: set[tuple[str, int]] | None = None):
        self.ops = ops
        self.values: dict[Any, _Value] = {}   # original output -> value
        self.plain: dict[Any, Any] = {}       # original output -> output (no channel axis)
        self.shuffles = 0
        # cutting pieces (step 3): every piece is a layer's output (a root, keyed by layer name
        # and output index) or a run of one; ``plan`` gives each root's cuts, from an earlier
        # walk, so that a root is cut once into the runs every later split needs
        self.plan = plan or {}
        self.cuts: dict[tuple[str, int], set[int]] = {}        # what this walk cut, per root
        self.origin: dict[Any, tuple[tuple[str, int], int]] = {}  # run -> (root, offset)
        self.cut_runs: dict[Any, list[tuple[int, int, Any]]] = {}  # root output -> its runs
        # roots some layer takes whole (this walk); with ``whole`` from the first walk, a root
        # no layer takes whole is made by one convolution per run instead of cut (no copy)
        self.used_whole: set[tuple[str, int]] = set()
        self.plan_whole = whole

    # -- values --------------------------------------------------------------------------------
    @staticmethod
    def root_of(piece: Any) -> tuple[str, int]:
        return piece.get_node().get_friendly_name(), piece.get_index()

    def joined(self, v: _Value) -> Any:
        """The value's pieces as one tensor (one concat, made once)."""
        self.used_whole.update(self.root_of(p) for p in v.pieces if p not in self.origin)
        if v.joined is None:
            v.joined = v.pieces[0] if len(v.pieces) == 1 else \
                self.ops.concat(v.pieces, 1).output(0)
        return v.joined

    def logical(self, original: Any) -> Any:
        """An output in the original channel order (for layers that need it)."""
        if original in self.plain:
            return self.plain[original]
        v = self.values[original]
        if not v.identity:
            raise Unsupported(f"{original.get_node().get_friendly_name()} needs its channels in "
                              "the original order")
        return self.joined(v)

    @staticmethod
    def single(output: Any, order: np.ndarray) -> _Value:
        return _Value([output], order, output)

    @staticmethod
    def rewire(node: Any, i: int, output: Any) -> None:
        if node.input_value(i) != output:
            node.input(i).replace_source_output(output)

    def constant(self, node: Any, i: int, values: np.ndarray) -> None:
        self.rewire(node, i, self.ops.constant(values).output(0))

    # -- the walk ------------------------------------------------------------------------------
    def run(self, model: Any) -> None:
        skip: set[Any] = set()
        for node in model.get_ordered_ops():
            if node in skip:
                continue
            kind = node.get_type_name()
            if kind == "Parameter":
                out = node.output(0)
                self.values[out] = self.single(out, np.arange(_channels(out)))
            elif kind == "Constant":
                self.plain[node.output(0)] = node.output(0)
            elif kind == "Result":
                self.rewire(node, 0, self.logical(node.input_value(0)))
            elif kind == "Reshape" and self._shuffle(node, skip):
                continue
            elif kind == "Concat":
                self._concat(node)
            elif kind in ("Split", "VariadicSplit"):
                self._split(node)
            elif kind == "Convolution":
                self._convolution(node)
            elif kind == "GroupConvolution":
                self._group_convolution(node)
            elif kind in _UNARY or kind in ("Interpolate", "ShapeOf"):
                self._channelwise(node)
            elif kind in _BINARY:
                self._binary(node)
            else:
                self._other(node)

    def _other(self, node: Any) -> None:
        """Any other layer: every input in the original order."""
        for i, x in enumerate(node.input_values()):
            self.rewire(node, i, self.logical(x))
        for out in node.outputs():
            self._keep(out)

    def _keep(self, out: Any) -> None:
        shape = out.get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() >= 2 and shape[1].is_static:
            self.values[out] = self.single(out, np.arange(shape[1].get_length()))
        else:
            self.plain[out] = out

    def _shuffle(self, node: Any, skip: set[Any]) -> bool:
        """``Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W)``:
        only the order changes (step 3)."""
        out = node.output(0)
        nxt = [t.get_node() for t in out.get_target_inputs()]
        if _rank(out) != 5 or len(nxt) != 1 or not is_shuffle(nxt[0]):
            return False
        transpose = nxt[0]
        after = [t.get_node() for t in transpose.output(0).get_target_inputs()]
        source = node.input_value(0)
        if len(after) != 1 or after[0].get_type_name() != "Reshape" or _rank(after[0].output(0)) != 4 \
                or _rank(source) != 4 or source not in self.values:
            return False
        shape = out.get_partial_shape()
        g, k = shape[1].get_length(), shape[2].get_length()
        if g * k != _channels(source) or _channels(after[0].output(0)) != g * k:
            return False
        v = self.values[source]
        # out[b * g + a] = in[a * k + b]
        src = (np.arange(g)[None, :] * k + np.arange(k)[:, None]).reshape(-1)
        self.values[after[0].output(0)] = _Value(v.pieces, v.order[src], v.joined)
        skip.update({transpose, after[0]})
        self.shuffles += 1
        return True

    def _concat(self, node: Any) -> None:
        axis = node.get_attributes()["axis"]
        inputs = node.input_values()
        if axis not in (1, 1 - _rank(node.output(0))) or any(x not in self.values for x in inputs):
            return self._other(node)
        pieces, orders, offset = [], [], 0
        for x in inputs:
            v = self.values[x]
            pieces.extend(v.pieces)
            orders.append(v.order + offset)
            offset += len(v.order)
        self.values[node.output(0)] = _Value(pieces, np.concatenate(orders))

    def _split(self, node: Any) -> None:
        source = node.input_value(0)
        axis = _const(node.input_value(1))
        if axis is None or source not in self.values or int(axis) % _rank(source) != 1:
            return self._other(node)
        v = self.values[source]
        sizes = [_channels(o) for o in node.outputs()]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        part = np.empty(len(v.order), np.int64)          # physical channel -> output index
        for j in range(len(sizes)):
            part[v.order[bounds[j]:bounds[j + 1]]] = j
        runs: list[tuple[int, int, Any]] = []            # (physical start, length, output)
        start = 0
        for piece in v.pieces:
            n = _channels(piece)
            cuts = np.flatnonzero(np.diff(part[start:start + n])) + 1
            if not len(cuts):  # a piece wholly inside one part: taken as it is, no copy
                runs.append((start, n, piece))
            else:
                runs.extend((start + h, m, o) for h, m, o in self._cut(piece, n, cuts))
            start += n
        for j, out in enumerate(node.outputs()):
            mine = [(s, m, o) for s, m, o in runs if part[s] == j]
            position = np.full(len(v.order), -1, np.int64)  # physical -> place in this part
            at = 0
            for s, m, _ in mine:
                position[s:s + m] = np.arange(at, at + m)
                at += m
            self.values[out] = _Value([o for *_, o in mine],
                                      position[v.order[bounds[j]:bounds[j + 1]]])

    def _cut(self, piece: Any, n: int, cuts: np.ndarray) -> list[tuple[int, int, Any]]:
        """``piece`` (``n`` channels) cut at ``cuts``: ``(start, length, output)`` runs that
        together cover it. A root is cut once, at every cut the plan has for it (the runs later
        splits need are already there); a run of a root is cut again only where the plan
        missed a cut (on the first walk)."""
        root, offset = self.origin.get(piece, (self.root_of(piece), 0))
        self.cuts.setdefault(root, set()).update(int(c) + offset for c in cuts)
        if piece in self.cut_runs:
            return self.cut_runs[piece]
        planned = {c - offset for c in self.plan.get(root, ()) if 0 < c - offset < n}
        heads = np.array(sorted({0, *planned, *(int(c) for c in cuts)}), np.int64)
        lengths = np.diff(np.concatenate([heads, [n]]))
        made = None
        if piece not in self.origin and self.plan_whole is not None \
                and root not in self.plan_whole:
            made = self._per_run(piece, heads, lengths)
        if made is None:
            cut = self.ops.variadic_split(piece, self.ops.constant(np.int64(1)),
                                          self.ops.constant(lengths))
            made = [cut.output(i) for i in range(len(lengths))]
        out = [(int(h), int(m), o) for h, m, o in zip(heads, lengths, made)]
        for h, _, o in out:
            self.origin[o] = (root, offset + h)
        if piece not in self.origin:
            self.cut_runs[piece] = out
        return out

    def _per_run(self, piece: Any, heads: np.ndarray, lengths: np.ndarray) -> list[Any] | None:
        """``piece``'s runs made directly: when it is a convolution's output, through
        per-channel constants and ReLU that nothing else reads, one such chain per run, each
        with its rows of the weights (``None`` otherwise)."""
        chain: list[tuple[Any, int, int | None]] = []  # (layer, its tensor input, constant axis)
        out = piece
        while out.get_node().get_type_name() != "Convolution":
            node = out.get_node()
            kind = node.get_type_name()
            ins = node.input_values()
            t, axis = 0, None
            if kind in ("Add", "Multiply") and len(ins) == 2:
                consts = [_const(x) for x in ins]
                if sum(c is not None for c in consts) != 1:
                    return None
                t = 0 if consts[0] is None else 1
                try:
                    axis = _per_channel(consts[1 - t], _rank(out), _channels(out))
                except Unsupported:
                    return None
            elif kind != "Relu":
                return None
            chain.append((node, t, axis))
            out = ins[t]
            if len(_users(out)) != 1:
                return None
        conv = out.get_node()
        w = _const(conv.input_value(1))
        if w is None:
            return None
        a = conv.get_attributes()
        made = []
        for h, m in zip(heads, lengths):
            y = self.ops.convolution(conv.input_value(0), self.ops.constant(w[h:h + m]),
                                     a["strides"], a["pads_begin"], a["pads_end"],
                                     a["dilations"], a["auto_pad"]).output(0)
            for node, t, axis in reversed(chain):
                if node.get_type_name() == "Relu":
                    y = self.ops.relu(y).output(0)
                    continue
                c = _const(node.input_value(1 - t))
                c = self.ops.constant(c if axis is None else c[:, h:h + m]).output(0)
                make = self.ops.add if node.get_type_name() == "Add" else self.ops.multiply
                y = make(*((y, c) if t == 0 else (c, y))).output(0)
            made.append(y)
        return made

    def _convolution(self, node: Any) -> None:
        """Step 4: the input's order absorbed into the weights' input axis."""
        data, weights = node.input_values()
        w = _const(weights)
        if data not in self.values or w is None:
            return self._other(node)
        v = self.values[data]
        self.rewire(node, 0, self.joined(v))
        if not v.identity:
            self.constant(node, 1, _scatter(v.order, w, 1))
        self._keep(node.output(0))

    def _group_convolution(self, node: Any) -> None:
        """A depthwise convolution keeps its input's order (its weights permuted to it)."""
        data, weights = node.input_values()
        w = _const(weights)
        if data not in self.values or w is None or w.shape[1] != 1 or w.shape[2] != 1:
            return self._other(node)
        v = self.values[data]
        self.rewire(node, 0, self.joined(v))
        if not v.identity:
            self.constant(node, 1, _scatter(v.order, w, 0))
        self.values[node.output(0)] = self.single(node.output(0), v.order)

    def _channelwise(self, node: Any) -> None:
        """Unary per-channel layers, spatial resizing, shapes: the order passes through."""
        inputs = node.input_values()
        data = inputs[0]
        if data not in self.values or (node.get_type_name() == "Interpolate"
                                       and _channels(node.output(0)) != _channels(data)):
            return self._other(node)
        v = self.values[data]
        self.rewire(node, 0, self.joined(v))
        for i, x in enumerate(inputs[1:], 1):
            self.rewire(node, i, self.logical(x))
        if node.get_type_name() == "ShapeOf":
            self.plain[node.output(0)] = node.output(0)
        else:
            self.values[node.output(0)] = self.single(node.output(0), v.order)

    def _binary(self, node: Any) -> None:
        inputs = node.input_values()
        rank = _rank(node.output(0))
        tensors = [i for i, x in enumerate(inputs) if x in self.values]
        if len(tensors) == 1:
            (t,) = tensors
            v = self.values[inputs[t]]
            c = _const(inputs[1 - t])
            if c is None:
                return self._other(node)
            self.rewire(node, t, self.joined(v))
            axis = _per_channel(c, rank, len(v.order))
            if axis is not None and not v.identity:
                self.constant(node, 1 - t, _scatter(v.order, c, axis))
            self.values[node.output(0)] = self.single(node.output(0), v.order)
            return
        if len(tensors) != 2:
            return self._other(node)
        va, vb = (self.values[x] for x in inputs)
        if not np.array_equal(va.order, vb.order):
            # one operand's branch (back to its convolution) re-emitted in the other's order
            if va.identity and not vb.identity:
                self.reorder(inputs[0], va.order, vb.order)
                va = self.single(va.pieces[0], vb.order)
            else:
                self.reorder(inputs[1], vb.order, va.order)
                vb = self.single(vb.pieces[0], va.order)
        self.rewire(node, 0, self.joined(va))
        self.rewire(node, 1, self.joined(vb))
        self.values[node.output(0)] = self.single(node.output(0), va.order)

    def reorder(self, out: Any, old: np.ndarray, new: np.ndarray) -> None:
        """Step 4's re-emission: the branch ending at ``out`` (one consumer, one piece) changed
        in place from physical order ``old`` to ``new``: its per-channel weights, and the
        output axis of the convolution it starts from."""
        node = out.get_node()
        kind = node.get_type_name()
        v = self.values.get(out)
        if v is not None and np.array_equal(v.order, new):  # both inputs of an x + x
            return
        if v is None or len(v.pieces) != 1 or v.pieces[0] != out or len(_users(out)) != 1:
            raise Unsupported(f"{node.get_friendly_name()}: not a single-use branch")
        inputs = node.input_values()
        if kind == "Convolution":
            self.constant(node, 1, _reorder(_const(inputs[1]), old, new, 0))
        elif kind == "GroupConvolution":
            self.constant(node, 1, _reorder(_const(inputs[1]), old, new, 0))
            self.reorder(inputs[0], old, new)
        elif kind in _UNARY or kind == "Interpolate":
            self.reorder(inputs[0], old, new)
        elif kind in _BINARY:
            for i, x in enumerate(inputs):
                c = _const(x)
                if c is None:
                    self.reorder(x, old, new)
                elif (axis := _per_channel(c, _rank(out), len(old))) is not None:
                    self.constant(node, i, _reorder(c, old, new, axis))
        else:
            raise Unsupported(f"cannot reorder the output of a {kind}")
        self.values[out] = self.single(out, new)


def fold_channel_shuffles(model: Any) -> tuple[Any, int] | None:
    """``model`` (an ``openvino.Model``, left unchanged) rebuilt without its channel shuffles
    (module docstring), and how many were folded; ``None`` when it has none, or when a layer
    would need a shuffled tensor in its original order."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino import passes

    if not any(is_shuffle(n) for n in model.get_ordered_ops()):
        return None
    model = model.clone()
    if len(model.inputs) == 1:  # a dynamic batch: folding must not bake the batch size in
        shape = model.inputs[0].get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() >= 1:
            dims = [shape[i] for i in range(shape.rank.get_length())]
            model.reshape({model.inputs[0]: ov.PartialShape([ov.Dimension(), *dims[1:]])})
    manager = passes.Manager()
    manager.register_pass(passes.ConstantFolding())
    manager.run_passes(model)
    try:
        # a first walk finds where each piece must be cut and which pieces some layer takes
        # whole; the second cuts each piece once, or makes it per run (step 3)
        first = _Rebuild(ops)
        first.run(model.clone())
        rebuild = _Rebuild(ops, first.cuts, first.used_whole)
        rebuild.run(model)
        model.validate_nodes_and_infer_types()
    except Unsupported:
        return None
    return (model, rebuild.shuffles) if rebuild.shuffles else None
