"""Inputs for the viewer tests: a real Bonn PoseTrack sequence (ground truth) with predictions made
from it by perturbation (noise, a persistent id swap, dropped people, extra people), and blank
frames of the right count for it to play over."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from posetracker.core.poses import Frame, FramePoses, VideoPoses

SEQ = "000002"  # Bonn test video: 151 frames, 4 people


def perturbed(gt: VideoPoses, seed: int = 0) -> VideoPoses:
    """Predictions from ``gt``: joint noise of 3 px, the first two ids swapped from the middle on,
    the last person dropped every 7th frame, a shifted copy of the first person every 5th."""
    rng = np.random.default_rng(seed)
    frames = []
    half = len(gt) // 2
    for i, f in enumerate(gt.frames):
        p = f.poses
        kp = np.asarray(p.keypoints) + rng.normal(0, 3, np.shape(p.keypoints))
        sc = np.where(np.isfinite(kp).all(-1), rng.uniform(0.2, 1.0, kp.shape[:2]), 0.0)
        ids = np.asarray(p.track_ids).copy()
        if i >= half and len(ids) >= 2:
            ids[[0, 1]] = ids[[1, 0]]
        keep = np.ones(len(ids), bool)
        if i % 7 == 3 and len(ids):
            keep[-1] = False
        kp, sc, ids = kp[keep], sc[keep], ids[keep]
        if i % 5 == 0 and len(ids):
            kp = np.concatenate([kp, kp[:1] + 120.0])
            sc = np.concatenate([sc, sc[:1]])
            ids = np.append(ids, 900)
        frames.append(Frame(f.index, FramePoses.from_keypoints(kp, sc, gt.schema, track_ids=ids),
                            f.image))
    return VideoPoses(gt.name, frames, gt.schema)


def blank_frames(folder: Path, count: int, width: int = 320, height: int = 240) -> Path:
    """``count`` dark grey PNG frames ``000000.png``... in ``folder``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = np.full((height, width, 3), 40, np.uint8)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:06d}.png"), img)
    return folder


def view(*args) -> subprocess.CompletedProcess:
    """``posetracker view ARGS``, its output captured."""
    return subprocess.run(["posetracker", "view", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def make_case(data_dir: Path, d: Path) -> dict:
    """Files of Bonn sequence :data:`SEQ` in ``d``: ground truth, perturbed predictions, blank
    frames, and the page ``view`` makes of them (``gt``, ``pred``, ``frames``, ``page`` paths;
    ``gt_video``, ``pred_video`` the poses)."""
    from posetracker.io.formats.bonn import read_bonn_mat
    from posetracker.io.formats.posetrack import write_posetrack17

    videos = read_bonn_mat(data_dir / "bonn_posetrack/annolist/test/annolist.mat")
    gt = next(v for v in videos if v.name == SEQ)
    gt_file, pred_file = d / "gt" / f"{SEQ}.json", d / "pred" / f"{SEQ}.json"
    gt_file.parent.mkdir()
    pred_file.parent.mkdir()
    pred = perturbed(gt)
    write_posetrack17(gt, gt_file)
    write_posetrack17(pred, pred_file)
    frames = blank_frames(d / "frames", len(gt), 720, 540)
    page = d / "report.html"
    r = view(pred_file, "--video", frames, "--gt", gt_file, "-o", page)
    assert r.returncode == 0, r.stderr
    return {"dir": d, "gt": gt_file, "pred": pred_file, "frames": frames, "page": page,
            "pred_video": pred, "gt_video": gt}
