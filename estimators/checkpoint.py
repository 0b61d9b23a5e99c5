"""Fine-tuned SPPE checkpoints: one ``.safetensors`` file with the trained weights and a record.

A checkpoint written by ``posetracker train sppe`` holds

- ``sppe.<name>``: every parameter of the heatmap network's backbone (the IR module's
  ``state_dict``), float32;
- ``stn.<name>``: the trained :class:`~posetracker.estimators.transform.STN`, when trained with it;
- ``optim.<i>.<slot>``: the optimizer's per-parameter state, so a run can resume exactly;

and string metadata (safetensors' header) describing it: ``format`` = :data:`FORMAT`, the base
model (``base_model``: the registry name or file name it was trained from, ``base_sha256`` of the
base network's topology file), ``schema``, ``input_size`` ``"HxW"``, ``heatmap_size`` ``"hxw"``,
``step``, and JSON strings ``settings`` (the training settings) and ``data`` (sha256 of every
annotation file used).

The network itself is not stored: it is the base model's topology with these weights. Resolving
the base model (a registry name) is the application's job; this module reads and writes files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.core.fileio import sha256_file

#: ``format`` metadata of an SPPE training checkpoint.
FORMAT = "posetracker-sppe-checkpoint/1"
SPPE_PREFIX = "sppe."
STN_PREFIX = "stn."
OPTIM_PREFIX = "optim."


def checkpoint_metadata(path: str | Path) -> dict[str, str] | None:
    """The metadata of an SPPE training checkpoint, or ``None`` when ``path`` is a ``.safetensors``
    of something else (e.g. a FastPose state dict). Reads the header only.

    Raises:
        ModelError: the file cannot be read as safetensors.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # OSError, or safetensors' own error types
        raise ModelError(f"cannot read checkpoint {path}: {e}") from None
    return dict(meta) if meta.get("format") == FORMAT else None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors (CPU) and the metadata of an SPPE training checkpoint.

    Raises:
        ModelError: unreadable file, or a safetensors file that is not such a checkpoint.
    """
    from safetensors.torch import load_file

    meta = checkpoint_metadata(path)
    if meta is None:
        raise ModelError(f"{path}: not a posetracker SPPE checkpoint (no '{FORMAT}' metadata)")
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise ModelError(f"cannot read checkpoint {path}: {e}") from None
    return tensors, meta


def write_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor],
                     metadata: dict[str, str]) -> None:
    """Write tensors and metadata to ``path`` atomically (a reader never sees a partial file)."""
    from safetensors.torch import save_file

    from posetracker.core.fileio import atomic_write

    meta = {"format": FORMAT, **{k: str(v) for k, v in metadata.items()}}
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata=meta))


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_module_weights(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str,
                        source: str | Path) -> None:
    """Copy the checkpoint's ``prefix`` entries into ``module`` (names and shapes must match
    exactly: a checkpoint of another base network is refused)."""
    state = prefixed(tensors, prefix)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ModelError(f"{source}: weights do not match the base network ({len(missing)} missing, "
                         f"{len(extra)} unknown, e.g. {(missing or extra)[0]})")
    for name, t in state.items():
        if tuple(t.shape) != tuple(own[name].shape):
            raise ModelError(f"{source}: {name} has shape {tuple(t.shape)}, the base network "
                             f"{tuple(own[name].shape)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def apply_sppe_checkpoint(backbone: nn.Module, path: str | Path, topology: str | Path | None = None
                          ) -> dict[str, str]:
    """Load a checkpoint's ``sppe.*`` weights into the base network ``backbone``; returns the
    metadata. With ``topology`` (the base network's file), refuse a checkpoint trained from a
    different base (its ``base_sha256`` differs)."""
    tensors, meta = read_checkpoint(path)
    if topology is not None and meta.get("base_sha256") not in (None, "", sha256_file(topology)):
        raise ModelError(f"{path}: trained from {meta.get('base_model')} "
                         f"(sha256 {meta.get('base_sha256', '')[:12]}), not from {Path(topology).name}")
    load_module_weights(backbone, tensors, SPPE_PREFIX, path)
    return meta


def load_checkpoint_stn(path: str | Path):
    """The trained :class:`~posetracker.estimators.transform.STN` stored in a checkpoint (eval
    mode, CPU), or ``None`` when it was trained without one or ``path`` is another kind of
    ``.safetensors`` (e.g. MoveNet's cached weights)."""
    from posetracker.estimators.transform import STN

    if checkpoint_metadata(path) is None:
        return None
    tensors, _ = read_checkpoint(path)
    if not prefixed(tensors, STN_PREFIX):
        return None
    stn = STN()
    load_module_weights(stn, tensors, STN_PREFIX, path)
    return stn.eval()
