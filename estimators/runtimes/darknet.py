"""Darknet YOLO models in torch: ``.cfg`` parser, network builder, ``.weights`` reader/writer,
letterbox preprocessing, YOLO box decoding, person filtering and NMS.

Covers the layer types that the Yolo-Fastest 1.1 models and AlphaPose's default detector
(``yolov3-spp.cfg``) use: ``[net]``, ``[convolutional]`` (batch-norm, groups for depthwise convs),
``[maxpool]`` (incl. Darknet's stride-1 padding), ``[route]`` (incl. ``groups``/``group_id``),
``[shortcut]``, ``[upsample]``, ``[dropout]`` (identity at inference) and ``[yolo]``.

The ``.weights`` file is a header -- major, minor, revision (int32 each), then ``seen`` (int64
when ``major * 10 + minor >= 2``, else int32) -- followed by float32 parameters in layer order.
Each convolutional layer stores, with batch-norm: bn bias (beta), bn weight (gamma), running
mean, running variance, then the conv kernel; without batch-norm: conv bias, then the kernel.

Typical use::

    yolo = DarknetYolo.from_files("yolo-fastest-1.1-xl.cfg", "yolo-fastest-1.1-xl.weights")
    boxes = yolo.detect([rgb_image], conf=0.25, nms=0.45)   # [(m, 5) xyxy + score]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posetracker.core.errors import ModelError

# Darknet normalises with eps 1e-5 (AlexeyAB's fork, which Yolo-Fastest builds on).
_BN_EPS = 1e-5
# Letterbox padding value (Darknet fills with 0.5 grey after /255).
_LETTERBOX_GREY = 0.5


# --------------------------------------------------------------------------------------------
# 1. The .cfg file
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CfgSection:
    """One ``[kind]`` block of a Darknet ``.cfg``: its options as strings, and where it starts."""

    kind: str
    options: dict[str, str]
    line: int
    source: str = "<cfg>"

    def where(self) -> str:
        return f"{self.source}:{self.line} [{self.kind}]"

    def get_int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise ModelError(f"{self.where()}: missing option '{key}'")
            return default
        try:
            return int(self.options[key])
        except ValueError:
            raise ModelError(f"{self.where()}: option '{key}' is not an integer: "
                             f"{self.options[key]!r}") from None

    def get_float(self, key: str, default: float) -> float:
        try:
            return float(self.options.get(key, default))
        except ValueError:
            raise ModelError(f"{self.where()}: option '{key}' is not a number: "
                             f"{self.options[key]!r}") from None

    def get_ints(self, key: str, default: Sequence[int] | None = None) -> list[int]:
        if key not in self.options:
            if default is None:
                raise ModelError(f"{self.where()}: missing option '{key}'")
            return list(default)
        try:
            return [int(v) for v in self.options[key].split(",") if v.strip()]
        except ValueError:
            raise ModelError(f"{self.where()}: option '{key}' is not a list of integers: "
                             f"{self.options[key]!r}") from None

    def get_str(self, key: str, default: str) -> str:
        return self.options.get(key, default).strip()


def parse_cfg(text: str, source: str = "<cfg>") -> list[CfgSection]:
    """Parse Darknet ``.cfg`` text into sections; ``#``/``;`` start comments.

    The first section must be ``[net]`` (or ``[network]``). Raises :class:`ModelError` naming
    the file and line for malformed lines.
    """
    sections: list[CfgSection] = []
    kind, options, start = None, {}, 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ModelError(f"{source}:{lineno}: malformed section header {raw.strip()!r}")
            if kind is not None:
                sections.append(CfgSection(kind, options, start, source))
            kind, options, start = line[1:-1].strip().lower(), {}, lineno
            continue
        if kind is None or "=" not in line:
            raise ModelError(f"{source}:{lineno}: expected 'key=value' inside a section, "
                             f"got {raw.strip()!r}")
        key, value = line.split("=", 1)
        options[key.strip()] = value.strip()
    if kind is not None:
        sections.append(CfgSection(kind, options, start, source))
    if not sections or sections[0].kind not in ("net", "network"):
        raise ModelError(f"{source}: a Darknet cfg must start with a [net] section")
    return sections


def read_cfg(path: str | Path) -> list[CfgSection]:
    """Read and parse a ``.cfg`` file (see :func:`parse_cfg`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ModelError(f"cannot read Darknet cfg {path}: {e.strerror or e}") from None
    return parse_cfg(text, source=str(path))


# --------------------------------------------------------------------------------------------
# 2. Layers
# --------------------------------------------------------------------------------------------

def _activation(name: str, where: str) -> nn.Module:
    if name == "leaky":
        return nn.LeakyReLU(0.1)
    if name == "linear":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    if name == "relu6":
        return nn.ReLU6()
    if name == "mish":
        return nn.Mish()
    if name == "logistic":
        return nn.Sigmoid()
    if name == "swish":
        return nn.SiLU()
    raise ModelError(f"{where}: unsupported activation '{name}'")


class ConvLayer(nn.Module):
    """``[convolutional]``: conv (bias only without batch-norm) -> optional BN -> activation."""

    def __init__(self, in_channels: int, filters: int, size: int, stride: int, padding: int,
                 groups: int, batch_normalize: bool, activation: nn.Module):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, size, stride, padding, groups=groups,
                              bias=not batch_normalize)
        self.bn = nn.BatchNorm2d(filters, eps=_BN_EPS) if batch_normalize else None
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class MaxPoolLayer(nn.Module):
    """``[maxpool]`` as Darknet computes it: ``padding`` (default ``size - 1``) cells in total,
    ``padding // 2`` before and the rest after, out-of-image cells never win."""

    def __init__(self, size: int, stride: int, padding: int):
        super().__init__()
        self.size, self.stride = size, stride
        self.pad_before, self.pad_after = padding // 2, padding - padding // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_before or self.pad_after:
            x = F.pad(x, (self.pad_before, self.pad_after, self.pad_before, self.pad_after),
                      value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class UpsampleLayer(nn.Module):
    """``[upsample]``: nearest-neighbour upsampling by an integer ``stride``."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")


class RouteLayer(nn.Module):
    """``[route]``: concatenates earlier outputs (absolute indices) along channels; with
    ``groups``/``group_id`` each input contributes only its ``group_id``-th channel slice."""

    def __init__(self, sources: list[int], groups: int = 1, group_id: int = 0):
        super().__init__()
        self.sources, self.groups, self.group_id = sources, groups, group_id

    def forward(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for i in self.sources:
            t = outputs[i]
            if self.groups > 1:
                t = t.chunk(self.groups, dim=1)[self.group_id]
            parts.append(t)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class ShortcutLayer(nn.Module):
    """``[shortcut]``: previous output + outputs of ``sources`` (absolute indices), then activation."""

    def __init__(self, sources: list[int], activation: nn.Module):
        super().__init__()
        self.sources, self.act = sources, activation

    def forward(self, x: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        for i in self.sources:
            x = x + outputs[i]
        return self.act(x)


class YoloLayer(nn.Module):
    """``[yolo]``: passes its input through; decoding happens in :func:`decode_yolo`.

    ``anchors`` (A, 2) in network-input pixels for the masked anchors; ``scale_x_y`` stretches
    the sigmoid of the centre offsets (YOLOv4's grid-sensitivity fix; 1.0 = plain YOLOv3).
    """

    def __init__(self, anchors: list[tuple[float, float]], classes: int, scale_x_y: float):
        super().__init__()
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32),
                             persistent=False)
        self.classes, self.scale_x_y = classes, scale_x_y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass(frozen=True)
class _LayerSpec:
    """What the builder needs to know about one layer after it is built."""

    kind: str
    out_channels: int
    inputs: tuple[int, ...] = ()


def _resolve_index(i: int, current: int, where: str) -> int:
    j = current + i if i < 0 else i
    if not 0 <= j < current:
        raise ModelError(f"{where}: layer index {i} does not refer to an earlier layer")
    return j


# --------------------------------------------------------------------------------------------
# 3. The network
# --------------------------------------------------------------------------------------------

class DarknetYolo(nn.Module):
    """A Darknet YOLO network built from parsed cfg sections.

    ``forward(x)`` takes ``x`` (N, 3, H, W) float RGB in [0, 1] (H, W = the cfg's input size)
    and returns the raw outputs of the ``[yolo]`` layers, each (N, A*(5+C), h, w).
    :meth:`detect` runs the whole detector on images.

    Parameters
    ----------
    sections:
        Output of :func:`parse_cfg`; the first is ``[net]``.
    """

    def __init__(self, sections: Sequence[CfgSection]):
        super().__init__()
        net = sections[0]
        self.input_size = (net.get_int("height", 416), net.get_int("width", 416))  # (H, W)
        self.in_channels = net.get_int("channels", 3)
        self.layers = nn.ModuleList()
        specs: list[_LayerSpec] = []
        channels = self.in_channels
        for sec in sections[1:]:
            where = sec.where()
            index = len(specs)
            kind = sec.kind
            if kind in ("convolutional", "conv"):
                size = sec.get_int("size", 1)
                pad = sec.get_int("padding", size // 2 if sec.get_int("pad", 0) else 0)
                groups = sec.get_int("groups", 1)
                filters = sec.get_int("filters")
                if channels % groups or filters % groups:
                    raise ModelError(f"{where}: groups={groups} does not divide {channels} input "
                                     f"and {filters} output channels")
                module = ConvLayer(channels, filters, size, sec.get_int("stride", 1), pad, groups,
                                   bool(sec.get_int("batch_normalize", 0)),
                                   _activation(sec.get_str("activation", "logistic"), where))
                spec = _LayerSpec("convolutional", filters)
            elif kind == "maxpool":
                size = sec.get_int("size", 1)
                module = MaxPoolLayer(size, sec.get_int("stride", 1),
                                      sec.get_int("padding", size - 1))
                spec = _LayerSpec("maxpool", channels)
            elif kind == "upsample":
                stride = sec.get_int("stride", 2)
                if stride < 1:
                    raise ModelError(f"{where}: only upsampling (stride >= 1) is supported")
                module = UpsampleLayer(stride)
                spec = _LayerSpec("upsample", channels)
            elif kind == "route":
                srcs = [_resolve_index(i, index, where) for i in sec.get_ints("layers")]
                groups, group_id = sec.get_int("groups", 1), sec.get_int("group_id", 0)
                if not 0 <= group_id < groups:
                    raise ModelError(f"{where}: group_id {group_id} outside 0..{groups - 1}")
                out = 0
                for s in srcs:
                    if specs[s].out_channels % groups:
                        raise ModelError(f"{where}: layer {s} has {specs[s].out_channels} "
                                         f"channels, not divisible into {groups} groups")
                    out += specs[s].out_channels // groups
                module = RouteLayer(srcs, groups, group_id)
                spec = _LayerSpec("route", out, tuple(srcs))
            elif kind == "shortcut":
                srcs = [_resolve_index(i, index, where) for i in sec.get_ints("from")]
                for s in srcs:
                    if specs[s].out_channels != channels:
                        raise ModelError(f"{where}: cannot add layer {s} ({specs[s].out_channels} "
                                         f"channels) to the previous layer ({channels} channels)")
                if "weights_type" in sec.options and sec.get_str("weights_type", "none") != "none":
                    raise ModelError(f"{where}: weighted shortcuts are not supported")
                module = ShortcutLayer(srcs, _activation(sec.get_str("activation", "linear"),
                                                         where))
                spec = _LayerSpec("shortcut", channels, tuple(srcs))
            elif kind == "dropout":
                module = nn.Identity()  # inference: dropout does nothing
                spec = _LayerSpec("dropout", channels)
            elif kind == "yolo":
                classes = sec.get_int("classes", 80)
                all_anchors = sec.get_ints("anchors") if "anchors" in sec.options else []
                if len(all_anchors) % 2:
                    raise ModelError(f"{where}: 'anchors' needs an even count of numbers")
                pairs = list(zip(all_anchors[0::2], all_anchors[1::2]))
                mask = sec.get_ints("mask", range(len(pairs)))
                if any(not 0 <= m < len(pairs) for m in mask):
                    raise ModelError(f"{where}: mask {mask} refers to missing anchors")
                if channels != len(mask) * (5 + classes):
                    raise ModelError(f"{where}: expects {len(mask)} x (5 + {classes}) = "
                                     f"{len(mask) * (5 + classes)} input channels, got {channels}")
                module = YoloLayer([(float(pairs[m][0]), float(pairs[m][1])) for m in mask],
                                   classes, sec.get_float("scale_x_y", 1.0))
                spec = _LayerSpec("yolo", channels)
            else:
                raise ModelError(f"{where}: unsupported Darknet layer type [{kind}]")
            self.layers.append(module)
            specs.append(spec)
            channels = spec.out_channels
        self._specs = tuple(specs)
        # Only outputs that a later route/shortcut reads are kept during forward.
        self._keep = frozenset(i for s in specs for i in s.inputs)
        self.yolo_indices = tuple(i for i, s in enumerate(specs) if s.kind == "yolo")
        if not self.yolo_indices:
            raise ModelError(f"{sections[0].source}: the cfg has no [yolo] layer")
        self.num_classes = self.layers[self.yolo_indices[0]].classes

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_cfg(cls, cfg: str | Path) -> "DarknetYolo":
        """Build the network with untrained weights from a ``.cfg`` file."""
        return cls(read_cfg(cfg))

    @classmethod
    def from_files(cls, cfg: str | Path, weights: str | Path) -> "DarknetYolo":
        """Build from ``cfg`` and load ``weights``: a Darknet ``.weights`` file, or a
        ``.safetensors`` holding this module's ``state_dict`` (as ``posetracker models`` caches)."""
        model = cls.from_cfg(cfg)
        weights = Path(weights)
        if weights.suffix == ".safetensors":
            model.load_safetensors(weights)
        else:
            load_darknet_weights(model, weights)
        return model.eval()

    def load_safetensors(self, path: str | Path) -> None:
        """Load a ``state_dict`` saved with ``safetensors``; every key must match."""
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:  # OSError, or safetensors' own error types
            raise ModelError(f"cannot read {path}: {e}") from None
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or bad:
            raise ModelError(f"{path} does not fit this cfg: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}, wrong shapes {bad[:3]}")
        self.load_state_dict(state)

    def conv_layers(self) -> list[ConvLayer]:
        """The convolutional layers in file order (the order of the ``.weights`` parameters)."""
        return [m for m in self.layers if isinstance(m, ConvLayer)]

    def num_weight_floats(self) -> int:
        """How many float32 parameters a ``.weights`` file for this cfg holds after its header."""
        total = 0
        for layer in self.conv_layers():
            total += layer.conv.weight.numel()
            total += 4 * layer.bn.num_features if layer.bn is not None else layer.conv.out_channels
        return total

    # -- inference ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor | None] = []
        heads: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, RouteLayer):
                x = layer(outputs)
            elif isinstance(layer, ShortcutLayer):
                x = layer(x, outputs)
            else:
                x = layer(x)
            if isinstance(layer, YoloLayer):
                heads.append(x)
            outputs.append(x if i in self._keep else None)
        return heads

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def detect(self, images, conf: float = 0.25, nms: float = 0.45,
               class_id: int | None = 0, letterbox: bool = True,
               max_detections: int = 300) -> list[np.ndarray]:
        """Detect objects of one class (default: person = COCO class 0, also the single class
        of the person-only models) on a batch of images.

        Parameters
        ----------
        images:
            A list of (H, W, 3) uint8 RGB arrays (sizes may differ), or an (N, H, W, 3) uint8
            array/tensor.
        conf:
            Keep boxes whose objectness x class probability is at least this.
        nms:
            IoU above which a lower-scoring box of the same image is suppressed.
        class_id:
            The class to keep; ``None`` keeps every class (then NMS runs per class).
        letterbox:
            Keep the aspect ratio and pad with grey (True), or stretch to the input size.
        max_detections:
            At most this many boxes per image, best first.

        Returns
        -------
        One (m, 5) float64 array per image: x1, y1, x2, y2 in the image's pixels, and the score,
        sorted by decreasing score.
        """
        if isinstance(images, torch.Tensor):
            images = images.cpu().numpy()
        images = list(images)
        if not images:
            return []
        batch, transforms = zip(*(preprocess(im, self.input_size, letterbox) for im in images))
        x = torch.from_numpy(np.stack(batch)).to(self.device)
        heads = self(x)
        return postprocess(
            [decode_yolo(h, self.layers[i], self.input_size) for h, i in zip(heads,
                                                                            self.yolo_indices)],
            transforms, [im.shape[:2] for im in images], conf, nms, class_id, max_detections)


# --------------------------------------------------------------------------------------------
# 4. .weights files
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# 5. Pre- and post-processing
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LetterboxTransform:
    """Maps network-input pixels back to image pixels: ``image = (net - offset) / scale``."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float


def preprocess(image: np.ndarray, input_size: tuple[int, int],
               letterbox: bool = True) -> tuple[np.ndarray, LetterboxTransform]:
    """Resize an (H, W, 3) uint8 RGB image to the network input (3, h, w) float32 in [0, 1].

    With ``letterbox`` the aspect ratio is kept and the borders are 0.5 grey, the resized image
    centred with Darknet's integer offsets; otherwise the image is stretched.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} "
                         f"{image.dtype}")
    h, w = image.shape[:2]
    net_h, net_w = input_size
    if letterbox:
        scale = min(net_w / w, net_h / h)
        new_w, new_h = max(1, int(w * scale)), max(1, int(h * scale))
        dx, dy = (net_w - new_w) // 2, (net_h - new_h) // 2
        out = np.full((net_h, net_w, 3), _LETTERBOX_GREY, np.float32)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        out[dy:dy + new_h, dx:dx + new_w] = resized.astype(np.float32) / 255.0
        transform = LetterboxTransform(new_w / w, new_h / h, dx, dy)
    else:
        out = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_LINEAR)
        out = out.astype(np.float32) / 255.0
        transform = LetterboxTransform(net_w / w, net_h / h, 0.0, 0.0)
    return np.ascontiguousarray(out.transpose(2, 0, 1)), transform


def decode_yolo(raw: torch.Tensor, layer: YoloLayer,
                input_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one YOLO head.

    ``raw`` (N, A*(5+C), h, w) -> boxes (N, A*h*w, 4) xyxy in network-input pixels and
    scores (N, A*h*w, C) = sigmoid(objectness) * sigmoid(class logit).
    Centres: ``(sigmoid(t) * s - (s - 1) / 2 + cell) / grid`` with ``s = scale_x_y``;
    sizes: ``exp(t) * anchor`` (anchors are in network-input pixels).
    """
    n, _, gh, gw = raw.shape
    a = layer.anchors.shape[0]
    net_h, net_w = input_size
    p = raw.view(n, a, 5 + layer.classes, gh, gw).permute(0, 1, 3, 4, 2).float()
    gy, gx = torch.meshgrid(torch.arange(gh, device=raw.device, dtype=torch.float32),
                            torch.arange(gw, device=raw.device, dtype=torch.float32),
                            indexing="ij")
    s = layer.scale_x_y
    cx = (torch.sigmoid(p[..., 0]) * s - (s - 1) / 2 + gx) / gw * net_w
    cy = (torch.sigmoid(p[..., 1]) * s - (s - 1) / 2 + gy) / gh * net_h
    anchors = layer.anchors.to(raw.device)
    bw = torch.exp(p[..., 2]) * anchors[:, 0].view(1, a, 1, 1)
    bh = torch.exp(p[..., 3]) * anchors[:, 1].view(1, a, 1, 1)
    boxes = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), dim=-1)
    scores = torch.sigmoid(p[..., 4:5]) * torch.sigmoid(p[..., 5:])
    return boxes.reshape(n, -1, 4), scores.reshape(n, -1, layer.classes)


def postprocess(decoded: Sequence[tuple[torch.Tensor, torch.Tensor]],
                transforms: Sequence[LetterboxTransform], image_sizes: Sequence[tuple[int, int]],
                conf: float, nms: float, class_id: int | None,
                max_detections: int) -> list[np.ndarray]:
    """Threshold, map to image pixels, clip, and run NMS per image (and per class).

    ``decoded``: per head, boxes (N, B, 4) and scores (N, B, C) from :func:`decode_yolo`.
    Returns per image an (m, 5) float64 array xyxy + score (for ``class_id=None``, an (m, 6)
    array with the class index appended), best first.
    """
    from torchvision.ops import batched_nms

    boxes = torch.cat([b for b, _ in decoded], dim=1)       # (N, B, 4)
    scores = torch.cat([s for _, s in decoded], dim=1)      # (N, B, C)
    if class_id is not None:
        if not 0 <= class_id < scores.shape[2]:
            raise ValueError(f"class_id {class_id} outside 0..{scores.shape[2] - 1}")
        scores = scores[..., class_id:class_id + 1]
    img, box, cls = torch.nonzero(scores >= conf, as_tuple=True)
    sel_scores = scores[img, box, cls]
    sel_boxes = boxes[img, box].clone()
    # Back to image pixels, per image.
    t = torch.tensor([[tr.offset_x, tr.offset_y, tr.scale_x, tr.scale_y] for tr in transforms],
                     dtype=sel_boxes.dtype, device=sel_boxes.device)[img]
    sizes = torch.tensor([[w, h] for h, w in image_sizes], dtype=sel_boxes.dtype,
                         device=sel_boxes.device)[img]
    sel_boxes[:, 0::2] = ((sel_boxes[:, 0::2] - t[:, 0:1]) / t[:, 2:3]).clamp(min=0)
    sel_boxes[:, 1::2] = ((sel_boxes[:, 1::2] - t[:, 1:2]) / t[:, 3:4]).clamp(min=0)
    sel_boxes[:, 0::2] = torch.minimum(sel_boxes[:, 0::2], sizes[:, 0:1])
    sel_boxes[:, 1::2] = torch.minimum(sel_boxes[:, 1::2], sizes[:, 1:2])
    # One NMS group per (image, class).
    groups = img * scores.shape[2] + cls
    keep = batched_nms(sel_boxes, sel_scores, groups, nms)  # sorted by decreasing score
    result = []
    img_k = img[keep]
    for i in range(len(transforms)):
        k = keep[img_k == i][:max_detections]
        cols = [sel_boxes[k], sel_scores[k, None]]
        if class_id is None:
            cols.append(cls[k, None].to(sel_boxes.dtype))
        result.append(torch.cat(cols, dim=1).double().cpu().numpy())
    return result


def cfg_input_size(cfg: str | Path) -> tuple[int, int]:
    """(height, width) of a cfg's ``[net]`` section."""
    net = read_cfg(cfg)[0]
    return net.get_int("height", 416), net.get_int("width", 416)
