import numpy as np
import pytest

from posetracker.errors import InputError
from posetracker.schemas import (BONN_MPII_IDS, COCO17, CROWDPOSE14, MPII16, POSETRACK17,
                                 POSETRACK18, SCHEMAS, convert_keypoints, get_schema, index_map)


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
