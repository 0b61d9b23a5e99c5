"""Single-person pose estimators (SPPE) behind one interface: MoveNet and FastPose.

:class:`SPPE` wraps a network that maps person crops ``(m, 3, h, w)`` (float RGB 0..255) to
keypoints in crop pixels and scores, adds batching, optional flip testing and reduced precision, and
reports what the joint-candidate association needs (raw heatmaps, multi-peak candidates).

The wrapped network is any ``nn.Module`` whose ``forward(crops, **options)`` returns either a
mapping or an object with ``keypoints`` ``(m, k, 2)`` crop pixels and ``scores`` ``(m, k)``, and,
when asked for, ``heatmaps`` ``(m, k, hh, hw)`` (with ``offsets`` ``(m, k, hh, hw, 2)`` when the
network regresses sub-cell offsets) and ``candidates`` (see :class:`SPPEOutput`).

Heatmap cell ``i`` lies at crop edge coordinate ``i * stride`` (pixel-index ``i * stride - 0.5``),
the convention of MoveNet's decode and AlphaPose's FastPose decode; flip testing keeps it (see
:meth:`SPPE._run_flip`).

Loading (:func:`load_sppe`) takes model *files*; registry names are resolved by the application
(:func:`posetracker.app.build.build_estimator`), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from posetracker.core.config import configured
from posetracker.core.errors import ModelError
from posetracker.core.schemas import COCO17, KeypointSchema
from posetracker.estimators.config import SPPEConfig
from posetracker.estimators.heatmaps import heatmap_peaks


@dataclass
class SPPEOutput:
    """SPPE results for ``m`` crops.

    Attributes:
        keypoints: ``(m, k, 2)`` float32 joint xy in crop pixels (pixel-index coordinates).
        scores: ``(m, k)`` float32 joint confidences in [0, 1].
        heatmaps: ``(m, k, hh, hw)`` raw heatmaps (model's own scale), or ``None``.
        heatmap_stride: Crop pixels per heatmap cell (``h / hh``).
        heatmap_offset: Crop pixel (pixel-index coordinates) of heatmap cell 0: cell ``i`` lies at
            ``i * heatmap_stride + heatmap_offset`` (-0.5 for MoveNet and FastPose, 0 for
            PP-TinyPose/HRNet-style targets).
        offsets: ``(m, k, hh, hw, 2)`` float32 sub-cell offsets in cells, x first (MoveNet's
            regression: joint = cell + offset at any cell), with the heatmaps when the network
            gives them; else ``None``.
        candidates: ``(m, k, c, 3)`` up to ``c`` peaks per joint as x, y (crop pixels), score
            (score 0 = no peak), or ``None``.
    """

    keypoints: torch.Tensor
    scores: torch.Tensor
    heatmaps: torch.Tensor | None = None
    heatmap_stride: float = 1.0
    candidates: torch.Tensor | None = None
    heatmap_offset: float = -0.5
    offsets: torch.Tensor | None = None


#: Torch types of the precisions.
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _cpu_flags() -> set[str]:
    """The Linux CPU flags of ``/proc/cpuinfo`` (elsewhere none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return set()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tile units for bfloat16 (``amx_bf16``): matrix products in
    bfloat16 at several times the float32 rate, where AVX512_BF16 alone only converts and dots."""
    return "amx_bf16" in _cpu_flags()


def resolve_precision(requested: str, device: torch.device | str) -> str:
    """``estimator.precision`` on ``device`` -> ``fp32``, ``fp16`` or ``bf16``.

    ``auto`` (:class:`posetracker.estimators.config.EstimatorConfig`) is ``bf16`` on a CPU with
    AMX and ``fp32`` elsewhere. An explicit precision the device cannot run (fp16 on the CPU,
    bf16 on a CPU without bfloat16 arithmetic) raises :class:`ModelError`.
    """
    on_cuda = torch.device(device).type == "cuda"
    if requested == "auto":
        return "bf16" if not on_cuda and cpu_has_amx() else "fp32"
    if requested == "fp16" and not on_cuda:
        raise ModelError("precision fp16 runs on CUDA only (on the CPU use fp32, or bf16 where "
                         "the CPU has AVX512_BF16 or AMX)")
    if requested == "bf16" and not on_cuda and not cpu_has_bf16():
        raise ModelError("precision bf16: this CPU has no bfloat16 arithmetic (AVX512_BF16 or "
                         "AMX); use fp32")
    if requested not in _DTYPES:
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {requested!r}")
    return requested


def _field(out: Any, name: str):
    """Read ``name`` from a network output: a mapping, an object, or a ``(keypoints, scores)`` tuple."""
    if isinstance(out, dict):
        return out.get(name)
    if isinstance(out, (tuple, list)):
        order = ("keypoints", "scores")
        return out[order.index(name)] if name in order else None
    return getattr(out, name, None)


class SPPE:
    """Batched single-person pose estimation on crops.

    Args:
        network: The pose network (see the module docstring); put in eval mode here.
        input_size: ``(h, w)`` crop size the network takes, pixels.
        config: ``flip_test`` (also run mirrored crops and average with the un-mirrored result)
            and ``batch_size`` (most crops per forward call) of
            :class:`posetracker.estimators.config.SPPEConfig`; ``None``: its defaults.
        schema: Keypoint schema of its outputs (COCO-17 for MoveNet and FastPose).
        name: For reports.
        dtype: The torch type the network and its input are cast to: float32, bfloat16 or
            float16 (CUDA only; ``.to("cpu")`` goes back to float32). A network whose graph a
            native runtime runs takes float32 (its precision was given when it was compiled).
        **overrides: Fields of ``config`` to replace (``SPPE(net, size, flip_test=False)``),
            checked by the config.
    """

    def __init__(self, network: nn.Module, input_size: tuple[int, int],
                 config: SPPEConfig | None = None, *, schema: KeypointSchema = COCO17,
                 name: str = "sppe", dtype: torch.dtype = torch.float32, **overrides: Any):
        config = configured(SPPEConfig, config, overrides)
        self.network = network.eval()
        self.input_size = tuple(input_size)
        self.schema = schema
        self.flip_test = config.flip_test
        self.batch_size = config.batch_size
        self.name = name
        tensors = [*network.parameters(), *network.buffers()]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.dtype = dtype
        if dtype == torch.float16 and self.device.type != "cuda":
            raise ModelError("precision fp16 runs on CUDA only")
        if dtype != torch.float32:
            self.network.to(dtype)

    @property
    def backend(self) -> str:
        """What runs the network's graph: ``torch``, ``openvino`` or ``onnxruntime``."""
        from posetracker.estimators.runtimes.native import backend_of

        return backend_of(self.network)

    @property
    def precision(self) -> str:
        """The arithmetic the network runs in: ``fp32``, ``bf16`` or ``fp16``."""
        from posetracker.estimators.runtimes.native import NativeGraph

        native = [m.precision for m in self.network.modules() if isinstance(m, NativeGraph)]
        return native[0] if native else next(k for k, v in _DTYPES.items() if v == self.dtype)

    def to(self, device: torch.device | str) -> SPPE:
        self.network.to(device)
        self.device = torch.device(device)
        if self.dtype == torch.float16 and self.device.type != "cuda":
            self.dtype = torch.float32   # CPU float16 is slow and inexact
            self.network.float()
        return self

    def _run(self, crops: torch.Tensor, heatmaps: bool, candidates: int,
             flip: bool = False) -> SPPEOutput:
        x = crops.to(self.device, self.dtype)
        opts = {"flip": True} if flip else {}
        if heatmaps:
            opts["return_heatmaps"] = True
        if candidates:
            opts["candidates"] = candidates
        out = self.network(x, **opts)
        hm = _field(out, "heatmaps") if heatmaps else None
        off = _field(out, "offsets") if heatmaps else None
        cell0 = _field(out, "heatmap_offset") if heatmaps else None
        return SPPEOutput(
            keypoints=_field(out, "keypoints").float(),
            scores=_field(out, "scores").float(),
            heatmaps=None if hm is None else hm.float(),
            heatmap_stride=float(self.input_size[0] / hm.shape[-2]) if hm is not None else 1.0,
            candidates=_field(out, "candidates") if candidates else None,
            offsets=None if off is None else off.float(),
            heatmap_offset=-0.5 if cell0 is None else float(cell0),
        )

    def _run_flip(self, crops: torch.Tensor, heatmaps: bool, candidates: int) -> SPPEOutput:
        if self.flip_test and getattr(self.network, "flips_heatmaps", False):
            # Heatmap nets average the two views' maps before decoding (sharper than averaging
            # decoded joints): one call with the mirrored crops in the same batch.
            return self._run(crops, heatmaps, candidates, flip=True)
        out = self._run(crops, heatmaps, candidates)
        if not self.flip_test:
            return out
        w = self.input_size[1]
        perm = torch.as_tensor(self.schema.flip_permutation, device=out.keypoints.device)
        fl = self._run(torch.flip(crops, dims=[3]), heatmaps, 0)
        # Un-mirror: x -> w - 1 - x in pixel-index coordinates, and swap left/right joints.
        kp_f = fl.keypoints[:, perm].clone()
        kp_f[..., 0] = (w - 1) - kp_f[..., 0]
        sc_f = fl.scores[:, perm]
        # Score-weighted average of the two views, so a confident view dominates.
        wa, wb = out.scores.clamp_min(1e-6), sc_f.clamp_min(1e-6)
        out.keypoints = (out.keypoints * wa[..., None] + kp_f * wb[..., None]) / (wa + wb)[..., None]
        out.scores = (out.scores + sc_f) / 2
        if heatmaps and out.heatmaps is not None and fl.heatmaps is not None:
            out.heatmaps = (out.heatmaps + unflip_cells(fl.heatmaps[:, perm], out.heatmaps, 3)) / 2
            if out.offsets is not None and fl.offsets is not None:
                # A mirrored offset points the other way in x: negate dx, then move the cells back.
                mirrored = fl.offsets[:, perm] * torch.tensor([-1.0, 1.0], device=fl.offsets.device)
                out.offsets = (out.offsets + unflip_cells(mirrored, out.offsets, 3)) / 2
        return out

    @torch.inference_mode()
    def __call__(self, crops: torch.Tensor, *, heatmaps: bool = False, candidates: int = 0
                 ) -> SPPEOutput:
        """Pose of every crop ``(m, 3, h, w)`` float RGB 0..255, in chunks of ``batch_size``."""
        m = crops.shape[0]
        k = self.schema.num_keypoints
        if m == 0:
            return SPPEOutput(torch.zeros(0, k, 2), torch.zeros(0, k))
        parts = [self._run_flip(crops[s: s + self.batch_size], heatmaps, candidates)
                 for s in range(0, m, self.batch_size)]
        if len(parts) == 1:
            return parts[0]

        def cat(name):
            vals = [getattr(p, name) for p in parts]
            return None if vals[0] is None else torch.cat(vals)
        return SPPEOutput(keypoints=cat("keypoints"), scores=cat("scores"),
                          heatmaps=cat("heatmaps"), heatmap_stride=parts[0].heatmap_stride,
                          candidates=cat("candidates"), heatmap_offset=parts[0].heatmap_offset,
                          offsets=cat("offsets"))


def unflip_cells(mirrored: torch.Tensor, own: torch.Tensor, dim: int) -> torch.Tensor:
    """Maps computed on mirrored crops, brought back onto the original crop's cells along ``dim``.

    Cell ``i`` sits at crop edge coordinate ``i * stride`` (module docstring), and mirroring maps
    edge coordinate ``e`` to ``w - e``: the mirrored cell ``c`` is the original cell ``hw - c``,
    not ``hw - 1 - c`` (a plain ``torch.flip`` would shift every joint by one cell). Cell 0 has no
    mirrored counterpart (it would be cell ``hw``); it takes ``own``'s value there, so averaging
    keeps the un-mirrored view alone at that column.

    Args:
        mirrored: Maps of the mirrored crops, joints already swapped left/right.
        own: The un-mirrored maps (same shape), for cell 0.
        dim: The x (column) dimension.
    """
    back = torch.roll(torch.flip(mirrored, dims=[dim]), shifts=1, dims=dim)
    first = [slice(None)] * back.dim()
    first[dim] = 0
    back[tuple(first)] = own[tuple(first)]
    return back


class MoveNetNet(nn.Module):
    """MoveNet SinglePose (:class:`posetracker.estimators.movenet.MoveNet`) as an SPPE network.

    MoveNet's coordinates are fractions of the crop (0 = the crop's outer edge) times its side;
    in pixel-index coordinates that is 0.5 pixel less. Heatmaps are MoveNet's sigmoid maps (grid
    of stride 4), returned with its sub-cell offsets ``(m, k, hh, hw, 2)`` (cells, x first);
    candidates are its offset-refined local maxima.
    """

    def __init__(self, movenet: nn.Module):
        super().__init__()
        self.movenet = movenet
        self.input_size = movenet.input_size

    def forward(self, x: torch.Tensor, return_heatmaps: bool = False, candidates: int = 0) -> dict:
        heads = self.movenet.heads(x)
        res = self.movenet.decode(heads, return_maps=return_heatmaps)
        out = {"keypoints": res.keypoints - 0.5, "scores": res.scores}
        if return_heatmaps:
            out["heatmaps"] = res.heatmaps
            # (m, k, 2, hh, hw) -> (m, k, hh, hw, 2): cells, x first, as the association reads them
            out["offsets"] = res.offsets.permute(0, 1, 3, 4, 2)
        if candidates:
            c = self.movenet.candidates(heads, k_max=candidates)
            out["candidates"] = torch.cat([c.keypoints - 0.5, c.scores[..., None]], dim=-1)
        return out


class FastPoseNet(nn.Module):
    """AlphaPose's FastPose as an SPPE network: normalisation, heatmaps, and its decoding
    (arg-max + quarter-cell offset towards the higher neighbour).

    Heatmap cell ``x`` maps to crop pixel ``x * stride - 0.5``: AlphaPose puts cell ``x`` at
    ``x1 + x * box_w / W`` of the crop box, i.e. at edge coordinate ``x * stride``.
    """

    def __init__(self, fastpose: nn.Module):
        super().__init__()
        self.fastpose = fastpose
        self.input_size = (256, 192)

    def forward(self, x: torch.Tensor, return_heatmaps: bool = False, candidates: int = 0) -> dict:
        from posetracker.estimators.fastpose import FastPose, heatmaps_to_coords

        hm = self.fastpose(FastPose.normalize(x).to(x.dtype))
        stride = x.shape[-2] / hm.shape[-2]
        cells, scores = heatmaps_to_coords(hm.float())
        out = {"keypoints": cells * stride - 0.5, "scores": scores.clamp(0, 1)}
        if return_heatmaps:
            out["heatmaps"] = hm
        if candidates:
            out["candidates"] = heatmap_peaks(hm.float(), candidates, stride, offset=-0.5)
        return out


def load_sppe(path: str | Path, *, weights: str | Path | None = None,
              device: torch.device | str = "cpu", flip_test: bool = False, precision: str = "fp32",
              backend: str = "torch", threads: int = 0, batch_size: int = 64,
              refine: str = "dark") -> SPPE:
    """Build the SPPE stored in model files (registry names are the application's business:
    :func:`posetracker.app.build.sppe_files` resolves them to these paths).

    Args:
        path: A MoveNet TF.js ``model.json`` (its weights in the ``.bin`` beside it, or in a
            ``.safetensors`` of the same stem, as ``posetracker models`` caches them), a
            heatmap SPPE in OpenVINO IR (``.xml``, its ``.bin`` beside it: PP-TinyPose), or a
            FastPose checkpoint ``.pth``/``.pt``/``.safetensors``.
        weights: For MoveNet, a ``.safetensors`` of the dequantized weights to use instead; for
            an IR, its ``.bin`` when not beside the ``.xml``.
        device, flip_test, batch_size: See :class:`SPPE`.
        precision: ``estimator.precision`` (:func:`resolve_precision`); default float32.
        backend: ``estimator.backend``
            (:meth:`posetracker.estimators.model_formats.ModelFormat.backend`); default torch.
        threads: CPU threads per call of a native backend (0: the runtime's default).
        refine: Sub-cell refinement of heatmap SPPEs (:func:`posetracker.estimators.heatmaps.decode_heatmaps`).
    """
    from posetracker.estimators.model_formats import format_of

    path = Path(path)
    fmt = format_of(path, "sppe")
    weights = None if weights is None else Path(weights)
    backend = fmt.backend(backend, device, weights)
    precision = resolve_precision(precision, device)
    native = {"backend": backend, "precision": precision, "threads": threads} if fmt.runtimes \
        else {}
    net, size, name = fmt.reader("sppe")(path, weights, device=device, refine=refine, **native)
    return SPPE(net.to(device), size, flip_test=flip_test, batch_size=batch_size, name=name,
                dtype=_DTYPES[precision] if backend == "torch" else torch.float32)


def read_movenet(path: Path, weights: Path | None, *, device: torch.device | str = "cpu",
                 refine: str = "dark") -> tuple[nn.Module, tuple[int, int], str]:
    """MoveNet from its TF.js ``model.json`` (weights: the ``.bin`` beside it, or a
    ``.safetensors`` of the dequantized weights) as an SPPE network (the ``tfjs`` format's
    reader; ``refine`` does not apply)."""
    from posetracker.estimators.movenet import MoveNet

    tensors = None
    if weights is not None:
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(weights))
        except Exception as e:  # OSError, or safetensors' own error types
            raise ModelError(f"cannot read {weights}: {e}") from None
    movenet = MoveNet.from_tfjs(path, device=device, weights=tensors)
    return MoveNetNet(movenet), (movenet.input_size, movenet.input_size), \
        f"movenet-{movenet.variant}"


def read_fastpose(path: Path, weights: Path | None, *, device: torch.device | str = "cpu",
                  refine: str = "dark") -> tuple[nn.Module, tuple[int, int], str]:
    """AlphaPose's FastPose from its checkpoint ``path`` (``.pth``/``.pt``/``.safetensors``) as
    an SPPE network (the ``fastpose`` format's reader; it decodes its own heatmaps)."""
    from posetracker.estimators.fastpose import FastPose

    return FastPoseNet(FastPose.from_checkpoint(path)), (256, 192), "fastpose"


def read_ir_heatmap(xml: Path, weights: Path | None, *, device: torch.device | str = "cpu",
                    refine: str = "dark", backend: str = "torch", precision: str = "fp32",
                    threads: int = 0) -> tuple[nn.Module, tuple[int, int], str]:
    """A COCO-17 top-down heatmap net in OpenVINO IR (PP-TinyPose) as a :class:`HeatmapNet` (the
    ``openvino`` format's SPPE reader): input ``(1, 3, h, w)``, one 4-D output
    ``(1, 17, h / s, w / s)`` (the heatmaps); ``weights`` a ``.safetensors`` fine-tuned from it
    (``posetracker train sppe``; torch only) or the IR's ``.bin``. ``backend``: ``torch`` (this
    package's IR reader) or ``openvino`` (:class:`posetracker.estimators.runtimes.native.NativeGraph`
    with ``precision``, on ``threads`` CPU threads)."""
    from posetracker.estimators.heatmaps import HeatmapNet

    trained = weights is not None and Path(weights).suffix.lower() == ".safetensors"
    if backend == "torch":
        from posetracker.estimators.runtimes.openvino_ir import load_openvino_ir

        module = load_openvino_ir(xml, None if trained else weights)
    else:
        from posetracker.estimators.runtimes.native import NativeGraph

        module = NativeGraph(backend, xml, weights, precision=precision, threads=threads)
    if trained:  # a fine-tuned checkpoint of this base network (``posetracker train sppe``)
        from posetracker.estimators.checkpoint import apply_sppe_checkpoint

        apply_sppe_checkpoint(module, weights, xml)
    shape = tuple(module.input_shape)
    if len(shape) != 4 or shape[1] != 3:
        raise ModelError(f"{xml}: input {module.input_name} has shape {shape}, not (N, 3, H, W)")
    size = (int(shape[2]), int(shape[3]))
    x = torch.zeros(1, 3, *size)
    with torch.inference_mode():
        outs = module(x)
    maps = [n for n, t in outs.items() if t.dim() == 4]
    if len(maps) != 1 or outs[maps[0]].shape[1] != COCO17.num_keypoints:
        raise ModelError(f"{xml}: expected one heatmap output (1, {COCO17.num_keypoints}, h, w); "
                         f"outputs: {', '.join(f'{n} {tuple(t.shape)}' for n, t in outs.items())}")
    module.select_outputs([maps[0]])
    # PP-TinyPose was trained on Gaussian targets of sigma 2 cells (its export's config).
    net = HeatmapNet(module, size, flip_permutation=COCO17.flip_permutation, output=maps[0],
                     refine=refine, sigma=2.0)
    return net, size, xml.stem
