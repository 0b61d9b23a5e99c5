"""TF.js graph model files: ``model.json`` (GraphDef topology + weights manifest), the ``.bin``
weight shards (dequantized), and the GraphDef nodes as plain records."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posetracker.core.errors import ModelError

# Byte sizes and numpy types of the TF.js manifest dtypes (stored, i.e. before dequantization).
_NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "int8": np.dtype("i1"),
    "int16": np.dtype("<i2"),
    "bool": np.dtype("u1"),
}


def _load_json(model_json: Path) -> dict[str, Any]:
    model_json = Path(model_json)
    try:
        with open(model_json, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise ModelError(f"{model_json}: TF.js model file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{model_json}: not a TF.js model.json ({e})") from None
    if not isinstance(doc, dict) or "modelTopology" not in doc or "weightsManifest" not in doc:
        raise ModelError(f"{model_json}: not a TF.js graph model (needs modelTopology and weightsManifest)")
    return doc


def read_tfjs_topology(model_json: Path) -> dict[str, Any]:
    """The graph of a TF.js graph model: ``{"node": [GraphDef node dicts], ...}``.

    Each node has ``name``, ``op``, optional ``input`` (names, ``"^name"`` for control inputs,
    ``"name:k"`` for the k-th output of a multi-output node) and ``attr``. The topology of a
    TF.js file also carries ``signature`` (inputs/outputs), copied here under ``"signature"``.
    """
    doc = _load_json(model_json)
    topology = dict(doc["modelTopology"])
    if "node" not in topology:
        raise ModelError(f"{model_json}: modelTopology has no 'node' list (layers models are not supported)")
    topology["signature"] = doc.get("signature") or {}
    return topology


def _dequantize(raw: np.ndarray, spec: dict[str, Any], quant: dict[str, Any] | None) -> np.ndarray:
    """Stored values -> values of the manifest dtype (float32 for quantized floats)."""
    if quant is None:
        if spec["dtype"] == "bool":
            return raw.astype(bool)
        return raw
    qdtype = quant["dtype"]
    if qdtype == "float16":
        return raw.astype(np.float32)
    if qdtype in ("uint8", "uint16"):
        # Affine quantization: value = q * scale + min (TF.js writes scale and min per tensor).
        values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
        return values.astype(np.int32) if spec["dtype"] == "int32" else values
    raise ModelError(f"unsupported TF.js weight quantization {qdtype!r} for {spec['name']}")


def read_tfjs_weights(model_json: Path) -> dict[str, np.ndarray]:
    """Read every weight of a TF.js graph model, in manifest order.

    Parameters
    ----------
    model_json:
        Path of ``model.json``; the ``.bin`` shards named in ``weightsManifest[*].paths`` are read
        from the same folder. The shards of one group are concatenated, then split by the weight
        specs of that group in order.

    Returns
    -------
    ``{name: array}`` with the manifest shapes. Float16-quantized weights (``quantization:
    {dtype: float16}``) are plain IEEE halves, returned as float32; uint8/uint16 affine
    quantization (``scale``, ``min``) is dequantized to float32; int32 stays int32 (4 bytes each).

    Raises
    ------
    ModelError
        Missing shard, a shard of the wrong size, or an unsupported dtype/quantization.
    """
    model_json = Path(model_json)
    doc = _load_json(model_json)
    weights: dict[str, np.ndarray] = {}
    for group in doc["weightsManifest"]:
        chunks = []
        for rel in group["paths"]:
            shard = model_json.parent / rel
            try:
                chunks.append(shard.read_bytes())
            except FileNotFoundError:
                raise ModelError(f"{shard}: weight file of {model_json.name} not found") from None
        buffer = b"".join(chunks)
        offset = 0
        for spec in group["weights"]:
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else spec["dtype"]
            if stored not in _NUMPY_DTYPES:
                raise ModelError(f"{model_json}: weight {spec['name']} has unsupported dtype {stored!r}")
            dtype = _NUMPY_DTYPES[stored]
            shape = tuple(int(d) for d in spec["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            nbytes = count * dtype.itemsize
            if offset + nbytes > len(buffer):
                raise ModelError(
                    f"{model_json}: weight data too short at {spec['name']} "
                    f"(needs {offset + nbytes} bytes, shards hold {len(buffer)}); the .bin is truncated or corrupt")
            raw = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)
            weights[spec["name"]] = np.array(_dequantize(raw, spec, quant))  # own, writable copy
            offset += nbytes
        if offset != len(buffer):
            raise ModelError(f"{model_json}: weight shards hold {len(buffer)} bytes, manifest describes {offset}")
    return weights


# --------------------------------------------------------------------------------------------
# Graph nodes and attributes
# --------------------------------------------------------------------------------------------


@dataclass
class _Node:
    """One GraphDef node with data inputs as value keys (``"name"`` or ``"name:k"``)."""

    name: str
    op: str
    inputs: list[str]
    attr: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """Decoded attribute: int, float, bool, str, dtype name or list of those."""
        if key not in self.attr:
            return default
        return _decode_attr(self.attr[key])


def _decode_attr(value: dict[str, Any]) -> Any:
    if "list" in value:
        lst = value["list"]
        for kind in ("i", "f", "b", "s", "type"):
            if kind in lst:
                return [_decode_attr({kind: v}) for v in lst[kind]]
        return []
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8")
    if "type" in value:
        return value["type"]
    return value


def _value_key(ref: str) -> str:
    """GraphDef input reference -> value key; ``"x:0"`` and ``"x"`` are the same value."""
    return ref[:-2] if ref.endswith(":0") else ref


def _parse_nodes(topology: dict[str, Any]) -> list[_Node]:
    nodes = []
    for raw in topology["node"]:
        inputs = [_value_key(i) for i in raw.get("input", []) if not i.startswith("^")]
        nodes.append(_Node(raw["name"], raw["op"], inputs, raw.get("attr", {})))
    return nodes


def _placeholder_shape(node: _Node) -> tuple[int, ...] | None:
    shape = node.attr.get("shape", {}).get("shape")
    if shape is None or shape.get("unknownRank"):
        return None
    return tuple(int(d.get("size", -1)) for d in shape.get("dim", []))


def _producer(key: str) -> str:
    return key.rsplit(":", 1)[0] if ":" in key and key.rsplit(":", 1)[1].isdigit() else key


def save_tfjs_safetensors(model_json: Path, weights: Path | None, dest: Path) -> None:
    """The ``tfjs`` format's cache converter: every weight of the graph (:func:`read_tfjs_weights`,
    dequantized from the ``.bin`` shards beside ``model_json``; ``weights`` is not used) as
    safetensors at ``dest``."""
    from safetensors.numpy import save_file

    # np.require keeps 0-d scalars 0-d (np.ascontiguousarray would make them (1,)).
    tensors = {k: np.require(v, requirements="C") for k, v in read_tfjs_weights(model_json).items()}
    save_file(tensors, str(dest))
