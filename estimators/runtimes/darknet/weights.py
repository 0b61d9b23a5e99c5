"""Darknet ``.weights`` files: a version header, then every convolutional layer's float32
parameters in file order (see the package docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from posetracker.core.errors import ModelError

if TYPE_CHECKING:
    from posetracker.estimators.runtimes.darknet.network import DarknetYolo


def _header_layout(major: int, minor: int) -> tuple[int, np.dtype]:
    """(header bytes, dtype of ``seen``) for a ``.weights`` version."""
    if major * 10 + minor >= 2 and major < 1000 and minor < 1000:
        return 20, np.dtype("<i8")
    return 16, np.dtype("<i4")


def load_darknet_weights(model: DarknetYolo, path: str | Path) -> tuple[int, int, int, int]:
    """Load a Darknet ``.weights`` file into ``model`` in place; returns (major, minor,
    revision, seen).

    The file must hold exactly the parameters that the cfg implies; otherwise
    :class:`ModelError` says how many floats were expected and found.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read Darknet weights {path}: {e.strerror or e}") from None
    if len(data) < 16:
        raise ModelError(f"{path} is too short to be a Darknet .weights file ({len(data)} bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    header, seen_dtype = _header_layout(major, minor)
    seen = int(np.frombuffer(data, seen_dtype, 1, offset=12)[0])
    expected = model.num_weight_floats()
    body = len(data) - header
    if body != 4 * expected:
        raise ModelError(
            f"{path} holds {body} bytes of parameters after its {header}-byte header, but the cfg "
            f"implies {expected} float32 values ({4 * expected} bytes): the weights do not belong "
            f"to this cfg, or the file is truncated")
    values = torch.from_numpy(np.frombuffer(data, "<f4", expected, offset=header).copy())
    pos = 0

    def take(t: torch.Tensor) -> None:
        nonlocal pos
        n = t.numel()
        t.copy_(values[pos:pos + n].view_as(t))
        pos += n

    with torch.no_grad():
        for layer in model.conv_layers():
            if layer.bn is not None:
                for t in (layer.bn.bias, layer.bn.weight, layer.bn.running_mean,
                          layer.bn.running_var):
                    take(t)
            else:
                take(layer.conv.bias)
            take(layer.conv.weight)
    return major, minor, revision, seen


def write_darknet_weights(model: DarknetYolo, path: str | Path,
                          version: tuple[int, int, int] = (0, 2, 5), seen: int = 0) -> None:
    """Write ``model``'s parameters as a Darknet ``.weights`` file (the inverse of
    :func:`load_darknet_weights`)."""
    major, minor, revision = version
    header, seen_dtype = _header_layout(major, minor)
    parts = [np.array([major, minor, revision], "<i4").tobytes(),
             np.array([seen], seen_dtype).tobytes()]
    for layer in model.conv_layers():
        tensors = ((layer.bn.bias, layer.bn.weight, layer.bn.running_mean, layer.bn.running_var)
                   if layer.bn is not None else (layer.conv.bias,))
        for t in (*tensors, layer.conv.weight):
            parts.append(t.detach().cpu().numpy().astype("<f4").tobytes())
    Path(path).write_bytes(b"".join(parts))
