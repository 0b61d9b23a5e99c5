"""Fine-tuned SPPE checkpoints (``posetracker train sppe``) as pose models: ``--pose-model CKPT.safetensors``.

A checkpoint stores the trained weights and the name of the network it was trained from
(:mod:`posetracker.estimators.checkpoint`); the network's topology comes from that base model,
resolved through the registry like any ``--pose-model`` name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from posetracker.core.errors import ModelError


def checkpoint_sppe_files(model: str, log: Callable[[str], None] = lambda s: None
                          ) -> tuple[Path, Path] | None:
    """For a training checkpoint: the base network's topology and the checkpoint (the pair
    :func:`posetracker.estimators.sppe.load_sppe` takes as ``path`` and ``weights``); ``None``
    when ``model`` is not a ``.safetensors`` training checkpoint.

    Raises:
        ModelError: an unreadable checkpoint, or one whose base model cannot be found.
    """
    from posetracker.estimators.checkpoint import checkpoint_metadata

    path = Path(str(model)).expanduser()
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    meta = checkpoint_metadata(path)
    if meta is None:
        return None
    base = meta.get("base_model", "")
    from posetracker.app.build import sppe_files

    try:
        topology, _ = sppe_files(base, log)
    except ModelError as e:
        raise ModelError(f"{path}: its base model {base!r} is not available: {e}") from None
    if topology is None or topology.suffix.lower() != ".xml":
        raise ModelError(f"{path}: base model {base!r} is not a heatmap network in OpenVINO IR")
    return topology, path
