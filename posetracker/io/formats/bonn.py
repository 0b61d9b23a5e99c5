"""Bonn Multi-Person PoseTrack (Iqbal et al., CVPR 2017) ``annolist.mat`` -> :class:`VideoPoses`.

The file holds one struct per video: ``name``, ``num_frames``, ``num_persons`` and ``annopoints``,
a ``(num_persons, num_frames)`` cell array. A non-empty cell is the person (row = track id) in that
frame: ``head_rect`` (x1, y1, x2, y2) and ``point``, each with an MPII joint ``id`` (0-based, 14 of
MPII's 16: no pelvis, no thorax), ``x``, ``y``, ``is_visible``.

Videos come out in schema POSETRACK17 (MPII joints matched by name; the nose stays absent), every
frame labelled, visibility as the joint score (1 visible, 0 occluded) the way the PoseTrack readers
treat score-less ground truth, and ``meta["has_scores"] = False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posetracker.core.errors import InputError
from posetracker.core.poses import Frame, FramePoses, VideoPoses, keypoint_boxes, mean_joint_scores
from posetracker.core.schemas import BONN_MPII_IDS, MPII16, POSETRACK17, index_map

__all__ = ["read_bonn_mat"]


def _scalar(value, what: str, where: str) -> float:
    """MATLAB scalars come as ``(1, 1)`` arrays (nested inside object cells)."""
    arr = np.asarray(value)
    while arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.ravel()[0])
    if arr.size != 1:
        raise InputError(f"{where}: '{what}' should be one number, got shape {arr.shape}")
    return float(arr.ravel()[0])


def _column(points: np.ndarray, name: str, where: str, default: float | None = None
            ) -> np.ndarray:
    """One field of a ``(n,)`` struct array of points whose values are ``(1, 1)`` cells."""
    n = points.size
    if points.dtype.names is None or name not in points.dtype.names:
        if default is None:
            raise InputError(f"{where}: points have no field '{name}'")
        return np.full(n, default)
    cells = [np.asarray(c, dtype=np.float64).ravel() for c in points[name]]
    if any(c.size != 1 for c in cells):
        if default is None:
            raise InputError(f"{where}: a point's '{name}' is not one number")
        return np.array([c[0] if c.size else default for c in cells])
    return np.concatenate(cells) if n else np.zeros(0)


def _point_columns(points: np.ndarray, where: str):
    """``(ids int, x, y, visibility 0/1)`` arrays of the points of one person in one frame."""
    ids = _column(points, "id", where)
    if np.any(ids != np.round(ids)):
        raise InputError(f"{where}: non-integer joint id")
    vis = (_column(points, "is_visible", where, default=1.0) > 0).astype(np.float64)
    return ids.astype(np.int64), _column(points, "x", where), _column(points, "y", where), vis


def _field(rec, name: str, where: str):
    if rec.dtype.names is None or name not in rec.dtype.names:
        raise InputError(f"{where}: missing field '{name}'")
    return rec[name]


def read_bonn_mat(path: str | Path) -> list[VideoPoses]:
    """Read a Bonn ``annolist.mat`` into one :class:`VideoPoses` per video (named by ``name``)."""
    import scipy.io

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        # Record arrays (scipy's default) load about 40 % faster than squeezed mat_struct objects.
        mat = scipy.io.loadmat(str(p))
    except Exception as e:  # scipy raises several types for non-MAT input
        raise InputError(f"{p}: not a readable MATLAB file ({e})") from None
    if "annolist" not in mat:
        raise InputError(f"{p}: no 'annolist' variable (not a Bonn PoseTrack annotation file)")
    mpii_to_pt17 = index_map(MPII16, POSETRACK17)
    schema = POSETRACK17
    k = schema.num_keypoints
    videos = []
    for vi, vid in enumerate(np.asarray(mat["annolist"]).ravel()):
        where = f"{p}: video {vi}"
        name = str(np.asarray(_field(vid, "name", where)).ravel()[0])
        where = f"{p}: video {name}"
        num_frames = int(_scalar(_field(vid, "num_frames", where), "num_frames", where))
        num_persons = int(_scalar(_field(vid, "num_persons", where), "num_persons", where))
        cells = np.asarray(_field(vid, "annopoints", where), dtype=object)
        if cells.size != num_frames * num_persons:
            raise InputError(f"{where}: annopoints has {cells.size} cells, expected "
                             f"{num_persons} persons x {num_frames} frames")
        cells = cells.reshape(num_persons, num_frames)
        frames = []
        for t in range(num_frames):
            kps, scs, heads, tids = [], [], [], []
            for tid in range(num_persons):
                cell = np.asarray(cells[tid, t])
                if cell.size == 0 or cell.dtype.names is None or "point" not in cell.dtype.names:
                    continue  # empty cell: the person is not in this frame
                cell = cell.ravel()[0]
                fwhere = f"{where}: frame {t}, person {tid}"
                kp = np.full((k, 2), np.nan)
                sc = np.zeros(k)
                points = np.asarray(cell["point"]).ravel()
                ids, xs, ys, vis = _point_columns(points, fwhere)
                bad = ~np.isin(ids, BONN_MPII_IDS)
                if bad.any():
                    raise InputError(f"{fwhere}: MPII joint id {int(ids[bad][0])} is not one "
                                     "Bonn annotates")
                j = mpii_to_pt17[ids]
                kp[j, 0], kp[j, 1] = xs, ys
                sc[j] = vis
                head = np.zeros(0)
                if "head_rect" in cell.dtype.names:
                    head = np.asarray(cell["head_rect"], dtype=np.float64).ravel()
                heads.append(head if head.size == 4 else np.full(4, np.nan))
                kps.append(kp)
                scs.append(sc)
                tids.append(tid)
            n = len(kps)
            kp_arr = np.array(kps).reshape(n, k, 2)
            sc_arr = np.array(scs).reshape(n, k)
            # Annotations carry no person score: the mean joint score stands in (no detector).
            poses = FramePoses(kp_arr, sc_arr, keypoint_boxes(kp_arr),
                               mean_joint_scores(kp_arr, sc_arr), schema,
                               track_ids=np.array(tids, dtype=np.int64),
                               head_boxes=np.array(heads).reshape(n, 4))
            frames.append(Frame(index=t, poses=poses, image=f"{name}/{t + 1:05d}.jpg",
                                labeled=True, image_id=t + 1))
        videos.append(VideoPoses(name, frames, schema,
                                 meta={"format": "bonn", "has_scores": False}))
    return videos
