"""Property-based tests (hypothesis) for the format readers and writers and ``FramePoses``.

- Round trips: poses written as PoseTrack 2018 / 2017 and as COCO keypoint results read back
  the same (present joints, their coordinates and scores, boxes, track ids).
- ``FramePoses`` takes any arrays: it either builds a valid, read-only instance or refuses with
  ``InputError``, never another exception.
- The readers (PoseTrack, COCO results, JSON lines) given arbitrary JSON either read it or
  refuse with one ``InputError``; never a ``KeyError``, ``TypeError`` or ``IndexError``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_test_extra

hypothesis = require_test_extra("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from posetracker.core.errors import InputError  # noqa: E402
from posetracker.core.poses import Frame, FramePoses, VideoPoses  # noqa: E402
from posetracker.core.schemas import COCO17, POSETRACK17, POSETRACK18  # noqa: E402
from posetracker.io.formats.coco import read_coco_results, write_coco_results  # noqa: E402
from posetracker.io.formats.posetrack import read_posetrack, write_posetrack17, write_posetrack18  # noqa: E402
from posetracker.io.sinks import read_jsonl  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

coord = st.floats(-500, 5000, allow_nan=False, width=32)
score = st.floats(0.015625, 1.0, allow_nan=False, width=32)


@st.composite
def frame_poses(draw, schema, tracked=True, max_people=4):
    n = draw(st.integers(0, max_people))
    k = schema.num_keypoints
    kp = np.array(draw(st.lists(st.lists(st.tuples(coord, coord), min_size=k, max_size=k),
                                min_size=n, max_size=n)), dtype=np.float64).reshape(n, k, 2)
    sc = np.array(draw(st.lists(st.lists(score, min_size=k, max_size=k), min_size=n,
                                max_size=n)), dtype=np.float64).reshape(n, k)
    absent = np.array(draw(st.lists(st.lists(st.booleans(), min_size=k, max_size=k),
                                    min_size=n, max_size=n)), dtype=bool).reshape(n, k)
    kp[absent] = np.nan
    sc[absent] = 0.0
    x1 = np.array(draw(st.lists(coord, min_size=n, max_size=n))).reshape(n)
    y1 = np.array(draw(st.lists(coord, min_size=n, max_size=n))).reshape(n)
    wh = np.array(draw(st.lists(st.tuples(st.floats(1.0, 900.0, width=32),
                                          st.floats(1.0, 900.0, width=32)),
                                min_size=n, max_size=n))).reshape(n, 2)
    boxes = np.stack([x1, y1, x1 + wh[:, 0], y1 + wh[:, 1]], axis=1) if n else np.zeros((0, 4))
    box_scores = np.array(draw(st.lists(score, min_size=n, max_size=n))).reshape(n)
    ids = np.array(draw(st.lists(st.integers(0, 999), min_size=n, max_size=n, unique=True)),
                   dtype=np.int64).reshape(n) if tracked else None
    return FramePoses(kp, sc, boxes, box_scores, schema, track_ids=ids)


@st.composite
def videos(draw, schema, tracked=True):
    n = draw(st.integers(1, 4))
    frames = [Frame(i, draw(frame_poses(schema, tracked)), image=f"images/seq/{i:06d}.jpg")
              for i in range(n)]
    return VideoPoses("seq", frames, schema)


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="posetracker-prop-"))


def _same_people(a: FramePoses, b: FramePoses, order=None, tol: float = 1e-3) -> None:
    assert len(a) == len(b)
    if order is None and a.track_ids is not None and b.track_ids is not None:
        ia, ib = np.argsort(a.track_ids), np.argsort(b.track_ids)
    else:
        ia = ib = np.arange(len(a))
    np.testing.assert_array_equal(a.present[ia], b.present[ib])
    pa = a.present[ia]
    np.testing.assert_allclose(a.keypoints[ia][pa], b.keypoints[ib][pa], atol=tol)
    np.testing.assert_allclose(a.keypoint_scores[ia][pa], b.keypoint_scores[ib][pa], atol=1e-4)


@SETTINGS
@given(videos(POSETRACK18))
def test_posetrack18_round_trip(video):
    path = _tmp() / "seq.json"
    write_posetrack18(video, path)
    back = read_posetrack(path)
    assert back.schema is POSETRACK18 and len(back.frames) == len(video.frames)
    for f, g in zip(video.frames, back.frames):
        assert g.image == f.image
        _same_people(f.poses, g.poses)
        if len(f.poses):
            np.testing.assert_array_equal(np.sort(f.poses.track_ids), np.sort(g.poses.track_ids))


@SETTINGS
@given(videos(POSETRACK17))
def test_posetrack17_round_trip(video):
    path = _tmp() / "seq.json"
    write_posetrack17(video, path)
    back = read_posetrack(path)
    assert back.schema is POSETRACK17 and len(back.frames) == len(video.frames)
    for f, g in zip(video.frames, back.frames):
        _same_people(f.poses, g.poses)


@SETTINGS
@given(st.lists(frame_poses(COCO17, tracked=False), min_size=1, max_size=4),
       st.lists(st.integers(0, 10 ** 12), min_size=4, max_size=4, unique=True))
def test_coco_results_round_trip(frames, image_ids):
    path = _tmp() / "res.json"
    written = dict(zip(image_ids, frames))
    write_coco_results(written, path)
    back = read_coco_results(path, COCO17)
    for image_id, poses in written.items():
        if len(poses) == 0:
            assert image_id not in back or len(back[image_id]) == 0
            continue
        got = back[image_id]
        _same_people(poses, got, order="as written")
        np.testing.assert_allclose(got.boxes, poses.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, poses.scores, atol=1e-6)


# -- FramePoses validation ------------------------------------------------------------------------

floats_any = st.floats(allow_nan=True, allow_infinity=True, width=64)


@SETTINGS
@given(n=st.integers(0, 3), k=st.sampled_from([17, 16, 15, 0]),
       kp=st.data(), ids=st.one_of(st.none(), st.lists(st.integers(-5, 2000), max_size=4)),
       box_len=st.integers(0, 5))
def test_frameposes_builds_or_refuses_with_input_error(n, k, kp, ids, box_len):
    keypoints = kp.draw(hnp.arrays(np.float64, (n, k, 2), elements=floats_any))
    scores = kp.draw(hnp.arrays(np.float64, (n, k), elements=floats_any))
    boxes = kp.draw(hnp.arrays(np.float64, (n, box_len), elements=floats_any))
    box_scores = kp.draw(hnp.arrays(np.float64, (n,), elements=floats_any))
    try:
        p = FramePoses(keypoints, scores, boxes, box_scores, COCO17,
                       track_ids=None if ids is None else np.array(ids))
    except InputError as e:
        assert str(e) and "\n" not in str(e)
        return
    # built: the shapes are right, ids unique and non-negative, arrays frozen
    assert p.keypoints.shape == (len(p), 17, 2) and p.boxes.shape == (len(p), 4)
    assert not p.keypoints.flags.writeable
    if p.track_ids is not None:
        assert len(set(p.track_ids.tolist())) == len(p) and (p.track_ids >= 0).all()


# -- readers against arbitrary JSON -----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 13) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["images", "annotations", "annolist", "keypoints", "image_id", "score",
                         "track_id", "id", "file_name", "bbox", "annorect", "annopoints",
                         "point", "x", "y", "image", "name", "categories", "frame", "people",
                         "schema", "scores", "is_labeled", "frame_id", "vid_id"]) | st.text(max_size=4),
        inner, max_size=6),
    max_leaves=30)


def _near_posetrack(draw_value):
    """Mostly well-formed PoseTrack 2018 documents with one part replaced by arbitrary JSON."""
    return draw_value


@st.composite
def posetrack_like(draw):
    k = 17
    doc = {"images": [{"file_name": "a.jpg", "id": 1, "frame_id": 1, "vid_id": "v",
                       "is_labeled": True}],
           "annotations": [{"image_id": 1, "track_id": 0, "keypoints": [1.0, 2.0, 1] * k,
                            "scores": [0.5] * k, "bbox": [0, 0, 5, 5], "score": 0.9}],
           "categories": [{"keypoints": list(POSETRACK18.keypoints), "skeleton": []}]}
    where = draw(st.sampled_from(["root", "images", "image", "annotations", "annotation",
                                  "keypoints", "track_id", "categories", "scores", "file_name"]))
    value = draw(json_values)
    if where == "root":
        return value
    if where in ("images", "annotations", "categories"):
        doc[where] = value
    elif where in ("image", "annotation"):
        doc[where + "s"][0] = value
    elif where == "file_name":
        doc["images"][0]["file_name"] = value
    else:
        doc["annotations"][0][where] = value
    return doc


def _only_input_errors(read, text: str) -> None:
    path = _tmp() / "in.json"
    path.write_text(text)
    try:
        read(path)
    except InputError as e:
        assert str(e).strip() and "\n" not in str(e).strip()


@SETTINGS
@given(posetrack_like())
def test_posetrack_reader_never_crashes(doc):
    _only_input_errors(read_posetrack, json.dumps(doc))


@pytest.mark.parametrize("where", ["image", "annotation"])
def test_a_posetrack_id_that_is_a_list_is_one_input_error(where):
    """Found by the property above: ids are used as keys, so a list there once crashed."""
    doc = {"images": [{"file_name": "a.jpg", "id": [1] if where == "image" else 1, "frame_id": 1,
                       "vid_id": "v", "is_labeled": True}],
           "annotations": [{"image_id": [] if where == "annotation" else 1}],
           "categories": [{"keypoints": list(POSETRACK18.keypoints), "skeleton": []}]}
    path = _tmp() / "in.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="must be a number or a string"):
        read_posetrack(path)


@SETTINGS
@given(json_values)
def test_coco_results_reader_never_crashes(doc):
    _only_input_errors(lambda p: read_coco_results(p, COCO17), json.dumps(doc))


@SETTINGS
@given(st.lists(json_values, min_size=1, max_size=3))
def test_jsonl_reader_never_crashes(records):
    _only_input_errors(read_jsonl, "\n".join(json.dumps(r) for r in records) + "\n")


@SETTINGS
@given(st.binary(max_size=200))
def test_readers_take_any_bytes(data):
    path = _tmp() / "in.json"
    path.write_bytes(data)
    for read in (read_posetrack, lambda p: read_coco_results(p, COCO17), read_jsonl):
        try:
            read(path)
        except InputError:
            pass
