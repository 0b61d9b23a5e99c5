"""Time the estimator's crop step on the CPU, both ways, side by side in one process.

    python tools/time_crops.py VIDEO [--frames 8] [--repeat 5]

The people are the default detector's (RTMDet) on the first frames of VIDEO, cropped at the
default SPPE's input size with the default outside-box masks; each repeat times, alternating,
the batched ``grid_sample`` crops of whole frames converted to float (``frames_to_tensor`` +
``crop_boxes``, the GPU path) and the OpenCV crops of the uint8 frames (``warp_crops``, the CPU
path). Prints the best milliseconds per crop of each and their ratio, on one torch thread.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from posetracker.app.build import build_estimator
from posetracker.app.settings import AppConfig
from posetracker.estimators.transform import box_regions, crop_affines, crop_boxes, frames_to_tensor, warp_crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = AppConfig().estimator
    est = build_estimator(config)
    cap = cv2.VideoCapture(args.video)
    frames = []
    while len(frames) < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(frame[..., ::-1]))
    cap.release()
    dets = est.detect(frames)
    fidx = np.repeat(np.arange(len(frames)), [len(d) for d in dets])
    boxes = np.concatenate(dets)[:, :4]
    size = est.sppe.input_size
    A = crop_affines(box_regions(boxes, size, config.sppe.scale_factor), size)
    pad = config.sppe.mask_margin * (boxes[:, 2:] - boxes[:, :2])
    keep = np.concatenate([boxes[:, :2] - pad, boxes[:, 2:] + pad], axis=1)
    sizes = np.array([f.shape[:2] for f in frames])
    ways = {
        "grid_sample (float frames)": lambda: crop_boxes(frames_to_tensor(frames), fidx, A, size,
                                                         frame_sizes=sizes, keep_regions=keep),
        "OpenCV (uint8 frames)": lambda: warp_crops(frames, fidx, A, size, keep),
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(args.repeat):
        for name, way in ways.items():
            t = time.perf_counter()
            way()
            best[name] = min(best[name], time.perf_counter() - t)
    h, w = frames[0].shape[:2]
    print(f"{args.video}: {len(frames)} frames {w}x{h}, {len(boxes)} crops of {size[1]}x{size[0]}")
    for name, seconds in best.items():
        print(f"  {name}: {1e3 * seconds / len(boxes):.2f} ms per crop")
    old, new = best.values()
    print(f"  ratio: {old / new:.1f}x")


if __name__ == "__main__":
    main()
