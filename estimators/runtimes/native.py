"""Model graphs run by a native CPU runtime (OpenVINO or onnxruntime) instead of the torch readers.

A :class:`NativeGraph` stands where the torch module of a model file stands
(:class:`posetracker.estimators.runtimes.openvino_ir.OpenVinoIR`,
:class:`posetracker.estimators.runtimes.onnx_graph.OnnxGraph`): ``graph(x)`` with ``x`` an
``(N, C, H, W)`` float tensor returns ``{output name: tensor}`` on the CPU, float32. Only the graph
call changes: the estimators' pre- and post-processing around it is the same code for every
backend. The runtime is imported when the first graph is built, never by importing this module.

How it runs:

- **Shapes.** OpenVINO runs models compiled for fixed batch sizes (:data:`STATIC_BATCHES`: 4, 2
  and 1) and splits a batch into runs of them, largest first (18 crops: four of 4 and one of 2),
  so nothing is padded. On the 2-core development CPU a model with a dynamic batch cost 9-17 %
  more CPU time per TinyPose crop on one thread at every batch size from 2 to 18, and a batch of
  4 cost no more per crop than one of 8 or 16 (docs/models.md, "CPU backends"). Every other
  dimension is fixed by the first call that uses it; that call compiles every model the graph
  will use, side by side (the three sizes for the lanes below, and a batch of one on every
  thread; TinyPose: about 1 s in all). onnxruntime keeps the dynamic batch.
- **Threads.** Each call runs on ``threads`` threads, given when the graph is built: the
  application passes the number its pipeline gives torch per stage call
  (:meth:`posetracker.app.settings.PipelineConfig.torch_threads`, ``estimate.threads``), so the
  native backends keep the same limit (0: every core); idle runtime threads do not spin. In
  OpenVINO a batch of one runs on all of them; a larger batch is split into ``threads`` lanes
  of near-equal parts, each run by a stream of one thread, at once (one thread per lane spends
  less CPU per crop than several threads on one crop: docs/models.md, "CPU backends").
- **Concurrency.** Callers on several threads at once (the pipeline's pose workers and its
  detector thread) are safe: the compiled models are shared (built under a lock), and each
  calling thread has its own OpenVINO infer request; an onnxruntime session is thread-safe.
  With one thread per call, OpenVINO's models have one single-thread stream per core, so up to
  that many callers run at once (one stream would run their requests one after another).
- **Graph.** OpenVINO runs each model with its channel shuffles folded into the weights
  (:mod:`posetracker.estimators.runtimes.channel_order`): the same outputs to float rounding,
  TinyPose 256x192 with a quarter less CPU per crop (docs/models.md, "CPU backends").
- **Precision.** ``fp32`` or ``bf16`` (OpenVINO's ``INFERENCE_PRECISION_HINT``; onnxruntime runs
  float32 only).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.channel_order import fold_channel_shuffles

#: The native runtimes: backend name -> the Python package it needs.
RUNTIME_PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}

#: Batch sizes OpenVINO compiles models for, largest first (module docstring, "Shapes").
STATIC_BATCHES = (4, 2, 1)

#: Precisions each runtime can be asked for (OpenVINO's hint values).
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def static_chunks(n: int) -> list[tuple[int, int]]:
    """Split a batch of ``n`` into ``(start, size)`` runs of :data:`STATIC_BATCHES` sizes, largest
    first, e.g. ``7 -> [(0, 4), (4, 2), (6, 1)]``: every item computed once, no padding."""
    chunks, start = [], 0
    for size in STATIC_BATCHES:
        while n - start >= size:
            chunks.append((start, size))
            start += size
    return chunks


def finish_all(waits: Sequence[Callable[[], Any]]) -> None:
    """Call every ``wait`` (block until a runtime job ends) even through Ctrl-C, then re-raise the
    first interrupt (Ctrl-C, or the CLI's SIGTERM, a subclass): a compile or inference running in
    the runtime's threads cannot be stopped halfway, and one still running when the interpreter
    exits aborts the process ("terminate called") instead of the clean exit the CLI promises."""
    interrupt: KeyboardInterrupt | None = None
    for wait in waits:
        while True:
            try:
                wait()
                break
            except KeyboardInterrupt as e:  # or a subclass (the CLI's SIGTERM): the first is kept
                interrupt = interrupt or e
    if interrupt is not None:
        raise interrupt


def backend_of(module: Any) -> str:
    """What runs a loaded model's graph: the runtime of the first :class:`NativeGraph` inside
    ``module`` (a detector, an SPPE network), else ``torch``."""
    if isinstance(module, nn.Module):
        for m in module.modules():
            if isinstance(m, NativeGraph):
                return m.runtime
    return "torch"


def runtime_installed(name: str) -> bool:
    """Whether the package of runtime ``name`` can be imported (found, not imported)."""
    return importlib.util.find_spec(RUNTIME_PACKAGES[name]) is not None


def import_runtime(name: str) -> Any:
    """The runtime's package, or :class:`ModelError` in one line when it is not installed."""
    package = RUNTIME_PACKAGES[name]
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise ModelError(f"backend {name}: the {package} package is not installed ({e}); "
                         "install the 'openvino' extra (pip install -e \".[openvino]\") or use "
                         "estimator.backend=torch") from None


class NativeGraph(nn.Module):
    """One model graph run by a native runtime (module docstring).

    Args:
        runtime: ``openvino`` or ``onnxruntime``.
        model: The model: an OpenVINO IR ``.xml`` path (OpenVINO only; ``weights`` its ``.bin``),
            an ``.onnx`` path, or a serialised ONNX ``ModelProto`` (bytes, e.g. a graph cut before
            its NMS).
        weights: The IR's ``.bin`` (``None``: beside the ``.xml``).
        precision: ``fp32`` or ``bf16`` (OpenVINO only).
        threads: CPU threads per call (0: the runtime's default).
        source: The file, for messages.

    Attributes:
        runtime, precision: As given.
        input_name: The graph's (only) input.
        input_shape: Its shape in the file, ``-1`` where dynamic (e.g. ``(1, 3, 256, 192)``).
        output_names: Every output, in the file's order.
    """

    def __init__(self, runtime: str, model: Path | bytes, weights: Path | None = None, *,
                 precision: str, threads: int, source: str = ""):
        super().__init__()
        if runtime not in RUNTIME_PACKAGES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIME_PACKAGES)}, got {runtime!r}")
        self.runtime, self.precision = runtime, precision
        self.source = source or (str(model) if isinstance(model, Path) else "<onnx>")
        runner = _OpenVINO if runtime == "openvino" else _OnnxRuntime
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.threads = threads
        self._runner = runner(model, weights, precision, threads, self.source)
        self.input_name = self._runner.input_name
        self.input_shape = self._runner.input_shape
        self.output_names = list(self._runner.output_names)
        self._selected = list(self.output_names)

    def select_outputs(self, names: Sequence[str] | None) -> None:
        """Return only these outputs (``None``: all)."""
        names = list(self.output_names if names is None else names)
        unknown = [n for n in names if n not in self.output_names]
        if unknown:
            raise ModelError(f"{self.source}: no output {', '.join(unknown)} "
                             f"(outputs: {', '.join(self.output_names)})")
        self._selected = names

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` ``(N, C, H, W)`` -> ``{output name: float32 CPU tensor}`` (N first)."""
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        outs = self._runner.run(arr)
        return {n: torch.from_numpy(outs[n]) for n in self._selected}

    def extra_repr(self) -> str:
        return f"{self.runtime}, {self.precision}, threads={self.threads}, {self.source}"


class _OpenVINO:
    """OpenVINO on the CPU: models compiled for fixed batch sizes (:data:`STATIC_BATCHES`) per
    input shape without the batch, an infer request per calling thread and model."""

    def __init__(self, model: Path | bytes, weights: Path | None, precision: str, threads: int,
                 source: str):
        if precision not in _OV_PRECISION:
            raise ModelError(f"backend openvino: precision {precision} is not supported on the "
                             f"CPU (use {' or '.join(_OV_PRECISION)})")
        ov = import_runtime("openvino")
        self._ov = ov
        self._core = ov.Core()
        try:
            if isinstance(model, bytes):
                self._model = self._core.read_model(model)
            else:
                self._model = self._core.read_model(str(model), None if weights is None else str(weights))
        except RuntimeError as e:
            raise ModelError(f"{source}: OpenVINO cannot read it: {str(e).splitlines()[0]}") from None
        if len(self._model.inputs) != 1:
            raise ModelError(f"{source}: expected one input, the graph has {len(self._model.inputs)}")
        # ShuffleNet blocks' channel shuffles carried into the next layers' weights: the same
        # outputs to float rounding, a quarter less CPU per TinyPose crop (channel_order.py)
        folded = fold_channel_shuffles(self._model)
        self.shuffles_folded = 0 if folded is None else folded[1]
        if folded is not None:
            self._model = folded[0]
        port = self._model.inputs[0]
        self.input_name = port.get_any_name()
        self.input_shape = tuple(d.get_length() if d.is_static else -1
                                 for d in port.get_partial_shape())
        self.output_names = [o.get_any_name() for o in self._model.outputs]
        base = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
                "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        # a batch of one: one stream on every thread given. One thread per call: one stream of
        # one thread per core, so that callers on several threads at once (the pipeline's pose
        # workers) run side by side: a compiled model's streams are its only executors, and
        # with a single one the second caller waits for the first (measured: two callers took
        # 2.1x one caller's time, against 0.95x on two streams)
        cores = os.cpu_count() or 1
        self._one = ({**base, "NUM_STREAMS": cores, "INFERENCE_NUM_THREADS": cores}
                     if threads == 1 else
                     {**base, "NUM_STREAMS": 1, **({"INFERENCE_NUM_THREADS": threads} if threads else {})})
        # larger batches: one stream of one thread per lane, the batch split across the lanes
        self.lanes = threads or cores
        self._lane = {**base, "NUM_STREAMS": self.lanes, "INFERENCE_NUM_THREADS": self.lanes}
        self._compiled: dict[tuple[int, ...], dict[tuple[str, int], Any]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def _compile(self, shape: tuple[int, ...], config: dict) -> Any:
        model = self._model.clone()
        model.reshape({model.inputs[0]: self._ov.PartialShape(list(shape))})
        return self._core.compile_model(model, "CPU", config)

    def _models(self, tail: tuple[int, ...]) -> dict[tuple[str, int], Any]:
        """The compiled models for inputs of shape ``tail``: ``("one", 1)`` and ``("lane", b)``
        for every ``b`` of :data:`STATIC_BATCHES` (one thread: ``("one", b)`` only). All are
        compiled by the first call with this ``tail``, so the cost is paid on the first frame,
        not spread over the run."""
        with self._lock:
            if tail not in self._compiled:
                kind, config = ("one", self._one) if self.lanes == 1 else ("lane", self._lane)
                jobs = {(kind, b): config for b in STATIC_BATCHES}
                if self.lanes > 1:
                    jobs[("one", 1)] = self._one
                # compiling is mostly one thread's work and releases the GIL: on 2 cores the
                # four TinyPose models compiled side by side took half the time
                pool = ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1))
                done = {key: pool.submit(self._compile, (key[1], *tail), cfg)
                        for key, cfg in jobs.items()}
                finish_all([f.exception for f in done.values()])
                pool.shutdown()
                self._compiled[tail] = {key: f.result() for key, f in done.items()}
            return self._compiled[tail]

    def _request(self, kind: str, size: int, lane: int, tail: tuple[int, ...]) -> Any:
        """This thread's infer request of lane ``lane`` on the ``(kind, size)`` model."""
        requests = self._local.__dict__.setdefault("requests", {})
        key = (kind, size, lane, tail)
        if key not in requests:
            requests[key] = self._models(tail)[(kind, size)].create_infer_request()
        return requests[key]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run a batch: one item on every thread; more split into up to ``lanes`` near-equal
        parts run at once, each part as runs of :data:`STATIC_BATCHES` sizes."""
        tail = tuple(x.shape[1:])
        if not len(x):  # no input: the shapes of a batch of one, cut to none
            return {n: o[:0] for n, o in self.run(np.zeros((1, *tail), np.float32)).items()}
        kind = "one" if self.lanes == 1 or len(x) == 1 else "lane"
        # one lane per thread, at most one per item ("one": a single lane, the whole batch)
        bounds = np.linspace(0, len(x), min(self.lanes, len(x)) + 1).round().astype(int)
        lanes = [[(lo + s, b) for s, b in static_chunks(hi - lo)]
                 for lo, hi in zip(bounds[:-1], bounds[1:])]
        parts: dict[int, list[np.ndarray]] = {}
        for step in range(max(len(chunks) for chunks in lanes)):
            started = []
            try:
                for lane, chunks in enumerate(lanes):
                    if step < len(chunks):
                        start, size = chunks[step]
                        request = self._request(kind, size, lane, tail)
                        started.append((start, request))  # before starting: waiting an idle request returns
                        request.start_async({0: x[start: start + size]})
            finally:
                finish_all([request.wait for _, request in started])
            for start, request in started:
                # copies: the request reuses its output buffers on the next call
                parts[start] = [np.array(request.get_output_tensor(i).data, dtype=np.float32)
                                for i in range(len(self.output_names))]
        order = sorted(parts)
        return {name: np.concatenate([parts[s][i] for s in order]) if len(order) > 1
                else parts[order[0]][i] for i, name in enumerate(self.output_names)}


class _OnnxRuntime:
    """onnxruntime on the CPU: one session (its ``run`` is thread-safe)."""

    def __init__(self, model: Path | bytes, weights: Path | None, precision: str, threads: int,
                 source: str):
        if precision != "fp32":
            raise ModelError(f"backend onnxruntime runs float32 only, not {precision}")
        if weights is not None:
            raise ModelError(f"{source}: onnxruntime reads ONNX graphs with their weights inside")
        ort = import_runtime("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # idle pool threads would spin on cores other stages need
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                                 opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types
            raise ModelError(f"{source}: onnxruntime cannot load it: "
                             f"{str(e).splitlines()[0]}") from None
        (port,) = self._session.get_inputs()
        self.input_name = port.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in port.shape)
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outs = self._session.run(self.output_names, {self.input_name: x})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outs)}
