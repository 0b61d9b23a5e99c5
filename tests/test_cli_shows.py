"""What the CLI shows: readable report plots (bounded size, no overlapping labels), the
PoseTrack ``vid_id`` as the sequence's file stem, MOTP NaN where MOTA is NaN."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from posetracker.app.cli import main
from posetracker.evaluation.report import DPI, MAX_HEIGHT_IN, MAX_WIDTH_IN, report_figure

POSETRACK_COLUMNS = ([f"AP {g}" for g in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee",
                                          "Ankle", "Total")]
                     + [f"MOTA {g}" for g in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee",
                                              "Ankle", "Total")]
                     + ["MOTP Total", "Precision Total", "Recall Total"])


def _report(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.uniform(-40, 100, (rows, len(POSETRACK_COLUMNS)))
    values[rng.random(values.shape) < 0.05] = np.nan
    index = ["total"] + [f"{i:06d}_mpii_test" for i in range(1, rows)]
    return pd.DataFrame(values, index=pd.Index(index, name="sequence"), columns=POSETRACK_COLUMNS)


def _text_boxes(fig):
    """Window extents of every visible, non-empty text of the drawn figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_window_extent")):
        if t.get_visible() and t.get_text().strip() and t.figure is fig:
            bb = t.get_window_extent(renderer)
            if bb.width > 0 and bb.height > 0:
                boxes.append((t.get_text(), bb))
    return boxes


def _overlaps(boxes):
    hits = []
    for (ta, a), (tb, b) in combinations(boxes, 2):
        # touching edges are not overlapping: shrink by half a pixel
        if (a.x0 + 0.5 < b.x1 - 0.5 and b.x0 + 0.5 < a.x1 - 0.5
                and a.y0 + 0.5 < b.y1 - 0.5 and b.y0 + 0.5 < a.y1 - 0.5):
            hits.append((ta, tb))
    return hits


@pytest.mark.parametrize("rows", [1, 4, 30, 200, 1500])
def test_plots_are_bounded_and_no_text_overlaps(rows, tmp_path):
    df = _report(rows)
    fig = report_figure(df, title="PoseTrack")
    boxes = _text_boxes(fig)
    assert _overlaps(boxes) == []
    out = tmp_path / "p.png"
    fig.savefig(out, format="png", dpi=DPI)
    w, h = Image.open(out).size
    assert w <= MAX_WIDTH_IN * DPI and h <= MAX_HEIGHT_IN * DPI
    assert w >= 400 and h >= 250
    texts = {t for t, _ in boxes}
    assert set(POSETRACK_COLUMNS) <= texts  # every metric is named
    if rows > 1:
        assert "total" in texts and any(t.endswith("_mpii_test") for t in texts)
    if 1 < rows <= 30:  # every row labelled while they fit
        assert set(df.index) <= texts


def test_posetrack_per_sequence_plot_through_the_cli(data_dir, tmp_path, capsys):
    gt = data_dir / "posetrack18_format"
    out = tmp_path / "ps.png"
    assert main(["eval", "posetrack", str(gt), str(gt), "--per-sequence", "--plot",
                 str(out)]) == 0
    w, h = Image.open(out).size
    # the plot was 47120 x 400 px, blank for its first 5854 px
    assert w <= MAX_WIDTH_IN * DPI and h <= MAX_HEIGHT_IN * DPI
    img = np.asarray(Image.open(out).convert("L"))
    assert (img[:, : w // 4] < 250).mean() > 0.05  # the left quarter is not blank


def test_motp_is_nan_where_mota_is_nan(data_dir, tmp_path, capsys):
    # one labelled frame per sequence: no tracking figures can be measured
    gt = data_dir / "posetrack18_format"
    out = tmp_path / "r.csv"
    assert main(["eval", "posetrack", str(gt), str(gt), "--per-sequence", "--out",
                 str(out)]) == 0
    df = pd.read_csv(out, index_col=0)
    assert df["MOTA Total"].isna().all()
    assert df["MOTP Total"].isna().all()  # not 0.0 beside a NaN MOTA


def test_vid_id_is_the_file_stem(data_dir, tmp_path, capsys):
    from posetracker.core.poses import Frame, FramePoses, VideoPoses
    from posetracker.core.schemas import POSETRACK18
    from posetracker.io.formats.posetrack import write_posetrack18

    k = POSETRACK18.num_keypoints
    poses = FramePoses(np.zeros((0, k, 2)), np.zeros((0, k)), np.zeros((0, 4)), np.zeros(0),
                       POSETRACK18, track_ids=np.zeros(0, dtype=np.int64))
    out = tmp_path / "my_video_2.json"
    write_posetrack18(VideoPoses("my_video_2", [Frame(0, poses, image="a.jpg")], POSETRACK18), out)
    doc = json.loads(out.read_text())
    assert {im["vid_id"] for im in doc["images"]} == {"my_video_2"}
    # a file's own vid_id (the official files' numeric ids) is kept through a conversion
    src = data_dir / "posetrack18_format" / "003418_mpii_test.json"
    own = {im["vid_id"] for im in json.loads(src.read_text())["images"]}
    assert main(["convert", "posetrack", str(src), str(tmp_path / "c"), "--to", "2018"]) == 0
    conv = json.loads((tmp_path / "c" / src.name).read_text())
    assert {im["vid_id"] for im in conv["images"]} == own
