"""Detector-like noise on ground-truth poses, for tracking experiments on real annotations.

Ground truth is what a perfect detector would give; a real one jitters joints, drops joints, misses
people for stretches of frames (occlusion, motion blur) and adds false positives: duplicate poses of
one person (which a pose NMS failed to remove, often for several frames) and poses on background.
Every kind has a rate; :data:`NOISE_LEVELS` names three presets. Track ids are removed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from posetracker.core.poses import FramePoses, VideoPoses, keypoint_boxes
from posetracker.tracker.similarity import person_scale


@dataclass(frozen=True)
class NoiseLevel:
    """Rates of the perturbations.

    Attributes:
        jitter: Standard deviation of joint displacement, as a fraction of the person size
            (``sqrt`` of the joints' box area).
        drop_joint: Probability that a joint is not detected.
        miss: Fraction of a person's frames in which the person is missed.
        miss_len: Mean length in frames of a run of misses.
        duplicate: Fraction of a person's frames with a second, shifted pose of the same person.
        duplicate_len: Mean length in frames of a run of duplicates.
        background: False-positive poses on background per real person per frame.
    """

    jitter: float = 0.03
    drop_joint: float = 0.1
    miss: float = 0.1
    miss_len: float = 4.0
    duplicate: float = 0.05
    duplicate_len: float = 4.0
    background: float = 0.05


NOISE_LEVELS: dict[str, NoiseLevel] = {
    "none": NoiseLevel(0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0),
    "low": NoiseLevel(jitter=0.015, drop_joint=0.05, miss=0.05, miss_len=3.0, duplicate=0.02,
                      duplicate_len=3.0, background=0.02),
    "moderate": NoiseLevel(),
    "high": NoiseLevel(jitter=0.06, drop_joint=0.2, miss=0.2, miss_len=6.0, duplicate=0.1,
                       duplicate_len=6.0, background=0.1),
}


def _runs(rng: np.random.Generator, n: int, fraction: float, mean_len: float) -> np.ndarray:
    """``(n,)`` bool: a two-state Markov chain on for ``fraction`` of the time in runs of mean
    length ``mean_len``."""
    if fraction <= 0:
        return np.zeros(n, dtype=bool)
    p_off = 1.0 / max(mean_len, 1.0)
    p_on = min(1.0, fraction * p_off / max(1e-9, 1.0 - fraction))
    out = np.zeros(n, dtype=bool)
    state = rng.random() < fraction
    for i in range(n):
        out[i] = state
        state = (rng.random() >= p_off) if state else (rng.random() < p_on)
    return out


def _noisy_pose(rng, kp, scale, level: NoiseLevel, score_range):
    """Jittered copy of ``kp (k, 2)`` with dropped joints and detector-like scores."""
    present = np.isfinite(kp).all(-1)
    out = kp + rng.normal(0.0, level.jitter * scale, kp.shape)
    keep = present & (rng.random(len(kp)) >= level.drop_joint)
    out[~keep] = np.nan
    scores = np.where(keep, rng.uniform(*score_range, len(kp)), 0.0)
    return out, scores


def perturb_video(video: VideoPoses, level: NoiseLevel, seed: int) -> VideoPoses:
    """A copy of ``video`` as a detector with ``level``'s error rates would see it, without ids.

    Args:
        video: Ground truth with track ids (used only to make misses and duplicates persist).
        level: The rates.
        seed: Random seed; the same seed gives the same output.

    Returns:
        Untracked frames (no head boxes) with per-joint and per-pose scores: real people's joints
        score in [0.5, 1], false positives' in [0.1, 0.6].
    """
    rng = np.random.default_rng(seed)
    schema = video.schema
    n_frames = len(video.frames)
    tids = sorted({int(t) for f in video.frames
                   for t in (f.poses.track_ids if f.poses.track_ids is not None
                             else range(len(f.poses)))})
    missed = {t: _runs(rng, n_frames, level.miss, level.miss_len) for t in tids}
    duplicated = {t: _runs(rng, n_frames, level.duplicate, level.duplicate_len) for t in tids}
    dup_offset = {t: rng.normal(0.0, 0.15, 2) for t in tids}   # a duplicate's steady displacement
    all_kp = [f.poses.keypoints for f in video.frames if len(f.poses)]
    extent = None
    if all_kp:
        cat = np.concatenate(all_kp).reshape(-1, 2)
        extent = (np.nanmin(cat, 0), np.nanmax(cat, 0))
    frames = []
    for fi, frame in enumerate(video.frames):
        gt = frame.poses
        ids = gt.track_ids if gt.track_ids is not None else np.arange(len(gt))
        scales = person_scale(keypoint_boxes(gt.keypoints))
        kps = []
        for i in range(len(gt)):
            if not np.isfinite(gt.keypoints[i]).any():
                continue
            tid = int(ids[i])
            if not missed[tid][fi]:
                kps.append(_noisy_pose(rng, gt.keypoints[i], scales[i], level, (0.5, 1.0)))
            if duplicated[tid][fi]:
                shifted = gt.keypoints[i] + dup_offset[tid] * scales[i]
                kps.append(_noisy_pose(rng, shifted, scales[i], level, (0.1, 0.6)))
        n_bg = rng.poisson(level.background * len(gt)) if len(gt) and extent is not None else 0
        for _ in range(n_bg):
            src = gt.keypoints[rng.integers(len(gt))]
            if not np.isfinite(src).any():
                continue
            centre = np.nanmean(src, 0)
            target = rng.uniform(extent[0], extent[1])
            scale = person_scale(keypoint_boxes(src[None]))[0]
            kps.append(_noisy_pose(rng, src - centre + target, scale, level, (0.1, 0.6)))
        kps = [(kp, sc) for kp, sc in kps if np.isfinite(kp).any()]
        if kps:
            kp = np.stack([p for p, _ in kps])
            sc = np.stack([s for _, s in kps])
            poses = FramePoses.from_keypoints(kp, sc, schema)
        else:
            poses = FramePoses.empty(schema)
        frames.append(dataclasses.replace(frame, poses=poses))
    return VideoPoses(video.name, frames, schema, meta=dict(video.meta))
