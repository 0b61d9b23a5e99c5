"""Model file formats: the one table saying, for each format, which files make a model, which
code reads them, and which stages (person detector, SPPE) it can serve.

Everything that dispatches on a model file asks this table: :func:`locate` (a path a user gave ->
the format and its files), :func:`format_of` (a model's main file -> its format), the readers
behind :func:`posetracker.estimators.rmpe.load_detector` and
:func:`posetracker.estimators.sppe.load_sppe`, and the application's model registry and cache
(which formats are converted to safetensors when cached).

Readers are named ``"package.module:function"`` and imported when first used, so reading this
table imports no runtime. Their signatures:

- detector: ``read(topology: Path, weights: Path | None, *, device, input_size: int | None)
  -> detector`` (an ``nn.Module`` with ``detect(frames, conf=, nms=, max_detections=)``);
- SPPE: ``read(path: Path, weights: Path | None, *, device, refine: str)
  -> (network, (h, w) input size in pixels, name)`` (see :class:`posetracker.estimators.sppe.SPPE`);
- the readers of a format with native ``runtimes`` also take ``backend: str`` (resolved by
  :meth:`ModelFormat.backend`: ``torch`` or one of its runtimes), ``threads: int`` (CPU threads
  per call of a native runtime, 0: its default) and, for an SPPE, ``precision: str`` (``fp32``
  or ``bf16``, for a native runtime; torch precision is the
  :class:`posetracker.estimators.sppe.SPPE`'s); with a native backend they run the graph through
  :class:`posetracker.estimators.runtimes.native.NativeGraph` instead of the torch reader;
- cache converter: ``convert(topology: Path, weights: Path | None, dest: Path) -> None``, writing
  the weights as a ``.safetensors`` file at ``dest``.

Adding a format: its reader(s) in a module of this package, and one :class:`ModelFormat` line in
:data:`MODEL_FORMATS` (``docs/extending.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from posetracker.core.errors import ModelError
from posetracker.core.registry import Registry

#: The stages a model can serve.
STAGES = ("detector", "sppe")


@dataclass(frozen=True)
class ModelFormat:
    """One model file format.

    Attributes:
        name: The format's name (``ModelSpec.format`` in the application's registry).
        what: What its files are, for messages (``"an OpenVINO IR .xml"``).
        topology: Suffixes of the file that describes the network (graph, cfg); empty when the
            weights file is the whole model (a checkpoint).
        weights: Suffixes of its separate weights file, in the order they are looked for
            beside the topology.
        weights_needed: Naming the topology needs a weights file beside it (else the error
            says which one is missing); when off, the weights are not looked for (the reader
            finds them itself, see ``implicit_weights``).
        named_by_weights: A user may name the weights file instead; its topology (same stem)
            must then lie beside it, or the next format in the table is tried.
        implicit_weights: The suffix of the weights the reader takes from beside the topology
            when no weights file is given (TF.js: the ``.bin`` shards), for checksums.
        detector: ``"module:function"`` reading a person detector, or ``None``.
        sppe: ``"module:function"`` reading a single-person pose network, or ``None``.
        converter: ``"module:function"`` turning the files into a ``.safetensors`` of the
            weights for the model cache; ``None``: the files are cached as they are.
        runtimes: The native CPU runtimes that run this format's graphs
            (:mod:`posetracker.estimators.runtimes.native`), fastest first as measured on the
            development CPU (docs/models.md, "CPU backends"): ``estimator.backend=auto`` takes the
            first one installed. Empty: torch only.
    """

    name: str
    what: str
    topology: tuple[str, ...]
    weights: tuple[str, ...] = ()
    weights_needed: bool = False
    named_by_weights: bool = False
    implicit_weights: str | None = None
    detector: str | None = None
    sppe: str | None = None
    converter: str | None = None
    runtimes: tuple[str, ...] = ()

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages this format can serve (a subset of :data:`STAGES`)."""
        return tuple(s for s in STAGES if getattr(self, s) is not None)

    @property
    def main_suffixes(self) -> tuple[str, ...]:
        """Suffixes of the file that names a model of this format (the topology, or the
        weights of a checkpoint format)."""
        return self.topology or self.weights

    def reader(self, stage: str) -> Callable[..., Any]:
        """The function reading this format for ``stage`` (``detector`` or ``sppe``)."""
        ref = getattr(self, stage) if stage in STAGES else None
        if ref is None:
            raise ModelError(f"a {self.name} model ({self.what}) cannot be a "
                             f"{_STAGE_WORDS.get(stage, stage)}")
        return _import(ref)

    def backend(self, requested: str, device: Any, weights: Path | None = None) -> str:
        """The backend that runs a model of this format: ``torch`` or one of :attr:`runtimes`.

        Args:
            requested: ``estimator.backend`` (``auto``, ``torch``, ``openvino``, ``onnxruntime``).
            device: Where the estimator runs (a ``torch.device`` or its name); the native
                runtimes run on the CPU.
            weights: The weights file the model is read with, when given: a native runtime reads
                the format's own files only (not a fine-tuned ``.safetensors``).

        ``auto``: torch on CUDA, else the first installed runtime of :attr:`runtimes`, else torch.
        A runtime named explicitly runs the models it can read; the others (TF.js, Darknet,
        FastPose, a fine-tuned ``.safetensors``; an IR under onnxruntime) stay torch (the
        application says so in one line), so that one setting serves a mixed pair of models.
        Named explicitly on CUDA, or not installed, it raises :class:`ModelError` in one line.
        """
        from posetracker.estimators.runtimes.native import import_runtime, runtime_installed

        on_cpu = getattr(device, "type", str(device)) == "cpu"
        own_files = weights is None or Path(weights).suffix.lower() in self.weights
        if requested == "torch":
            return "torch"
        if requested == "auto":
            usable = [r for r in self.runtimes if runtime_installed(r)] if on_cpu and own_files else []
            return usable[0] if usable else "torch"
        if requested not in self.runtimes or not own_files:
            return "torch"
        if not on_cpu:
            raise ModelError(f"backend {requested} runs on the CPU, not on {device} (use device "
                             "cpu, or backend torch or auto)")
        import_runtime(requested)
        return requested

    def convert(self, topology: Path, weights: Path | None, dest: Path) -> None:
        """Write the weights of the model in ``topology``/``weights`` to ``dest`` as
        safetensors (formats with a ``converter`` only)."""
        if self.converter is None:
            raise ModelError(f"the {self.name} format is cached as it is, not converted")
        _import(self.converter)(topology, weights, dest)


_STAGE_WORDS = {"detector": "person detector", "sppe": "pose estimator"}


def _import(ref: str) -> Callable[..., Any]:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


#: The model formats, in the order :func:`locate` tries them.
MODEL_FORMATS: Registry[ModelFormat] = Registry("model format", (
    ModelFormat("tfjs", "a TF.js graph model.json", (".json",), (".safetensors",),
                named_by_weights=True, implicit_weights=".bin",
                detector="posetracker.estimators.tfjs_detectors:read_detector",
                sppe="posetracker.estimators.sppe:read_movenet",
                converter="posetracker.estimators.runtimes.tfjs.io:save_tfjs_safetensors"),
    ModelFormat("openvino", "an OpenVINO IR .xml", (".xml",), (".bin",), weights_needed=True,
                detector="posetracker.estimators.picodet:read_detector",
                sppe="posetracker.estimators.sppe:read_ir_heatmap", runtimes=("openvino",)),
    ModelFormat("onnx", "an ONNX graph", (".onnx",),
                detector="posetracker.estimators.rtmdet:read_detector",
                runtimes=("onnxruntime", "openvino")),
    ModelFormat("darknet", "a Darknet .cfg", (".cfg",), (".weights", ".safetensors"),
                weights_needed=True, named_by_weights=True,
                detector="posetracker.estimators.runtimes.darknet.network:read_detector",
                converter="posetracker.estimators.runtimes.darknet.network:save_darknet_safetensors"),
    ModelFormat("fastpose", "an AlphaPose FastPose checkpoint", (), (".pth", ".pt", ".safetensors"),
                named_by_weights=True, sppe="posetracker.estimators.sppe:read_fastpose"),
), ModelError)

#: The built-in format names as a type (``ModelSpec.format`` is typed with it).
ModelFormatName = Literal[MODEL_FORMATS.names()]  # type: ignore[valid-type]


def format_of(path: str | Path, stage: str | None = None) -> ModelFormat:
    """The format of a model's main file (a topology, or a checkpoint), by its suffix; with
    ``stage``, among the formats that serve it. :class:`ModelError` when none matches."""
    path = Path(path)
    suffix = path.suffix.lower()
    for fmt in MODEL_FORMATS:
        if suffix in fmt.main_suffixes and (stage is None or stage in fmt.stages):
            return fmt
    wanted = [f for f in MODEL_FORMATS if stage is None or stage in f.stages]
    raise ModelError(f"{path}: not a supported {_STAGE_WORDS.get(stage, 'model')} file "
                     f"(use {_or([f'{f.what} ({_or(f.main_suffixes)})' for f in wanted])})")


def locate(path: str | Path) -> tuple[ModelFormat, Path | None, Path | None]:
    """A model file a user named -> ``(format, topology, weights)``.

    The formats are tried in table order: a topology suffix is the format's (its weights looked
    for beside it when needed); a weights suffix is the format's when its topology lies beside
    it, or when the format has none. A topology without its needed weights, or weights without
    their topology (when no later format takes the file), raise :class:`ModelError` saying which
    file is missing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    missing: str | None = None
    for fmt in MODEL_FORMATS:
        if suffix in fmt.topology:
            weights = None
            if fmt.weights_needed:
                weights = _beside(path, fmt.weights)
                if weights is None:
                    raise ModelError(f"{path}: no {_or([path.stem + s for s in fmt.weights])} "
                                     f"beside {fmt.what}")
            return fmt, path, weights
        if suffix in fmt.weights and (fmt.named_by_weights or not fmt.topology):
            if not fmt.topology:
                return fmt, None, path
            topology = _beside(path, fmt.topology)
            if topology is not None:
                return fmt, topology, path
            missing = missing or (f"{path}: no {_or([path.stem + s for s in fmt.topology])} "
                                  f"beside the {fmt.name} weights")
    if missing is not None:
        raise ModelError(missing)
    known = dict.fromkeys(s for f in MODEL_FORMATS
                          for s in (*f.topology, *(f.weights if f.named_by_weights
                                                   or not f.topology else ())))
    raise ModelError(f"{path}: unknown model file type '{suffix}' (expected {_or(list(known))})")


def _beside(path: Path, suffixes: tuple[str, ...]) -> Path | None:
    for s in suffixes:
        p = path.with_suffix(s)
        if p.is_file():
            return p
    return None


def _or(items: list[str] | tuple[str, ...]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
