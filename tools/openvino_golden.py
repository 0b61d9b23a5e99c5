"""Run an OpenVINO IR through OpenVINO's own runtime and through the torch reader
(:mod:`posetracker.estimators.runtimes.openvino_ir`) on the same real inputs, and print the largest absolute
difference of every output.

Inputs: person crops (the ground-truth boxes of a COCO annotation file, padded to the input's
aspect ratio, x1.25, by an affine warp: the PP-TinyPose preprocessing) when ``--coco`` is given,
else whole images resized to the input size (the PicoDet preprocessing); RGB / 255, ImageNet
mean/std. OpenVINO runs with ``INFERENCE_PRECISION_HINT: f32``, its model reshaped to the batch.

Examples::

    python tools/openvino_golden.py ../shared/models/tinypose-256x192.xml \\
        --coco ../shared/data/coco_mini_val2017/annotations/person_keypoints_val2017.json --batch 4
    python tools/openvino_golden.py ../shared/models/picodet-s-320-pedestrian.xml \\
        --images ../shared/data/coco_mini_val2017/val2017/000000000139.jpg --batch 3

Exit status 0 when every float output is within ``--tol`` (relative to the output's largest
magnitude, at least 1) and every integer output agrees, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalise(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, RGB / 255 with ImageNet mean/std."""
    return ((rgb.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


def person_crop(rgb: np.ndarray, box_xywh: tuple[float, float, float, float], size: tuple[int, int],
                scale: float = 1.25) -> np.ndarray:
    """The box (x, y, w, h pixels) padded to the aspect ratio of ``size`` (h, w), enlarged by
    ``scale`` around its centre, warped to ``size`` -> (h, w, 3) uint8."""
    import cv2

    x, y, w, h = box_xywh
    out_h, out_w = size
    cx, cy = x + w / 2, y + h / 2
    aspect = out_w / out_h
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    w, h = w * scale, h * scale
    src = np.float32([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx - w / 2, cy + h / 2]])
    dst = np.float32([[0, 0], [out_w, 0], [0, out_h]])
    m = cv2.getAffineTransform(src, dst)
    return cv2.warpAffine(rgb, m, (out_w, out_h), flags=cv2.INTER_LINEAR)


def coco_person_crops(annotations: Path, images: Path | None, size: tuple[int, int], n: int
                      ) -> np.ndarray:
    """``n`` person crops (n, 3, h, w) from the largest non-crowd ground-truth people."""
    import cv2

    doc = json.loads(Path(annotations).read_text())
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    folder = Path(images) if images else Path(annotations).parent.parent / "val2017"
    people = sorted((a for a in doc["annotations"] if not a.get("iscrowd") and a["category_id"] == 1),
                    key=lambda a: -a["area"])[:n]
    out = []
    for a in people:
        bgr = cv2.imread(str(folder / files[a["image_id"]]))
        if bgr is None:
            raise SystemExit(f"cannot read {folder / files[a['image_id']]}")
        out.append(normalise(person_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), a["bbox"], size)))
    return np.stack(out)


def resized_images(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """Whole images resized (not letterboxed) to ``size`` (h, w) -> (n, 3, h, w)."""
    import cv2

    out = []
    for p in paths:
        bgr = cv2.imread(str(p))
        if bgr is None:
            raise SystemExit(f"cannot read {p}")
        rgb = cv2.cvtColor(cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_LINEAR),
                           cv2.COLOR_BGR2RGB)
        out.append(normalise(rgb))
    return np.stack(out)


def openvino_outputs(xml: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """OpenVINO CPU, float32 inference precision, model reshaped to ``x``'s shape."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape({model.inputs[0]: list(x.shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({0: x})
    return {o.get_any_name(): np.asarray(result[o]) for o in compiled.outputs}


def compare(xml: Path, x: np.ndarray, weights: Path | None = None
            ) -> list[tuple[str, tuple[int, ...], float, float]]:
    """(output name, shape, max |reference|, max |torch - reference|) for every output."""
    import torch

    from posetracker.estimators.runtimes.openvino_ir import load_openvino_ir

    module = load_openvino_ir(xml, weights)
    with torch.inference_mode():
        ours = {k: v.numpy() for k, v in module(torch.from_numpy(x)).items()}
    ref = openvino_outputs(xml, x)
    rows = []
    for name, r in ref.items():
        o = ours[name]
        if o.shape != r.shape:
            raise SystemExit(f"{name}: torch shape {o.shape} != OpenVINO {r.shape}")
        diff = float(np.abs(o.astype(np.float64) - r.astype(np.float64)).max()) if r.size else 0.0
        rows.append((name, tuple(r.shape), float(np.abs(r).max()) if r.size else 0.0, diff))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("xml", type=Path, help="the IR .xml (its .bin beside it)")
    p.add_argument("--weights", type=Path, help="the .bin when not beside the .xml")
    p.add_argument("--images", type=Path, nargs="+", help="images, resized whole to the input")
    p.add_argument("--coco", type=Path, help="COCO annotation file: crop its people instead")
    p.add_argument("--coco-images", type=Path, help="image folder of --coco (default: ../val2017)")
    p.add_argument("--batch", type=int, default=1, help="inputs per forward pass (default 1)")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="largest float difference, relative to max(1, max |output|) (default 1e-4)")
    args = p.parse_args(argv)
    if args.batch < 1 or not (args.images or args.coco):
        p.error("give --images or --coco, and a positive --batch")

    from posetracker.estimators.runtimes.openvino_ir import load_openvino_ir

    shape = tuple(load_openvino_ir(args.xml, args.weights).input_shape)
    size = (int(shape[2]), int(shape[3]))
    if args.coco:
        x = coco_person_crops(args.coco, args.coco_images, size, args.batch)
    else:
        paths = (list(args.images) * args.batch)[:args.batch]
        x = resized_images(paths, size)
    ok = True
    print(f"{args.xml.name}: input {tuple(x.shape)}")
    for name, out_shape, peak, diff in compare(args.xml, x, args.weights):
        limit = args.tol * max(1.0, peak)
        good = diff <= limit
        ok &= good
        print(f"  {name:32s} {str(out_shape):18s} max|ref| {peak:10.4g}  max|diff| {diff:.3g}"
              f"  {'ok' if good else f'FAIL (limit {limit:.3g})'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
