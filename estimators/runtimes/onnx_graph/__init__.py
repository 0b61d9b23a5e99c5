"""ONNX models (``.onnx``, a protobuf ``ModelProto``) run in torch by a small op-table interpreter.

Modules: :mod:`.io` (reading the file), :mod:`.ops` (the op table: op type -> builder),
:mod:`.compile` (selection, fusion, folding, parameters, slots), :mod:`.run` (the module and its
per-key plans, executed by :mod:`posetracker.estimators.runtimes.plan`).

Public API
----------
``read_onnx(path) -> onnx.ModelProto``
    The file parsed and checked; a missing, truncated or corrupt file is one ``ModelError`` line
    naming it.
``load_onnx_graph(path, outputs=None) -> OnnxGraph``
    The graph compiled into a torch module. ``outputs`` names intermediate tensors to return
    instead of the graph outputs; only the nodes they need are kept, so a graph can be cut before
    an op this runtime lacks (RTMDet's in-graph ``NonMaxSuppression``).
``OnnxGraph(*inputs) -> {name: tensor}``; ``.input_names``, ``.input_shapes`` (ints, ``None`` for
symbolic dims), ``.output_names``, ``.parameter(onnx_name)``.

How it runs
-----------
Load: initializers and ``Constant`` nodes become tensors; every node whose inputs are all constant
is evaluated once (folding). ``Conv -> Sigmoid -> Mul`` (SiLU) chains become one conv. Float
constants that an op reads as a tensor operand become ``nn.Parameter`` s (float32, trainable);
integer constants, and anything read as a shape, axis, size or index, stay constants. An op
outside the table that the requested outputs need is refused here, naming op type and node.

Values that depend only on the inputs' *shapes* ("meta": ``Shape``, and the arithmetic on shapes
and constants that builds reshape targets and anchor grids) stay dynamic, so any batch size runs,
but they are computed once per (input shapes, device, float dtype) key: the first call with a
key runs every node and binds the meta values into that key's flat plan of the remaining ops (a
list of (function, argument template, input slots, output slots) with slot-indexed storage, no
name lookups); later calls with the key run only that plan. One call at a time per module (the
call's device, dtype and batch are shared state of its ops).

Types: a ``Cast`` to any float type, and float constants bound into the plan, take the float type
of the call's input (so ``.half()`` / CUDA work end to end); integer shape arithmetic stays int64
on the CPU until an op needs it as a tensor on the device.

Batch: a constant ``Reshape`` target that bakes batch 1 in as its leading dim (exports fixed at
batch 1) gets the call's batch substituted when its input carries the batch, and the element
count is checked.

CPU speed (float32): convs run on channels-last memory with the kernels the TF.js and OpenVINO IR
runtimes share (:mod:`posetracker.estimators.runtimes.kernels`): small 1x1 convs as one GEMM, the others on
oneDNN with the weight kept in its blocked layout and SiLU fused in; under autograd, plain
differentiable convs.

Ops: Add Sub Mul Div, Equal Less Greater LessOrEqual GreaterOrEqual And Or Not Where, Sigmoid
HardSigmoid Relu LeakyRelu Clip Exp Sqrt Neg Abs Identity, Cast Shape Size ConstantOfShape Range
Constant, Concat Transpose Reshape Flatten Unsqueeze Squeeze Expand Tile Gather Slice, ReduceMax
ReduceMin ReduceMean ReduceSum TopK, Conv MaxPool AveragePool GlobalAveragePool GlobalMaxPool
Resize (nearest asymmetric/floor, nearest half-pixel/round-prefer-ceil, bilinear), all 2-D.
"""

from posetracker.estimators.runtimes.onnx_graph.io import read_onnx
from posetracker.estimators.runtimes.onnx_graph.run import OnnxGraph, load_onnx_graph

__all__ = ["OnnxGraph", "load_onnx_graph", "read_onnx"]
