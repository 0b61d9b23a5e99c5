"""Keypoint schemas as data: names, flip pairs, skeleton edges, OKS sigmas, and index maps.

Each schema lists its joints in the order its file format stores them. Joints that denote the same
body point under different names (PoseTrack's ``head_bottom``, CrowdPose's ``neck``, MPII's
``upper_neck``) share a *canonical* name, which is what :func:`index_map` matches on.

OKS sigmas are the per-joint falloff constants of the COCO keypoint evaluation (already divided by 10,
as pycocotools uses them). Schemas with joints COCO lacks take CrowdPose's values for head and neck.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posetracker.core.errors import InputError

# Names that denote one body point across datasets -> the canonical name.
_CANONICAL = {
    "neck": "head_bottom",
    "upper_neck": "head_bottom",
    "head": "head_top",
}


@dataclass(frozen=True)
class KeypointSchema:
    """An ordered set of named joints with the data that evaluation and drawing need.

    Attributes:
        name: Identifier used on the command line and in files (e.g. ``"coco17"``).
        keypoints: Joint names, in storage order; ``k = len(keypoints)``.
        skeleton: Edges as pairs of 0-based joint indices, for drawing and for limb lengths.
        sigmas: OKS falloff per joint, shape ``(k,)``; pycocotools' convention (already / 10).
        never_annotated: Joints the dataset keeps a slot for but never labels (PoseTrack18's ears).
    """

    name: str
    keypoints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    never_annotated: tuple[str, ...] = ()
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        k = len(self.keypoints)
        if len(set(self.keypoints)) != k:
            raise ValueError(f"schema {self.name}: duplicate keypoint names")
        if len(self.sigmas) != k:
            raise ValueError(f"schema {self.name}: {len(self.sigmas)} sigmas for {k} keypoints")
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"schema {self.name}: skeleton edge ({a}, {b}) out of range")
        self._index.update({n: i for i, n in enumerate(self.keypoints)})

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        """0-based index of joint ``name``; raises ``KeyError`` for an unknown name."""
        return self._index[name]

    @property
    def canonical(self) -> tuple[str, ...]:
        """Canonical joint names (aliases resolved), in storage order."""
        return tuple(_CANONICAL.get(n, n) for n in self.keypoints)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """(left, right) index pairs, for flip testing and mirrored augmentation."""
        pairs = []
        for i, n in enumerate(self.keypoints):
            if n.startswith("left_"):
                j = self._index.get("right_" + n[len("left_"):])
                if j is not None:
                    pairs.append((i, j))
        return tuple(pairs)

    @property
    def flip_permutation(self) -> np.ndarray:
        """Index array ``p`` such that ``keypoints[:, p]`` swaps left and right joints. Shape ``(k,)``."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @property
    def annotated_mask(self) -> np.ndarray:
        """Boolean ``(k,)``: False for joints the dataset never labels."""
        return np.array([n not in self.never_annotated for n in self.keypoints])

    def sigma_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)


def _edges(names: tuple[str, ...], pairs: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    idx = {n: i for i, n in enumerate(names)}
    return tuple((idx[a], idx[b]) for a, b in pairs)


_LIMBS = [
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
    ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
    ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
]

_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
    0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)
_HEAD_SIGMA = 0.079  # CrowdPose's sigma for its head (top) and neck joints
_NECK_SIGMA = 0.079

COCO17 = KeypointSchema(
    name="coco17",
    keypoints=_COCO_NAMES,
    skeleton=_edges(_COCO_NAMES, _LIMBS + [
        ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"),
        ("left_eye", "left_ear"), ("right_eye", "right_ear"),
        ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
    ]),
    sigmas=_COCO_SIGMAS,
)

# PoseTrack 2018 keeps COCO's 17 slots; the eye slots hold head_bottom and head_top.
_PT18_NAMES = ("nose", "head_bottom", "head_top") + _COCO_NAMES[3:]
POSETRACK18 = KeypointSchema(
    name="posetrack18",
    keypoints=_PT18_NAMES,
    skeleton=_edges(_PT18_NAMES, _LIMBS + [
        ("head_bottom", "head_top"), ("nose", "head_bottom"), ("nose", "head_top"),
        ("head_bottom", "left_ear"), ("head_top", "right_ear"),
        ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
    ]),
    sigmas=(_COCO_SIGMAS[0], _NECK_SIGMA, _HEAD_SIGMA) + _COCO_SIGMAS[3:],
    never_annotated=("left_ear", "right_ear"),
)

_PT17_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "head_bottom", "nose", "head_top",
)
_COCO_SIGMA_BY_NAME = dict(zip(_COCO_NAMES, _COCO_SIGMAS))
_COCO_SIGMA_BY_NAME.update(head_bottom=_NECK_SIGMA, head_top=_HEAD_SIGMA, neck=_NECK_SIGMA,
                           head=_HEAD_SIGMA, upper_neck=_NECK_SIGMA, pelvis=0.107, thorax=0.079)

POSETRACK17 = KeypointSchema(
    name="posetrack17",
    keypoints=_PT17_NAMES,
    skeleton=_edges(_PT17_NAMES, _LIMBS + [
        ("head_bottom", "head_top"), ("head_bottom", "nose"),
        ("head_bottom", "left_shoulder"), ("head_bottom", "right_shoulder"),
    ]),
    sigmas=tuple(_COCO_SIGMA_BY_NAME[n] for n in _PT17_NAMES),
)

_CROWDPOSE_NAMES = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)
CROWDPOSE14 = KeypointSchema(
    name="crowdpose14",
    keypoints=_CROWDPOSE_NAMES,
    skeleton=_edges(_CROWDPOSE_NAMES, _LIMBS + [
        ("head", "neck"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
    ]),
    # CrowdPose's official sigmas: COCO's body sigmas, 0.079 for head and neck.
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
            0.079, 0.079),
)

_MPII_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
)
MPII16 = KeypointSchema(
    name="mpii16",
    keypoints=_MPII_NAMES,
    skeleton=_edges(_MPII_NAMES, [
        ("right_ankle", "right_knee"), ("right_knee", "right_hip"), ("right_hip", "pelvis"),
        ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("left_hip", "pelvis"),
        ("pelvis", "thorax"), ("thorax", "upper_neck"), ("upper_neck", "head_top"),
        ("right_wrist", "right_elbow"), ("right_elbow", "right_shoulder"),
        ("right_shoulder", "thorax"), ("left_wrist", "left_elbow"),
        ("left_elbow", "left_shoulder"), ("left_shoulder", "thorax"),
    ]),
    sigmas=tuple(_COCO_SIGMA_BY_NAME[n] for n in _MPII_NAMES),
)

#: MPII ids that the Bonn Multi-Person PoseTrack data annotates (no pelvis, no thorax).
BONN_MPII_IDS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)

SCHEMAS: dict[str, KeypointSchema] = {
    s.name: s for s in (COCO17, POSETRACK18, POSETRACK17, CROWDPOSE14, MPII16)
}


def get_schema(name: str) -> KeypointSchema:
    """Look a schema up by name; unknown names raise :class:`InputError` listing the known ones."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise InputError(f"unknown keypoint schema {name!r} (known: {', '.join(SCHEMAS)})") from None


def index_map(src: KeypointSchema, dst: KeypointSchema) -> np.ndarray:
    """For each joint of ``src``, its index in ``dst`` or -1 where ``dst`` has no such joint.

    Returns an int array of shape ``(src.num_keypoints,)``. Matching is on canonical names, so
    PoseTrack's ``head_bottom`` meets CrowdPose's ``neck`` and MPII's ``upper_neck``.
    """
    dst_pos = {c: i for i, c in enumerate(dst.canonical)}
    return np.array([dst_pos.get(c, -1) for c in src.canonical], dtype=np.int64)


def convert_keypoints(
    keypoints: np.ndarray, scores: np.ndarray, src: KeypointSchema, dst: KeypointSchema,
    derive_head: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-index poses from ``src`` to ``dst``.

    Args:
        keypoints: ``(n, k_src, 2)`` pixel coordinates.
        scores: ``(n, k_src)`` per-joint scores.
        derive_head: Where ``dst`` has ``head_bottom``/``head_top`` (CrowdPose: ``neck``/``head``)
            and ``src`` lacks them but has face joints and shoulders (COCO), fill them in with
            :func:`derive_head_joints` at ``dst``'s positions (:data:`HEAD_POINTS`).

    Returns:
        ``(n, k_dst, 2)`` keypoints (NaN where ``src`` has no such joint) and ``(n, k_dst)`` scores
        (0 there).
    """
    m = index_map(src, dst)
    n = keypoints.shape[0]
    out_kp = np.full((n, dst.num_keypoints, 2), np.nan)
    out_sc = np.zeros((n, dst.num_keypoints))
    have = m >= 0
    out_kp[:, m[have]] = keypoints[:, have]
    out_sc[:, m[have]] = scores[:, have]
    if derive_head and n:
        dst_pos = {c: i for i, c in enumerate(dst.canonical)}
        missing = [c for c in ("head_bottom", "head_top")
                   if c in dst_pos and c not in src.canonical]
        if missing and all(c in src.canonical for c in ("left_shoulder", "right_shoulder")):
            derived = derive_head_joints(keypoints, scores, src, dst)
            for c in missing:
                out_kp[:, dst_pos[c]], out_sc[:, dst_pos[c]] = derived[c]
    return out_kp, out_sc


#: PoseTrack's ``head_bottom`` and ``head_top`` lie on the line from the shoulders' midpoint
#: ``m`` through the head centre ``c``, at ``m + t (c - m)`` with these ``t`` (measurements:
#: docs/evaluation.md, "Head joints from the face").
HEAD_BOTTOM_T = 0.30
HEAD_TOP_T = 1.58
#: CrowdPose's ``neck`` as a fraction of the way from ``m`` to the head top (its ``head``): the
#: median over CrowdPose val's labelled people (docs/evaluation.md). CrowdPose's annotators put the
#: neck higher than PoseTrack's ``head_bottom`` (0.30 / 1.58 = 0.19 of that way).
NECK_TOWARDS_HEAD = 0.23


@dataclass(frozen=True)
class HeadPoint:
    """Where a derived head joint lies: ``m + t (c - m)`` (see :func:`derive_head_joints`).

    Attributes:
        t: Position along the line from the shoulders' midpoint ``m`` (0) through the head
            centre ``c`` (1).
        at_shoulders_without_face: Without a face the joint is the shoulders' midpoint (scored as
            the shoulders) instead of absent; for a joint close to the shoulder line.
    """

    t: float
    at_shoulders_without_face: bool = False


#: Per target schema name, where its head joints lie (keys: canonical names). The points mean
#: different things in different datasets, so this is data, not code; schemas not listed use
#: ``"default"`` (PoseTrack's points, which MPII's ``upper_neck``/``head_top`` match).
HEAD_POINTS: dict[str, dict[str, HeadPoint]] = {
    "default": {"head_bottom": HeadPoint(HEAD_BOTTOM_T), "head_top": HeadPoint(HEAD_TOP_T)},
    "crowdpose14": {"head_bottom": HeadPoint(NECK_TOWARDS_HEAD * HEAD_TOP_T, True),
                    "head_top": HeadPoint(HEAD_TOP_T)},
}
#: Face joints whose mean is taken as the head centre: the eyes and ears sit at half the head's
#: height (eye line), ears at the back, eyes at the front; the nose only when none of them is seen.
_FACE = ("left_eye", "right_eye", "left_ear", "right_ear")
_FACE_MIN_SCORE = 0.1  # face joints scored below this are not used for the head centre


def derive_head_joints(keypoints: np.ndarray, scores: np.ndarray, schema: KeypointSchema,
                       target: KeypointSchema | None = None
                       ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The head joints ``target`` has and ``schema`` (COCO) lacks, from face joints and shoulders.

    The head centre ``c`` is the score-weighted mean of the eyes and ears scored at least 0.1 (the
    nose when none is), ``m`` the shoulders' midpoint, and each joint is ``m + t (c - m)`` with
    the target's ``t`` from :data:`HEAD_POINTS` (PoseTrack's when ``target`` is ``None`` or not
    listed). Its score is the lower of the shoulders' mean score and the face joints' (mean)
    score, so a pose with an unseen head or unseen shoulders gets low-scored head joints.

    Args:
        keypoints: ``(n, k, 2)`` pixels in ``schema``; needs both shoulders and a nose or eyes/ears.
        scores: ``(n, k)``.
        target: The schema the joints are for (its :data:`HEAD_POINTS` entry).

    Returns:
        ``{canonical name: ((n, 2), (n,))}`` for ``head_bottom`` and ``head_top``: points (NaN
        where the shoulders or the whole face are missing) and scores (0 there).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    pos = {c: i for i, c in enumerate(schema.canonical)}
    n = kp.shape[0]
    sh = [pos["left_shoulder"], pos["right_shoulder"]]
    mid = kp[:, sh].mean(1)  # NaN when a shoulder is missing
    sh_score = sc[:, sh].mean(1)
    face = [pos[c] for c in _FACE if c in pos]
    w = np.where(np.isfinite(kp[:, face]).all(-1) & (sc[:, face] >= _FACE_MIN_SCORE),
                 sc[:, face], 0.0) if face else np.zeros((n, 0))
    wsum = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.nansum(kp[:, face] * w[..., None], axis=1) / wsum[:, None]
        face_score = wsum / np.maximum((w > 0).sum(1), 1)
    if "nose" in pos:
        use_nose = wsum <= 0
        centre[use_nose] = kp[use_nose, pos["nose"]]
        face_score[use_nose] = sc[use_nose, pos["nose"]]
    else:
        centre[wsum <= 0] = np.nan
    has_mid = np.isfinite(mid).all(1)
    ok = has_mid & np.isfinite(centre).all(1)
    score = np.where(ok, np.minimum(sh_score, face_score), 0.0)
    points = HEAD_POINTS.get(target.name if target is not None else "default", HEAD_POINTS["default"])
    out = {}
    for name, hp in points.items():
        pt = mid + hp.t * (centre - mid)
        pt[~ok] = np.nan
        sc_out = score.copy()
        if hp.at_shoulders_without_face:
            alone = has_mid & ~ok
            pt[alone], sc_out[alone] = mid[alone], sh_score[alone]
        out[name] = (pt, sc_out)
    return out
