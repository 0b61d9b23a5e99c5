"""PoseTrack evaluation with the official poseval's rules: per-joint AP at PCKh 0.5 and CLEAR-MOT.

All figures are percentages (0..100), as poseval prints them.

The steps, as poseval (leonid-pishchulin/poseval, ``evaluateAP.py``/``evaluateTracking.py``/
``eval_helpers.py``) takes them:

1. Pair each ground-truth sequence with the prediction of the same name; frame ``i`` of the
   prediction is scored against frame ``i`` of the ground truth (equal frame counts required).
   Poses are compared in PoseTrack 2017's 15 joints (2018's ears are never annotated and dropped).
2. Drop the ground-truth frames without people (and the matching prediction frames).
3. In frames with ignore regions, remove the points inside a region on both sides, then the
   people left without points.
4. Per frame: the distance of a predicted to a ground-truth joint is their pixel distance divided by
   the ground-truth head size ``0.6 * ||head box diagonal||``; a joint matches within 0.5
   (PCKh 0.5). PCKh of a (prediction, ground truth) pair = matched joints / annotated joints of
   the ground truth.
   Each prediction keeps only its best ground truth (first on ties); each ground truth then takes
   the best of the predictions that kept it (first on ties), if its PCKh is > 0.
5. AP per joint: every predicted joint is a detection with its score; it is a true positive when
   its pose was assigned to a ground truth in step 4 and the joint matches there. Detections of all
   frames, in frame then person order, are ranked by ``argsort()[::-1]`` of the scores (ties broken
   as poseval's numpy call does), precision/recall accumulated against the number of annotated
   ground-truth joints, and AP is the VOC all-point interpolated area. A joint with annotations but
   no detections has AP 0. A file without any per-joint score ranks all its joints as tied at
   poseval's fallback score (-9999).
6. MOT per joint: one accumulator per joint per sequence, fed every kept frame but the last of the
   sequence; objects are the ground-truth people having the joint, hypotheses the predicted people
   having it, distance the normalised distance where the joint matches (else "never pair"). In a
   frame whose ground truth is empty after step 3 or whose prediction is empty, poseval enters one
   unmatched object and one unmatched hypothesis per joint (so a frame without predictions costs one
   miss and one false positive per joint, whatever the number of people); reproduced as is.
   Counts are summed over sequences per joint; MOTA = 1 - (misses + switches + false positives) /
   objects, MOTP = 1 - sum of matched distances / matches (0 without matches), precision = matches /
   (matches + false positives), recall = matches / objects.
7. Groups: Head (head top, neck, nose), Shoulder, Elbow, Wrist, Hip, Knee, Ankle; Total is the mean
   over joints.

Where this module differs from poseval (documented choices):

- A joint without any ground-truth annotation in the scored set (the nose in the Bonn data) is *not
  evaluated*: all its figures are NaN and it is left out of group and Total means. poseval gives it
  AP 0 (no detections) or NaN (some), MOTP 0 and MOTA NaN, and its group means are plain means, so
  Bonn scored against itself would read Head AP 66.7, Total AP 93.3, Head MOTA NaN, MOTP 93.3.
  ``strict_poseval=True`` (CLI ``--strict-poseval``) reproduces that.
- MOTP's numerator is the sum of the distances of matches and switches (motmetrics' own MOTP
  numerator). poseval sums ``acc.events['D']``, which in motmetrics >= 1.2 also holds the raw
  distance rows, counting each candidate distance again.
- Points on the exact boundary of an ignore region count as outside (shapely's ``contains``), points
  strictly inside are removed; the test is the even-odd rule.
- Predictions without track ids are scored for AP only (MOT figures NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from posetracker.core.errors import InputError
from posetracker.core.poses import Frame, VideoPoses
from posetracker.core.schemas import POSETRACK17, convert_keypoints
from posetracker.evaluation.posetrack_mot import MotCounter, MotEvents

__all__ = [
    "evaluate_videos", "evaluate_videos_per_joint", "sequence_matching", "FrameMatching", "GROUPS",
    "JOINTS", "PCKH_THRESHOLD",
]

#: The 15 joints poseval scores, in PoseTrack 2017 order (``head_bottom`` is poseval's neck).
JOINTS: tuple[str, ...] = POSETRACK17.keypoints
#: Joint groups of poseval's tables, by joint name.
GROUPS: dict[str, tuple[str, ...]] = {
    "Head": ("head_top", "head_bottom", "nose"),
    "Shoulder": ("right_shoulder", "left_shoulder"),
    "Elbow": ("right_elbow", "left_elbow"),
    "Wrist": ("right_wrist", "left_wrist"),
    "Hip": ("right_hip", "left_hip"),
    "Knee": ("right_knee", "left_knee"),
    "Ankle": ("right_ankle", "left_ankle"),
}
PCKH_THRESHOLD = 0.5
HEAD_SIZE_FACTOR = 0.6
MISSING_SCORE = -9999.0  # poseval's fallback score for predicted joints without one
_TRACK_ID_OFFSET = 10000  # poseval makes track ids unique across sequences with this stride
_K = POSETRACK17.num_keypoints


# ----------------------------------------------------------------------------------------------
# step 1-3: per-frame arrays in PoseTrack 2017 joint order
# ----------------------------------------------------------------------------------------------
@dataclass
class _FramePeople:
    """People of one frame: ``kp`` (n, 15, 2) pixels, ``has`` (n, 15) bool, ``ids`` (n,) int64,
    ``score`` (n, 15) float64, ``head`` (n,) head size in pixels (ground truth only)."""

    kp: np.ndarray
    has: np.ndarray
    ids: np.ndarray
    score: np.ndarray
    head: np.ndarray

    def __len__(self) -> int:
        return self.kp.shape[0]

    def keep(self, mask: np.ndarray) -> _FramePeople:
        return _FramePeople(self.kp[mask], self.has[mask], self.ids[mask], self.score[mask],
                     self.head[mask])


def _points_in_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: ``pts`` (m, 2), ``poly`` (v, 2) -> (m,) bool, True strictly inside."""
    x, y = pts[:, 0:1], pts[:, 1:2]
    x1, y1 = poly[:, 0][None], poly[:, 1][None]
    x2, y2 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside = (np.sum(crosses & (x < x_at), axis=1) % 2) == 1
    # Points on an edge are not "contained" (shapely's rule).
    ex, ey = x2 - x1, y2 - y1
    cross = (x - x1) * ey - (y - y1) * ex
    within = ((np.minimum(x1, x2) <= x) & (x <= np.maximum(x1, x2))
              & (np.minimum(y1, y2) <= y) & (y <= np.maximum(y1, y2)))
    on_edge = np.any((np.abs(cross) <= 1e-9 * (np.abs(ex) + np.abs(ey) + 1)) & within, axis=1)
    return inside & ~on_edge


def _frame_people(frame: Frame, video: VideoPoses, is_gt: bool, id_offset: int, where: str) -> _FramePeople:
    """One side of a frame in PoseTrack 2017 joints; track ids shifted by ``id_offset`` as poseval
    makes them unique across sequences."""
    poses = frame.poses
    if poses.schema is POSETRACK17:
        kp, sc = np.asarray(poses.keypoints), np.asarray(poses.keypoint_scores)
    else:
        kp, sc = convert_keypoints(poses.keypoints, poses.keypoint_scores, poses.schema,
                                   POSETRACK17)
    has = np.isfinite(kp).all(-1)
    n = kp.shape[0]
    ids = (np.asarray(poses.track_ids, dtype=np.int64) + id_offset if poses.track_ids is not None
           else np.full(n, -1, dtype=np.int64))
    head = np.full(n, np.nan)
    if is_gt:
        hb = poses.head_boxes
        if hb is not None:
            head = HEAD_SIZE_FACTOR * np.hypot(hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1])
        missing = has.any(1) & ~np.isfinite(head)
        if missing.any():
            raise InputError(f"{where}: ground-truth person {int(np.argmax(missing))} has no head "
                             "box (PoseTrack needs it for the PCKh threshold)")
    elif not video.meta.get("has_scores", True):
        sc = np.where(has, MISSING_SCORE, 0.0)
    return _FramePeople(kp, has, ids, np.asarray(sc, dtype=np.float64), head)


def _remove_ignored(side: _FramePeople, regions) -> _FramePeople:
    if not regions or not len(side):
        return side
    has = side.has.copy()
    pts = side.kp.reshape(-1, 2)
    inside = np.zeros(len(pts), dtype=bool)
    valid = has.reshape(-1)
    for poly in regions:
        inside[valid] |= _points_in_polygon(pts[valid], np.asarray(poly, dtype=np.float64))
    has &= ~inside.reshape(has.shape)
    kp = np.where(has[..., None], side.kp, np.nan)
    out = _FramePeople(kp, has, side.ids, np.where(has, side.score, 0.0), side.head)
    return out.keep(has.any(1))  # people left without points are removed (poseval)


@dataclass
class _FrameResult:
    """Step 4 for one frame: AP detections and the per-joint MOT inputs."""

    det_score: np.ndarray  # (P, 15)
    det_label: np.ndarray  # (P, 15) bool
    det_has: np.ndarray  # (P, 15) bool
    n_gt: np.ndarray  # (15,) annotated ground-truth joints
    mot: tuple | None  # (gt has, pred has, gt ids, pred ids, (15, G, P) distances) or None


_STAND_IN = (np.zeros(1, np.int64), np.zeros(1, np.int64), np.full((1, 1), np.nan))


def _mot_inputs(fr: _FrameResult, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Objects, hypotheses and distances of joint ``j`` in one frame, as poseval passes them.

    When either side of the frame is empty poseval enters one object and one hypothesis, both
    with id 0, never paired."""
    if fr.mot is None:
        return _STAND_IN
    g_has, p_has, g_ids, p_ids, dist = fr.mot
    gi, pj = g_has[:, j], p_has[:, j]
    return g_ids[gi], p_ids[pj], dist[j][gi][:, pj]


def _score_frame(gt: _FramePeople, pr: _FramePeople) -> _FrameResult:
    P, G = len(pr), len(gt)
    label = np.zeros((P, _K), dtype=bool)
    if P and G:
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.linalg.norm(pr.kp[:, None] - gt.kp[None], axis=-1) / gt.head[None, :, None]
        d = np.where(pr.has[:, None] & gt.has[None], d, np.inf)  # (P, G, 15)
        match = d <= PCKH_THRESHOLD
        n_annot = gt.has.sum(1)
        pck = match.sum(2).astype(np.float64)
        pck[:, n_annot > 0] /= n_annot[n_annot > 0]
        best_gt = np.argmax(pck, axis=1)  # each prediction keeps its best ground truth only
        kept = np.zeros_like(pck)
        kept[np.arange(P), best_gt] = pck[np.arange(P), best_gt]
        pr_to_gt = np.argmax(kept, axis=0)  # each ground truth takes its best prediction
        pr_to_gt[kept.max(axis=0) == 0] = -1
        for g, p in enumerate(pr_to_gt):
            if p >= 0:
                label[p] = match[p, g]
        # MOT inputs for all joints at once: (15, G, P), NaN where the joint does not match.
        mot = (gt.has, pr.has, gt.ids, pr.ids,
               np.where(match, d, np.nan).transpose(2, 1, 0))
    else:
        mot = None  # poseval's stand-in applies (see _mot_inputs)
    return _FrameResult(pr.score, label, pr.has, gt.has.sum(0), mot)


@dataclass
class FrameMatching:
    """Step 6 for one frame the MOT counts take: the events of each joint.

    ``frame`` is the index in the sequence; ``joints`` holds one :class:`MotEvents` per joint in
    :data:`JOINTS` order, with the track ids of the files. ``stand_in`` marks poseval's stand-in
    frame (one side empty): its one miss and one false positive per joint name no person."""

    frame: int
    stand_in: bool
    joints: tuple[MotEvents, ...]


@dataclass
class _SequenceResult:
    """One sequence's scores before they are summed: per frame, and per joint the MOT counts."""

    name: str
    frames: list  # _FrameResult per kept frame
    mot: list | None  # MotCounter per joint, None when untracked
    matching: list  # FrameMatching per frame the MOT counts take (empty when untracked)


def _score_sequence(gt: VideoPoses, pr: VideoPoses, seq_index: int, tracked: bool
                    ) -> _SequenceResult:
    gt_src, pr_src = gt.meta.get("source", gt.name), pr.meta.get("source", pr.name)
    if len(pr) != len(gt):
        raise InputError(f"{pr_src}: {len(pr)} frames, but the ground truth has {len(gt)} "
                         "(one prediction entry per ground-truth frame, in order)")
    results, kept = [], []
    offset = seq_index * _TRACK_ID_OFFSET
    for fi, (gf, pf) in enumerate(zip(gt.frames, pr.frames)):
        if len(gf.poses) == 0:
            continue  # step 2
        g = _frame_people(gf, gt, True, offset, f"{gt_src}: frame {fi}")
        p = _frame_people(pf, pr, False, offset, f"{pr_src}: frame {fi}")
        g, p = _remove_ignored(g, gf.ignore_regions), _remove_ignored(p, gf.ignore_regions)
        results.append(_score_frame(g, p))
        kept.append(fi)
    counters, matching = None, []
    if tracked:
        counters = [MotCounter() for _ in range(_K)]
        for fi, fr in zip(kept[:-1], results[:-1]):  # poseval skips each sequence's last (kept) frame
            events = tuple(counters[j].update(*_mot_inputs(fr, j)) for j in range(_K))
            if offset and fr.mot is not None:  # back to the files' track ids
                for ev in events:
                    ev.matches = [(o - offset, h - offset) for o, h in ev.matches]
                    ev.switches = [(o - offset, h - offset) for o, h in ev.switches]
                    ev.misses = [o - offset for o in ev.misses]
                    ev.false_positives = [h - offset for h in ev.false_positives]
            matching.append(FrameMatching(fi, fr.mot is None, events))
    return _SequenceResult(gt.name, results, counters, matching)


def sequence_matching(gt: VideoPoses, pred: VideoPoses) -> list[FrameMatching]:
    """The per-frame assignment that the MOT figures of one sequence count (step 6): summed over
    frames and joints, its matches, switches, misses and false positives are the sequence's
    counts in :func:`evaluate_videos_per_joint`. Empty when ``pred`` has no track ids."""
    tracked = all(f.poses.track_ids is not None or len(f.poses) == 0 for f in pred.frames)
    return _score_sequence(gt, pred, 0, tracked).matching


# ----------------------------------------------------------------------------------------------
# steps 5-7: metrics
# ----------------------------------------------------------------------------------------------
def average_precision(scores: np.ndarray, labels: np.ndarray, n_positive: float) -> float:
    """VOC all-point interpolated AP (0..1) of detections ranked by ``argsort()[::-1]`` of scores.

    ``labels`` (n,) 1 for true positives; ``n_positive`` the number of ground-truth joints."""
    if len(scores) == 0:
        return 0.0
    order = np.asarray(scores).argsort()[::-1]
    tp = np.cumsum(np.asarray(labels)[order] == 1)
    recall = tp / n_positive
    precision = tp / np.arange(1, len(tp) + 1)
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _joint_table(seqs: list[_SequenceResult], strict: bool = False) -> pd.DataFrame:
    """Per-joint figures (percent) and counts over ``seqs``; index: joint names.

    ``strict``: joints without ground truth get poseval's figures (AP 0 without detections, NaN
    with some; MOTA/MOTP/precision/recall as computed) instead of NaN throughout."""
    frames = [f for s in seqs for f in s.frames]
    n_gt = np.sum([f.n_gt for f in frames], axis=0) if frames else np.zeros(_K)
    if frames:
        score = np.concatenate([f.det_score for f in frames])
        label = np.concatenate([f.det_label for f in frames])
        has = np.concatenate([f.det_has for f in frames])
    else:
        score = label = has = np.zeros((0, _K))
    evaluated = n_gt > 0
    ap = np.full(_K, np.nan)
    for j in range(_K):
        sel = has[:, j].astype(bool)
        if evaluated[j]:
            ap[j] = 100.0 * average_precision(score[sel, j], label[sel, j], n_gt[j])
        elif strict and not sel.any():
            ap[j] = 0.0  # poseval's AP array starts at 0 and a joint without detections keeps it
    table = {"AP": ap}
    tracked = all(s.mot is not None for s in seqs)
    counts = {}
    for name in ("num_objects", "num_matches", "num_switches", "num_misses",
                 "num_false_positives", "sum_distance"):
        counts[name] = np.array([sum(getattr(s.mot[j], name) for s in seqs) if tracked else np.nan
                                 for j in range(_K)], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        obj = np.where(counts["num_objects"] > 0, counts["num_objects"], np.nan)
        det = counts["num_matches"] + counts["num_switches"]
        fp = counts["num_false_positives"]
        table["MOTA"] = 100.0 * (1.0 - (counts["num_misses"] + counts["num_switches"] + fp) / obj)
        # 0 without matches (poseval), but NaN where no ground truth was counted, as MOTA is
        # (one-frame sequences): a 0.0 there would read as a measured worst score
        table["MOTP"] = np.where(det > 0, 100.0 * (1.0 - counts["sum_distance"] / det),
                                 np.where((counts["num_objects"] > 0) | strict, 0.0, np.nan))
        table["Precision"] = 100.0 * det / np.where(det + fp > 0, det + fp, np.nan)
        table["Recall"] = 100.0 * det / obj
    for key in ("MOTA", "MOTP", "Precision", "Recall"):
        table[key] = np.where((evaluated | strict) & tracked, table[key], np.nan)
    df = pd.DataFrame(table, index=pd.Index(JOINTS, name="joint"))
    df["GT joints"] = n_gt.astype(np.int64)
    df["ID switches"] = counts["num_switches"]
    df["Misses"] = counts["num_misses"]
    df["False positives"] = counts["num_false_positives"]
    return df


def _summary(joints: pd.DataFrame, strict: bool = False) -> dict[str, float]:
    """Group and Total columns of one report row from a per-joint table.

    Totals average the joints with a figure (NaN left out), as poseval does; groups do the same,
    or with ``strict`` take the plain mean (NaN when a member is NaN), as poseval's table does."""
    row: dict[str, float] = {}

    def mean(values: pd.Series) -> float:
        v = values.to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else float("nan")

    for metric in ("AP", "MOTA"):
        for group, names in GROUPS.items():
            members = joints.loc[list(names), metric]
            row[f"{metric} {group}"] = float(members.to_numpy().mean()) if strict else mean(members)
        row[f"{metric} Total"] = mean(joints[metric])
    for metric in ("MOTP", "Precision", "Recall"):
        row[f"{metric} Total"] = mean(joints[metric])
    return row


def _pair(gt_videos: list[VideoPoses], pred_videos: list[VideoPoses]) -> list[VideoPoses]:
    by_name = {}
    for v in pred_videos:
        if v.name in by_name:
            raise InputError(f"two prediction sequences are named {v.name!r}")
        by_name[v.name] = v
    out = []
    for g in gt_videos:
        if g.name not in by_name:
            raise InputError(f"no prediction for ground-truth sequence {g.name!r}")
        out.append(by_name[g.name])
    return out


def _score_all(gt_videos, pred_videos) -> list[_SequenceResult]:
    if not gt_videos:
        raise InputError("no ground-truth sequences to evaluate")
    preds = _pair(list(gt_videos), list(pred_videos))
    tracked = all(f.poses.track_ids is not None or len(f.poses) == 0
                  for v in preds for f in v.frames)
    return [_score_sequence(g, p, i, tracked) for i, (g, p) in enumerate(zip(gt_videos, preds))]


def evaluate_videos_per_joint(gt_videos: list[VideoPoses], pred_videos: list[VideoPoses],
                              strict_poseval: bool = False) -> pd.DataFrame:
    """Per-joint AP, MOTA, MOTP, Precision, Recall (percent) and event counts over all sequences.

    Index: the 15 PoseTrack 2017 joint names (``head_bottom`` = poseval's neck).
    """
    return _joint_table(_score_all(gt_videos, pred_videos), strict_poseval)


def evaluate_videos(gt_videos: list[VideoPoses], pred_videos: list[VideoPoses],
                    per_sequence: bool = False, strict_poseval: bool = False) -> pd.DataFrame:
    """Score predictions against ground truth held in memory; figures in percent (0..100).

    Args:
        gt_videos: Ground-truth sequences (any PoseTrack schema; head boxes required).
        pred_videos: Predictions, paired with the ground truth by ``VideoPoses.name``; every
            ground-truth sequence needs one with the same number of frames.
        per_sequence: Add one row per sequence after the ``total`` row.
        strict_poseval: Treat joints without any ground truth (the nose in Bonn data) exactly as
            poseval does (AP 0, MOTP 0, groups NaN: they then drag Head and Total down) instead of
            leaving them out.

    Returns:
        DataFrame indexed by ``sequence`` (``"total"`` first) with columns ``AP <group>`` and
        ``MOTA <group>`` for Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Total, then
        ``MOTP Total``, ``Precision Total``, ``Recall Total``. The module docstring has the rules.
    """
    seqs = _score_all(gt_videos, pred_videos)
    rows = {"total": _summary(_joint_table(seqs, strict_poseval), strict_poseval)}
    if per_sequence:
        for s in seqs:
            rows[s.name] = _summary(_joint_table([s], strict_poseval), strict_poseval)
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "sequence"
    return df

