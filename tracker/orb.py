"""Inter-frame keypoint correspondences from ORB features (the stand-in for DeepMatching).

The PoseFlow paper counts DeepMatching correspondences that fall in both joint neighbourhoods; the
released tracker switched to ORB written to text files per frame pair. Here ORB features are computed
at most once per frame, on a downscaled copy, only when a tracker asks for correspondences, kept in
memory, and matched to the previous frame's features only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class _Frame:
    """A frame given to :meth:`OrbMatcher.push`: its pixels until its features are computed."""

    image: np.ndarray | None
    features: tuple[np.ndarray, np.ndarray | None] | None = None


class OrbMatcher:
    """Matches each new frame's ORB features to the previous frame's, computing features only when
    correspondences are asked for (so a tracker can skip the frames whose links are plain).

    1. :meth:`push` a frame: it becomes the current one, the earlier current one the previous.
    2. :meth:`correspondences`: the features of the previous and current frames (each computed
       once, on a copy downscaled to ``max_side``), matched with Lowe's ratio test; keypoint
       coordinates are scaled back to the frame's own pixels.

    Args:
        n_features: ORB features per frame (OpenCV ``nfeatures``).
        max_side: Frames whose longer side exceeds this are downscaled (area interpolation) for
            feature extraction; 0 keeps the full size. The trackers pass their ``orb_max_side``
            setting (figures: docs/tracking.md, "Appearance cost").
        max_hamming: Matches whose descriptors differ in more bits are dropped (of 256).
        ratio: Lowe's ratio test: a match is kept when its distance is below ``ratio`` times the
            second-best candidate's (rejects features on repeated texture; and a 2-nearest-neighbour
            search costs half of a cross-checked one).
    """

    def __init__(self, n_features: int, max_side: int, max_hamming: int = 64,
                 ratio: float = 0.8) -> None:
        import cv2

        self.n_features = n_features
        self.max_hamming = max_hamming
        self.ratio = ratio
        self.max_side = max_side
        #: Frames whose features were computed since the last :meth:`reset` (what ORB cost).
        self.frames_extracted = 0
        self._cv2 = cv2
        self._orb = cv2.ORB_create(nfeatures=n_features)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self._prev: _Frame | None = None
        self._cur: _Frame | None = None

    def reset(self) -> None:
        """Forget the frames (start of a new video)."""
        self._prev = self._cur = None
        self.frames_extracted = 0

    def push(self, image: np.ndarray) -> None:
        """A new frame, ``(h, w)`` gray or ``(h, w, 3)`` BGR uint8; nothing is computed yet."""
        self._prev, self._cur = self._cur, _Frame(image)

    def match(self, image: np.ndarray) -> np.ndarray:
        """:meth:`push` ``image``, then its :meth:`correspondences` with the previous one."""
        self.push(image)
        return self.correspondences()

    def features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """ORB keypoints ``(c, 2)`` float64 in ``image``'s pixels and their ``(c, 32)`` uint8
        descriptors (``None`` without features), found on the frame downscaled to ``max_side``."""
        cv2 = self._cv2
        img = gray(np.asarray(image), cv2)
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        factor = np.ones(2)  # original pixels per feature-image pixel, (x, y)
        if self.max_side and max(img.shape) > self.max_side:
            h, w = img.shape
            f = max(h, w) / self.max_side
            # a side of 1 px (a 1 x N strip) stays 1 px: a 0-px side would be no image at all
            size = (max(1, round(w / f)), max(1, round(h / f)))
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            factor = np.array([w / size[0], h / size[1]])
        self.frames_extracted += 1
        # ORB keeps no feature within its edge threshold of the border, so a frame no wider
        # than two of them has none (and ORB's own image pyramid fails on 1-px sides)
        if min(img.shape) > 2 * self._orb.getEdgeThreshold():
            kps, desc = self._orb.detectAndCompute(img, None)
        else:
            kps, desc = (), None
        pts = (cv2.KeyPoint_convert(kps).astype(np.float64).reshape(-1, 2) * factor
               if kps else np.zeros((0, 2)))
        return pts, desc

    def _features_of(self, frame: _Frame) -> tuple[np.ndarray, np.ndarray | None]:
        if frame.features is None:
            frame.features = self.features(frame.image)
            frame.image = None  # the features are all a later call needs
        return frame.features

    def correspondences(self) -> np.ndarray:
        """The previous and the current frame's matched features.

        Returns:
            ``(c, 4)`` float64 rows ``x_prev, y_prev, x_cur, y_cur`` in pixels; ``(0, 4)`` before
            the second frame or when either frame has no features.
        """
        if self._prev is None or self._cur is None:
            return np.zeros((0, 4))
        prev = self._features_of(self._prev)
        pts, desc = self._features_of(self._cur)
        if desc is None or prev[1] is None or len(pts) == 0 or len(prev[0]) == 0:
            return np.zeros((0, 4))
        keep = []
        for pair in self._matcher.knnMatch(prev[1], desc, k=2):
            if not pair:
                continue
            best = pair[0]
            if best.distance <= self.max_hamming and (
                    len(pair) < 2 or best.distance < self.ratio * pair[1].distance):
                keep.append((best.queryIdx, best.trainIdx))
        if not keep:
            return np.zeros((0, 4))
        q, t = np.array(keep).T
        return np.hstack([prev[0][q], pts[t]])


def gray(image: np.ndarray, cv2) -> np.ndarray:
    """``(h, w)`` gray of an ``(h, w, 3)`` BGR image (a gray ``(h, w)`` image as it is).

    Video mode hands the tracker its RGB frames as a channel-reversed view (``rgb[..., ::-1]``);
    OpenCV would first copy such a view (negative strides) into a new BGR frame, which costs
    more than the conversion itself. Converting the RGB frame underneath with ``RGB2GRAY``
    gives the same gray levels (the same weights on the same channels) without that copy.
    """
    if image.ndim != 3:
        return image
    rgb = image[..., ::-1]
    if image.strides[2] < 0 and rgb.flags.c_contiguous:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _in_windows(points: np.ndarray, centers: np.ndarray, half: np.ndarray) -> np.ndarray:
    """``points (c, 2)``, ``centers (n, k, 2)``, ``half (n,)`` -> ``(k, n, c)`` float32 membership:
    ``|center - point| <= half`` along x and along y (a NaN centre holds no point). One axis at
    a time: no ``(k, n, c, 2)`` array and no reduction over its last axis of 2 (a tenth of the
    time)."""
    c = centers.transpose(1, 0, 2)                                   # (k, n, 2)
    h = half[None, :, None]
    inside = np.abs(c[:, :, None, 0] - points[:, 0]) <= h            # (k, n, c)
    inside &= np.abs(c[:, :, None, 1] - points[:, 1]) <= h
    return inside.astype(np.float32)


def joint_correspondence_iou(corr: np.ndarray, prev_kp: np.ndarray, cur_kp: np.ndarray,
                             half: np.ndarray | float,
                             half_cur: np.ndarray | float | None = None) -> np.ndarray:
    """Per-joint correspondence IoU between poses of the previous and the current frame.

    For joint ``j`` of previous pose ``a`` and current pose ``b``: the matches whose previous point
    lies in the square of half-size ``half`` around ``a_j`` and whose current point lies in the
    square around ``b_j``, divided by the matches in either square (PoseFlow's ``K_sim`` term, and
    AlphaPose's ``pose_iou_dm``).

    Args:
        corr: ``(c, 4)`` correspondences from :meth:`OrbMatcher.match`.
        prev_kp: ``(n, k, 2)`` poses in the previous frame.
        cur_kp: ``(m, k, 2)`` poses in the current frame.
        half: Window half-size in pixels around previous joints, scalar or ``(n,)``.
        half_cur: The same around current joints, scalar or ``(m,)``; default: ``half`` if scalar,
            else its median.

    Returns:
        ``(n, m, k)`` in [0, 1]; 0 without correspondences.
    """
    n, k = prev_kp.shape[:2]
    m = cur_kp.shape[0]
    if len(corr) == 0 or n == 0 or m == 0:
        return np.zeros((n, m, k))
    h = np.broadcast_to(np.asarray(half, dtype=np.float64), (n,))
    if half_cur is None:
        half_cur = float(np.median(h))
    hb = np.broadcast_to(np.asarray(half_cur, dtype=np.float64), (m,))
    a = _in_windows(corr[:, :2], prev_kp, h)          # (k, n, c)
    b = _in_windows(corr[:, 2:], cur_kp, hb)          # (k, m, c)
    inter = a @ b.transpose(0, 2, 1)                  # (k, n, m)
    union = a.sum(-1)[:, :, None] + b.sum(-1)[:, None, :] - inter
    out = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out.transpose(1, 2, 0).astype(np.float64)


def box_correspondence_iou(corr: np.ndarray, prev_boxes: np.ndarray,
                           cur_boxes: np.ndarray) -> np.ndarray:
    """Correspondences with the previous point in box ``a`` and the current in box ``b``, over
    those in either box: ``(n, 4), (m, 4) -> (n, m)`` (AlphaPose's ``dm_iou``)."""
    n, m = len(prev_boxes), len(cur_boxes)
    if len(corr) == 0 or n == 0 or m == 0:
        return np.zeros((n, m))

    def inside(pts, boxes):
        return ((pts[None, :, 0] >= boxes[:, None, 0]) & (pts[None, :, 0] <= boxes[:, None, 2])
                & (pts[None, :, 1] >= boxes[:, None, 1]) & (pts[None, :, 1] <= boxes[:, None, 3])
                ).astype(np.float32)

    a = inside(corr[:, :2], np.asarray(prev_boxes, dtype=np.float64))
    b = inside(corr[:, 2:], np.asarray(cur_boxes, dtype=np.float64))
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float64)
