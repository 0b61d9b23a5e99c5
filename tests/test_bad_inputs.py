"""Bad-input matrix: every command against inputs a user gets wrong, each ending with one line
``posetracker: error: ...`` and exit 2, or a correct result (exit 0, checked).

The cases are a table (:data:`CASES`): an id, the command line (``{name}`` fields are files made
in a shared folder by :func:`_make_inputs`), and what must happen. Commands run in-process through
``posetracker.app.cli.main``; the real models load once and are reused (``build_estimator`` is
wrapped by a cache for this module), so the whole matrix takes seconds per model-using case.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from posetracker.app.cli import main

ERROR = "error"


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    expect: str | Callable[[Path, str], None] = ERROR  # ERROR or a check(folder, stdout)
    match: str = ""  # for errors: text the one line must contain ("{name}" fields allowed)


def _coco_gt(d: Path) -> dict:
    return json.loads((d / "coco_gt.json").read_text())


def _write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj) if not isinstance(obj, (str, bytes)) else obj)


def _make_inputs(root: Path, data: Path) -> None:
    """Every file the cases name, made once."""
    root.mkdir(parents=True, exist_ok=True)
    video = data / "videos" / "basketball_crossing.mp4"
    img = data / "coco_mini_val2017" / "val2017" / "000000000139.jpg"
    bgr = cv2.imread(str(img))
    h, w = bgr.shape[:2]
    # --- files of the wrong kind, zero bytes, cut short
    (root / "empty.mp4").write_bytes(b"")
    (root / "empty.json").write_bytes(b"")
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n")
    (root / "cut.mp4").write_bytes(video.read_bytes()[:20000])
    (root / "cut.jpg").write_bytes(img.read_bytes()[:3000])
    (root / "cut.json").write_text('{"images": [{"file_name": "a.jpg", "id": 1')
    shutil.copy(img, root / "image.json")  # a JPEG named .json
    (root / "text.mat").write_text("not a mat file")
    (root / "empty.mat").write_bytes(b"")
    # --- images of every pixel format
    cv2.imwrite(str(root / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(root / "rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(root / "deep16.png"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(root / "big8k.jpg"), cv2.resize(bgr, (7680, 4320)))
    # --- folders
    mixed = root / "mixed sizes"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "1.jpg"), bgr)
    cv2.imwrite(str(mixed / "2.jpg"), cv2.resize(bgr, (w // 2, h // 2)))
    cv2.imwrite(str(mixed / "3.jpg"), cv2.resize(bgr, (h, w)))  # portrait
    holey = root / "holey"
    holey.mkdir()
    cv2.imwrite(str(holey / "1.jpg"), bgr)
    (holey / "2.jpg").write_bytes(b"")
    cv2.imwrite(str(holey / "3.jpg"), bgr)
    (root / "no images").mkdir()
    (root / "no images" / "notes.txt").write_text("x")
    (root / "empty dir").mkdir()
    uni = root / "vidéo ünïcode 映像"
    uni.mkdir()
    shutil.copy(img, uni / "frame 1.jpg")
    # --- COCO ground truth and results
    gt = json.loads((data / "metric_cases" / "example_coco_val.json").read_text())
    _write(root / "coco_gt.json", gt)
    shutil.copy(data / "metric_cases" / "example_crowdpose_val.json", root / "crowd_gt.json")
    preds = json.loads((data / "metric_cases" / "example_coco_preds.json").read_text())
    _write(root / "coco_preds.json", preds)
    p0 = preds[0]
    _write(root / "preds_list_of_str.json", ["a", "b"])
    _write(root / "preds_dict.json", {"image_id": 1})
    _write(root / "preds_no_kp.json", [{k: v for k, v in p0.items() if k != "keypoints"}])
    _write(root / "preds_45.json", [dict(p0, keypoints=p0["keypoints"][:45])])
    _write(root / "preds_str_score.json", [dict(p0, score="high")])
    _write(root / "preds_kp_str.json", [dict(p0, keypoints=["x"] * 51)])
    (root / "preds_nan.json").write_text(json.dumps(
        [dict(p0, keypoints=[float("nan")] * 3 + p0["keypoints"][3:])]))  # NaN token
    (root / "preds_inf.json").write_text(json.dumps(
        [dict(p0, keypoints=[float("inf")] * 3 + p0["keypoints"][3:])]))
    _write(root / "preds_negative.json", [dict(p0, keypoints=[-abs(v) if i % 3 != 2 else v
                                                              for i, v in enumerate(p0["keypoints"])])])
    _write(root / "preds_unknown_image.json", [dict(p0, image_id=987654321)])
    _write(root / "preds_empty_list.json", [])
    _write(root / "gt_list.json", [1, 2, 3])
    _write(root / "gt_no_annotations.json", {k: v for k, v in gt.items() if k != "annotations"})
    # --- PoseTrack: one labelled frame, in several wrong shapes
    pt_src = data / "posetrack18_format" / "003418_mpii_test.json"
    pt = json.loads(pt_src.read_text())
    for name in ("pt_gt", "pt_ok"):
        (root / name).mkdir()
        _write(root / name / "seq.json", pt)

    def pt_variant(name: str, edit: Callable[[dict], None]) -> None:
        doc = json.loads(json.dumps(pt))
        edit(doc)
        (root / name).mkdir()
        _write(root / name / "seq.json", doc)

    def set_ann(key, value):
        def edit(doc):
            for a in doc["annotations"]:
                a[key] = value
        return edit

    def set_kp(fn):
        def edit(doc):
            for a in doc["annotations"]:
                a["keypoints"] = fn(a["keypoints"])
        return edit

    pt_variant("pt_top_list", lambda d: d.clear())
    (root / "pt_top_list" / "seq.json").write_text("[]")
    pt_variant("pt_ann_not_list", lambda d: d.__setitem__("annotations", 5))
    pt_variant("pt_images_not_list", lambda d: d.__setitem__("images", {"a": 1}))
    pt_variant("pt_kp_short", set_kp(lambda k: k[:30]))
    pt_variant("pt_kp_str", set_kp(lambda k: ["a"] * len(k)))
    pt_variant("pt_track_str", set_ann("track_id", "seven"))
    pt_variant("pt_track_1000", set_ann("track_id", 1234))
    pt_variant("pt_no_file_name", lambda d: [im.pop("file_name") for im in d["images"]])
    pt_variant("pt_negative", set_kp(lambda k: [-abs(v) if i % 3 != 2 else v
                                               for i, v in enumerate(k)]))
    pt_variant("pt_ann_str", lambda d: d.__setitem__("annotations", ["x"]))
    _write(root / "pt_file.json", pt)
    # --- JSON lines (a track run's stream)
    rec = {"frame": 0, "image": "a.jpg", "schema": "coco17",
           "people": [{"track_id": 0, "score": 0.9, "box": [1, 2, 30, 40],
                       "keypoints": [[10.0, 20.0, 0.9]] * 17}]}
    line = json.dumps(rec)
    (root / "ok.jsonl").write_text(line + "\n" + json.dumps(dict(rec, frame=1)) + "\n")
    (root / "cut_last.jsonl").write_text(line + "\n" + line[:40])
    (root / "bad_middle.jsonl").write_text(line + "\n{oops\n" + line + "\n")
    (root / "list.jsonl").write_text("[1, 2]\n")
    (root / "no_kp.jsonl").write_text(json.dumps(dict(rec, people=[{"track_id": 0}])) + "\n")
    (root / "kp16.jsonl").write_text(json.dumps(dict(rec, people=[dict(
        rec["people"][0], keypoints=[[1.0, 2.0, 0.5]] * 16)])) + "\n")
    (root / "schema.jsonl").write_text(json.dumps(dict(rec, schema="martian")) + "\n")
    (root / "frame_str.jsonl").write_text(json.dumps(dict(rec, frame="zero")) + "\n")
    (root / "big_ids.jsonl").write_text("\n".join(json.dumps(dict(rec, frame=i, people=[dict(
        rec["people"][0], track_id=1000 + i)])) for i in range(3)) + "\n")
    (root / "nan.jsonl").write_text(json.dumps(dict(rec, people=[dict(
        rec["people"][0], keypoints=[[None, None, 0.0]] * 17, box=[None] * 4,
        score=None)])) + "\n")
    # --- poses to track (COCO results with file names as AlphaPose writes them)
    _write(root / "poses_13.json", [dict(p0, keypoints=p0["keypoints"][:39])])
    _write(root / "poses_big_id.json", [dict(p, image_id=10 ** 12 + i)
                                        for i, p in enumerate(preds)])
    # --- configs
    (root / "unknown_key.yaml").write_text("pipeline:\n  no_such_setting: 3\n")
    (root / "bad.yaml").write_text("pipeline: [unclosed\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")


def _assert(ok: bool, what: object = "") -> None:
    assert ok, what


def _frames_written(n: int, people: bool = True):
    def check(d: Path, out: str) -> None:
        doc = json.loads((d / "out.json").read_text())
        assert len(doc["images"]) == n, doc["images"]
        if people:
            assert len(doc["annotations"]) > 0
    return check


def _coco_results(d: Path, out: str) -> None:
    res = json.loads((d / "out.json").read_text())
    assert isinstance(res, list) and len(res) > 0
    assert all(len(r["keypoints"]) == 51 for r in res)


def _table_printed(d: Path, out: str) -> None:
    assert "AP" in out


def _converted(n: int):
    def check(d: Path, out: str) -> None:
        doc = json.loads((d / "out.json").read_text())
        assert len(doc["images"]) == n
    return check


def _no_ids_over_999(d: Path, out: str) -> None:
    doc = json.loads((d / "out.json").read_text())
    ids = {a["track_id"] for a in doc["annotations"]}
    assert ids and max(ids) <= 999, ids


TRACK = ("track", "--device", "cpu", "--quiet", "--max-frames", "3",
         "--set", "estimator.detector.model={det}", "--set", "estimator.sppe.model={sppe}")
ESTIMATE = ("estimate", "--device", "cpu", "--quiet", "--detector", "{det}", "--pose-model",
            "{sppe}")

CASES: tuple[Case, ...] = (
    # track VIDEO: files of the wrong kind, cut short, empty
    Case("track-zero-byte-video", (*TRACK, "{d}/empty.mp4", "-o", "{d}/out.json"), match="empty.mp4"),
    Case("track-text-as-video", (*TRACK, "{d}/text.mp4", "-o", "{d}/out.json"), match="text.mp4"),
    Case("track-truncated-video", (*TRACK, "{d}/cut.mp4", "-o", "{d}/out.json"), match="cut.mp4"),
    Case("track-missing-input", (*TRACK, "{d}/nowhere.mp4", "-o", "{d}/out.json"), match="nowhere.mp4"),
    Case("track-truncated-jpeg", (*TRACK, "{d}/cut.jpg", "-o", "{d}/out.json"), match="cut.jpg"),
    Case("track-zero-byte-jpeg", (*TRACK, "{d}/empty.jpg", "-o", "{d}/out.json"), match="empty.jpg"),
    Case("track-empty-folder", (*TRACK, "{d}/empty dir", "-o", "{d}/out.json"), match="empty dir"),
    Case("track-folder-without-images", (*TRACK, "{d}/no images", "-o", "{d}/out.json"),
         match="no images"),
    Case("track-max-frames-0", (*TRACK, "{d}/gray.png", "-o", "{d}/out.json", "--max-frames", "0"),
         match="max-frames"),
    Case("track-negative-stride", (*TRACK, "{d}/gray.png", "-o", "{d}/out.json", "--stride", "-1"),
         match="stride"),
    Case("track-config-unknown-key", (*TRACK, "{d}/gray.png", "-o", "{d}/out.json", "--config",
                                      "{d}/unknown_key.yaml"), match="no_such_setting"),
    Case("track-config-bad-yaml", (*TRACK, "{d}/gray.png", "-o", "{d}/out.json", "--config",
                                   "{d}/bad.yaml"), match="bad.yaml"),
    Case("track-config-a-list", (*TRACK, "{d}/gray.png", "-o", "{d}/out.json", "--config",
                                 "{d}/list.yaml"), match="list.yaml"),
    Case("track-set-bad-value", (*TRACK, "{d}/gray.png", "-o", "{d}/out.json", "--set",
                                 "pipeline.queue_size=many"), match="queue_size"),
    # track VIDEO: inputs that are fine and must give a correct result
    Case("track-grayscale-png", (*TRACK, "{d}/gray.png", "-o", "{d}/out.json"), _frames_written(1)),
    Case("track-rgba-png", (*TRACK, "{d}/rgba.png", "-o", "{d}/out.json"), _frames_written(1)),
    Case("track-16-bit-png", (*TRACK, "{d}/deep16.png", "-o", "{d}/out.json"), _frames_written(1)),
    Case("track-8k-image", (*TRACK, "{d}/big8k.jpg", "-o", "{d}/out.json"), _frames_written(1)),
    Case("track-mixed-sizes-rendered", (*TRACK, "{d}/mixed sizes", "-o", "{d}/out.json",
                                        "--render", "{d}/out.mp4"), _frames_written(3)),
    # the unreadable frame stays in the output, with no people (one entry per source frame)
    Case("track-zero-byte-file-in-folder", (*TRACK, "{d}/holey", "-o", "{d}/out.json"),
         _frames_written(3)),
    Case("track-unicode-and-spaces", (*TRACK, "{d}/vidéo ünïcode 映像", "-o",
                                      "{d}/sortie ü 出力.json"),
         lambda d, out: json.loads((d / "sortie ü 出力.json").read_text())),
    # track --poses
    Case("poses-zero-byte", ("track", "--poses", "{d}/empty.json", "-o", "{d}/out.json"),
         match="empty.json"),
    Case("poses-truncated", ("track", "--poses", "{d}/cut.json", "-o", "{d}/out.json"),
         match="cut.json"),
    Case("poses-jpeg-named-json", ("track", "--poses", "{d}/image.json", "-o", "{d}/out.json"),
         match="image.json"),
    Case("poses-list-of-strings", ("track", "--poses", "{d}/preds_list_of_str.json", "-o",
                                   "{d}/out.json"), match="preds_list_of_str.json"),
    Case("poses-13-joints", ("track", "--poses", "{d}/poses_13.json", "-o", "{d}/out.json"),
         match="poses_13.json"),
    Case("poses-nan-coordinates", ("track", "--poses", "{d}/preds_nan.json", "-o", "{d}/out.json"),
         match="finite"),
    Case("poses-inf-coordinates", ("track", "--poses", "{d}/preds_inf.json", "-o", "{d}/out.json"),
         match="finite"),
    Case("poses-negative-coordinates", ("track", "--poses", "{d}/preds_negative.json", "-o",
                                        "{d}/out.json"),
         lambda d, out: json.loads((d / "out.json").read_text())),
    Case("poses-huge-image-ids", ("track", "--poses", "{d}/poses_big_id.json", "-o",
                                  "{d}/out.json"), lambda d, out: json.loads((d / "out.json").read_text())),
    Case("poses-posetrack-with-ids-over-999", ("track", "--poses", "{d}/pt_track_1000/seq.json",
                                              "-o", "{d}/out.json"), _no_ids_over_999),
    Case("poses-posetrack-keypoints-short", ("track", "--poses", "{d}/pt_kp_short/seq.json", "-o",
                                            "{d}/out.json"), match="seq.json"),
    # estimate
    Case("estimate-missing-source", (*ESTIMATE, "{d}/nowhere.jpg", "-o", "{d}/out.json"),
         match="nowhere.jpg"),
    Case("estimate-truncated-jpeg", (*ESTIMATE, "{d}/cut.jpg", "-o", "{d}/out.json"), match="cut.jpg"),
    Case("estimate-gt-wrong-shape", (*ESTIMATE, "{d}/gray.png", "-o", "{d}/out.json", "--gt",
                                     "{d}/gt_list.json"), match="gt_list.json"),
    Case("estimate-grayscale", (*ESTIMATE, "{d}/gray.png", "-o", "{d}/out.json"), _coco_results),
    Case("estimate-zero-byte-in-folder", (*ESTIMATE, "{d}/holey", "-o", "{d}/out.json"),
         _coco_results),
    # eval coco / crowdpose
    Case("coco-gt-a-list", ("eval", "coco", "{d}/gt_list.json", "{d}/coco_preds.json"),
         match="gt_list.json"),
    Case("coco-gt-without-annotations", ("eval", "coco", "{d}/gt_no_annotations.json",
                                         "{d}/coco_preds.json"), match="gt_no_annotations.json"),
    Case("coco-gt-zero-byte", ("eval", "coco", "{d}/empty.json", "{d}/coco_preds.json"),
         match="empty.json"),
    Case("coco-preds-a-dict", ("eval", "coco", "{d}/coco_gt.json", "{d}/preds_dict.json"),
         match="preds_dict.json"),
    Case("coco-preds-without-keypoints", ("eval", "coco", "{d}/coco_gt.json",
                                          "{d}/preds_no_kp.json"), match="preds_no_kp.json"),
    Case("coco-preds-45-values", ("eval", "coco", "{d}/coco_gt.json", "{d}/preds_45.json"),
         match="preds_45.json"),
    Case("coco-preds-string-score", ("eval", "coco", "{d}/coco_gt.json", "{d}/preds_str_score.json"),
         match="preds_str_score.json"),
    Case("coco-preds-string-keypoints", ("eval", "coco", "{d}/coco_gt.json",
                                         "{d}/preds_kp_str.json"), match="preds_kp_str.json"),
    Case("coco-preds-unknown-image", ("eval", "coco", "{d}/coco_gt.json",
                                      "{d}/preds_unknown_image.json"), match="987654321"),
    Case("coco-preds-empty-list", ("eval", "coco", "{d}/coco_gt.json", "{d}/preds_empty_list.json"),
         lambda d, out: _assert(out.splitlines()[-1].split()[1:] == ["0.0000"] * 10, out)),
    Case("coco-preds-negative", ("eval", "coco", "{d}/coco_gt.json", "{d}/preds_negative.json"),
         _table_printed),
    Case("coco-preds-nan", ("eval", "coco", "{d}/coco_gt.json", "{d}/preds_nan.json"),
         match="preds_nan.json"),
    Case("coco-gt-is-a-jpeg", ("eval", "coco", "{d}/image.json", "{d}/coco_preds.json"),
         match="image.json"),
    Case("crowdpose-coco-gt", ("eval", "crowdpose", "{d}/coco_gt.json", "{d}/coco_preds.json"),
         match="coco_gt.json"),
    Case("crowdpose-coco17-preds-as-crowdpose14", ("eval", "crowdpose", "{d}/crowd_gt.json",
                                                    "{d}/coco_preds.json"), match="coco_preds.json"),
    # eval posetrack: JSON of the wrong shape at every level
    Case("pt-top-level-list", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_top_list"), match="seq.json"),
    Case("pt-annotations-not-list", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_ann_not_list"),
         match="seq.json"),
    Case("pt-images-not-list", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_images_not_list"),
         match="seq.json"),
    Case("pt-annotation-a-string", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_ann_str"),
         match="seq.json"),
    Case("pt-keypoints-short", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_kp_short"), match="seq.json"),
    Case("pt-keypoints-strings", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_kp_str"), match="seq.json"),
    Case("pt-track-id-string", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_track_str"),
         match="seq.json"),
    # ids of 1000 and more are scored (ids are made unique per sequence by an offset of 10000)
    Case("pt-track-id-over-999", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_track_1000"),
         _table_printed),
    # predictions pair with ground-truth frames by order: a missing file name is no error
    Case("pt-image-without-file-name", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_no_file_name"),
         _table_printed),
    Case("pt-negative-coordinates", ("eval", "posetrack", "{d}/pt_gt", "{d}/pt_negative"),
         _table_printed),
    Case("pt-missing-prediction-folder", ("eval", "posetrack", "{d}/pt_gt", "{d}/nowhere"),
         match="nowhere"),
    # convert
    Case("jsonl-zero-byte", ("convert", "jsonl", "{d}/empty.json", "{d}/out.json"), match="empty.json"),
    Case("jsonl-cut-last-line", ("convert", "jsonl", "{d}/cut_last.jsonl", "{d}/out.json"),
         _converted(1)),
    Case("jsonl-bad-middle-line", ("convert", "jsonl", "{d}/bad_middle.jsonl", "{d}/out.json"),
         match="line 2"),
    Case("jsonl-line-a-list", ("convert", "jsonl", "{d}/list.jsonl", "{d}/out.json"), match="line 1"),
    Case("jsonl-person-without-keypoints", ("convert", "jsonl", "{d}/no_kp.jsonl", "{d}/out.json"),
         match="line 1"),
    Case("jsonl-16-joints-for-coco17", ("convert", "jsonl", "{d}/kp16.jsonl", "{d}/out.json"),
         match="line 1"),
    Case("jsonl-unknown-schema", ("convert", "jsonl", "{d}/schema.jsonl", "{d}/out.json"),
         match="martian"),
    Case("jsonl-frame-a-string", ("convert", "jsonl", "{d}/frame_str.jsonl", "{d}/out.json"),
         match="line 1"),
    # the stream's ids are the run's: kept as they are (with a warning that poseval stops at 999)
    Case("jsonl-ids-over-999", ("convert", "jsonl", "{d}/big_ids.jsonl", "{d}/out.json"),
         lambda d, out: _assert({a["track_id"] for a in json.loads(
             (d / "out.json").read_text())["annotations"]} == {1000, 1001, 1002})),
    Case("jsonl-null-coordinates", ("convert", "jsonl", "{d}/nan.jsonl", "{d}/out.json"),
         _converted(1)),
    Case("convert-posetrack-zero-byte", ("convert", "posetrack", "{d}/empty.json", "{d}/outdir",
                                         "--to", "2017"), match="empty.json"),
    Case("convert-posetrack-wrong-shape", ("convert", "posetrack", "{d}/pt_ann_not_list",
                                           "{d}/outdir", "--to", "2017"), match="seq.json"),
    Case("convert-bonn-text-as-mat", ("convert", "bonn", "{d}/text.mat", "{d}/outdir"),
         match="text.mat"),
    Case("convert-bonn-zero-byte-mat", ("convert", "bonn", "{d}/empty.mat", "{d}/outdir"),
         match="empty.mat"),
    # models
    Case("models-fetch-unknown-name", ("models", "fetch", "no-such-model", "--cache", "{d}/cache"),
         match="no-such-model"),
    Case("models-fetch-from-empty-folder", ("models", "fetch", "--from", "{d}/empty dir",
                                            "--cache", "{d}/cache"), match="empty dir"),
    Case("models-verify-cache-is-a-file", ("models", "verify", "--cache", "{d}/gray.png"),
         match="gray.png"),
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir) -> Path:
    root = tmp_path_factory.mktemp("bad inputs")
    _make_inputs(root, data_dir)
    return root


def test_the_matrix_is_big_enough():
    assert len(CASES) >= 40
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"tries {len(CASES)} bad inputs" in " ".join(readme.split())  # the count it states
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] + (" " + c.argv[1] if c.argv[0] in ("eval", "convert", "models")
                             else "") for c in CASES}
    assert {"track", "estimate", "eval coco", "eval crowdpose", "eval posetrack",
            "convert jsonl", "convert posetrack", "convert bonn", "models fetch",
            "models verify"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, inputs, models_dir, shared_models, tmp_path, capsys):
    work = tmp_path
    for p in inputs.iterdir():  # the inputs, beside this case's own outputs
        (work / p.name).symlink_to(p, target_is_directory=p.is_dir())
    fields = {"d": str(work), "det": str(models_dir / "rtmdet-nano-person.onnx"),
              "sppe": str(models_dir / "tinypose-256x192.xml")}
    argv = [a.format(**fields) for a in case.argv]
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    if case.expect == ERROR:
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 2, (code, err)
        assert len(lines) == 1 and lines[0].startswith("posetracker: error: "), err
        assert case.match.format(**fields) in lines[0], lines[0]
        # a refused run leaves no output behind
        assert not (work / "out.json").exists() and not (work / "out.jsonl").exists()
    else:
        assert code == 0, err
        case.expect(work, out)
