"""Reading ONNX files: the ``ModelProto`` parsed and checked, tensors and attributes as torch
values, nodes as plain records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posetracker.core.errors import ModelError


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def read_onnx(path: str | Path) -> Any:
    """Parse and check an ONNX file -> ``onnx.ModelProto``; ModelError naming the file otherwise."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: ONNX model not found")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # DecodeError, ValidationError, OSError: all mean "not this file"
        raise ModelError(f"{path}: not a valid ONNX model (truncated or corrupt?): "
                         f"{type(e).__name__}: {_one_line(e)[:200]}") from None
    return model


def _to_tensor(proto: Any) -> torch.Tensor:
    """A TensorProto -> CPU tensor (a copy; bool, ints, floats; float64 kept)."""
    from onnx import numpy_helper

    arr = np.array(numpy_helper.to_array(proto))  # writable copy (to_array may return a view)
    if arr.dtype == np.uint16 or arr.dtype == np.uint32 or arr.dtype == np.uint64:
        arr = arr.astype(np.int64)  # torch lacks these as general-purpose dtypes
    return torch.from_numpy(arr)


def _torch_dtype(onnx_type: int) -> torch.dtype:
    from onnx import helper

    np_type = np.dtype(helper.tensor_dtype_to_np_dtype(onnx_type))
    if np_type in (np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.uint64)):
        return torch.int64
    return torch.from_numpy(np.zeros(0, np_type)).dtype


@dataclass
class _Node:
    """One ONNX graph node as read from the file: its op type, value names in and out, and
    attributes (decoded)."""

    name: str
    op: str
    inputs: list[str]    # "" = optional input left out
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


def _attr_value(attr: Any) -> Any:
    from onnx import AttributeProto, helper

    value = helper.get_attribute_value(attr)
    if attr.type == AttributeProto.TENSOR:
        return _to_tensor(value)
    return value.decode() if isinstance(value, bytes) else value


def _read_nodes(graph: Any) -> list[_Node]:
    nodes = []
    for i, n in enumerate(graph.node):
        op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        nodes.append(_Node(n.name or f"{n.op_type}_{i}", op, list(n.input), list(n.output), attrs))
    return nodes
