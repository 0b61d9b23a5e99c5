"""OpenVINO IR files: the ``.xml`` network (layers, ports, edges) and the ``Const`` values of
the ``.bin`` weight file, read with ``xml.etree`` (no OpenVINO needed).

Every ``Const`` is checked against the file (offset, size, element type: f16/bf16/f32/f64,
signed and unsigned ints, boolean); any mismatch is one ModelError line naming the file and layer.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posetracker.core.errors import ModelError

# IR element type -> (numpy dtype as stored in the .bin, torch dtype of the value).
_ELEMENT_TYPES: dict[str, tuple[str, torch.dtype]] = {
    "f32": ("<f4", torch.float32),
    "f16": ("<f2", torch.float16),
    "f64": ("<f8", torch.float64),
    "bf16": ("<u2", torch.bfloat16),
    "i64": ("<i8", torch.int64),
    "i32": ("<i4", torch.int32),
    "i16": ("<i2", torch.int16),
    "i8": ("i1", torch.int8),
    "u8": ("u1", torch.uint8),
    "u16": ("<u2", torch.int32),   # torch has no full uint16/32/64: widened (u64 -1 wraps as IR
    "u32": ("<u4", torch.int64),   # exporters use it for "last axis")
    "u64": ("<u8", torch.int64),
    "boolean": ("u1", torch.bool),
}


@dataclass
class _Port:
    """An input or output port of an IR layer, as the XML declares it."""

    id: str
    dims: tuple[int, ...] | None  # -1 for a dynamic dimension; None when the port lists none
    names: list[str]
    precision: str = ""  # "FP32", "I64", ...


@dataclass
class _Layer:
    """One ``<layer>`` of the IR's XML: its identity, attributes (``data``) and ports."""

    id: str
    name: str
    type: str
    version: str
    data: dict[str, str]
    inputs: list[_Port]
    outputs: list[_Port]

    def where(self) -> str:
        return f"layer {self.name!r} (id {self.id}, {self.type} {self.version})"


def _dims(text: str | None) -> tuple[int, ...]:
    """``"1, 3, 256, 192"`` -> (1, 3, 256, 192); ``"?"`` or ``"-1"`` -> -1; ``""`` -> ()."""
    if not text or not text.strip():
        return ()
    out = []
    for part in text.replace(" ", "").split(","):
        out.append(-1 if part in ("?", "-1") or ".." in part else int(part))
    return tuple(out)


def _ints(text: str | None) -> list[int]:
    return [int(v) for v in text.replace(" ", "").split(",") if v] if text else []


def _port(elem: ET.Element) -> _Port:
    dims = [d.text or "" for d in elem.findall("dim")]
    names = [n.strip() for n in (elem.get("names") or "").split(",") if n.strip()]
    return _Port(elem.get("id", ""), tuple(-1 if d.strip() in ("?", "-1") else int(d) for d in dims),
                 names, (elem.get("precision") or "").upper())


def _parse_xml(xml: Path) -> tuple[dict[str, _Layer], dict[tuple[str, str], tuple[str, str]]]:
    """Layers by id (in file order) and edges ``(to layer, to port) -> (from layer, from port)``."""
    try:
        root = ET.parse(xml).getroot()
    except FileNotFoundError:
        raise ModelError(f"{xml}: OpenVINO IR file not found") from None
    except ET.ParseError as e:
        raise ModelError(f"{xml}: not an OpenVINO IR .xml (malformed XML: {e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{xml}: cannot read the OpenVINO IR .xml ({e})") from None
    layers_elem, edges_elem = root.find("layers"), root.find("edges")
    if root.tag != "net" or layers_elem is None or edges_elem is None:
        raise ModelError(f"{xml}: not an OpenVINO IR .xml (expected <net> with <layers> and <edges>)")
    if root.get("version") not in ("10", "11"):
        raise ModelError(f"{xml}: OpenVINO IR version {root.get('version')!r} is not supported "
                         "(IR v10 and v11 are)")
    layers: dict[str, _Layer] = {}
    for elem in layers_elem.findall("layer"):
        try:
            data_elem = elem.find("data")
            inp, outp = elem.find("input"), elem.find("output")
            layer = _Layer(elem.get("id", ""), elem.get("name", ""), elem.get("type", ""),
                           elem.get("version", ""), dict(data_elem.attrib) if data_elem is not None else {},
                           [_port(p) for p in (inp.findall("port") if inp is not None else [])],
                           [_port(p) for p in (outp.findall("port") if outp is not None else [])])
        except ValueError as e:
            raise ModelError(f"{xml}: malformed layer {elem.get('name')!r} (id {elem.get('id')}): {e}") from None
        if not layer.id or layer.id in layers:
            raise ModelError(f"{xml}: layer {layer.name!r} has a missing or duplicate id {layer.id!r}")
        layers[layer.id] = layer
    edges: dict[tuple[str, str], tuple[str, str]] = {}
    for e in edges_elem.findall("edge"):
        src = (e.get("from-layer", ""), e.get("from-port", ""))
        dst = (e.get("to-layer", ""), e.get("to-port", ""))
        if src[0] not in layers or dst[0] not in layers:
            raise ModelError(f"{xml}: edge {src} -> {dst} names a layer that does not exist")
        edges[dst] = src
    return layers, edges


def _read_const(layer: _Layer, blob: bytes | memoryview, xml: Path, bin_path: Path) -> torch.Tensor:
    """The value of a ``Const`` layer (a CPU tensor of its element type, see ``_ELEMENT_TYPES``)."""
    d = layer.data
    etype = d.get("element_type", "")
    if etype not in _ELEMENT_TYPES:
        raise ModelError(f"{xml}: {layer.where()} has unsupported element type {etype!r}")
    try:
        shape = _dims(d["shape"]) if "shape" in d else (layer.outputs[0].dims or ())
        offset, size = int(d["offset"]), int(d["size"])
    except (KeyError, ValueError, IndexError) as e:
        raise ModelError(f"{xml}: {layer.where()} lacks a valid shape/offset/size ({e})") from None
    np_dtype = np.dtype(_ELEMENT_TYPES[etype][0])
    count = math.prod(shape)
    if size != count * np_dtype.itemsize or offset < 0:
        raise ModelError(f"{bin_path}: {layer.where()} declares {size} bytes at offset {offset} for "
                         f"{count} {etype} values (shape {list(shape)}); the .xml is corrupt")
    if offset + size > len(blob):
        raise ModelError(f"{bin_path}: weight file holds {len(blob)} bytes but {layer.where()} reads "
                         f"bytes {offset}..{offset + size}; the .bin is truncated or not this model's")
    arr = np.frombuffer(blob, dtype=np_dtype, count=count, offset=offset).reshape(shape)
    if etype == "bf16":
        return torch.from_numpy(arr.astype(np.int16)).view(torch.bfloat16).clone()
    if etype == "boolean":
        return torch.from_numpy(arr != 0)
    if etype in ("u16", "u32", "u64"):
        arr = arr.astype(np.int64 if etype != "u16" else np.int32)  # u64 max wraps to -1
    return torch.from_numpy(arr.copy())
