"""TensorFlow.js graph models (``model.json`` + ``.bin`` weight shards) run in torch.

A TF.js graph model is a TensorFlow GraphDef in JSON (``modelTopology.node``: name, op, inputs,
attrs) plus a ``weightsManifest`` that lists every constant tensor (name, shape, dtype, optional
quantization) in the order its bytes appear in the concatenated ``.bin`` shards of its group.

Modules: :mod:`.io` (``model.json``, the weight shards, GraphDef nodes), :mod:`.layout` (stored vs
logical layouts), :mod:`.layers` (the torch modules of the ops), :mod:`.ops` (the op table: op
name -> builder), :mod:`.compile` (constant folding, conv + bias + activation fusion, order),
:mod:`.run` (:class:`TfjsGraph`: plans and execution).

Public API
----------
``read_tfjs_weights(model_json) -> dict[str, np.ndarray]``
    Every constant of the graph, dequantized (float16 halves and uint8/uint16 affine -> float32).
``read_tfjs_topology(model_json) -> dict``
    The ``modelTopology`` dict (``node`` list of GraphDef nodes, plus ``signature``).
``load_tfjs_graph(model_json, weights=None, fuse=True) -> TfjsGraph``
    The graph compiled into a torch module; ``weights`` (e.g. from a cached safetensors file)
    replaces reading the ``.bin``.
``TfjsGraph(*inputs)``  signature inputs -> signature outputs (batch as the graph allows).
``TfjsGraph.run(feeds, fetches, channels_first=False) -> {name: tensor}``
    Any node names in and out: feed past a batch-1 preprocessing, fetch intermediate tensors.
``TfjsGraph.constant(name)``, ``.input_names``, ``.output_names``, ``.input_shapes``, ``.node_names``.

How it runs
-----------
Compilation (once): parse nodes; fold every node whose inputs are all constant; fuse
``conv -> bias -> Relu/Relu6/LeakyRelu/Elu`` chains into one op; sort topologically; turn each node
into a small ``nn.Module`` with its weights as buffers (TF filters re-laid out for torch) and its
shape/axis/size parameters bound as Python values. Running: for the requested feeds/fetches a
plan (the needed nodes in order, and when each value can be freed) is computed once and cached.

Layout: TensorFlow values are NHWC; convolutions run in torch's NCHW indexing on channels-last
memory (the fastest oneDNN depthwise kernels). Each value carries the permutation from its
stored to its logical layout, so conv outputs flow through elementwise ops, Pad, Concat, Split,
Mean and Transpose without any copy, and are converted only for ops that need the logical view.

CPU speed (float32): every conv goes to oneDNN (torch would send single-image 1x1 convs to a
slower GEMM path), dense convs with their weights kept in oneDNN's blocked layout; asymmetric
SAME padding of depthwise convs becomes zero kernel taps (no padded copy of the input); fused
activations run in place; and a batch whose ops treat images independently runs in slices whose
activations stay under 32 MiB (see ``TfjsGraph.run``).

TensorFlow semantics that differ from torch's defaults, each handled (and tested): SAME padding
is asymmetric (stride 2, even size: 0 before, 1 after); ``ResizeBilinear`` has three coordinate
conventions (half-pixel = ``F.interpolate(align_corners=False)``, align-corners, and TF1 legacy);
MaxPool SAME ignores padded cells; FloorDiv/FloorMod round toward minus infinity.
"""

from posetracker.estimators.runtimes.tfjs.io import read_tfjs_topology, read_tfjs_weights
from posetracker.estimators.runtimes.tfjs.layers import resize_bilinear_nchw
from posetracker.estimators.runtimes.tfjs.run import TfjsGraph, load_tfjs_graph

__all__ = ["TfjsGraph", "load_tfjs_graph", "read_tfjs_topology", "read_tfjs_weights",
           "resize_bilinear_nchw"]
