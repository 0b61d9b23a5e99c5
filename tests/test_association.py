"""CrowdPose association: candidates, person-joint graph, per-joint matching, redundancy removal."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import torch

from posetracker.association.assign import assign, associate, associate_heatmaps, match_max_weight
from posetracker.association.candidates import JointCandidates, distance_prior, extract_candidates, find_peaks
from posetracker.association.config import AssociationConfig
from posetracker.association.graph import build_graph, joint_deltas
from posetracker.association.synthetic import (
    Scene,
    crop_affines,
    make_scene,
    person_boxes,
    render_heatmaps,
    standing_person,
)
from posetracker.core.config import ConfigError, from_dict
from posetracker.core.pose_nms import PoseNMSConfig
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import COCO17

SIGMAS = COCO17.sigma_array()


def _gauss(h, w, x, y, s, a=1.0):
    yy, xx = np.mgrid[0:h, 0:w]
    return a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))


# -- candidates --------------------------------------------------------------------------------
def test_peaks_subpixel_position_and_width_of_gaussians():
    hm = np.zeros((1, 2, 32, 32), np.float32)
    hm[0, 0] = _gauss(32, 32, 10.3, 20.7, 1.7, 0.9)
    hm[0, 1] = np.maximum(_gauss(32, 32, 5.0, 5.0, 1.2, 0.4), _gauss(32, 32, 25.6, 12.2, 2.0, 0.8))
    xy, score, size, _ = find_peaks(torch.from_numpy(hm), AssociationConfig(max_candidates=3))
    assert np.allclose(xy[0, 0, 0].numpy(), [10.3, 20.7], atol=1e-3)
    assert score[0, 0, 0] == pytest.approx(0.9, abs=0.05)
    assert size[0, 0, 0] == pytest.approx(1.7, abs=1e-3)
    assert score[0, 0, 1] == 0 and torch.isnan(xy[0, 0, 1]).all()      # one peak only
    # two peaks, strongest first, each refined
    assert np.allclose(xy[0, 1, 0].numpy(), [25.6, 12.2], atol=1e-3)
    assert np.allclose(xy[0, 1, 1].numpy(), [5.0, 5.0], atol=1e-3)
    assert size[0, 1, 0] == pytest.approx(2.0, abs=1e-3) and size[0, 1, 1] == pytest.approx(1.2, abs=1e-3)


def test_peaks_threshold_count_and_refine_modes():
    hm = np.zeros((2, 1, 20, 20), np.float32)
    for _i, (x, a) in enumerate([(3, 0.9), (8, 0.5), (13, 0.3), (17, 0.04)]):
        hm[0, 0] = np.maximum(hm[0, 0], _gauss(20, 20, x, 10, 1.0, a))
    cfg = AssociationConfig(candidate_threshold=0.05, fallback_threshold=0.05, max_candidates=2,
                            refine="none")
    xy, score, _, _ = find_peaks(torch.from_numpy(hm), cfg)
    assert xy.shape == (2, 1, 2, 2)
    assert np.allclose(score[0, 0].numpy(), [0.9, 0.5], atol=1e-6)
    assert np.allclose(xy[0, 0].numpy(), [[3, 10], [8, 10]])
    assert (score[1] == 0).all()                                           # empty heatmap
    five = AssociationConfig(max_candidates=5, fallback_threshold=0.05)
    xy3, score3, _, _ = find_peaks(torch.from_numpy(hm), five)
    assert int((score3[0, 0] > 0).sum()) == 3                              # 0.04 is below threshold
    _, score4, _, _ = find_peaks(torch.from_numpy(hm), AssociationConfig(max_candidates=5))
    assert int((score4[0, 0] > 0).sum()) == 4                              # kept for the fallback
    # raw-value parabola on an off-grid Gaussian: close, though not exact
    hm2 = _gauss(20, 20, 7.3, 9.6, 1.5)[None, None].astype(np.float32)
    xq, _, _, _ = find_peaks(torch.from_numpy(hm2), AssociationConfig(refine="quadratic"))
    assert np.allclose(xq[0, 0, 0].numpy(), [7.3, 9.6], atol=0.1)
    off = torch.zeros(1, 1, 20, 20, 2)
    off[0, 0, 10, 7] = torch.tensor([0.25, -0.5])
    xo, _, _, _ = find_peaks(torch.from_numpy(hm2), AssociationConfig(), offsets=off)
    assert np.allclose(xo[0, 0, 0].numpy(), [7.25, 9.5])                   # offsets replace the fit


def test_candidates_map_to_image_through_the_affine():
    hm = _gauss(16, 16, 4.25, 11.5, 1.5, 0.8)[None, None].astype(np.float32)
    aff = np.array([[[3.0, 0.0, 100.0], [0.0, 3.0, 50.0]]])
    c = extract_candidates(hm, aff, AssociationConfig())
    assert np.allclose(c.xy[0, 0, 0], [100 + 3 * 4.25, 50 + 3 * 11.5], atol=1e-2)
    assert c.size[0, 0, 0] == pytest.approx(4.5, abs=1e-2)                  # 1.5 cells x 3 px
    top_xy, top_score = c.top()
    assert top_xy.shape == (1, 1, 2) and top_score[0, 0] == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError):
        extract_candidates(hm, np.zeros((2, 2, 3)))


def test_plateau_counts_once_and_window_is_respected():
    from posetracker.association.candidates import _local_maxima

    m = torch.zeros(1, 5, 7)
    m[0, 2, 2] = m[0, 2, 3] = 0.8          # a two-cell plateau
    m[0, 2, 5] = 0.5                       # two cells from the plateau
    peaks = _local_maxima(m, 1)[0]
    assert peaks[2, 2] and not peaks[2, 3] and peaks[2, 5]
    assert not _local_maxima(m, 2)[0, 2, 5]  # inside the 5x5 window of the plateau


def test_person_prior_weights_candidates_but_keeps_raw_values():
    hm = np.zeros((1, 1, 32, 32), np.float32)
    hm[0, 0] = np.maximum(_gauss(32, 32, 8, 8, 1.5, 0.9), _gauss(32, 32, 24, 8, 1.5, 0.7))
    aff = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    expected = torch.tensor([[[24.0, 8.0]]])                 # this proposal's person is on the right
    prior = distance_prior(expected, (32, 32), bias=1.8)
    assert prior[0, 0, 8, 24] == pytest.approx(1.0) and prior[0, 0, 8, 8] == pytest.approx(1.8 / 17.8)
    c = extract_candidates(hm, aff, AssociationConfig(), prior=prior)
    assert np.allclose(c.xy[0, 0, 0], [24, 8], atol=0.05)   # the expected person's peak ranks first
    assert c.value[0, 0, 0] == pytest.approx(0.7, abs=1e-3)
    assert c.score[0, 0, 1] < 0.1 and c.value[0, 0, 1] == pytest.approx(0.9, abs=1e-3)
    poses, _ = associate_heatmaps(hm, aff, np.zeros((1, 4)), np.ones(1), _one_joint_schema(),
                                  AssociationConfig(), expected=expected)
    assert np.allclose(poses.keypoints[0, 0], [24, 8], atol=0.05)
    assert poses.keypoint_scores[0, 0] == pytest.approx(0.7, abs=1e-3)


def _one_joint_schema():
    from posetracker.core.schemas import KeypointSchema

    return KeypointSchema(name="one", keypoints=("nose",), skeleton=(), sigmas=(0.026,))


def test_config_is_validated():
    with pytest.raises(ValueError):
        AssociationConfig(peak_window=4)
    with pytest.raises(ConfigError):
        from_dict(AssociationConfig, {"no_such_key": 1})
    assert from_dict(AssociationConfig, {"fallback": "drop"}).fallback == "drop"


# -- graph -------------------------------------------------------------------------------------
def _cands(points):
    """Hand-made candidates: ``points[p][k]`` = list of (x, y, score, size)."""
    n, k = len(points), len(points[0])
    m = max(len(c) for row in points for c in row)
    xy = np.full((n, k, m, 2), np.nan)
    sc = np.zeros((n, k, m))
    sz = np.zeros((n, k, m))
    for p, row in enumerate(points):
        for t, cs in enumerate(row):
            for j, (x, y, s, u) in enumerate(sorted(cs, key=lambda c: -c[2])):
                xy[p, t, j], sc[p, t, j], sz[p, t, j] = (x, y), s, u
    return JointCandidates(xy, sc, sz)


def test_graph_clusters_same_type_candidates_of_different_proposals():
    # delta = 1 for both joint types (equal sigmas), u = 10: radius 10 px.
    sig = np.array([0.05, 0.05])
    cfg = AssociationConfig(delta_scale=1.0, candidate_threshold=0.1)
    c = _cands([
        [[(0, 0, 0.9, 10), (50, 0, 0.4, 10)], [(0, 100, 0.8, 10)]],
        [[(3, 4, 0.7, 10), (52, 1, 0.95, 10)], [(200, 100, 0.5, 10)]],
        [[(9, 0, 0.3, 10), (100, 0, 0.05, 10)], [(5, 100, 0.6, 10)]],
    ])
    g = build_graph(c, sig, cfg)
    j0, j1 = g.joints
    # type 0: node A {p0@(0,0), p1@(3,4), p2@(9,0)}, node B {p1@(52,1), p0@(50,0)}; p2's (100,0)
    # is below the threshold and stays out.
    assert j0.num_nodes == 2
    a = int(np.argmax(j0.weights[0]))
    b = 1 - a
    assert np.allclose(j0.weights[:, a], [0.9, 0.7, 0.3])
    assert np.allclose(j0.weights[:, b], [0.4, 0.95, 0.0])
    assert j0.slot[1, a] == 1 and j0.slot[1, b] == 0 and j0.slot[2, b] == -1
    assert np.allclose(j0.position[a], np.array([[0, 0], [3, 4], [9, 0]]).T @ [0.9, 0.7, 0.3] / 1.9)
    assert not g.in_graph[2, 0, 1]
    # type 1: p0 and p2 within 10 px, p1 far away
    assert j1.num_nodes == 2 and sorted((j1.weights > 0).sum(0)) == [1, 2]
    # networkx view: bipartite, edges only between persons and joint nodes of one type
    G = g.to_networkx()
    assert nx.is_bipartite(G)
    assert G.number_of_edges() == int(sum((j.weights > 0).sum() for j in g.joints))
    for u, v in G.edges:
        assert {u[0], v[0]} == {"person", "joint"}
    assert G.edges[("person", 1), ("joint", 0, b)]["weight"] == pytest.approx(0.95)


def test_graph_uses_the_smaller_size_and_joint_delta():
    sig = np.array([0.02, 0.08])                      # delta = 0.4 and 1.6 with delta_scale = 1
    assert np.allclose(joint_deltas(sig, 1.0), [0.4, 1.6])
    cfg = AssociationConfig(delta_scale=1.0)
    # 12 px apart; u = 10 and 20: radius min(u) * delta = 4 (type 0) or 16 (type 1)
    c = _cands([[[(0, 0, 0.9, 10)], [(0, 0, 0.9, 10)]], [[(12, 0, 0.8, 20)], [(12, 0, 0.8, 20)]]])
    g = build_graph(c, sig, cfg)
    assert g.joints[0].num_nodes == 2 and g.joints[1].num_nodes == 1


def test_default_merge_radius_is_the_measured_three_sizes():
    """``delta_scale`` 3 (measured on the crowd composites: the fewest wrong candidate pairs): one
    joint seen from two crops 2.5 sizes apart is one node; 3.5 sizes apart, two."""
    sig = np.array([0.05, 0.05])                      # delta_k = delta_scale for both types
    c = _cands([[[(0, 0, 0.9, 10)], [(0, 0, 0.9, 10)]], [[(25, 0, 0.8, 10)], [(35, 0, 0.8, 10)]]])
    g = build_graph(c, sig, AssociationConfig())
    assert g.joints[0].num_nodes == 1 and g.joints[1].num_nodes == 2


def test_graph_does_not_chain_and_keeps_one_candidate_per_proposal():
    sig = np.array([0.05])
    cfg = AssociationConfig(delta_scale=1.0)
    # a-b 8 px, b-c 8 px, a-c 16 px (radius 10): leader a takes b, c founds its own node.
    c = _cands([[[(0, 0, 0.9, 10)]], [[(8, 0, 0.8, 10)]], [[(16, 0, 0.7, 10)]]])
    g = build_graph(c, sig, cfg)
    assert g.joints[0].num_nodes == 2
    # one proposal with two peaks near another's candidate: only its stronger one joins
    c2 = _cands([[[(0, 0, 0.9, 10)]], [[(5, 0, 0.6, 10), (-5, 0, 0.7, 10)]]])
    g2 = build_graph(c2, sig, cfg)
    assert g2.joints[0].num_nodes == 1
    assert g2.joints[0].slot[1, 0] == 0 and g2.joints[0].weights[1, 0] == pytest.approx(0.7)
    assert not g2.in_graph[1, 0, 1]


def test_empty_inputs():
    c = JointCandidates(np.zeros((0, 17, 3, 2)), np.zeros((0, 17, 3)), np.zeros((0, 17, 3)))
    poses, kept = associate(c, np.zeros((0, 4)), np.zeros(0), COCO17)
    assert len(poses) == 0 and kept.size == 0
    # proposals without any candidate are redundant
    c1 = JointCandidates(np.full((2, 17, 3, 2), np.nan), np.zeros((2, 17, 3)), np.zeros((2, 17, 3)))
    poses, kept = associate(c1, np.zeros((2, 4)), np.ones(2), COCO17)
    assert len(poses) == 0


# -- matching ----------------------------------------------------------------------------------
def _brute_force(w):
    n, q = w.shape
    best = 0.0
    for r in range(min(n, q) + 1):
        for rows in itertools.combinations(range(n), r):
            for cols in itertools.permutations(range(q), r):
                best = max(best, sum(w[i, j] for i, j in zip(rows, cols)))
    return best


def test_matching_equals_brute_force_on_random_cases():
    rng = np.random.default_rng(7)
    for _ in range(150):
        n, q = rng.integers(1, 5, size=2)
        w = rng.uniform(0, 1, (n, q)) * (rng.uniform(size=(n, q)) < 0.6)
        rows, cols = match_max_weight(w)
        assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
        assert (w[rows, cols] > 0).all()
        assert w[rows, cols].sum() == pytest.approx(_brute_force(w))


# -- whole association -------------------------------------------------------------------------
def _two_people(dx: float = 60.0, dy: float = 12.0):
    """Joints ``(2, 17, 2)`` of person A and of B standing ``dx, dy`` pixels to A's lower right."""
    return np.stack([standing_person(100, 50, 300), standing_person(100 + dx, 50 + dy, 300)])


def _two_people_scene():
    """Person A (left) and B (right) overlapping; proposal A's heatmaps peak *stronger on B*."""
    joints = _two_people()
    aff = crop_affines(person_boxes(joints), 64)
    amp = np.empty((2, 2, 17))
    amp[0, 0], amp[0, 1] = 0.6, 0.9                      # A's crop: own 0.6, B's 0.9
    amp[1, 1], amp[1, 0] = 0.95, 0.3                     # B's crop: own 0.95, A's 0.3
    hm = render_heatmaps(joints, aff, 64, amp)
    return Scene(joints, person_boxes(joints), hm, aff), hm


def test_two_proposals_peaking_on_one_person_get_their_own_joints():
    scene, hm = _two_people_scene()
    cand = extract_candidates(hm, scene.heatmap_to_image, AssociationConfig())
    assert np.isfinite(cand.xy[0, :, 1, 0]).all()     # A's crop sees B's joints as second peaks
    # The single-peak reading (what pose NMS gets) puts A's joints on B wherever B is in A's crop.
    top, _ = cand.top()
    assert (np.linalg.norm(top[0] - scene.joints[1], axis=-1) < 1).all()
    poses, kept = associate(cand, scene.boxes, np.ones(2), COCO17)
    assert isinstance(poses, FramePoses) and list(kept) == [0, 1]
    err = np.linalg.norm(poses.keypoints - scene.joints, axis=-1)
    assert err.max() < 1.0, err
    assert np.allclose(poses.keypoint_scores[0], 0.6, atol=0.02)
    assert np.allclose(poses.keypoint_scores[1], 0.95, atol=0.02)


def test_occluded_joint_falls_back_or_is_dropped():
    scene, hm = _two_people_scene()
    hm = hm.copy()
    aff = scene.heatmap_to_image
    # A's left wrist (joint 9) is occluded: A's crop shows only a faint 0.03 response there, B's crop
    # nothing; B's left wrist (strong in A's crop too) belongs to B.
    amp = np.zeros((2, 2, 17))
    amp[0, 0, 9], amp[0, 1, 9] = 0.03, 0.9
    amp[1, 1, 9] = 0.95
    hm[:, 9] = render_heatmaps(scene.joints, aff, 64, amp)[:, 9]
    nxt = AssociationConfig(candidate_threshold=0.1, fallback="next")
    keep = AssociationConfig(candidate_threshold=0.1)                      # the default "keep"
    drop = AssociationConfig(candidate_threshold=0.1, fallback="drop")
    cand = extract_candidates(hm, aff, keep)
    # the faint peak is a candidate but stays out of the graph; B owns the strong wrist
    g = build_graph(cand, SIGMAS, keep)
    assert not g.in_graph[0, 9, 1] and g.in_graph[0, 9, 0]
    res = assign(g, nxt)
    assert res.node[0, 9] == -1 and res.fallback[0, 9] and not res.shared[0, 9]
    poses, _ = associate(cand, scene.boxes, np.ones(2), COCO17, nxt)
    assert np.linalg.norm(poses.keypoints[0, 9] - scene.joints[0, 9]) < 1.0
    assert poses.keypoint_scores[0, 9] == pytest.approx(0.03, abs=0.005)
    # "keep": A duplicates B's wrist at a lower score; "drop": A's wrist is absent
    kept_poses, _ = associate(cand, scene.boxes, np.ones(2), COCO17, keep)
    assert np.linalg.norm(kept_poses.keypoints[0, 9] - scene.joints[1, 9]) < 1.0
    assert kept_poses.keypoint_scores[0, 9] == pytest.approx(0.9 * keep.fallback_factor, abs=0.02)
    dropped, _ = associate(cand, scene.boxes, np.ones(2), COCO17, drop)
    assert np.isnan(dropped.keypoints[0, 9]).all() and dropped.keypoint_scores[0, 9] == 0
    for p in (poses, kept_poses, dropped):
        assert np.linalg.norm(p.keypoints[1, 9] - scene.joints[1, 9]) < 1.0
    # "next" without faint candidates leaves the joint absent
    coarse = AssociationConfig(candidate_threshold=0.1, fallback_threshold=0.1, fallback="next")
    none, _ = associate(extract_candidates(hm, aff, coarse), scene.boxes, np.ones(2), COCO17, coarse)
    assert np.isnan(none.keypoints[0, 9]).all()


def test_faintly_seen_joint_takes_the_strongest_faint_peak():
    hm = np.zeros((1, 17, 32, 32), np.float32)
    hm[0, :] = _gauss(32, 32, 10, 12, 1.5, 0.6)
    hm[0, 3] = np.maximum(_gauss(32, 32, 20, 5, 1.5, 0.02), _gauss(32, 32, 3, 3, 1.5, 0.01))
    aff = np.array([[[1.0, 0, 0], [0, 1.0, 0]]])
    cfg = AssociationConfig(candidate_threshold=0.05)
    poses, kept = associate(extract_candidates(hm, aff, cfg), np.zeros((1, 4)), np.ones(1), COCO17, cfg)
    assert list(kept) == [0]
    assert np.allclose(poses.keypoints[0, 3], [20, 5], atol=1e-3)
    assert poses.keypoint_scores[0, 3] == pytest.approx(0.02, abs=1e-3)
    drop = AssociationConfig(candidate_threshold=0.05, fallback="drop")
    poses, _ = associate(extract_candidates(hm, aff, drop), np.zeros((1, 4)), np.ones(1), COCO17, drop)
    assert np.isnan(poses.keypoints[0, 3]).all()


def test_redundant_proposal_owning_no_joints_is_removed():
    joints = _two_people()
    scene = Scene(joints, person_boxes(joints), None, None)
    # a third, weaker proposal between A and B whose heatmaps only echo their joints
    boxes = np.vstack([scene.boxes, (scene.boxes[0] + scene.boxes[1]) / 2])
    aff = crop_affines(boxes, 64)
    amp = np.zeros((3, 2, 17))
    amp[0, 0], amp[1, 1] = 0.9, 0.9
    amp[2] = 0.2
    hm = render_heatmaps(scene.joints, aff, 64, amp)
    cand = extract_candidates(hm, aff, AssociationConfig())
    poses, kept = associate(cand, boxes, np.array([0.9, 0.9, 0.5]), COCO17)
    assert list(kept) == [0, 1] and len(poses) == 2
    assert np.allclose(poses.boxes, boxes[:2])
    err = np.linalg.norm(poses.keypoints - scene.joints, axis=-1)
    assert err.max() < 1.0
    # min_joints = 0 keeps it (with fallback joints only) when step 5's pose NMS is off ...
    no_nms = AssociationConfig(min_joints=0, nms=PoseNMSConfig(mode="none"))
    _, kept0 = associate(cand, boxes, np.ones(3), COCO17, no_nms)
    assert list(kept0) == [0, 1, 2]
    # ... and the pose NMS then merges it: its fallback joints repeat A's and B's; removed with
    # redundant_score 0, else kept unmerged at redundant_score x its score, ranked last
    gone = AssociationConfig(min_joints=0, redundant_score=0.0)
    _, kept1 = associate(cand, boxes, np.ones(3), COCO17, gone)
    assert list(kept1) == [0, 1]
    full, _ = associate(cand, boxes, np.ones(3), COCO17, no_nms)
    demoted, kept2 = associate(cand, boxes, np.ones(3), COCO17, AssociationConfig(min_joints=0))
    assert list(kept2) == [0, 1, 2]
    assert AssociationConfig().redundant_score == 0.3
    assert demoted.scores[2] == pytest.approx(0.3 * full.scores[2])
    assert demoted.scores[2] < demoted.scores[:2].min()
    np.testing.assert_array_equal(demoted.keypoints[2], full.keypoints[2])


def test_association_beats_single_peak_reading_on_crowded_scenes():
    rng = np.random.default_rng(11)
    hits_top = hits_assoc = total = 0
    for _ in range(3):
        # neighbours' peaks up to 0.9, own ones from 0.7: many crops see a neighbour strongest
        scene = make_scene(8, rng, own_peak=(0.7, 0.95), other_peak=(0.3, 0.9))
        cand = extract_candidates(scene.heatmaps, scene.heatmap_to_image)
        top, _ = cand.top()
        poses, kept = associate(cand, scene.boxes, np.ones(8), COCO17)
        assert len(kept) == 8
        hits_top += int((np.linalg.norm(top - scene.joints, axis=-1) < 2).sum())
        hits_assoc += int((np.linalg.norm(poses.keypoints - scene.joints, axis=-1) < 2).sum())
        total += 8 * 17
    assert hits_top / total < 0.8            # measured 0.72
    assert hits_assoc / total > 0.85         # measured 0.91
    assert hits_assoc > hits_top + 0.1 * total


# -- estimator integration ---------------------------------------------------------------------
def test_heatmap_affines_follow_the_sppe_cell_convention():
    from posetracker.association.assign import heatmap_affines

    crop_to_image = np.array([[[2.0, 0.0, 10.0], [0.0, 3.0, 20.0]]])
    h = heatmap_affines(crop_to_image, 4.0)
    cell = np.array([5.0, 7.0])
    crop = cell * 4.0 - 0.5                                   # cell i at crop pixel i * stride - 0.5
    assert np.allclose(h[0] @ np.r_[cell, 1.0], crop_to_image[0] @ np.r_[crop, 1.0])


class _FakeEstimator:
    """Stands in for RMPEEstimator: per-frame intermediates of a synthetic two-person scene."""

    def __init__(self, scene, heatmaps, stride=4.0):
        from types import SimpleNamespace

        from posetracker.association.assign import heatmap_affines

        self.sppe = SimpleNamespace(schema=COCO17)
        self.device = "cpu"
        # crop -> image affines whose heatmap affines are the scene's
        a = scene.heatmap_to_image.copy()
        a[:, :, :2] /= stride
        a[:, :, 2] += 0.5 * a[:, :, :2].sum(axis=2)
        assert np.allclose(heatmap_affines(a, stride), scene.heatmap_to_image)
        top = extract_candidates(heatmaps, scene.heatmap_to_image).top()
        self.inter = SimpleNamespace(
            boxes=scene.boxes, box_scores=np.ones(2), affines=torch.as_tensor(a),
            heatmaps=torch.as_tensor(heatmaps), heatmap_stride=stride,
            keypoints=top[0], keypoint_scores=top[1])
        self.calls = []

    def intermediates(self, frames, heatmaps=True, candidates=0, boxes=None):
        self.calls.append((len(frames), heatmaps, boxes))
        return [self.inter for _ in frames]


def test_association_grouping_replaces_nms_per_frame():
    from posetracker.association.assign import AssociationGrouping

    scene, hm = _two_people_scene()
    fake = _FakeEstimator(scene, hm)
    grouping = AssociationGrouping()
    out = [grouping(inter, fake.sppe.schema)
           for inter in fake.intermediates([np.zeros((8, 8, 3), np.uint8)] * 2)]
    assert len(out) == 2
    for poses in out:
        # proposal A's single-person answer sat on B; the association gives A its own joints back
        # (the prior around A's answer favours B's peaks for A, yet the matching resolves it; the
        # prior also pulls the refined peaks by up to a pixel)
        err = np.linalg.norm(poses.keypoints - scene.joints, axis=-1)
        assert len(poses) == 2 and err.max() < 1.5


def test_bench_association_speed_table_runs(capsys):
    from posetracker.app.cli import main

    assert main(["bench", "association", "--people", "2,4", "--frames", "1"]) == 0
    out = capsys.readouterr().out
    assert "association ms" in out and "extract ms" in out


# -- the SPPE's own answer, person-weighted edges, redundancy --------------------------------------
def test_answer_cells_find_the_cell_an_offset_answer_was_read_from():
    from posetracker.association.assign import answer_cells

    off = torch.zeros(1, 2, 8, 8, 2)
    off[0, 0, 3, 2] = torch.tensor([0.9, -0.8])        # cell (x 2, y 3) + offset -> (2.9, 2.2)
    ans = np.array([[[2.9, 2.2], [np.nan, np.nan]]])
    cells = answer_cells(ans, (8, 8), off)
    assert cells[0, 0].tolist() == [2.0, 3.0]          # not the nearest cell (3, 2)
    assert np.isnan(cells[0, 1]).all()
    assert answer_cells(ans, (8, 8))[0, 0].tolist() == [3.0, 2.0]   # no offsets: nearest cell


def test_a_lone_proposal_gets_exactly_the_sppe_answer():
    """The person prior is centred on the answer's cell, so the answer is always a candidate: with
    nothing to compete with, the association returns the pose-NMS path's joints and scores, even
    when the answer's offset points far from its cell, towards a stronger neighbour cell."""
    from types import SimpleNamespace

    from posetracker.association.assign import associate_intermediates

    k, h, w, stride = 17, 16, 16, 4.0
    hm = torch.zeros(1, k, h, w)
    off = torch.zeros(1, k, h, w, 2)
    hm[0, :, 5, 5], hm[0, :, 6, 6] = 0.5, 0.6           # the answer's cell, and a stronger neighbour
    off[0, :, 5, 5] = torch.tensor([0.9, 0.9])
    off[0, :, 6, 6] = torch.tensor([0.3, 0.3])
    crop_to_image = np.array([[[2.0, 0.0, 10.0], [0.0, 2.0, 20.0]]])
    cells = np.full((1, k, 2), 5.9)                     # (5, 5) + its offset
    from posetracker.association.assign import heatmap_affines

    c2i = heatmap_affines(crop_to_image, stride)
    kp = cells @ c2i[0, :, :2].T + c2i[0, :, 2]
    inter = SimpleNamespace(boxes=np.array([[0.0, 0.0, 100.0, 100.0]]), box_scores=np.array([0.8]),
                            affines=torch.as_tensor(crop_to_image), heatmaps=hm, heatmap_stride=stride,
                            keypoints=kp, keypoint_scores=np.full((1, k), 0.5), offsets=off)
    poses, kept = associate_intermediates(inter, COCO17, AssociationConfig())
    assert list(kept) == [0]
    np.testing.assert_allclose(poses.keypoints[0], kp[0], atol=1e-4)
    np.testing.assert_allclose(poses.keypoint_scores[0], 0.5, atol=1e-6)


def test_person_weights_give_contested_joints_to_the_stronger_proposal():
    # two boxes on one person, every joint in one node; the weak duplicate's peaks are a bit higher
    xy = np.tile(np.arange(17.0)[:, None, None] * 30.0, (2, 1, 1, 2))
    score = np.stack([np.full((17, 1), 0.7), np.full((17, 1), 0.8)])
    cand = JointCandidates(xy, score, np.full((2, 17, 1), 5.0))
    g = build_graph(cand, COCO17.sigma_array(), AssociationConfig())
    plain = assign(g, AssociationConfig())
    weighted = assign(g, AssociationConfig(), person_weights=np.array([0.9, 0.3]))
    assert (plain.node[1] >= 0).all() and (plain.node[0] < 0).all()
    assert (weighted.node[0] >= 0).all() and (weighted.node[1] < 0).all()
    assert list(np.flatnonzero(weighted.kept)) == [0]
