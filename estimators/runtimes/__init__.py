"""Model-format readers: each turns one file format into a ``torch.nn.Module`` (runtimes, not
estimators; the estimators in :mod:`estimators` decide what the tensors mean).

Each reader is a package split by job (file I/O, op table, compile passes, run):

- :mod:`posetracker.estimators.runtimes.tfjs`: TensorFlow.js graph models (``model.json`` + ``.bin``).
- :mod:`posetracker.estimators.runtimes.darknet`: Darknet ``.cfg`` + ``.weights`` (YOLO detectors).
- :mod:`posetracker.estimators.runtimes.openvino_ir`: OpenVINO IR (``.xml`` + ``.bin``).
- :mod:`posetracker.estimators.runtimes.onnx_graph`: ONNX ``ModelProto`` files.

- :mod:`posetracker.estimators.runtimes.native`: not a reader: OpenVINO or onnxruntime running an
  IR or ONNX graph in place of the torch module (``estimator.backend``).

Shared by them: :mod:`posetracker.estimators.runtimes.kernels` (CPU convolution paths, SAME
padding) and :mod:`posetracker.estimators.runtimes.plan` (the flat plan executor of the IR and
ONNX runtimes). The detectors' letterbox and NMS are in :mod:`posetracker.estimators.boxes`.

Each is checked against the format's own runtime (TensorFlow.js, OpenVINO, onnxruntime) by golden
tests on real inputs. An op or layer a reader lacks is refused at load time with one line naming
the op and the layer.
"""
