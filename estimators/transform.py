"""Symmetric spatial transformer (STN) and de-transformer (SDTN) of RMPE.

Coordinates: image and crop points are in *pixel-index* coordinates (the centre of pixel ``(i, j)``
is ``x = j, y = i``), the convention of COCO keypoints. A crop of ``out_w x out_h`` pixels shows the
image region ``[cx - W/2, cx + W/2] x [cy - H/2, cy + H/2]``; its pixel ``u`` covers
``[u - 0.5, u + 0.5]`` of the crop, so the crop's outer edges ``-0.5`` and ``out_w - 0.5`` land on
the region's edges. Hence the crop -> image affine of one box::

    x = cx + (u + 0.5 - out_w / 2) * (W / out_w)
    y = cy + (v + 0.5 - out_h / 2) * (H / out_h)

The SDTN is exactly this map (:func:`crop_to_image`); the STN samples the image at it
(:func:`crop_people` decides how): on the CPU one ``cv2.warpAffine`` of the uint8 frame per crop
(:func:`warp_crops`), elsewhere one ``grid_sample`` call for every crop of a batch of frames on the
device (:func:`crop_boxes`, also the differentiable one a trained STN learns through). Both sample
at the same points, bilinearly, with 0 outside the frame and outside each crop's keep region.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def box_regions(boxes: np.ndarray | torch.Tensor, out_size: tuple[int, int],
                scale_factor: float) -> torch.Tensor:
    """Crop regions for person boxes: padded to the SPPE's aspect ratio, then enlarged.

    Args:
        boxes: ``(m, 4)`` xyxy pixels.
        out_size: SPPE input ``(out_h, out_w)`` in pixels.
        scale_factor: Enlargement of the padded box (1.0 = tight; the setting:
            :attr:`posetracker.estimators.config.SPPEConfig.scale_factor`).

    Returns:
        ``(m, 4)`` float64 tensor ``cx, cy, W, H``: region centre and size in image pixels, with
        ``W / H == out_w / out_h``.
    """
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    out_h, out_w = out_size
    aspect = out_w / out_h
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w = (b[:, 2] - b[:, 0]).clamp_min(1.0)
    h = (b[:, 3] - b[:, 1]).clamp_min(1.0)
    # Pad the short side (never shrink) so the region has the SPPE's aspect ratio.
    w, h = torch.maximum(w, h * aspect), torch.maximum(h, w / aspect)
    return torch.stack([cx, cy, w * scale_factor, h * scale_factor], dim=1)


def crop_affines(regions: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Crop-pixel -> image-pixel affine matrices of regions ``(m, 4)`` ``cx, cy, W, H``.

    Returns ``(m, 2, 3)`` float64 ``A`` with ``[x, y] = A @ [u, v, 1]``.
    """
    r = torch.as_tensor(regions, dtype=torch.float64).reshape(-1, 4)
    out_h, out_w = out_size
    sx, sy = r[:, 2] / out_w, r[:, 3] / out_h
    A = torch.zeros(len(r), 2, 3, dtype=torch.float64, device=r.device)
    A[:, 0, 0] = sx
    A[:, 1, 1] = sy
    A[:, 0, 2] = r[:, 0] + (0.5 - out_w / 2) * sx
    A[:, 1, 2] = r[:, 1] + (0.5 - out_h / 2) * sy
    return A


def invert_affines(A: torch.Tensor) -> torch.Tensor:
    """Inverses of ``(m, 2, 3)`` affine matrices (as ``(m, 2, 3)``)."""
    M = A[:, :, :2]
    Minv = torch.linalg.inv(M)
    return torch.cat([Minv, -(Minv @ A[:, :, 2:])], dim=2)


def apply_affines(A: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Map points ``(m, k, 2)`` by per-crop affines ``(m, 2, 3)``; returns ``(m, k, 2)``."""
    A = A.to(points.dtype)
    return points @ A[:, :, :2].transpose(1, 2) + A[:, None, :, 2]


def crop_to_image(points: torch.Tensor | np.ndarray, affines: torch.Tensor,
                  heatmap_stride: float = 1.0) -> torch.Tensor:
    """The spatial de-transformer (SDTN): crop (or heatmap) coordinates -> image pixels.

    Args:
        points: ``(m, k, 2)`` xy in crop pixels, or in heatmap cells when ``heatmap_stride`` is the
            number of crop pixels per cell (e.g. 4 for a 64x48 heatmap of a 256x192 crop; a cell
            centre ``i`` covers crop pixels ``[i*s, (i+1)*s)``, i.e. crop coordinate ``(i+0.5)*s-0.5``).
        affines: ``(m, 2, 3)`` crop -> image affines from :func:`crop_affines` (or an STN).

    Returns:
        ``(m, k, 2)`` float64 image pixel coordinates (NaN stays NaN).
    """
    p = torch.as_tensor(points, dtype=torch.float64, device=affines.device)
    if heatmap_stride != 1.0:
        p = (p + 0.5) * heatmap_stride - 0.5
    return apply_affines(affines.to(torch.float64), p)


def image_to_crop(points: torch.Tensor | np.ndarray, affines: torch.Tensor) -> torch.Tensor:
    """Image pixels ``(m, k, 2)`` -> crop pixels, the STN's forward map of points."""
    p = torch.as_tensor(points, dtype=torch.float64, device=affines.device)
    return apply_affines(invert_affines(affines.to(torch.float64)), p)


def frames_to_tensor(frames: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Stack ``h x w x 3`` uint8 RGB frames into one ``(f, 3, H, W)`` float32 tensor on ``device``.

    Frames of different sizes are zero-padded at the right and bottom to the largest size; the
    padding reads as black, exactly like sampling outside a frame.
    """
    H = max(f.shape[0] for f in frames)
    W = max(f.shape[1] for f in frames)
    out = torch.zeros(len(frames), H, W, 3, dtype=torch.uint8, device=device)
    for i, f in enumerate(frames):
        # Upload as uint8 (4x less traffic than float), convert on the device.
        out[i, : f.shape[0], : f.shape[1]] = torch.from_numpy(np.ascontiguousarray(f)).to(device)
    return out.permute(0, 3, 1, 2).float()


def crop_boxes(images: torch.Tensor, frame_index: torch.Tensor | np.ndarray, affines: torch.Tensor,
               out_size: tuple[int, int], frame_sizes: torch.Tensor | np.ndarray | None = None,
               keep_regions: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """All crops of a batch of frames with one ``affine_grid`` and one ``grid_sample`` call.

    The ``m`` crops are grouped per frame into ``(f, c_max * out_h, out_w)`` sampling grids (c_max =
    most crops of any frame; unused slots sample outside and are dropped), so the frames are never
    copied per crop.

    Args:
        images: ``(f, C, H, W)`` float frames (padded to a common size, see :func:`frames_to_tensor`).
        frame_index: ``(m,)`` int frame of each crop.
        affines: ``(m, 2, 3)`` crop -> image pixel affines.
        out_size: ``(out_h, out_w)``.
        frame_sizes: ``(f, 2)`` true ``(h, w)`` of each frame; pixels outside read as 0. Defaults to
            the tensor size (then padding already reads as 0).
        keep_regions: ``(m, 4)`` xyxy image pixels per crop; crop pixels sampling outside their
            region read as 0 too (masking a person's neighbours out of the crop).

    Returns:
        ``(m, C, out_h, out_w)`` crops, bilinear, in ``images``' dtype, crop order as given.
    """
    f, C, H, W = images.shape
    out_h, out_w = out_size
    dev = images.device
    fi = torch.as_tensor(frame_index, dtype=torch.long, device=dev).reshape(-1)
    m = len(fi)
    if m == 0:
        return images.new_zeros(0, C, out_h, out_w)
    counts = torch.bincount(fi, minlength=f)
    c_max = int(counts.max())
    # Slot of each crop within its frame: rank among earlier crops of the same frame.
    order = torch.argsort(fi, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(fi)
    slot[order] = torch.arange(m, device=dev) - starts[fi[order]]

    # Image-normalized coordinates for affine_grid: pixel-index x -> (2x + 1) / W - 1.
    to_norm = torch.tensor([[2.0 / W, 0, 1.0 / W - 1], [0, 2.0 / H, 1.0 / H - 1], [0, 0, 1]],
                           dtype=torch.float64, device=dev)
    # Crop-normalized -> crop pixel: u = (un + 1) * out_w / 2 - 0.5.
    from_norm = torch.tensor([[out_w / 2.0, 0, out_w / 2.0 - 0.5], [0, out_h / 2.0, out_h / 2.0 - 0.5],
                              [0, 0, 1]], dtype=torch.float64, device=dev)
    A = affines.to(device=dev, dtype=torch.float64)
    A3 = torch.cat([A, A.new_tensor([0, 0, 1]).expand(m, 1, 3)], dim=1)
    theta = (to_norm @ A3 @ from_norm)[:, :2]
    grid = F.affine_grid(theta.to(images.dtype), [m, C, out_h, out_w], align_corners=False)
    if frame_sizes is not None or keep_regions is not None:
        # Points outside their frame's true size (or their keep region) read as zero: push them
        # far outside.
        px = (grid[..., 0] + 1) * W / 2 - 0.5
        py = (grid[..., 1] + 1) * H / 2 - 0.5
        outside = torch.zeros_like(px, dtype=torch.bool)
        if frame_sizes is not None:
            sz = torch.as_tensor(frame_sizes, dtype=grid.dtype, device=dev)[fi]  # (m, 2) h, w
            outside |= ((px <= -1) | (py <= -1) | (px >= sz[:, None, None, 1])
                        | (py >= sz[:, None, None, 0]))
        if keep_regions is not None:
            r = torch.as_tensor(keep_regions, dtype=grid.dtype, device=dev).reshape(m, 4)
            r = r[:, :, None, None]
            outside |= (px < r[:, 0]) | (py < r[:, 1]) | (px > r[:, 2]) | (py > r[:, 3])
        grid = torch.where(outside[..., None], grid.new_tensor(-4.0), grid)
    big = grid.new_full((f, c_max, out_h, out_w, 2), -4.0)  # -4: outside -> zeros
    big[fi, slot] = grid
    out = F.grid_sample(images, big.reshape(f, c_max * out_h, out_w, 2), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    out = out.reshape(f, C, c_max, out_h, out_w).permute(0, 2, 1, 3, 4)
    return out[fi, slot]


def snap_boxes(boxes: np.ndarray) -> np.ndarray:
    """Person boxes ``(m, 4)`` xyxy rounded to 1/8 pixel, as they are cropped (float64).

    OpenCV rounds its sampling points to 1/32 pixel and its values to grey levels, so a CPU crop
    (:func:`warp_crops`) changes by a grey level here and there whenever a box moves across such a
    step, however little. The detector's float noise (about 3e-5 pixel between batches of
    different sizes) would then make the same frame's poses differ between runs (a flat heatmap's
    peak may jump a cell); on a 1/8 pixel grid that noise almost never changes a box.
    """
    return np.round(np.asarray(boxes, dtype=np.float64) * 8.0) / 8.0


def _blank_outside(crop: np.ndarray, affine: np.ndarray, keep: np.ndarray) -> None:
    """Zero the pixels of one ``(h, w, C)`` crop whose image point (``affine`` ``(2, 3)`` crop ->
    image pixels) lies outside ``keep`` ``(4,)`` xyxy image pixels (edges kept), in place."""
    h, w = crop.shape[:2]
    x1, y1, x2, y2 = keep
    if affine[0, 1] == 0 and affine[1, 0] == 0:
        # Axis-aligned (every box crop): the kept part is a band of columns times a band of rows,
        # each one run of indices (a linear map of the index stays in an interval over a run),
        # so what lies outside is zeroed through two slices per axis.
        px = affine[0, 0] * np.arange(w) + affine[0, 2]
        py = affine[1, 1] * np.arange(h) + affine[1, 2]
        for lines, p, lo, hi in ((crop.swapaxes(0, 1), px, x1, x2), (crop, py, y1, y2)):
            kept = np.flatnonzero((p >= lo) & (p <= hi))
            if kept.size == 0:
                lines[:] = 0
            else:
                lines[:kept[0]] = 0
                lines[kept[-1] + 1:] = 0
        return
    v, u = np.mgrid[0:h, 0:w]
    px = affine[0, 0] * u + affine[0, 1] * v + affine[0, 2]
    py = affine[1, 0] * u + affine[1, 1] * v + affine[1, 2]
    crop[(px < x1) | (px > x2) | (py < y1) | (py > y2)] = 0


def warp_crops(frames: Sequence[np.ndarray], frame_index: np.ndarray | torch.Tensor,
               affines: torch.Tensor, out_size: tuple[int, int],
               keep_regions: np.ndarray | None = None) -> torch.Tensor:
    """The crops of :func:`crop_boxes` made on the CPU: per crop, one ``cv2.warpAffine`` of the uint8
    frame, the keep-region mask applied to the uint8 crop, and its conversion to float channels
    first, while the crop is in the cache (NumPy, on the calling thread: no torch intra-op
    threads to wait for when the other cores are busy).

    Never converts a whole frame to float (about 5x faster than :func:`crop_boxes` on the CPU). The
    sampling points are the same: OpenCV's pixel coordinates are pixel-index coordinates like
    ours, and ``WARP_INVERSE_MAP`` takes our crop -> image affine as it is; bilinear, 0 outside the
    frame (``BORDER_CONSTANT``). OpenCV rounds the sampling points to 1/32 pixel and the result to
    uint8, so crops differ from :func:`crop_boxes`' by under one grey level.

    Args:
        frames: ``(H, W, 3)`` uint8 frames (any sizes).
        frame_index: ``(m,)`` frame of each crop.
        affines: ``(m, 2, 3)`` crop -> image pixel affines.
        out_size: ``(out_h, out_w)``.
        keep_regions: ``(m, 4)`` xyxy image pixels per crop; crop pixels sampling outside read as 0.

    Returns:
        ``(m, 3, out_h, out_w)`` float32 (0..255) CPU tensor, crop order as given.
    """
    import cv2

    out_h, out_w = out_size
    fi = np.asarray(torch.as_tensor(frame_index).cpu(), dtype=np.int64).reshape(-1)
    A = np.asarray(torch.as_tensor(affines).detach().cpu(), dtype=np.float64).reshape(-1, 2, 3)
    out = np.empty((len(fi), 3, out_h, out_w), np.float32)
    crop = np.empty((out_h, out_w, 3), np.uint8)  # every pixel written by each warp
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # A maps crop (dst) pixels to image (src) ones
    for i, f in enumerate(fi):
        cv2.warpAffine(frames[f], A[i], (out_w, out_h), dst=crop, flags=flags,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if keep_regions is not None:
            _blank_outside(crop, A[i], np.asarray(keep_regions[i], dtype=np.float64))
        out[i] = crop.transpose(2, 0, 1)
    return torch.from_numpy(out)


def crop_people(frames: Sequence[np.ndarray], frame_index: np.ndarray, affines: torch.Tensor,
                out_size: tuple[int, int], device: torch.device | str,
                keep_regions: np.ndarray | None = None) -> torch.Tensor:
    """The one place that decides how crops are made: on the CPU :func:`warp_crops` (OpenCV on the
    uint8 frames), on another device :func:`crop_boxes` (the frames uploaded as uint8, one batched
    ``grid_sample`` there). Arguments as :func:`warp_crops`; returns ``(m, 3, out_h, out_w)`` float32
    crops (RGB 0..255) on ``device``."""
    device = torch.device(device)
    if device.type == "cpu":
        return warp_crops(frames, frame_index, affines, out_size, keep_regions)
    images = frames_to_tensor(list(frames), device)
    sizes = np.array([f.shape[:2] for f in frames])
    return crop_boxes(images, frame_index, affines.to(device), out_size, frame_sizes=sizes,
                      keep_regions=keep_regions)


class STN(nn.Module):
    """Learnable spatial transformer: a small localization net refining the box crop.

    It looks at a crop (``(m, 3, h, w)``, 0..255) and predicts a 6-parameter affine ``T`` in the
    crop's normalized coordinates; the refined crop -> image map is ``A_box o T``. The last layer is
    zero-initialised with identity bias, so an untrained STN is exactly the analytic box transform.
    Used only when a trained checkpoint is given (``SPPEConfig.stn_checkpoint``).
    """

    def __init__(self, channels: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 5, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.fc = nn.Linear(channels * 2 * 16, 6)
        nn.init.zeros_(self.fc.weight)
        with torch.no_grad():
            self.fc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """``(m, 3, h, w)`` crops -> ``(m, 2, 3)`` affines in normalized crop coordinates."""
        return self.fc(self.features(crops / 255.0)).view(-1, 2, 3)

    def refine(self, crops: torch.Tensor, affines: torch.Tensor, out_size: tuple[int, int]
               ) -> torch.Tensor:
        """Compose predicted normalized affines with box affines ``(m, 2, 3)`` (crop px -> image px).

        Returns the refined crop-pixel -> image-pixel affines (float64), to be passed to
        :func:`crop_boxes` again and to :func:`crop_to_image` (the SDTN uses the same map).
        """
        out_h, out_w = out_size
        T = self(crops).to(torch.float64)
        m = len(T)
        dev = T.device
        to_n = torch.tensor([[2.0 / out_w, 0, 1.0 / out_w - 1], [0, 2.0 / out_h, 1.0 / out_h - 1],
                             [0, 0, 1]], dtype=torch.float64, device=dev)
        from_n = torch.linalg.inv(to_n)
        bottom = T.new_tensor([0, 0, 1]).expand(m, 1, 3)
        T3 = torch.cat([T, bottom], 1)
        A3 = torch.cat([affines.to(dev, torch.float64), bottom], 1)
        return (A3 @ from_n @ T3 @ to_n)[:, :2]
