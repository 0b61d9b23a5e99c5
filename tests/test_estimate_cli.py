"""`posetracker estimate`: bad input gives one line and exit 2; a golden run on real COCO images."""

from __future__ import annotations

import json
import shutil

import numpy as np

from posetracker.app.cli import main
from posetracker.core.schemas import COCO17

GOLDEN_IMAGES = ("000000192699.jpg", "000000183709.jpg", "000000397133.jpg")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("posetracker: error:"), err
    return err[0]


def test_missing_source(tmp_path, capsys):
    assert main(["estimate", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "p.json")]) == 2
    assert "nope.mp4" in _one_line_error(capsys)
    assert not (tmp_path / "p.json").exists()


def test_corrupt_image(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    assert main(["estimate", str(bad), "-o", str(tmp_path / "p.json")]) == 2
    assert "bad.jpg" in _one_line_error(capsys)


def test_bad_config_and_options(tmp_path, capsys):
    img = tmp_path / "x.png"
    img.write_bytes(b"")
    assert main(["estimate", str(tmp_path), "-o", str(tmp_path / "p.json"), "--set",
                 "estimate.estimator.nms.bogus=1"]) == 2
    assert "bogus" in _one_line_error(capsys)
    assert main(["estimate", str(tmp_path), "-o", str(tmp_path / "p.json"), "--gt-boxes"]) == 2
    assert "--gt" in _one_line_error(capsys)


def _oks(pred: np.ndarray, gt: np.ndarray, area: float) -> float:
    """COCO OKS of one prediction (17, 3) against one annotation (17, 3)."""
    vis = gt[:, 2] > 0
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(1)
    k2 = (2 * np.asarray(COCO17.sigmas)) ** 2
    return float(np.exp(-d2 / (2 * area * k2))[vis].mean())


def test_golden_estimate_on_real_images(tmp_path, data_dir, models_dir):
    """Detector + MoveNet Thunder find the annotated people of real COCO images (OKS > 0.5)."""
    coco = data_dir / "coco_mini_val2017"
    folder = tmp_path / "images"
    folder.mkdir()
    for name in GOLDEN_IMAGES:
        shutil.copy(coco / "val2017" / name, folder / name)
    gt_path = coco / "annotations" / "person_keypoints_val2017.json"
    out, stream = tmp_path / "out" / "preds.json", tmp_path / "out" / "frames.jsonl"
    rc = main(["estimate", str(folder), "-o", str(out), "--jsonl", str(stream), "--gt", str(gt_path),
               "--pose-model", str(models_dir / "movenet-thunder.json"),
               "--detector", str(models_dir / "yolo-fastest-1.1-xl.cfg"), "--device", "cpu", "-q"])
    assert rc == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["frames.jsonl", "preds.json"]
    assert len(stream.read_text().splitlines()) == len(GOLDEN_IMAGES)
    preds = json.loads(out.read_text())
    gt = json.loads(gt_path.read_text())
    ids = {im["id"] for im in gt["images"] if im["file_name"] in GOLDEN_IMAGES}
    assert {p["image_id"] for p in preds} <= ids
    assert all(len(p["keypoints"]) == 51 and 0 < p["score"] <= 1 for p in preds)
    people = [a for a in gt["annotations"] if a["image_id"] in ids and a["num_keypoints"] >= 8]
    found = 0
    for a in people:
        g = np.array(a["keypoints"], dtype=float).reshape(17, 3)
        best = max((_oks(np.array(p["keypoints"]).reshape(17, 3), g, a["area"]) for p in preds
                    if p["image_id"] == a["image_id"]), default=0.0)
        found += best > 0.5
    assert len(people) >= 4 and found >= 0.75 * len(people), (found, len(people))
