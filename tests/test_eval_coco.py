"""``posetracker eval coco``: the known answers of ../shared/data/README.md, in-memory inputs, bad input.

``evaluate_coco`` here is the API's, which reads files; the evaluation itself
(:mod:`posetracker.evaluation.coco`) takes data in memory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from posetracker.app.api import evaluate_coco
from posetracker.app.cli import main
from posetracker.core.coco import coco_gt_to_frames, oks_terms
from posetracker.evaluation import coco as coco_eval
from posetracker.evaluation.coco import COCO_COLUMNS
from posetracker.io.formats.coco import load_coco_results, read_coco_gt

# ../shared/data/README.md, "Known answers for metric_cases/", COCO pair.
KNOWN = {"AP": 0.8609, "AP50": 0.9931, "AP75": 0.9109, "APm": 0.7756, "APl": 0.9373,
         "AR": 0.875, "AR50": 1.0, "AR75": 0.9167, "ARm": 0.78, "ARl": 0.9429}


@pytest.fixture(scope="module")
def case(data_dir):
    d = data_dir / "metric_cases"
    return d / "example_coco_val.json", d / "example_coco_preds.json"


def _assert_known(row) -> None:
    for name, want in KNOWN.items():
        assert round(float(row[name]), 4) == want, name


def test_known_answers_from_files(case):
    df = evaluate_coco(*case)
    assert list(df.columns) == list(COCO_COLUMNS) and len(df) == 1
    _assert_known(df.iloc[0])


def test_the_evaluation_takes_data_in_memory_not_paths(case):
    gt, pred = read_coco_gt(case[0]), load_coco_results(case[1])
    _assert_known(coco_eval.evaluate_coco(gt, pred).iloc[0])
    with pytest.raises(TypeError, match="read the file first"):
        coco_eval.evaluate_coco(case[0], pred)
    with pytest.raises(TypeError, match="read the file first"):
        coco_eval.evaluate_coco(gt, str(case[1]))


def test_known_answers_in_memory(case):
    gt = json.loads(case[0].read_text())
    pred = json.loads(case[1].read_text())
    _assert_known(evaluate_coco(gt, pred).iloc[0])
    # The inputs are not modified (pycocotools writes into what it gets).
    assert gt == json.loads(case[0].read_text()) and pred == json.loads(case[1].read_text())


def test_known_answers_through_cli(case, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["eval", "coco", str(case[0]), str(case[1]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name, want in KNOWN.items():
        assert name in printed and f"{want:.4f}" in printed
    _assert_known(json.loads(out.read_text())[0])


def test_ground_truth_scored_against_itself_is_perfect(data_dir):
    gt = read_coco_gt(data_dir / "coco_mini_val2017" / "annotations" / "person_keypoints_val2017.json")
    frames = coco_gt_to_frames(gt)
    # People without labelled joints are ignored by COCO; predicting them would be false positives.
    frames = {i: p.subset(p.present.any(1)) for i, p in frames.items()}
    df = evaluate_coco(gt, frames)
    for col in ("AP", "AP50", "AP75", "AR", "AR50", "AR75"):
        assert df.iloc[0][col] == pytest.approx(1.0), col


def test_no_predictions_scores_zero(case):
    df = evaluate_coco(case[0], [])
    assert df.iloc[0]["AP"] == 0.0 and df.iloc[0]["AR"] == 0.0


def test_worse_predictions_score_lower(case):
    pred = json.loads(case[1].read_text())
    rng = np.random.default_rng(0)
    for r in pred:
        kp = np.asarray(r["keypoints"]).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, 8, size=(len(kp), 2))
        r["keypoints"] = kp.ravel().tolist()
    assert evaluate_coco(case[0], pred).iloc[0]["AP"] < KNOWN["AP"] - 0.05


def _run_cli(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err.strip().splitlines()


def test_bad_input_one_line_exit_2(case, tmp_path, capsys):
    gt, pred = str(case[0]), case[1]
    results = json.loads(pred.read_text())

    rc, err = _run_cli(["eval", "coco", gt, str(tmp_path / "missing.json")], capsys)
    assert rc == 2 and len(err) == 1 and "missing.json: no such file" in err[0]

    bad = tmp_path / "malformed.json"
    bad.write_text('[{"image_id": 785,')
    rc, err = _run_cli(["eval", "coco", gt, str(bad)], capsys)
    assert rc == 2 and len(err) == 1 and "malformed.json: malformed JSON" in err[0]

    short = tmp_path / "short.json"
    short.write_text(json.dumps([dict(results[0], keypoints=results[0]["keypoints"][:48])]))
    rc, err = _run_cli(["eval", "coco", gt, str(short)], capsys)
    assert rc == 2 and len(err) == 1 and "short.json: result 0" in err[0] and "48 values" in err[0]

    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(results + [dict(results[0], image_id=123456789)]))
    rc, err = _run_cli(["eval", "coco", gt, str(unknown)], capsys)
    assert rc == 2 and len(err) == 1 and "unknown.json" in err[0] and "123456789" in err[0]

    rc, err = _run_cli(["eval", "coco", str(bad), str(pred)], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("posetracker: error: ")


def test_out_formats_and_plot(case, tmp_path, capsys):
    for ext in ("csv", "json", "md"):
        out = tmp_path / f"r.{ext}"
        argv = ["eval", "coco", str(case[0]), str(case[1]), "--out", str(out)]
        if ext == "csv":
            argv += ["--plot", str(tmp_path / "bars.png")]
        assert main(argv) == 0
        assert out.stat().st_size > 0
    capsys.readouterr()
    assert round(pd.read_csv(tmp_path / "r.csv")["APl"][0], 4) == KNOWN["APl"]
    assert "| all | 0.8609 |" in (tmp_path / "r.md").read_text()
    png = (tmp_path / "bars.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_oks_terms_are_coco_s_formula_and_nan_where_a_joint_is_absent():
    ref = np.array([[[10.0, 10.0], [np.nan, np.nan]]])          # one pose, its 2nd joint absent
    other = np.array([[[13.0, 14.0], [5.0, 5.0]], [[10.0, 10.0], [np.nan, np.nan]]])
    terms = oks_terms(ref, other, np.array([400.0]), np.array([0.1, 0.2]))
    assert terms.shape == (1, 2, 2)
    assert terms[0, 0, 0] == pytest.approx(np.exp(-25.0 / (2 * 400.0 * 0.2 ** 2)))
    assert terms[0, 1, 0] == pytest.approx(1.0)
    assert np.isnan(terms[0, :, 1]).all()

