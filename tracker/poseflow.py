"""PoseFlow tracking (Xiu et al., "Pose Flow: Efficient Online Pose Tracking", BMVC 2018).

A *pose flow* is one person's poses across frames. The tracker runs the paper's two stages online:

**PF-Builder** (per new frame ``t``):
    1. Close flows whose stop criterion holds: not extended for ``link_len`` frames, or a mean pose
       confidence ``s(Q) = s_box + mean(s_pose) + max(s_pose)`` over the last ``window`` frames
       (missing frames count 0) below ``stop_score``. *Departure:* the paper stops a flow when its
       windowed score ``F`` over the *next* frames falls below a threshold, looking at several
       frames so that one occluded or blurred frame does not end it; online, we score the window
       of frames just seen instead, which keeps that robustness without waiting for the future.
    2. Candidate links: every open flow's last pose (moved by the flow's velocity) against every
       pose of frame ``t``. The link similarity combines box IoU, pose similarity (per-joint
       Gaussian of the distance over the person's size, the paper's ``P_sim``) and, with images, the
       share of ORB correspondences that fall in both joint neighbourhoods (the paper's ``K_sim``,
       computed from DeepMatching there). Links below ``gate`` are not candidates (the paper's
       candidate set ``T(P)``).
    3. Hungarian assignment (``linear_sum_assignment``) maximises the summed link value: the link
       similarity weighted by the confidences ``s(Q)`` of the flow and the pose (``w_conf``).
       *Departure:* the paper maximises, per flow, the summed confidence ``sum s(Q_i)`` of a chain
       over ``T`` look-ahead frames (dynamic programming), which lets two flows claim one pose and
       needs the future. We solve the one-frame version of that objective jointly for all flows
       (one pose per flow, one flow per pose) so ids are available at once, and leave the look-ahead
       repairs (missed poses, split flows) to PF-NMS over the window.
    4. Unmatched poses start new flows.

**PF-NMS** (each frame, over the last ``window`` frames; see :mod:`tracker.pfnms`): merges redundant
flows, re-links temporally disjoint flows of one person, and suppresses flows too short to be a
person once their first frame leaves the window.

Ids: integers from 0, one per flow, unique within a frame, restarting on :meth:`reset`. A merged or
re-linked flow keeps the id of the flow that started first (the id the viewer has already seen), so
ids are not necessarily consecutive. :meth:`update` returns provisional ids for the newest frame;
frames become final ``window - 1`` frames later (:meth:`pop_final`) or at :meth:`finish`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from posetracker.poses import FramePoses
from tracker import pfnms
from tracker.similarity import box_iou, person_scale, pose_confidence, pose_similarity


@dataclass(eq=False)
class _Slot:
    """One frame in the window: mutable copies of its poses and the flow of each pose."""

    t: int
    source: FramePoses
    kp: np.ndarray        # (n, k, 2)
    sc: np.ndarray        # (n, k)
    box: np.ndarray       # (n, 4)
    bs: np.ndarray        # (n,)
    conf: np.ndarray      # (n,) s(Q)
    flow: np.ndarray      # (n,) flow id
    alive: np.ndarray     # (n,) False once merged into another pose
    dist: np.ndarray | None = None  # cached intra-frame distances (PF-NMS)
    close: list = field(default_factory=list)  # index pairs closer than the merge threshold

    def index_of(self, flow_id: int) -> int:
        hit = np.flatnonzero((self.flow == flow_id) & self.alive)
        return int(hit[0]) if len(hit) else -1


@dataclass(eq=False)
class _Flow:
    """A pose flow's running state (its poses themselves live in the window's slots)."""

    id: int
    first_t: int
    last_t: int
    kp: np.ndarray          # (k, 2) last pose
    box: np.ndarray         # (4,) last box
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px/frame, box centre
    count: int = 1
    conf_sum: float = 0.0
    recent: deque = field(default_factory=deque)  # (t, s(Q)) of the last frames
    closed: bool = False
    relink_checked: bool = False

    @property
    def mean_conf(self) -> float:
        return self.conf_sum / max(self.count, 1)


def _centre(box: np.ndarray) -> np.ndarray:
    return 0.5 * (box[..., :2] + box[..., 2:])


class PoseFlowTracker:
    """Online PoseFlow tracker (PF-Builder + PF-NMS), in memory.

    Args (defaults as :class:`tracker.config.PoseFlowConfig`, which documents each):
        link_len, window, gate, sigma, w_box, w_pose, w_orb, orb_window, gap_decay, use_motion,
        stop_score, nms, merge_threshold, merge_min_overlap, relink_threshold, relink_gap,
        min_flow_len, min_flow_score, orb_features, w_conf.

    Use: ``update(poses, image)`` per frame (image optional, ``(h, w, 3)`` BGR uint8), collecting
    :meth:`pop_final` after each, then :meth:`finish`; or :func:`tracker.base.track_frames`.
    """

    def __init__(self, link_len: int = 10, window: int = 8, gate: float = 0.15,
                 sigma: float = 0.25, w_box: float = 1.0, w_pose: float = 2.0,
                 w_orb: float = 1.0, orb_window: float = 0.1, gap_decay: float = 0.9,
                 use_motion: bool = True, stop_score: float = 0.5, nms: bool = True,
                 merge_threshold: float = 0.35, merge_min_overlap: int = 2,
                 relink_threshold: float = 0.3, relink_gap: int = 60, min_flow_len: int = 4,
                 min_flow_score: float = 0.0, orb_features: int = 1000,
                 w_conf: float = 1.0) -> None:
        if window < 1 or link_len < 1:
            raise ValueError("window and link_len must be at least 1")
        self.link_len, self.window, self.gate, self.sigma = link_len, window, gate, sigma
        self.w_box, self.w_pose, self.w_orb, self.orb_window = w_box, w_pose, w_orb, orb_window
        self.gap_decay, self.use_motion, self.stop_score = gap_decay, use_motion, stop_score
        self.nms, self.merge_threshold = nms, merge_threshold
        self.merge_min_overlap, self.relink_threshold = merge_min_overlap, relink_threshold
        self.relink_gap, self.min_flow_len = relink_gap, min_flow_len
        self.min_flow_score, self.orb_features = min_flow_score, orb_features
        self.w_conf = w_conf
        self._orb = None
        self.reset()

    # -- public interface ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all flows and frames; ids restart at 0."""
        self._t = 0
        self._next_id = 0
        self._flows: dict[int, _Flow] = {}
        self._slots: deque[_Slot] = deque()
        self._ready: list[FramePoses] = []
        if self._orb is not None:
            self._orb.reset()

    def update(self, poses: FramePoses, image: np.ndarray | None = None) -> FramePoses:
        """Track one frame; returns its poses with provisional ids (see the module docstring)."""
        t = self._t
        self._t += 1
        corr = self._correspondences(image)
        slot = self._make_slot(t, poses)
        self._close_stopped(t)
        self._build(slot, corr)
        self._slots.append(slot)
        if self.nms:
            self._merge_redundant()
            self._relink_disjoint()
        while len(self._slots) > self.window:
            self._ready.append(self._finalise(self._slots.popleft()))
        self._forget_old(t)
        return self._frame_of(slot)

    def pop_final(self) -> list[FramePoses]:
        """Frames that left the window since the last call (final ids), oldest first."""
        ready, self._ready = self._ready, []
        return ready

    def finish(self) -> list[FramePoses]:
        """Final ids for every frame still held, then :meth:`reset`."""
        while self._slots:
            self._ready.append(self._finalise(self._slots.popleft()))
        out = self.pop_final()
        self.reset()
        return out

    # -- PF-Builder ----------------------------------------------------------------------------
    def _correspondences(self, image: np.ndarray | None) -> np.ndarray | None:
        if image is None:
            return None
        if self._orb is None:
            from tracker.orb import OrbMatcher

            self._orb = OrbMatcher(n_features=self.orb_features)
        return self._orb.match(image)

    def _make_slot(self, t: int, poses: FramePoses) -> _Slot:
        n = len(poses)
        conf = pose_confidence(poses.keypoint_scores, poses.box_scores, poses.present)
        return _Slot(t, poses, np.array(poses.keypoints), np.array(poses.keypoint_scores),
                     np.array(poses.boxes), np.array(poses.box_scores), conf,
                     np.full(n, -1, dtype=np.int64), np.ones(n, dtype=bool))

    def _close_stopped(self, t: int) -> None:
        for f in self._flows.values():
            if f.closed:
                continue
            while f.recent and f.recent[0][0] <= t - self.window:
                f.recent.popleft()
            if t - f.last_t > self.link_len:
                f.closed = True
            elif self.stop_score > 0:
                # Frames of the look-back window the flow has existed in; missing ones count 0.
                span = min(self.window, t - f.first_t)
                if sum(c for _, c in f.recent) / max(span, 1) < self.stop_score:
                    f.closed = True

    def link_similarity(self, flows: list[_Flow], slot: _Slot,
                        corr: np.ndarray | None) -> np.ndarray:
        """``(len(flows), n)`` link similarity of open flows to the new frame's poses, in [0, 1],
        already multiplied by ``gap_decay ** (gap - 1)``."""
        gap = np.array([slot.t - f.last_t for f in flows], dtype=np.float64)
        kp = np.stack([f.kp for f in flows])
        box = np.stack([f.box for f in flows])
        if self.use_motion:
            shift = np.stack([f.velocity for f in flows]) * gap[:, None]
            kp = kp + shift[:, None, :]
            box = box + np.tile(shift, 2)
        scale = person_scale(box)
        # Joint tolerance grows with the square root of the gap, as a random walk's spread does.
        psim = pose_similarity(kp, slot.kp, scale * np.sqrt(gap), self.sigma)
        num = self.w_pose * psim + self.w_box * box_iou(box, slot.box)
        den = np.full(len(flows), self.w_pose + self.w_box)
        if corr is not None and len(corr) and self.w_orb > 0:
            from tracker.orb import joint_correspondence_iou

            prev = gap == 1
            if prev.any():
                last_kp = np.stack([flows[i].kp for i in np.flatnonzero(prev)])
                last_box = np.stack([flows[i].box for i in np.flatnonzero(prev)])
                k_iou = joint_correspondence_iou(
                    corr, last_kp, slot.kp, self.orb_window * person_scale(last_box),
                    self.orb_window * person_scale(slot.box))
                common = (np.isfinite(last_kp).all(-1)[:, None, :]
                          & slot.alive[None, :, None] & np.isfinite(slot.kp).all(-1)[None])
                ksim = (k_iou * common).sum(-1) / np.maximum(common.sum(-1), 1)
                num[prev] += self.w_orb * ksim
                den[prev] += self.w_orb
        return num / den[:, None] * self.gap_decay ** (gap[:, None] - 1)

    def _build(self, slot: _Slot, corr: np.ndarray | None) -> None:
        n = len(slot.flow)
        open_flows = [f for f in self._flows.values() if not f.closed]
        if n and open_flows:
            sim = self.link_similarity(open_flows, slot, corr)
            # The paper's objective sums pose confidences s(Q) along flows: links of confident
            # flows and to confident poses are worth more (s(Q) <= 3 for scores in [0, 1]).
            conf = np.array([f.mean_conf for f in open_flows])[:, None] + slot.conf[None, :]
            value = sim * (1.0 - self.w_conf + self.w_conf * np.clip(conf / 6.0, 0.0, 1.0))
            rows, cols = linear_sum_assignment(np.where(sim >= self.gate, -value, 0.0))
            for i, j in zip(rows, cols):
                if sim[i, j] >= self.gate:
                    self._extend(open_flows[i], slot, j)
        for j in np.flatnonzero(slot.flow < 0):
            f = _Flow(self._next_id, slot.t, slot.t, slot.kp[j].copy(), slot.box[j].copy(),
                      conf_sum=float(slot.conf[j]), recent=deque([(slot.t, float(slot.conf[j]))]))
            self._next_id += 1
            self._flows[f.id] = f
            slot.flow[j] = f.id

    def _extend(self, f: _Flow, slot: _Slot, j: int) -> None:
        gap = slot.t - f.last_t
        step = (_centre(slot.box[j]) - _centre(f.box)) / max(gap, 1)
        # Smoothed velocity: detector jitter makes a single displacement noisy.
        f.velocity = step if f.count == 1 else 0.5 * f.velocity + 0.5 * step
        f.kp, f.box, f.last_t = slot.kp[j].copy(), slot.box[j].copy(), slot.t
        f.count += 1
        f.conf_sum += float(slot.conf[j])
        f.recent.append((slot.t, float(slot.conf[j])))
        slot.flow[j] = f.id

    # -- PF-NMS --------------------------------------------------------------------------------
    def _merge_redundant(self) -> None:
        """Merge flows whose median distance over their overlapping frames is small."""
        dists: dict[tuple[int, int], list[float]] = {}
        close_pairs: set[tuple[int, int]] = set()
        for s in self._slots:
            if s.dist is None:
                s.dist = pfnms.intra_frame_distance(s.kp, s.box, self.sigma)
                ii, jj = np.nonzero(np.triu(s.dist < self.merge_threshold, 1))
                s.close = list(zip(ii.tolist(), jj.tolist()))
            for a, b in s.close:
                if s.alive[a] and s.alive[b]:
                    fa, fb = int(s.flow[a]), int(s.flow[b])
                    close_pairs.add((min(fa, fb), max(fa, fb)))
        if not close_pairs:
            return
        for s in self._slots:  # every overlapping frame counts toward the median
            where = {int(f): i for i, f in enumerate(s.flow) if s.alive[i]}
            for fa, fb in close_pairs:
                if fa in where and fb in where:
                    dists.setdefault((fa, fb), []).append(float(s.dist[where[fa], where[fb]]))
        candidates = sorted((float(np.median(v)), pair) for pair, v in dists.items()
                            if len(v) >= self.merge_min_overlap)
        touched: set[int] = set()
        for med, (fa, fb) in candidates:
            if med >= self.merge_threshold or fa in touched or fb in touched:
                continue
            a, b = self._flows[fa], self._flows[fb]
            keep, gone = (a, b) if (a.first_t, -a.mean_conf) <= (b.first_t, -b.mean_conf) else (b, a)
            self._absorb(keep, gone, merge_overlap=True)
            touched.update((fa, fb))

    def _relink_disjoint(self) -> None:
        """Continue a flow that ended with a later flow that starts where it left off.

        A new flow is examined once, when it has a second pose (a lone false positive never steals
        an id) or when its first frame is about to leave the window, whichever comes first.
        """
        if not self._slots:
            return
        start = self._slots[0].t
        late = [f for f in self._flows.values() if not f.relink_checked and f.first_t > start
                and (f.count >= 2 or f.first_t == start + 1)]
        if not late:
            return
        for g in late:
            g.relink_checked = True
        latest_start = max(g.first_t for g in late)
        earliest_start = min(g.first_t for g in late)
        ended = [f for f in self._flows.values() if f.last_t < latest_start
                 and earliest_start - f.last_t <= self.relink_gap]
        if not ended:
            return
        first_pose = {}
        for g in late:
            s = self._slots[g.first_t - start]
            i = s.index_of(g.id)
            first_pose[g.id] = (s.kp[i], s.box[i]) if i >= 0 else (g.kp, g.box)
        gap = np.array([[g.first_t - f.last_t for g in late] for f in ended], dtype=np.float64)
        end_kp = np.stack([f.kp for f in ended])
        end_box = np.stack([f.box for f in ended])
        if self.use_motion:  # move the ended flow along its last velocity, at most 5 frames' worth
            shift = np.stack([f.velocity for f in ended]) * np.clip(gap.min(1), 0, 5)[:, None]
            end_kp = end_kp + shift[:, None, :]
            end_box = end_box + np.tile(shift, 2)
        sim = pfnms.relink_similarity(end_kp, end_box,
                                      np.stack([first_pose[g.id][0] for g in late]),
                                      np.stack([first_pose[g.id][1] for g in late]),
                                      gap, self.sigma)
        ok = (gap > 0) & (gap <= self.relink_gap) & (sim >= self.relink_threshold)
        if not ok.any():
            return
        rows, cols = linear_sum_assignment(np.where(ok, -sim, 0.0))
        for i, j in zip(rows, cols):
            if ok[i, j] and ended[i].id in self._flows and late[j].id in self._flows:
                self._absorb(ended[i], late[j], merge_overlap=False)

    def _absorb(self, keep: _Flow, gone: _Flow, merge_overlap: bool) -> None:
        """Move flow ``gone``'s poses in the window into ``keep``; in frames where both have a pose,
        merge the two poses (score-weighted)."""
        overlap = 0
        for s in self._slots:
            ig = s.index_of(gone.id)
            if ig < 0:
                continue
            ik = s.index_of(keep.id)
            if ik >= 0 and merge_overlap:
                overlap += 1
                kp, sc, box, bs = pfnms.merge_pair(s.kp[ik], s.sc[ik], s.box[ik], s.bs[ik],
                                                   s.kp[ig], s.sc[ig], s.box[ig], s.bs[ig])
                s.kp[ik], s.sc[ik], s.box[ik], s.bs[ik] = kp, sc, box, bs
                s.conf[ik] = max(s.conf[ik], s.conf[ig])
                s.alive[ig] = False
                s.dist = None
            else:
                s.flow[ig] = keep.id
        if gone.last_t >= keep.last_t:
            keep.kp, keep.box, keep.last_t = gone.kp, gone.box, gone.last_t
            keep.velocity, keep.closed = gone.velocity, gone.closed
        keep.first_t = min(keep.first_t, gone.first_t)
        keep.count += gone.count - overlap
        keep.conf_sum += gone.conf_sum
        keep.recent = deque(sorted(set(keep.recent) | set(gone.recent)))
        del self._flows[gone.id]

    # -- output --------------------------------------------------------------------------------
    def _finalise(self, slot: _Slot) -> FramePoses:
        """The frame as it leaves the window; PF-NMS suppresses poses of short or weak flows."""
        keep = slot.alive.copy()
        if self.nms:
            for i in np.flatnonzero(keep):
                f = self._flows.get(int(slot.flow[i]))
                if f is not None and (f.count < self.min_flow_len
                                      or f.mean_conf < self.min_flow_score):
                    keep[i] = False
        return self._frame_of(slot, keep)

    def _frame_of(self, slot: _Slot, keep: np.ndarray | None = None) -> FramePoses:
        keep = slot.alive if keep is None else keep
        src = slot.source
        heads = None if src.head_boxes is None else src.head_boxes[keep]
        return FramePoses(slot.kp[keep], slot.sc[keep], slot.box[keep], slot.bs[keep], src.schema,
                          track_ids=slot.flow[keep], head_boxes=heads)

    def _forget_old(self, t: int) -> None:
        """Drop flows that can neither be extended, re-linked nor are still in the window."""
        horizon = max(self.link_len, self.relink_gap, self.window)
        for fid in [fid for fid, f in self._flows.items() if t - f.last_t > horizon]:
            del self._flows[fid]
