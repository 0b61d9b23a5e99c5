"""Write tests/golden/tfjs_golden.npz: outputs of the shared TF.js models computed by TensorFlow.js itself.

The reference is the pure-JavaScript ``@tensorflow/tfjs`` (cpu backend, no native binary) running
``tools/tfjs_reference.mjs``; it is independent of this project's torch importer. Run once:

    mkdir -p /tmp/tfjsref && (cd /tmp/tfjsref && npm init -y && npm install @tensorflow/tfjs@4)
    python tools/make_tfjs_golden.py --tfjs-dir /tmp/tfjsref

Inputs are rebuilt by the tests from the shared data with the same deterministic recipe:
``square_crop`` (nearest-neighbour, integer indexing) of COCO people (GT boxes, scale 1.25) for
MoveNet, and of the whole image (scale 1.0, a letterboxed resize) for the detectors.
Only small slices of the outputs are stored (the file stays a few KB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from posetracker.estimators.movenet import square_crop  # noqa: E402

# The people used: first three COCO annotations (by id) with >= 10 labelled keypoints on distinct images.
N_PEOPLE = 3
DETECTOR_IMAGE_INDEX = 0  # first image (by id) with such a person
ROWS = 4  # rows kept per NanoDet output


def pick_people(annotations: dict) -> list[dict]:
    chosen, images = [], set()
    for a in sorted(annotations["annotations"], key=lambda a: a["id"]):
        if a["num_keypoints"] >= 10 and a["image_id"] not in images and not a.get("iscrowd", 0):
            chosen.append(a)
            images.add(a["image_id"])
        if len(chosen) == N_PEOPLE:
            break
    return chosen


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(image[:, :, ::-1])


def movenet_inputs(data_dir: Path, size: int) -> tuple[np.ndarray, list[int]]:
    ann = json.loads((data_dir / "coco_mini_val2017/annotations/person_keypoints_val2017.json").read_text())
    files = {i["id"]: i["file_name"] for i in ann["images"]}
    crops, ids = [], []
    for a in pick_people(ann):
        x, y, w, h = a["bbox"]
        image = read_rgb(data_dir / "coco_mini_val2017/val2017" / files[a["image_id"]])
        crops.append(square_crop(image, [x, y, x + w, y + h], size)[0])
        ids.append(a["id"])
    return np.stack(crops), ids


def detector_image(data_dir: Path) -> tuple[np.ndarray, str]:
    ann = json.loads((data_dir / "coco_mini_val2017/annotations/person_keypoints_val2017.json").read_text())
    files = {i["id"]: i["file_name"] for i in ann["images"]}
    name = files[pick_people(ann)[DETECTOR_IMAGE_INDEX]["image_id"]]
    return read_rgb(data_dir / "coco_mini_val2017/val2017" / name), name


def run_tfjs(tfjs_dir: Path, model_json: Path, inputs: np.ndarray, shape: tuple[int, ...]) -> dict:
    dtype = "int32" if inputs.dtype == np.int32 else "float32"
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.bin", Path(tmp) / "out.json"
        inputs.astype("<i4" if dtype == "int32" else "<f4").tofile(inp)
        subprocess.run(["node", str(REPO / "tools/tfjs_reference.mjs"), str(model_json), str(inp), dtype,
                        ",".join(map(str, shape)), str(out)], cwd=tfjs_dir, check=True)
        doc = json.loads(out.read_text())
    print(f"{model_json.name}: TF.js {doc['version']} backend {doc['backend']}")
    # Output names without a ":0" suffix, as the graph's nodes are named.
    return {k.removesuffix(":0"): np.asarray(v, dtype=np.float32).reshape((-1, *doc["shapes"][k][1:]))
            for k, v in doc["outputs"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfjs-dir", type=Path, required=True, help="folder where @tensorflow/tfjs is installed")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=REPO / "tests/golden/tfjs_golden.npz")
    args = parser.parse_args()
    models, data = args.shared / "models", args.shared / "data"
    golden: dict[str, np.ndarray] = {}
    for variant, size in (("thunder", 256), ("lightning", 192)):
        crops, ids = movenet_inputs(data, size)
        out = run_tfjs(args.tfjs_dir, models / f"movenet-{variant}.json", crops.astype(np.int32), (1, size, size, 3))
        golden[f"movenet-{variant}.annotation_ids"] = np.asarray(ids)
        golden[f"movenet-{variant}.output"] = out["Identity"][:, 0]  # (3, 17, 3): y, x, score
    image, name = detector_image(data)
    golden["detector.image"] = np.asarray(name)
    x = square_crop(image, [0, 0, image.shape[1], image.shape[0]], 512, scale=1.0)[0].astype(np.float32)
    out = run_tfjs(args.tfjs_dir, models / "centernet.json", x[None], (1, 512, 512, 3))
    golden["centernet.detections"] = out["tower_0/detections"][0, :20]  # (20, 6)
    x = square_crop(image, [0, 0, image.shape[1], image.shape[0]], 416, scale=1.0)[0].astype(np.float32)
    x = np.ascontiguousarray((x / 255.0).transpose(2, 0, 1))[None]
    out = run_tfjs(args.tfjs_dir, models / "nanodet.json", x, (1, 3, 416, 416))
    for name, value in sorted(out.items()):
        rows = np.linspace(0, value.shape[1] - 1, ROWS).round().astype(int)
        golden[f"nanodet.{name}.rows"] = rows
        golden[f"nanodet.{name}"] = value[0, rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **golden)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
