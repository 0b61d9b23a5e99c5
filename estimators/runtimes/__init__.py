"""Model-format readers: each turns one file format into a ``torch.nn.Module`` (runtimes, not
estimators; the estimators in :mod:`estimators` decide what the tensors mean).

- :mod:`posetracker.estimators.runtimes.tfjs`: TensorFlow.js graph models (``model.json`` + ``.bin``).
- :mod:`posetracker.estimators.runtimes.darknet`: Darknet ``.cfg`` + ``.weights`` (YOLO detectors).
- :mod:`posetracker.estimators.runtimes.openvino_ir`: OpenVINO IR (``.xml`` + ``.bin``).
- :mod:`posetracker.estimators.runtimes.onnx_graph`: ONNX ``ModelProto`` files.

Each is checked against the format's own runtime (TensorFlow.js, OpenVINO, onnxruntime) by golden
tests on real inputs.
"""
