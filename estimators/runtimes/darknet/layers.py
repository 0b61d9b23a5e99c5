"""The layers of a Darknet YOLO network as torch modules, and the table that builds each from
its cfg section (``[convolutional]``, ``[maxpool]``, ``[upsample]``, ``[route]``,
``[shortcut]``, ``[dropout]``, ``[yolo]``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.runtimes.darknet.cfg import CfgSection

# Darknet normalises with eps 1e-5 (AlexeyAB's fork, which Yolo-Fastest builds on).
_BN_EPS = 1e-5


# Darknet activation name -> the torch module that computes it.
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "leaky": lambda: nn.LeakyReLU(0.1), "linear": nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6,
    "mish": nn.Mish, "logistic": nn.Sigmoid, "swish": nn.SiLU,
}


def _activation(name: str, where: str) -> nn.Module:
    make = _ACTIVATIONS.get(name)
    if make is None:
        raise ModelError(f"{where}: unsupported activation '{name}'")
    return make()


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


# --------------------------------------------------------------------------------------------
# The layer table: cfg section kind -> builder
# --------------------------------------------------------------------------------------------

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


# A builder gets the section, the channels coming in, and the specs of the layers before it
# (the new layer's index is ``len(specs)``); it returns the module and its spec.
Builder = Callable[[CfgSection, int, Sequence[_LayerSpec]], tuple[nn.Module, _LayerSpec]]


def _build_conv(sec: CfgSection, channels: int, specs: Sequence[_LayerSpec]) -> tuple[nn.Module, _LayerSpec]:
    where = sec.where()
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
    return module, _LayerSpec("convolutional", filters)


def _build_maxpool(sec: CfgSection, channels: int, specs: Sequence[_LayerSpec]) -> tuple[nn.Module, _LayerSpec]:
    size = sec.get_int("size", 1)
    module = MaxPoolLayer(size, sec.get_int("stride", 1), sec.get_int("padding", size - 1))
    return module, _LayerSpec("maxpool", channels)


def _build_upsample(sec: CfgSection, channels: int, specs: Sequence[_LayerSpec]) -> tuple[nn.Module, _LayerSpec]:
    stride = sec.get_int("stride", 2)
    if stride < 1:
        raise ModelError(f"{sec.where()}: only upsampling (stride >= 1) is supported")
    return UpsampleLayer(stride), _LayerSpec("upsample", channels)


def _build_route(sec: CfgSection, channels: int, specs: Sequence[_LayerSpec]) -> tuple[nn.Module, _LayerSpec]:
    where = sec.where()
    srcs = [_resolve_index(i, len(specs), where) for i in sec.get_ints("layers")]
    groups, group_id = sec.get_int("groups", 1), sec.get_int("group_id", 0)
    if not 0 <= group_id < groups:
        raise ModelError(f"{where}: group_id {group_id} outside 0..{groups - 1}")
    out = 0
    for s in srcs:
        if specs[s].out_channels % groups:
            raise ModelError(f"{where}: layer {s} has {specs[s].out_channels} "
                             f"channels, not divisible into {groups} groups")
        out += specs[s].out_channels // groups
    return RouteLayer(srcs, groups, group_id), _LayerSpec("route", out, tuple(srcs))


def _build_shortcut(sec: CfgSection, channels: int, specs: Sequence[_LayerSpec]) -> tuple[nn.Module, _LayerSpec]:
    where = sec.where()
    srcs = [_resolve_index(i, len(specs), where) for i in sec.get_ints("from")]
    for s in srcs:
        if specs[s].out_channels != channels:
            raise ModelError(f"{where}: cannot add layer {s} ({specs[s].out_channels} "
                             f"channels) to the previous layer ({channels} channels)")
    if "weights_type" in sec.options and sec.get_str("weights_type", "none") != "none":
        raise ModelError(f"{where}: weighted shortcuts are not supported")
    module = ShortcutLayer(srcs, _activation(sec.get_str("activation", "linear"), where))
    return module, _LayerSpec("shortcut", channels, tuple(srcs))


def _build_dropout(sec: CfgSection, channels: int, specs: Sequence[_LayerSpec]) -> tuple[nn.Module, _LayerSpec]:
    return nn.Identity(), _LayerSpec("dropout", channels)  # inference: dropout does nothing


def _build_yolo(sec: CfgSection, channels: int, specs: Sequence[_LayerSpec]) -> tuple[nn.Module, _LayerSpec]:
    where = sec.where()
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
    return module, _LayerSpec("yolo", channels)


LAYER_BUILDERS: dict[str, Builder] = {
    "convolutional": _build_conv, "conv": _build_conv, "maxpool": _build_maxpool,
    "upsample": _build_upsample, "route": _build_route, "shortcut": _build_shortcut,
    "dropout": _build_dropout, "yolo": _build_yolo,
}


def build_layer(sec: CfgSection, channels: int, specs: Sequence[_LayerSpec]) -> tuple[nn.Module, _LayerSpec]:
    """The module of one cfg section after the layers ``specs``; ModelError naming the file,
    line and section for a layer type outside :data:`LAYER_BUILDERS`."""
    build = LAYER_BUILDERS.get(sec.kind)
    if build is None:
        raise ModelError(f"{sec.where()}: unsupported Darknet layer type [{sec.kind}]")
    return build(sec, channels, specs)
