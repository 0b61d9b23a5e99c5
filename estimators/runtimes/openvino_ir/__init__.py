"""OpenVINO IR (``.xml`` network + ``.bin`` weights, IR v10/v11) run as a torch module.

Modules: :mod:`.io` (the ``.xml`` and ``.bin``), :mod:`.base`, :mod:`.ops` and :mod:`.spatial`
(the op table), :mod:`.compile` (folding, fusion, parameters), :mod:`.run` (the module and its
traced plans, executed by :mod:`posetracker.estimators.runtimes.plan`).

Public API
----------
``load_openvino_ir(xml, weights=None) -> OpenVinoIR``
    ``weights`` is the ``.bin`` (default: the same stem beside the ``.xml``).
``OpenVinoIR(x) -> {output name: tensor}``
    ``x`` (N, C, H, W) float; any batch N, on CPU or CUDA, float32 or (after ``.half()``) float16.
``.input_name``, ``.input_shape`` (the IR's static shape, e.g. (1, 3, 256, 192)), ``.output_names``
    (the tensor names on the ports that feed the Result layers), ``.select_outputs(names)`` (run
    only what those outputs need), ``.params`` (every float weight, an ``nn.ParameterDict``).

How it loads
------------
The XML is read with ``xml.etree`` (no OpenVINO needed). ``Const`` layers are read from the
``.bin`` (offset, size, element type; f16/bf16/f32/f64, signed and unsigned ints, boolean) and
checked against the file. Every layer whose inputs are all constant is folded at load time
(the f16 -> f32 ``Convert`` of each weight among them). Then, on the graph:

- ``Multiply`` by a constant of ones is dropped (PicoDet has one after most activations).
- ``Convolution``/``GroupConvolution`` absorb the single-consumer chain after them: ``Multiply``
  by a per-channel constant (folded into the weights), ``Add``/``Subtract`` of a per-channel
  constant (the bias), then one activation (ReLU, HSwish, Sigmoid, HardSigmoid, Clamp, ...),
  applied in place on the fresh conv output.
- The ShuffleNet channel shuffle ``Reshape(N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) ->
  Reshape(N, C, H, W)`` becomes one op, and with the ``Concat`` of g equal parts before it a
  single interleaving copy (``torch.stack``).
- Float constants consumed by the network's ops become ``nn.Parameter``s (float32, registered in
  ``params`` under sanitised layer names) so that the network can be fine-tuned; integer
  constants (shapes, axes, indices) stay plain values.

How it runs
-----------
Values are either *data* (depend on the input's values: torch tensors on the input's device) or
*host* (shape arithmetic: ``ShapeOf`` and what is computed from it, on small CPU tensors). Host
values depend only on the input's shape, so for each input signature (shape, dtype, device,
autograd) the first call runs the graph once while binding every data op to its host values
(target shapes, interpolation sizes, slice bounds as Python values), and records a flat plan:
a list of ``(kernel, input slots, output slots, slots freed)``. Later calls with that signature
run the plan only: no shape arithmetic, no name lookups. The IR's static batch size is not
baked in: shapes come from ``ShapeOf`` at run time, and a constant ``Reshape`` target whose first
dimension is the IR's batch is given the input's batch when that is what makes it fit.

CPU speed (float32; :mod:`posetracker.estimators.runtimes.kernels`, shared with the TF.js and ONNX
runtimes): values live in channels-last memory; small 1x1 convolutions are one GEMM on those
bytes (a oneDNN call costs ~20 us before any arithmetic, a GEMM ~3 us; a Split half is read in
place as a row-strided matrix); the other convolutions go to oneDNN with their weight kept in
its blocked layout, ReLU fused; activations and elementwise ops run in place where the plan
shows the operand dies there. Under autograd (grad enabled and a parameter or the input
requiring grad) every op is a differentiable out-of-place torch op.
"""

from posetracker.estimators.runtimes.openvino_ir.run import OpenVinoIR, load_openvino_ir

__all__ = ["OpenVinoIR", "load_openvino_ir"]
