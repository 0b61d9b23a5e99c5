"""The Darknet YOLO network (:class:`DarknetYolo`): built from cfg sections through the layer
table, run on letterboxed images, its ``[yolo]`` heads decoded into boxes and scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from posetracker.core.errors import ModelError
from posetracker.estimators.boxes import (
    LetterboxTransform,
    as_image_list,
    darknet_batch,
    darknet_input,
    select_detections,
)
from posetracker.estimators.runtimes.darknet.cfg import CfgSection, read_cfg
from posetracker.estimators.runtimes.darknet.layers import (
    ConvLayer,
    RouteLayer,
    ShortcutLayer,
    YoloLayer,
    _LayerSpec,
    build_layer,
)
from posetracker.estimators.runtimes.darknet.weights import load_darknet_weights


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
            module, spec = build_layer(sec, channels, specs)
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
    def from_cfg(cls, cfg: str | Path) -> DarknetYolo:
        """Build the network with untrained weights from a ``.cfg`` file."""
        return cls(read_cfg(cfg))

    @classmethod
    def from_files(cls, cfg: str | Path, weights: str | Path) -> DarknetYolo:
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
        images = as_image_list(images)
        if not images:
            return []
        x, transforms = darknet_batch(images, self.input_size, letterbox, self.device)
        heads = self(x)
        return postprocess(
            [decode_yolo(h, self.layers[i], self.input_size) for h, i in zip(heads,
                                                                            self.yolo_indices)],
            transforms, [im.shape[:2] for im in images], conf, nms, class_id, max_detections)


# Darknet's letterbox: (H, W, 3) uint8 RGB -> (3, h, w) float32 in [0, 1], 0.5 grey borders.
preprocess = darknet_input


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
    """Threshold, map to image pixels, clip, and run NMS per image (and per class)
    (:func:`posetracker.estimators.boxes.select_detections` on the heads joined).

    ``decoded``: per head, boxes (N, B, 4) and scores (N, B, C) from :func:`decode_yolo`.
    Returns per image an (m, 5) float64 array xyxy + score (for ``class_id=None``, an (m, 6)
    array with the class index appended), best first.
    """
    boxes = torch.cat([b for b, _ in decoded], dim=1)       # (N, B, 4)
    scores = torch.cat([s for _, s in decoded], dim=1)      # (N, B, C)
    return select_detections(boxes, scores, transforms, image_sizes, conf, nms, class_id,
                             max_detections)


def read_detector(topology: Path, weights: Path | None, *, device: torch.device | str = "cpu",
                  input_size: int | None = None) -> DarknetYolo:
    """The ``darknet`` format's detector reader: the network of the ``.cfg`` with ``weights``
    (``.weights`` or ``.safetensors``; default: the ``.weights`` beside the ``.cfg``), run at
    ``input_size`` squared when given (fully convolutional with anchors in input pixels: any
    multiple of 32 works; ``None``: the cfg's size)."""
    weights = Path(weights) if weights is not None else Path(topology).with_suffix(".weights")
    if not weights.is_file():
        raise ModelError(f"{topology}: weights {weights} not found")
    yolo = DarknetYolo.from_files(topology, weights).to(device)
    if input_size:
        yolo.input_size = (input_size, input_size)
    return yolo


def save_darknet_safetensors(topology: Path, weights: Path | None, dest: Path) -> None:
    """The ``darknet`` format's cache converter: the ``state_dict`` of the network built from
    ``topology`` (a ``.cfg``) and ``weights`` (Darknet's raw float dump) as safetensors at
    ``dest`` (:meth:`DarknetYolo.load_safetensors` reads it back)."""
    from safetensors.torch import save_file

    model = DarknetYolo.from_files(topology, weights)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(dest))
