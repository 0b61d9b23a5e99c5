"""SPPE training (``posetracker train``): loss goes down, checkpoints round-trip through ``estimate``,
resume and Ctrl-C, joint-candidate targets, the crowd compositor, PGPG, the STN, and bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from posetracker.app.cli import main
from posetracker.app.training import JOINT_CANDIDATE_LOSS, load_training_data

COCO_JSON = "coco_mini_val2017/annotations/person_keypoints_val2017.json"
COCO_IMAGES = "coco_mini_val2017/val2017"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("posetracker: error:"), err
    return err[0]


def _no_aug(**kw):
    from posetracker.estimators.training.config import TrainSettings

    fixed = dict(scale_jitter=0, shift_jitter=0, rotation_prob=0, flip_prob=0, val_every=0,
                 checkpoint_every=0)
    return TrainSettings(**{**fixed, **kw})


def test_jc_target_shows_other_people_at_mu(data_dir):
    from posetracker.estimators.training.data import CropMaker

    data = load_training_data(data_dir / COCO_JSON, data_dir / COCO_IMAGES)
    crowded = [i for i, p in enumerate(data.people) if len(data.people_of_image[p.image_id]) >= 3]
    assert crowded
    idx = crowded[:4]
    rng = np.random.default_rng(0)
    jc = CropMaker(data, (256, 192), (64, 48), _no_aug(loss="jc", mu=0.5),
                   JOINT_CANDIDATE_LOSS).batch(idx, rng, False)
    mse = CropMaker(data, (256, 192), (64, 48), _no_aug(loss="mse"),
                    JOINT_CANDIDATE_LOSS).batch(idx, rng, False)
    assert jc.targets.shape == (len(idx), 17, 64, 48)
    diff = jc.targets - mse.targets
    assert diff.min() >= -1e-6
    # Interference peaks are at height mu (0.5) where a neighbour's joint is alone in its area.
    assert 0.45 < diff.amax().item() <= 0.5 * 3 + 1e-6
    assert torch.equal(jc.weights, mse.weights)
    assert mse.targets.amax().item() <= 1.0 + 1e-6


def test_few_steps_lower_the_loss_and_the_checkpoint_runs_in_estimate(tmp_path, data_dir,
                                                                      models_dir, capsys):
    from posetracker.app.training import validation_ap
    from posetracker.association.loss import joint_candidate_loss
    from posetracker.estimators.sppe import load_sppe
    from posetracker.estimators.training.loop import BaseModel, Trainer

    xml = models_dir / "tinypose-256x192.xml"
    data = load_training_data(data_dir / COCO_JSON, data_dir / COCO_IMAGES)
    data = dataclasses.replace(data, people=data.people[:4])
    sppe = load_sppe(xml)
    ckpt = tmp_path / "ft.safetensors"
    val = load_training_data(data_dir / COCO_JSON, data_dir / COCO_IMAGES)
    settings = _no_aug(steps=3, batch_size=4, val_every=2, val_images=3)
    trainer = Trainer(sppe, BaseModel(str(xml), xml), data, settings, ckpt, JOINT_CANDIDATE_LOSS,
                      val=val, score=validation_ap)
    batch = trainer.crops.batch(np.arange(4), np.random.default_rng(0), augment=False)

    def loss() -> float:
        with torch.no_grad():
            return joint_candidate_loss(sppe.network.heatmaps(batch.crops), batch.targets,
                                        batch.weights).item()

    before = loss()
    result = trainer.run()
    after = loss()
    assert result.steps == 3 and len(result.losses) == 3
    # Periodic validation (step 2) and the final one, COCO AP of the estimator on 3 images.
    assert [s for s, _ in result.validations] == [2, 3]
    assert all(0.0 <= ap <= 1.0 for _, ap in result.validations)
    assert after < 0.8 * before, (before, after)

    # The checkpoint holds exactly the trained network.
    again = load_sppe(xml, weights=ckpt)
    with torch.no_grad():
        assert torch.allclose(again.network.heatmaps(batch.crops),
                              sppe.network.heatmaps(batch.crops), atol=1e-5)

    # ... and runs in `estimate --pose-model CKPT.safetensors`.
    folder = tmp_path / "images"
    folder.mkdir()
    names = sorted({data.images[p.image_id]["file_name"] for p in data.people})
    for name in names:
        shutil.copy(data_dir / COCO_IMAGES / name, folder / name)
    out = tmp_path / "preds.json"
    rc = main(["estimate", str(folder), "--gt", str(data_dir / COCO_JSON), "--gt-boxes",
               "--pose-model", str(ckpt), "--no-flip", "--device", "cpu", "-o", str(out), "-q"])
    assert rc == 0, capsys.readouterr().err
    preds = json.loads(out.read_text())
    assert preds and all(len(p["keypoints"]) == 51 for p in preds)


def test_cli_training_is_interruptible_and_resumable(tmp_path, data_dir, models_dir, monkeypatch):
    from posetracker.core.fileio import sha256_file
    from posetracker.estimators.checkpoint import read_checkpoint
    from posetracker.estimators.training import loop

    ckpt = tmp_path / "run.safetensors"
    args = ["train", "sppe", "--annotations", str(data_dir / COCO_JSON), "--images",
            str(data_dir / COCO_IMAGES), "--init", str(models_dir / "tinypose-256x192.xml"),
            "--out", str(ckpt), "--batch-size", "2", "--checkpoint-every", "100", "--val-every",
            "0", "--device", "cpu", "--quiet"]
    real_step = loop.Trainer.train_step

    def ctrl_c_at_step_2(self):
        if self.step == 1:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(loop.Trainer, "train_step", ctrl_c_at_step_2)
    assert main(args + ["--steps", "3"]) == 130
    _, meta = read_checkpoint(ckpt)
    assert meta["step"] == "1"  # the last finished step was kept
    monkeypatch.setattr(loop.Trainer, "train_step", real_step)
    assert main(args + ["--steps", "2", "--resume", str(ckpt)]) == 0
    tensors, meta = read_checkpoint(ckpt)
    assert meta["step"] == "2"
    assert meta["schema"] == "coco17" and meta["input_size"] == "256x192"
    assert meta["base_sha256"] == sha256_file(models_dir / "tinypose-256x192.xml")
    assert json.loads(meta["data"])["train"] == sha256_file(data_dir / COCO_JSON)
    assert json.loads(meta["settings"])["loss"] == "jc"
    assert any(k.startswith("optim.") for k in tensors)


def test_bad_training_input_exits_2_with_one_line(tmp_path, data_dir, models_dir, capsys):
    ann = data_dir / COCO_JSON
    base = ["train", "sppe", "--init", str(models_dir / "tinypose-256x192.xml"), "--steps", "1",
            "--quiet"]
    out = str(tmp_path / "c.safetensors")
    # missing images
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(base + ["--annotations", str(ann), "--images", str(empty), "--out", out]) == 2
    assert "missing" in _one_line_error(capsys)
    # wrong joint count
    doc = json.loads(ann.read_text())
    doc["categories"][0]["keypoints"] = doc["categories"][0]["keypoints"][:5]
    for a in doc["annotations"]:
        a["keypoints"] = a["keypoints"][:15]
    bad = tmp_path / "five.json"
    bad.write_text(json.dumps(doc))
    assert main(base + ["--annotations", str(bad), "--images", str(data_dir / COCO_IMAGES),
                        "--out", out]) == 2
    assert "5 joints" in _one_line_error(capsys)
    # annotations whose keypoint lists disagree with their category
    doc = json.loads(ann.read_text())
    doc["annotations"][0]["keypoints"] = doc["annotations"][0]["keypoints"][:42]
    bad.write_text(json.dumps(doc))
    assert main(base + ["--annotations", str(bad), "--images", str(data_dir / COCO_IMAGES),
                        "--out", out]) == 2
    assert "expected 51" in _one_line_error(capsys)
    # unreadable checkpoints: as --init, as --resume, and as --pose-model in estimate
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    good = ["--annotations", str(ann), "--images", str(data_dir / COCO_IMAGES), "--out", out]
    assert main(["train", "sppe", "--init", str(junk), "--quiet"] + good) == 2
    assert "junk.safetensors" in _one_line_error(capsys)
    assert main(base + good + ["--resume", str(junk)]) == 2
    assert "junk.safetensors" in _one_line_error(capsys)
    assert main(["estimate", str(data_dir / COCO_IMAGES), "--pose-model", str(junk), "-o",
                 str(tmp_path / "p.json"), "--max-frames", "1"]) == 2
    assert "junk.safetensors" in _one_line_error(capsys)
    assert main(base + good[:-1] + [str(tmp_path / "c.pt")]) == 2
    assert ".safetensors" in _one_line_error(capsys)
    assert not (tmp_path / "c.safetensors").exists()


def test_crowd_compositor_is_valid_coco_split_disjoint_and_seeded(tmp_path, data_dir):
    from pycocotools.coco import COCO

    from posetracker.estimators.training.crowds import CrowdSettings, make_crowds
    from posetracker.io.formats.coco import read_coco_gt

    settings = CrowdSettings(per_image=1, seed=3)
    source = read_coco_gt(data_dir / COCO_JSON)
    summary = make_crowds(source, data_dir / COCO_IMAGES, tmp_path / "a", settings)
    sources = {}
    for split in ("train", "val"):
        path = tmp_path / "a" / f"{split}.json"
        ds = read_coco_gt(path)  # the project's validation
        COCO(str(path))          # and pycocotools' own index
        assert summary[split]["pasted"] > 0 and summary[split]["images"] == len(ds.images)
        for im in ds.images:
            f = tmp_path / "a" / split / im["file_name"]
            assert f.is_file()
        sources[split] = {s for im in ds.images for s in im["source_image_ids"]}
        for a in ds.annotations:
            kp = np.array(a["keypoints"]).reshape(17, 3)
            x, y, w, h = a["bbox"]
            assert a["area"] > 0 and w >= 0 and h >= 0 and a["num_keypoints"] == (kp[:, 2] > 0).sum()
    assert not sources["train"] & sources["val"]
    assert summary["train"]["occluded"] + summary["val"]["occluded"] > 0
    # Composites are crowded: most have crowd index >= 0.2.
    ci = [im["crowdIndex"] for im in read_coco_gt(tmp_path / "a" / "val.json").images]
    assert np.mean(np.array(ci) >= 0.2) > 0.5
    # Same seed, same output; another seed, another output.
    make_crowds(source, data_dir / COCO_IMAGES, tmp_path / "b", settings)
    assert (tmp_path / "a" / "val.json").read_bytes() == (tmp_path / "b" / "val.json").read_bytes()
    make_crowds(source, data_dir / COCO_IMAGES, tmp_path / "c",
                dataclasses.replace(settings, seed=4))
    assert (tmp_path / "a" / "val.json").read_bytes() != (tmp_path / "c" / "val.json").read_bytes()


def test_pgpg_fits_atomic_poses_and_samples_the_detector_offsets(tmp_path, data_dir, capsys):
    from posetracker.estimators.training.pgpg import PGPG, align_pose, fit_pgpg

    data = load_training_data(data_dir / COCO_JSON, data_dir / COCO_IMAGES)
    # A "detector" whose boxes sit 10 % of the width right of and 5 % of the height above the truth.
    shift = np.array([0.10, -0.05, 0.10, -0.05])
    dets: dict[int, list] = {}
    for p in data.people:
        w, h = p.box[2] - p.box[0], p.box[3] - p.box[1]
        dets.setdefault(p.image_id, []).append(p.box + shift * [w, h, w, h])
    pg = fit_pgpg(data, {i: np.array(b) for i, b in dets.items()}, clusters=4, seed=0)
    assert pg.centres.shape == (4, 17, 2) and pg.matched == len(data.people)
    aligned = [p for p in data.people if align_pose(p.keypoints) is not None]
    assert pg.people == len(aligned) and sum(len(o) for o in pg.offsets) == len(aligned)
    rng = np.random.default_rng(1)
    person = aligned[0]
    w, h = person.box[2] - person.box[0], person.box[3] - person.box[1]
    offs = np.array([(pg.sample_box(person, rng) - person.box) / [w, h, w, h] for _ in range(400)])
    assert np.allclose(offs.mean(0), shift, atol=0.01)
    assert 0.01 < offs.std(0).mean() < 0.04  # the kernel's bandwidth (0.02)
    pg.save(tmp_path / "pg.json")
    back = PGPG.load(tmp_path / "pg.json")
    assert back.assign(person.keypoints) == pg.assign(person.keypoints)
    assert np.allclose(back.pooled, pg.pooled, atol=1e-5)
    # The CLI, with jittered ground truth as the detections
    out = tmp_path / "cli.json"
    assert main(["train", "pgpg", "--annotations", str(data_dir / COCO_JSON), "--images",
                 str(data_dir / COCO_IMAGES), "--out", str(out), "--no-detector",
                 "--clusters", "3"]) == 0
    assert len(PGPG.load(out).centres) == 3
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(Exception, match="broken.json"):
        PGPG.load(tmp_path / "broken.json")


def test_stn_with_parallel_sppe_trains_and_the_estimator_loads_it(tmp_path, data_dir, models_dir):
    from posetracker.app.build import build_estimator
    from posetracker.estimators.config import EstimatorConfig, SPPEConfig
    from posetracker.estimators.sppe import load_sppe
    from posetracker.estimators.training.loop import BaseModel, Trainer
    from posetracker.estimators.training.objective import TrainingLoss
    from posetracker.estimators.training.stn import STNTrainer

    xml = models_dir / "tinypose-256x192.xml"
    data = load_training_data(data_dir / COCO_JSON, data_dir / COCO_IMAGES)
    sppe = load_sppe(xml)
    settings = _no_aug(steps=1, batch_size=2, stn=True, stn_lr=1e-3, threads=1)
    losses, interference = [], []

    def targets(own, others, *args):  # the loss passed in is the one used, by both branches
        interference.append(others.shape[2])
        return JOINT_CANDIDATE_LOSS.targets(own, others, *args)

    def loss(pred, target, weights):
        losses.append(JOINT_CANDIDATE_LOSS.loss(pred, target, weights))
        return losses[-1]

    spy = TrainingLoss(targets, loss)
    stn = STNTrainer(sppe, settings, spy)
    frozen = [p.detach().clone() for p in stn.parallel.parameters()]
    start = [p.detach().clone() for p in stn.stn.parameters()]
    ckpt = tmp_path / "stn.safetensors"
    threads = torch.get_num_threads()
    result = Trainer(sppe, BaseModel(str(xml), xml), data, settings, ckpt, spy, stn=stn).run()
    assert torch.get_num_threads() == threads  # settings.threads is the caller's to apply
    # one loss of the STN's parallel branch (own joints only: no interference), one of the SPPE
    assert len(losses) == 2 and 0 in interference
    assert result.losses == [pytest.approx(float(losses[1].detach()))]
    assert stn.last_loss == pytest.approx(settings.stn_weight * float(losses[0].detach()))
    assert np.isfinite(stn.last_loss)
    assert any(not torch.equal(a, b) for a, b in zip(start, stn.stn.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(frozen, stn.parallel.parameters()))
    est = build_estimator(EstimatorConfig(device="cpu", sppe=SPPEConfig(model=str(ckpt))),
                          with_detector=False)
    assert est.stn is not None
    assert torch.equal(est.stn.fc.bias, stn.stn.fc.bias.detach())


def test_crowdpose_annotations_train_the_coco_body_joints(tmp_path, data_dir):
    from posetracker.core.schemas import COCO17, CROWDPOSE14, index_map

    doc = json.loads((data_dir / COCO_JSON).read_text())
    to_cp = index_map(COCO17, CROWDPOSE14)
    for a in doc["annotations"]:
        kp = np.array(a["keypoints"], dtype=float).reshape(17, 3)
        cp = np.zeros((14, 3))
        cp[to_cp[to_cp >= 0]] = kp[to_cp >= 0]
        a["keypoints"] = cp.reshape(-1).tolist()
        a.pop("num_keypoints", None)
    doc["categories"][0]["keypoints"] = list(CROWDPOSE14.keypoints)
    path = tmp_path / "crowdpose.json"
    path.write_text(json.dumps(doc))
    data = load_training_data(path, data_dir / COCO_IMAGES)
    coco = load_training_data(data_dir / COCO_JSON, data_dir / COCO_IMAGES)
    assert data.schema_name == "crowdpose14"
    body = [COCO17.index(n) for n in COCO17.keypoints if not n.endswith(("eye", "ear", "nose"))]
    face = [i for i in range(17) if i not in body]
    by_id = {(p.image_id, p.slot): p for p in coco.people}
    assert len(data.people) <= len(coco.people) and data.people
    for p in data.people:
        q = by_id[(p.image_id, p.slot)]
        assert np.array_equal(p.keypoints[body], q.keypoints[body])
        assert (p.keypoints[face, 2] == 0).all()
