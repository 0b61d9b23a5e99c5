"""FastPose, AlphaPose's single-person pose estimator, with ``state_dict`` keys that match the
official checkpoint ``fast_res50_256x192.pth``, and its heatmap decoding.

Architecture (Fang et al., RMPE; AlphaPose's ``FastPose`` with ``NUM_LAYERS=50``):

1. ``preact``: a ResNet-50 trunk (7x7 stem, max-pool, bottleneck stages of 3/4/6/3 blocks)
   whose *first* block of every stage -- the one with a projection shortcut -- ends in a
   squeeze-and-excitation gate (``se.fc``: Linear(C, C) -> ReLU -> Linear(C, C) -> sigmoid,
   reduction 1). Output (N, 2048, H/32, W/32).
2. ``suffle1``: PixelShuffle(2) -> (N, 512, H/16, W/16).
3. ``duc1``, ``duc2``: dense upsampling convolution, i.e. 3x3 conv (no bias) -> BN -> ReLU ->
   PixelShuffle(2): 512 -> 1024 -> 256 channels, then 256 -> 512 -> 128 channels.
4. ``conv_out``: 3x3 conv with bias to one heatmap per joint.

For a 3x256x192 crop the output is 17x64x48 (stride 4). Building the network downloads nothing
(AlphaPose initialises the trunk from ImageNet weights; here the caller loads a checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from posetracker.core.errors import ModelError

#: AlphaPose subtracts these per-channel means from RGB / 255 input (no division by a std).
PIXEL_MEAN_RGB = (0.406, 0.457, 0.480)
#: Input (height, width) of the 256x192 models and the heatmap stride.
INPUT_SIZE = (256, 192)
HEATMAP_STRIDE = 4


class SELayer(nn.Module):
    """Squeeze-and-excitation gate: ``x * sigmoid(fc(mean over H, W of x))`` (reduction 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                                nn.Linear(channels, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class Bottleneck(nn.Module):
    """ResNet bottleneck (stride on the 3x3 conv), optionally with an SE gate before the sum."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, with_se: bool = False):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SELayer(out) if with_se else None
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        if self.se is not None:
            y = self.se(y)
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(y + shortcut)


class SEResNet(nn.Module):
    """The ResNet trunk of FastPose (keys ``conv1``, ``bn1``, ``layer1..4``)."""

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        channels = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            stride = 1 if i == 1 else 2
            out = planes * Bottleneck.expansion
            downsample = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False),
                                       nn.BatchNorm2d(out))
            stage = [Bottleneck(channels, planes, stride, downsample, with_se=True)]
            stage += [Bottleneck(out, planes) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            channels = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=True), 3, 2, 1)  # (N,64,H/4,W/4)
        x = self.layer1(x)   # (N, 256, H/4, W/4)
        x = self.layer2(x)   # (N, 512, H/8, W/8)
        x = self.layer3(x)   # (N, 1024, H/16, W/16)
        return self.layer4(x)  # (N, 2048, H/32, W/32)


class DUC(nn.Module):
    """Dense upsampling convolution: 3x3 conv (no bias) -> BN -> ReLU -> PixelShuffle."""

    def __init__(self, in_channels: int, channels: int, upscale: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.upscale = upscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.relu(self.bn(self.conv(x))), self.upscale)


class FastPose(nn.Module):
    """FastPose SE-ResNet-50 + DUC head: (N, 3, 256, 192) normalised RGB -> (N, K, 64, 48) heatmaps.

    Parameters
    ----------
    num_joints:
        Heatmap channels (17 for the COCO models).
    """

    def __init__(self, num_joints: int = 17):
        super().__init__()
        self.num_joints = num_joints
        self.preact = SEResNet()
        self.suffle1 = nn.PixelShuffle(2)  # AlphaPose's spelling; it has no parameters
        self.duc1 = DUC(512, 1024)
        self.duc2 = DUC(256, 512)
        self.conv_out = nn.Conv2d(128, num_joints, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.suffle1(self.preact(x))
        return self.conv_out(self.duc2(self.duc1(x)))

    @staticmethod
    def normalize(images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 255] (any dtype) -> the network's input: /255 minus the mean."""
        mean = torch.tensor(PIXEL_MEAN_RGB, dtype=torch.float32, device=images.device)
        return images.float() / 255.0 - mean[None, :, None, None]

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu",
                        ) -> FastPose:
        """Load an AlphaPose checkpoint (``fast_res50_256x192.pth``) or a ``.safetensors`` copy.

        Accepts a raw ``state_dict``, a dict holding it under ``'state_dict'`` or ``'model'``, and
        keys prefixed with ``module.`` (saved from ``DataParallel``). The joint count is read from
        ``conv_out.weight``. Raises :class:`ModelError` naming missing or unexpected keys.
        """
        path = Path(path)
        state = _read_state(path, map_location)
        if "conv_out.weight" not in state:
            raise ModelError(f"{path} is not a FastPose checkpoint (no 'conv_out.weight'; "
                             f"first keys: {sorted(state)[:3]})")
        # Build on the meta device (no memory, no random init), then adopt the loaded tensors.
        with torch.device("meta"):
            model = cls(num_joints=int(state["conv_out.weight"].shape[0]))
        own = model.state_dict()
        # BatchNorm's step counter is absent from checkpoints saved before PyTorch 0.4.1.
        missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state)
                       if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or wrong:
            parts = [f"{label} {len(keys)} (e.g. {', '.join(keys[:3])})"
                     for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                         ("wrong shapes", wrong)) if keys]
            raise ModelError(f"{path} does not fit FastPose SE-ResNet-50: " + "; ".join(parts))
        state = dict(state)
        for k in set(own) - set(state):  # the step counters
            state[k] = torch.zeros((), dtype=torch.long, device=state["conv_out.weight"].device)
        model.load_state_dict(state, assign=True)
        return model.eval()


def _read_state(path: Path, map_location) -> dict[str, torch.Tensor]:
    """A flat ``{key: tensor}`` from a ``.pth``/``.safetensors`` file, unwrapped and unprefixed."""
    if not path.is_file():
        raise ModelError(f"FastPose checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device=str(map_location))
        else:
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle/zip/safetensors errors all mean "not a readable checkpoint"
        raise ModelError(f"cannot read checkpoint {path}: {e}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state_dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def heatmaps_to_coords(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaPose's ``heatmap_to_coord_simple`` peak decoding, batched.

    1. Take the arg-max cell of every heatmap; its value is the joint's score.
    2. Where the peak is at least 2 cells inside the map (``1 < x < W - 1``, same for y), move it
       by 0.25 cell towards the higher of its two neighbours, separately along x and y (no move
       when they are equal).
    3. Peaks with a score <= 0 are put at (0, 0), as AlphaPose does.

    ``heatmaps`` (N, K, H, W) -> coords (N, K, 2) as (x, y) in heatmap cells, scores (N, K).
    Map to a box of size (bw, bh) at (x1, y1) with ``x1 + x * bw / W`` (see :func:`coords_to_box`).
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    scores, idx = flat.max(dim=2)
    px, py = idx % w, idx // w
    coords = torch.stack((px, py), dim=-1).to(heatmaps.dtype)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    # Neighbour differences; indices are clamped only to stay in range where `inside` is False.
    hm = heatmaps.reshape(n * k, h, w)
    b = torch.arange(n * k, device=heatmaps.device)
    pxf, pyf = px.reshape(-1), py.reshape(-1)
    right = hm[b, pyf, (pxf + 1).clamp(max=w - 1)]
    left = hm[b, pyf, (pxf - 1).clamp(min=0)]
    down = hm[b, (pyf + 1).clamp(max=h - 1), pxf]
    up = hm[b, (pyf - 1).clamp(min=0), pxf]
    diff = torch.stack((right - left, down - up), dim=-1).reshape(n, k, 2)
    coords = coords + torch.where(inside[..., None], torch.sign(diff) * 0.25,
                                  torch.zeros_like(diff))
    coords = torch.where((scores > 0)[..., None], coords, torch.zeros_like(coords))
    return coords, scores


def coords_to_box(coords: torch.Tensor, boxes: torch.Tensor,
                  heatmap_size: tuple[int, int]) -> torch.Tensor:
    """Heatmap-cell coordinates (N, K, 2) -> image pixels for crop boxes (N, 4) xyxy.

    The heatmap covers the box exactly (AlphaPose's ``transform_preds`` with the box centre and
    size): ``x = x1 + x_cell * (x2 - x1) / W``.
    """
    hm_h, hm_w = heatmap_size
    x1, y1, x2, y2 = boxes.to(coords.dtype).unbind(dim=1)
    sx, sy = (x2 - x1) / hm_w, (y2 - y1) / hm_h
    return torch.stack((x1[:, None] + coords[..., 0] * sx[:, None],
                        y1[:, None] + coords[..., 1] * sy[:, None]), dim=-1)
