import numpy as np
import pytest

from posetracker.core.errors import InputError
from posetracker.core.schemas import (
    BONN_MPII_IDS,
    COCO17,
    CROWDPOSE14,
    MPII16,
    POSETRACK17,
    POSETRACK18,
    SCHEMAS,
    convert_keypoints,
    derive_head_joints,
    get_schema,
    index_map,
)


def test_posetrack17_to_18_map():
    assert index_map(POSETRACK17, POSETRACK18).tolist() == [16, 14, 12, 11, 13, 15, 10, 8, 6, 5, 7,
                                                             9, 1, 0, 2]


def test_posetrack18_to_17_inverts_and_ears_drop():
    m = index_map(POSETRACK18, POSETRACK17)
    back = index_map(POSETRACK17, POSETRACK18)
    assert all(m[back[i]] == i for i in range(15))
    assert m[POSETRACK18.index("left_ear")] == -1 and m[POSETRACK18.index("right_ear")] == -1


def test_coco_posetrack18_share_body_slots():
    m = index_map(COCO17, POSETRACK18)
    assert m[5:].tolist() == list(range(5, 17))
    assert m[0] == 0 and m[1] == -1 and m[2] == -1  # eyes are not head_bottom/head_top


def test_mpii_aliases_map_to_posetrack_and_crowdpose():
    m = index_map(MPII16, POSETRACK17)
    assert m[MPII16.index("upper_neck")] == POSETRACK17.index("head_bottom")
    assert m[MPII16.index("head_top")] == POSETRACK17.index("head_top")
    assert m[MPII16.index("pelvis")] == -1
    c = index_map(CROWDPOSE14, POSETRACK18)
    assert c[CROWDPOSE14.index("neck")] == 1 and c[CROWDPOSE14.index("head")] == 2
    assert len(BONN_MPII_IDS) == 14 and 6 not in BONN_MPII_IDS and 7 not in BONN_MPII_IDS


@pytest.mark.parametrize("schema", list(SCHEMAS.values()), ids=list(SCHEMAS))
def test_schema_consistency(schema):
    k = schema.num_keypoints
    assert len(schema.sigmas) == k
    perm = schema.flip_permutation
    assert sorted(perm.tolist()) == list(range(k))
    assert (perm[perm] == np.arange(k)).all()
    for a, b in schema.flip_pairs:
        assert schema.keypoints[a].replace("left_", "") == schema.keypoints[b].replace("right_", "")


def test_known_sizes_and_sigmas():
    assert [s.num_keypoints for s in (COCO17, POSETRACK18, POSETRACK17, CROWDPOSE14, MPII16)] == [
        17, 17, 15, 14, 16]
    assert COCO17.sigmas[0] == pytest.approx(0.026) and COCO17.sigmas[-1] == pytest.approx(0.089)
    assert POSETRACK18.annotated_mask.sum() == 15


def test_convert_keypoints_roundtrip():
    kp = np.arange(2 * 15 * 2, dtype=float).reshape(2, 15, 2)
    sc = np.linspace(0.1, 1, 30).reshape(2, 15)
    kp18, sc18 = convert_keypoints(kp, sc, POSETRACK17, POSETRACK18)
    assert np.isnan(kp18[:, 3]).all() and (sc18[:, 3] == 0).all()
    kp17, sc17 = convert_keypoints(kp18, sc18, POSETRACK18, POSETRACK17)
    np.testing.assert_array_equal(kp17, kp)
    np.testing.assert_array_equal(sc17, sc)


def test_unknown_schema_is_clear():
    with pytest.raises(InputError, match="unknown keypoint schema 'foo'"):
        get_schema("foo")


def _upright_coco(scale: float = 1.0) -> np.ndarray:
    """One upright COCO pose (pixels): shoulders at y=100, eyes and ears at y=60, nose at y=65."""
    kp = np.full((17, 2), np.nan)
    pts = {"nose": (50, 65), "left_eye": (55, 60), "right_eye": (45, 60), "left_ear": (62, 60),
           "right_ear": (38, 60), "left_shoulder": (75, 100), "right_shoulder": (25, 100)}
    for name, xy in pts.items():
        kp[COCO17.index(name)] = xy
    return kp * scale


def test_head_joints_from_face_and_shoulders():
    kp = _upright_coco()[None]
    sc = np.full((1, 17), 0.8)
    sc[0, COCO17.index("left_shoulder")] = 0.4
    out = derive_head_joints(kp, sc, COCO17)
    # head centre (50, 60), shoulders' midpoint (50, 100): points on that line at t 0.30 / 1.58
    np.testing.assert_allclose(out["head_bottom"][0][0], [50, 100 - 0.30 * 40])
    np.testing.assert_allclose(out["head_top"][0][0], [50, 100 - 1.58 * 40])
    # score: the lower of the shoulders' mean (0.6) and the face's (0.8)
    np.testing.assert_allclose(out["head_top"][1], [0.6])
    # the construction turns and scales with the person
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    turned = derive_head_joints(2 * kp @ rot.T, sc, COCO17)
    np.testing.assert_allclose(turned["head_top"][0][0], 2 * out["head_top"][0][0] @ rot.T)


def test_head_joints_fall_back_and_go_missing():
    kp = np.stack([_upright_coco()] * 3)
    sc = np.full((3, 17), 0.9)
    face = [COCO17.index(n) for n in ("left_eye", "right_eye", "left_ear", "right_ear")]
    sc[0, face] = 0.0  # no eyes or ears seen: the nose is the head centre
    kp[1, COCO17.index("right_shoulder")] = np.nan  # no shoulders' midpoint: nothing derived
    out = derive_head_joints(kp, sc, COCO17)
    np.testing.assert_allclose(out["head_top"][0][0], [50, 100 + 1.58 * (65 - 100)])
    assert np.isnan(out["head_top"][0][1]).all() and out["head_top"][1][1] == 0
    assert np.isfinite(out["head_top"][0][2]).all()


def test_convert_derives_head_joints_only_when_asked():
    kp = _upright_coco()[None]
    sc = np.full((1, 17), 0.7)
    plain, _ = convert_keypoints(kp, sc, COCO17, POSETRACK18)
    assert np.isnan(plain[0, [POSETRACK18.index("head_bottom"), POSETRACK18.index("head_top")]]).all()
    full, fsc = convert_keypoints(kp, sc, COCO17, POSETRACK18, derive_head=True)
    top = POSETRACK18.index("head_top")
    np.testing.assert_allclose(full[0, top], [50, 100 - 1.58 * 40])
    assert fsc[0, top] == pytest.approx(0.7)
    np.testing.assert_array_equal(np.delete(full, [1, 2], axis=1), np.delete(plain, [1, 2], axis=1))
    # a schema that has the joints keeps its own
    bonn = np.zeros((1, POSETRACK17.num_keypoints, 2))
    out, _ = convert_keypoints(bonn, np.ones((1, 15)), POSETRACK17, POSETRACK18, derive_head=True)
    np.testing.assert_array_equal(out[0, top], [0, 0])
