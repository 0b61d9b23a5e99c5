"""PoseFlow tracking (Xiu et al., "Pose Flow: Efficient Online Pose Tracking", BMVC 2018).

A *pose flow* is one person's poses across frames. Frames stay in a window of ``window`` frames
and become final when they leave it, so every decision below may use the frames after the one it
labels, up to the newest, without waiting for more future than the window already holds.

**PF-Builder, online step** (per new frame ``t``; the whole builder with ``lookahead=0``):
    1. Close flows whose stop criterion holds: not extended for ``link_len`` frames, or a mean pose
       confidence ``s(Q) = s_box + mean(s_pose) + max(s_pose)`` over the last ``window`` frames
       (missing frames count 0) below ``stop_score``.
    2. Candidate links: every open flow's last pose (moved by the flow's velocity) against every
       pose of frame ``t``. The link similarity combines box IoU, pose similarity (per-joint
       Gaussian of the distance over the person's size, the paper's ``P_sim``), with images the
       share of ORB correspondences that fall in both joint neighbourhoods (the paper's ``K_sim``,
       computed from DeepMatching there) and the torso colour histograms' agreement
       (:mod:`posetracker.tracker.appearance`). Links below ``gate`` are not candidates (the paper's candidate
       set ``T(P)``). The similarity and the confidence weighting of step 3 are the tracker's
       ``similarity`` (:mod:`posetracker.tracker.matching`, injectable).
    3. Hungarian assignment (``linear_sum_assignment``) maximises the summed link value: the link
       similarity weighted by the confidences ``s(Q)`` of the flow and the pose (``w_conf``).
       With ``orb_when="ambiguous"`` the ORB correspondences are computed only when they could
       change this assignment (:meth:`PoseFlowTracker._links_settled`).
    4. Unmatched poses start new flows.

**PF-Builder, look-ahead step** (``lookahead = L > 0``; once per frame ``s``, when frame
``s + L`` has arrived, before ``s`` is final): the paper chooses, for each flow, the chain over the
next frames that maximises the summed confidence ``sum s(Q_i)``, each pose in the candidate set of
the one before, and stops a flow whose windowed score is too low. Solved here jointly for all
flows, as an assignment of flow beginnings to chains:
    1. Cut the flows at frame ``s``. *Heads* are the flows' parts before ``s`` whose last pose is
       at most ``link_len`` frames back (a final one included). *Tails* are the chains the online
       step built from ``s`` on: the parts from ``s`` of the flows with a pose at ``s``, the flows
       that start in ``s + 1 .. s + L``, and a head's own continuation after a gap. A tail that
       starts after ``s`` lets a head skip frames: the person was missed, or the head's flow took a
       false positive while the person was missed.
    2. Value of joining head ``h`` to tail ``c``: ``sum_i lookahead_decay^i sim_i q(c_i)`` over
       the tail's poses ``c_i`` in frames ``s + i <= s + L``; ``sim_i`` is the link similarity of
       the head's last pose moved by its velocity to frame ``s + i`` (geometry and appearance;
       ORB correspondences exist between consecutive frames only), ``q`` weighs the confidence
       ``s(c_i)`` as in the online step. This is the paper's confidence sum along the chain, each
       term discounted by how well the chain continues the head's motion: a chain that swaps
       people, or one that starts with a stray pose, loses to the chain of the person.
    3. Candidates: the link to the tail's first pose passes ``gate`` (the paper's ``T(P)``) and
       the tail's windowed score ``F = mean s(Q)`` over ``s .. s + L`` (missing frames count 0)
       reaches ``stop_score`` (the paper's stop criterion, on the window ahead). The links the
       online step made stay candidates.
    4. Hungarian assignment of heads to tails (no pose in two flows), the links already made
       counting ``lookahead_margin`` more (hysteresis: noise must not churn ids). A tail without a
       head becomes a flow of its own (PF-NMS suppresses it if it is short), a head without a tail
       ends there (it may be extended or re-linked later). A frame whose candidates are exactly
       the links already made is left as it is, without computing values.
    5. Re-label: the affected flows are cut at ``s`` and the tails join their new heads, which keep
       their ids.

**PF-NMS** (each frame, over the window; see :mod:`posetracker.tracker.pfnms`): merges redundant flows,
re-links temporally disjoint flows of one person, and suppresses flows too short to be a person
once their first frame leaves the window.

**Gap filling** (``fill_gaps``; see :mod:`posetracker.tracker.fill`), when a frame leaves the window: a flow
without a pose in that frame whose person was seen at most ``max_fill_gap`` frames before and is
seen again in a later frame of the window gets a pose interpolated between the two sightings, with
scores decayed by the distance to them; with ``fill_joints``, a joint missing from a detected pose
is interpolated the same way. Filled poses are written in the frames they fill, with their flow's
id; they never start, extend or merge flows.

Ids: integers from 0, one per flow, unique within a frame, restarting on :meth:`reset`. A merged or
re-linked flow keeps the id of the flow that started first (the id the viewer has already seen), so
ids are not necessarily consecutive. :meth:`update` returns provisional ids for the newest frame;
frames become final when they leave the window (:meth:`pop_final`) or at :meth:`finish`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from posetracker.core.boxes import box_iou
from posetracker.core.config import configured
from posetracker.core.poses import FramePoses
from posetracker.tracker import pfnms
from posetracker.tracker.config import PoseFlowConfig
from posetracker.tracker.fill import Anchor, interpolate_box, interpolate_joints
from posetracker.tracker.matching import (
    Candidates,
    Correspondences,
    FlowEnds,
    LinkSimilarity,
    PoseFlowSimilarity,
    stack_histograms,
)
from posetracker.tracker.similarity import (
    person_scale,
    pose_confidence,
    pose_similarity,
)


@dataclass(eq=False)
class _WindowFrame:
    """One frame in the tracker's window (its "slot"): mutable copies of its poses and the flow
    of each pose."""

    t: int
    source: FramePoses
    kp: np.ndarray               # (n, k, 2) keypoints, pixels
    keypoint_scores: np.ndarray  # (n, k)
    box: np.ndarray              # (n, 4)
    person_scores: np.ndarray    # (n,) FramePoses.scores: PoseFlow's s_box
    box_scores: np.ndarray       # (n,) detector box scores (FramePoses.box_scores), carried to the output
    conf: np.ndarray      # (n,) s(Q)
    flow: np.ndarray      # (n,) flow id
    alive: np.ndarray     # (n,) False once merged into another pose
    vel: np.ndarray       # (n, 2) the flow's velocity once extended by this pose
    app: np.ndarray | None = None   # (n, B) torso histograms (with images)
    dist: np.ndarray | None = None  # cached intra-frame distances (PF-NMS)
    close: list = field(default_factory=list)  # index pairs closer than the merge threshold

    def index_of(self, flow_id: int) -> int:
        hit = np.flatnonzero((self.flow == flow_id) & self.alive)
        return int(hit[0]) if len(hit) else -1

    def where(self) -> dict[int, int]:
        """``{flow id: pose index}`` of the alive poses."""
        return {int(f): i for i, f in enumerate(self.flow.tolist()) if self.alive[i]}


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
    app: np.ndarray | None = None  # running torso histogram (with images)

    @property
    def mean_conf(self) -> float:
        return self.conf_sum / max(self.count, 1)


@dataclass(frozen=True)
class _Head:
    """A flow's part before a look-ahead boundary: its last pose there and the motion at it."""

    flow: _Flow
    t: int
    kp: np.ndarray
    box: np.ndarray
    vel: np.ndarray


def _centre(box: np.ndarray) -> np.ndarray:
    return 0.5 * (box[..., :2] + box[..., 2:])


class PoseFlowTracker:
    """Online PoseFlow tracker (PF-Builder with look-ahead, PF-NMS, gap filling), in memory.

    Args:
        config: The settings (:class:`posetracker.tracker.config.PoseFlowConfig`, which documents
            each); ``None``: its defaults.
        similarity: The matching cost of PF-Builder (:class:`posetracker.tracker.matching.LinkSimilarity`);
            ``None``: :class:`~posetracker.tracker.matching.PoseFlowSimilarity` with ``config``'s
            weights.
        **overrides: Fields of ``config`` to replace (``PoseFlowTracker(window=4)``), checked by
            the config.

    Use: ``update(poses, image)`` per frame (image optional, ``(h, w, 3)`` BGR uint8), collecting
    :meth:`pop_final` after each, then :meth:`finish`; or :func:`posetracker.tracker.base.track_frames`.
    """

    def __init__(self, config: PoseFlowConfig | None = None, *,
                 similarity: LinkSimilarity | None = None, **overrides: Any) -> None:
        self.config = configured(PoseFlowConfig, config, overrides)
        self.similarity = PoseFlowSimilarity.from_config(self.config) if similarity is None else similarity
        # The boundary frame must still be in the window when its look-ahead is complete.
        self.lookahead = min(self.config.lookahead, self.config.window)
        self._orb = None
        self._torso: dict[tuple[str, ...], np.ndarray] = {}
        self.reset()

    # -- public interface ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all flows and frames; ids restart at 0."""
        self._frames_seen = 0
        self._next_id = 0
        self._next_boundary = 1  # frame 0 has nothing before it to re-assign
        self._flows: dict[int, _Flow] = {}
        self._anchors: dict[int, Anchor] = {}
        self._slots: deque[_WindowFrame] = deque()
        self._ready: list[FramePoses] = []
        self._ended = False  # set by finish(): no frame will follow
        if self._orb is not None:
            self._orb.reset()

    def update(self, poses: FramePoses, image: np.ndarray | None = None) -> FramePoses:
        """Track one frame; returns its poses with provisional ids (see the module docstring)."""
        t = self._frames_seen
        self._frames_seen += 1
        if image is not None and self.config.w_orb > 0:
            self._orb_matcher().push(image)
        slot = self._make_slot(t, poses, image)
        self._close_stopped(t)
        self._build(slot, image is not None)
        self._slots.append(slot)
        if self.config.nms:
            self._merge_redundant()
            self._relink_disjoint()
        if self.lookahead > 0:
            while self._next_boundary <= t - self.lookahead:
                self._reassign(self._next_boundary)
                self._next_boundary += 1
        while len(self._slots) > self.config.window:
            self._ready.append(self._finalise(self._slots.popleft()))
        self._forget_old(t)
        return self._frame_of(slot)

    def pop_final(self) -> list[FramePoses]:
        """Frames that left the window since the last call (final ids), oldest first."""
        ready, self._ready = self._ready, []
        return ready

    def finish(self) -> list[FramePoses]:
        """Final ids for every frame still held, then :meth:`reset`."""
        if self.lookahead > 0:  # the last frames' look-ahead ends with the video
            while self._next_boundary < self._frames_seen:
                self._reassign(self._next_boundary)
                self._next_boundary += 1
        self._ended = True
        while self._slots:
            self._ready.append(self._finalise(self._slots.popleft()))
        out = self.pop_final()
        self.reset()
        return out

    # -- PF-Builder: online step ---------------------------------------------------------------
    def _orb_matcher(self):
        if self._orb is None:
            from posetracker.tracker.orb import OrbMatcher

            self._orb = OrbMatcher(self.config.orb_features, self.config.orb_max_side)
        return self._orb

    def _correspondences(self, flows: list[_Flow], slot: _WindowFrame,
                         weight: np.ndarray) -> Correspondences | None:
        """The ORB term of the flows against the slot's poses (online step 3), or ``None`` when
        the frame has no image, or when ``orb_when="ambiguous"`` and the term cannot change the
        frame's links."""
        if self._orb is None:
            return None
        prev = np.array([slot.t - f.last_t == 1 for f in flows])
        if not prev.any():  # the term joins consecutive frames only
            return None
        if self.config.orb_when == "ambiguous":
            known = np.repeat(prev[:, None], len(slot.kp), axis=1)
            low = self.link_similarity(flows, slot, Correspondences(np.zeros(known.shape), known))
            high = self.link_similarity(flows, slot, Correspondences(np.ones(known.shape), known))
            if self._links_settled(low, high, weight):
                return None
        return self._orb_terms(flows, slot, self._orb.correspondences())

    def _links_settled(self, low: np.ndarray, high: np.ndarray, weight: np.ndarray) -> bool:
        """Whether online step 3 makes the same links whatever the ORB term: ``low`` and ``high``
        ``(n, m)`` are the link similarities with the term at 0 and at 1 (the similarity rises
        with it, so any correspondences give values between), ``weight`` the confidence factors.

        1. Assign with the ``low`` values: the links ``M`` that pass ``gate``, each with a
           positive value.
        2. Every other link that could pass ``gate`` (its ``high`` does) is worth less at its
           ``high`` than the link of ``M`` in its row at its ``low`` (or, all of them, than the
           link of ``M`` in its column). Any matching that uses such links is then worth less than
           ``M``, which stays the one optimum for every value of the term.
        """
        gate = self.config.gate
        lo, hi = low * weight, high * weight
        ok = low >= gate
        rows, cols = linear_sum_assignment(np.where(ok, -lo, 0.0))
        sel = ok[rows, cols]
        rows, cols = rows[sel], cols[sel]
        if (lo[rows, cols] <= 0).any():
            return False
        others = high >= gate
        others[rows, cols] = False
        if not others.any():
            return True
        row_best = np.full(len(lo), np.nan)
        row_best[rows] = lo[rows, cols]
        col_best = np.full(lo.shape[1], np.nan)
        col_best[cols] = lo[rows, cols]
        i, j = np.nonzero(others)
        # NaN (a row or column without a link in M) compares False: not settled that way
        return bool((hi[i, j] < row_best[i]).all() or (hi[i, j] < col_best[j]).all())

    def _make_slot(self, t: int, poses: FramePoses, image: np.ndarray | None) -> _WindowFrame:
        n = len(poses)
        conf = pose_confidence(poses.keypoint_scores, poses.scores, poses.present)
        slot = _WindowFrame(t, poses, np.array(poses.keypoints), np.array(poses.keypoint_scores),
                     np.array(poses.boxes), np.array(poses.scores), np.array(poses.box_scores), conf,
                     np.full(n, -1, dtype=np.int64), np.ones(n, dtype=bool), np.zeros((n, 2)))
        if image is not None and self.config.w_app > 0:
            from posetracker.tracker.appearance import torso_histograms, torso_indices

            names = poses.schema.keypoints
            if names not in self._torso:
                self._torso[names] = torso_indices(names)
            slot.app = torso_histograms(image, slot.kp, slot.box, self._torso[names])
        return slot

    def _close_stopped(self, t: int) -> None:
        for f in self._flows.values():
            if f.closed:
                continue
            while f.recent and f.recent[0][0] <= t - self.config.window:
                f.recent.popleft()
            if t - f.last_t > self.config.link_len:
                f.closed = True
            elif self.config.stop_score > 0:
                # Frames of the look-back window the flow has existed in; missing ones count 0.
                span = min(self.config.window, t - f.first_t)
                if sum(c for _, c in f.recent) / max(span, 1) < self.config.stop_score:
                    f.closed = True

    def _orb_terms(self, flows: list[_Flow], slot: _WindowFrame,
                   corr: np.ndarray) -> Correspondences | None:
        """The correspondence term ``K_sim`` of the flows against the slot's poses, known for the
        flows seen in the previous frame (correspondences join consecutive frames only)."""
        if not len(corr):
            return None
        from posetracker.tracker.orb import joint_correspondence_iou

        prev = np.flatnonzero([slot.t - f.last_t == 1 for f in flows])
        if not len(prev):
            return None
        last_kp = np.stack([flows[i].kp for i in prev])
        last_box = np.stack([flows[i].box for i in prev])
        k_iou = joint_correspondence_iou(corr, last_kp, slot.kp,
                                         self.config.orb_window * person_scale(last_box),
                                         self.config.orb_window * person_scale(slot.box))
        common = (np.isfinite(last_kp).all(-1)[:, None, :]
                  & slot.alive[None, :, None] & np.isfinite(slot.kp).all(-1)[None])
        k_sim = np.zeros((len(flows), len(slot.kp)))
        known = np.zeros(k_sim.shape, dtype=bool)
        k_sim[prev] = (k_iou * common).sum(-1) / np.maximum(common.sum(-1), 1)
        known[prev] = True
        return Correspondences(k_sim, known)

    def link_similarity(self, flows: list[_Flow], slot: _WindowFrame,
                        orb: Correspondences | None) -> np.ndarray:
        """``(len(flows), n)`` link similarity of open flows to the new frame's poses, in [0, 1],
        already multiplied by ``gap_decay ** (gap - 1)``."""
        gap = np.repeat(np.array([[slot.t - f.last_t] for f in flows], dtype=np.float64),
                        len(slot.kp), axis=1)
        with_app = slot.app is not None
        ends = FlowEnds(np.stack([f.kp for f in flows]), np.stack([f.box for f in flows]),
                        np.stack([f.velocity for f in flows]),
                        stack_histograms([f.app for f in flows]) if with_app else None)
        return self.similarity(ends, Candidates(slot.kp, slot.box, slot.app), gap, orb)

    def _build(self, slot: _WindowFrame, with_image: bool) -> None:
        n = len(slot.flow)
        open_flows = [f for f in self._flows.values() if not f.closed]
        if n and open_flows:
            # The paper's objective sums pose confidences s(Q) along flows: links of confident
            # flows and to confident poses are worth more (s(Q) <= 3 for scores in [0, 1]).
            conf = np.array([f.mean_conf for f in open_flows])[:, None] + slot.conf[None, :]
            weight = self.similarity.confidence_weight(conf / 2.0)
            orb = self._correspondences(open_flows, slot, weight) if with_image else None
            sim = self.link_similarity(open_flows, slot, orb)
            value = sim * weight
            ok = sim >= self.config.gate
            rows, cols = linear_sum_assignment(np.where(ok, -value, 0.0))
            for i, j in zip(rows, cols):
                if ok[i, j]:
                    self._extend(open_flows[i], slot, j)
        for j in np.flatnonzero(slot.flow < 0):
            f = _Flow(self._next_id, slot.t, slot.t, slot.kp[j].copy(), slot.box[j].copy(),
                      conf_sum=float(slot.conf[j]), recent=deque([(slot.t, float(slot.conf[j]))]),
                      app=None if slot.app is None else slot.app[j].copy())
            self._next_id += 1
            self._flows[f.id] = f
            slot.flow[j] = f.id

    def _extend(self, f: _Flow, slot: _WindowFrame, j: int) -> None:
        gap = slot.t - f.last_t
        step = (_centre(slot.box[j]) - _centre(f.box)) / max(gap, 1)
        # Smoothed velocity: detector jitter makes a single displacement noisy.
        f.velocity = step if f.count == 1 else 0.5 * f.velocity + 0.5 * step
        f.kp, f.box, f.last_t = slot.kp[j].copy(), slot.box[j].copy(), slot.t
        f.count += 1
        f.conf_sum += float(slot.conf[j])
        f.recent.append((slot.t, float(slot.conf[j])))
        if slot.app is not None and slot.app[j].sum() > 0:
            # A running histogram: one frame of an overlapping neighbour does not replace it.
            f.app = slot.app[j].copy() if f.app is None or f.app.sum() == 0 \
                else 0.7 * f.app + 0.3 * slot.app[j]
        slot.flow[j] = f.id
        slot.vel[j] = f.velocity

    # -- PF-Builder: look-ahead step -------------------------------------------------------------
    def _head_before(self, f: _Flow, si: int) -> _Head | None:
        """Flow ``f``'s last pose before window slot ``si`` (from the window or, when the flow's
        frames before it are final, from its anchor); ``None`` when it has none within
        ``link_len`` frames."""
        s = self._slots[si].t
        if f.last_t < s:
            return _Head(f, f.last_t, f.kp, f.box, f.velocity)
        for i in range(si - 1, max(si - 1 - self.config.link_len, -1), -1):
            sl = self._slots[i]
            j = sl.index_of(f.id)
            if j >= 0:
                return _Head(f, sl.t, sl.kp[j], sl.box[j], sl.vel[j])
        a = self._anchors.get(f.id)
        if a is not None and s - a.t <= self.config.link_len:
            return _Head(f, a.t, a.kp, a.box, a.vel)
        return None

    def _reassign(self, s: int) -> None:
        """The look-ahead step for boundary frame ``s`` (module docstring, steps 1-5)."""
        si = s - self._slots[0].t
        if si < 0 or si >= len(self._slots):
            return
        horizon = min(len(self._slots) - 1 - si, self.lookahead)
        # 1. Heads and tails.
        heads = self._heads_at(s, si)
        if not heads:
            return
        tails = self._tails_at(s, si, horizon, {h.flow.id: i for i, h in enumerate(heads)})
        if not tails:
            return
        ends = FlowEnds(np.stack([h.kp for h in heads]), np.stack([h.box for h in heads]),
                        np.stack([h.vel for h in heads]),
                        stack_histograms([h.flow.app for h in heads])
                        if self._slots[si].app is not None else None)
        t_head = np.array([h.t for h in heads], dtype=np.float64)
        start = np.array([i for i, _, _ in tails])
        current = np.array([h for _, _, h in tails])
        first = self._heads_to_poses(ends, t_head, s, si, [(i, j) for i, j, _ in tails])
        made = np.zeros(first.shape, dtype=bool)
        made[current[current >= 0], np.flatnonzero(current >= 0)] = True
        # The online step accepted the links already made; the others must pass the gate.
        gated = (first >= self.config.gate) | made
        if np.array_equal(gated, made):  # unambiguous: only the links already made
            return
        # 2. Look-ahead values over the tails' poses in s .. s + L, and 3. their windowed scores.
        value, score = self._lookahead_values(ends, t_head, s, si, horizon, tails, start)
        # The stop criterion keeps a head from a sparse, weak tail; links already made stay
        # candidates (detaching them would cut a flow the window has not seen the end of).
        ok = (gated & (score / (horizon + 1) >= self.config.stop_score)[None, :]) | made
        # 4. Joint assignment: no pose in two flows. Links already made get a head start
        # (hysteresis): a re-assignment must be clearly better, or noise would churn ids.
        value = value + self.config.lookahead_margin * made
        rows, cols = linear_sum_assignment(np.where(ok, -value, 0.0))
        wanted = np.full(len(tails), -1)
        for r, c in zip(rows, cols):
            if ok[r, c]:
                wanted[c] = r
        changed = np.flatnonzero(wanted != current)
        if len(changed):
            self._relabel(heads, tails, current, wanted, changed, s, si)

    def _heads_at(self, s: int, si: int) -> list[_Head]:
        """Look-ahead step 1, heads: flows with a part before frame ``s`` (window slot ``si``),
        recent enough to be extended."""
        heads: list[_Head] = []
        for f in self._flows.values():
            if f.first_t >= s or (f.last_t < s and (f.closed or s - f.last_t > self.config.link_len)):
                continue
            h = self._head_before(f, si)
            if h is not None and s - h.t <= self.config.link_len:
                heads.append(h)
        return heads

    def _tails_at(self, s: int, si: int, horizon: int,
                  head_of: dict[int, int]) -> list[tuple[int, int, int]]:
        """Look-ahead step 1, tails: (offset of the first pose from ``s``, its index there, the
        flow's head in ``head_of`` (flow id -> head) or -1). Those starting after ``s`` let a head
        skip frames (a missed person; a false positive it took)."""
        tails: list[tuple[int, int, int]] = []
        slot = self._slots[si]
        for j in np.flatnonzero(slot.alive):
            f = self._flows[int(slot.flow[j])]
            if f.first_t >= s or f.id in head_of:  # else: its part before s is too old to move
                tails.append((0, int(j), head_of.get(f.id, -1)))
        for f in self._flows.values():
            if s < f.first_t <= s + horizon:
                j = self._slots[si + f.first_t - s].index_of(f.id)
                if j >= 0:
                    tails.append((f.first_t - s, j, -1))
            elif f.id in head_of and f.last_t > s and slot.index_of(f.id) < 0:
                for i in range(1, horizon + 1):  # the head's own continuation after a gap
                    j = self._slots[si + i].index_of(f.id)
                    if j >= 0:
                        tails.append((i, j, head_of[f.id]))
                        break
        return tails

    def _heads_to_poses(self, ends: FlowEnds, t_head: np.ndarray, s: int, si: int,
                        pairs: list[tuple[int, int]]) -> np.ndarray:
        """Link similarity of the heads (``ends``, last seen at frames ``t_head``) against the poses
        ``(offset from s, index)``: ``(heads, len(pairs))``."""
        sl = [self._slots[si + i] for i, _ in pairs]
        poses = Candidates(np.stack([x.kp[j] for x, (_, j) in zip(sl, pairs)]),
                           np.stack([x.box[j] for x, (_, j) in zip(sl, pairs)]),
                           stack_histograms([x.app[j] if x.app is not None else None
                                             for x, (_, j) in zip(sl, pairs)]))
        gap = (s + np.array([i for i, _ in pairs]))[None, :] - t_head[:, None]
        return self.similarity(ends, poses, gap)

    def _lookahead_values(self, ends: FlowEnds, t_head: np.ndarray, s: int, si: int, horizon: int,
                          tails: list[tuple[int, int, int]],
                          start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Look-ahead steps 2 and 3: ``(heads, tails)`` values of joining each head to each tail,
        and ``(tails,)`` each tail's summed confidence ``s(Q)`` over ``s .. s + horizon``."""
        tail_flow = [int(self._slots[si + i].flow[j]) for i, j, _ in tails]
        pairs, column, conf = [], [], []
        for i in range(horizon + 1):
            sl = self._slots[si + i]
            where = sl.where()
            for c, f in enumerate(tail_flow):
                j = where.get(f, -1) if start[c] <= i else -1
                if j >= 0:
                    pairs.append((i, j))
                    column.append(c)
                    conf.append(sl.conf[j])
        offset = np.array([i for i, _ in pairs])
        conf = np.array(conf)
        weight = self.config.lookahead_decay ** offset * self.similarity.confidence_weight(conf)
        contrib = self._heads_to_poses(ends, t_head, s, si, pairs) * weight[None, :]
        to_tail = np.zeros((len(pairs), len(tails)))
        to_tail[np.arange(len(pairs)), column] = 1.0
        return contrib @ to_tail, conf @ to_tail

    def _relabel(self, heads: list[_Head], tails: list[tuple[int, int, int]], current: np.ndarray,
                 wanted: np.ndarray, changed: np.ndarray, s: int, si: int) -> None:
        """Look-ahead step 5: cut the affected flows at ``s``, then join each ``changed`` tail to
        its ``wanted`` head (``current``: the head it has now; -1 none)."""
        affected = {int(current[c]) for c in changed if current[c] >= 0}
        affected |= {int(wanted[c]) for c in changed if wanted[c] >= 0}
        for h in affected:
            if heads[h].flow.last_t >= s:
                self._split(heads[h].flow, heads[h], si)
        for c in changed:
            if wanted[c] >= 0:
                i, j, _ = tails[c]
                tail = self._flows[int(self._slots[si + i].flow[j])]
                self._absorb(heads[wanted[c]].flow, tail, merge_overlap=False)

    def _split(self, f: _Flow, head: _Head, si: int) -> _Flow:
        """Move flow ``f``'s poses from window slot ``si`` on into a new flow; ``f`` ends at
        ``head``."""
        s = self._slots[si].t
        g = _Flow(self._next_id, s, f.last_t, f.kp, f.box, f.velocity, count=0, closed=f.closed,
                  relink_checked=True, app=None if f.app is None else f.app.copy())
        self._next_id += 1
        first = None
        for sl in list(self._slots)[si:]:
            j = sl.index_of(f.id)
            if j >= 0:
                sl.flow[j] = g.id
                g.count += 1
                g.conf_sum += float(sl.conf[j])
                first = sl.t if first is None else first
        g.first_t = s if first is None else first
        g.recent = deque(e for e in f.recent if e[0] >= s)
        f.recent = deque(e for e in f.recent if e[0] < s)
        f.count -= g.count
        f.conf_sum -= g.conf_sum
        f.kp, f.box, f.velocity, f.last_t = head.kp, head.box, head.vel, head.t
        f.closed = False
        self._flows[g.id] = g
        return g

    # -- PF-NMS --------------------------------------------------------------------------------
    def _merge_redundant(self) -> None:
        """Merge flows whose median distance over their overlapping frames is small."""
        dists: dict[tuple[int, int], list[float]] = {}
        close_pairs: set[tuple[int, int]] = set()
        for s in self._slots:
            if s.dist is None:
                s.dist = pfnms.intra_frame_distance(s.kp, s.box, self.config.sigma)
                ii, jj = np.nonzero(np.triu(s.dist < self.config.merge_threshold, 1))
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
                            if len(v) >= self.config.merge_min_overlap)
        touched: set[int] = set()
        for med, (fa, fb) in candidates:
            if med >= self.config.merge_threshold or fa in touched or fb in touched:
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
                 and earliest_start - f.last_t <= self.config.relink_gap]
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
        if self.config.use_motion:  # move the ended flow along its last velocity, at most 5 frames' worth
            shift = np.stack([f.velocity for f in ended]) * np.clip(gap.min(1), 0, 5)[:, None]
            end_kp = end_kp + shift[:, None, :]
            end_box = end_box + np.tile(shift, 2)
        sim = pfnms.relink_similarity(end_kp, end_box,
                                      np.stack([first_pose[g.id][0] for g in late]),
                                      np.stack([first_pose[g.id][1] for g in late]),
                                      gap, self.config.sigma)
        ok = (gap > 0) & (gap <= self.config.relink_gap) & (sim >= self.config.relink_threshold)
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
                merged = pfnms.merge_pair(s.kp[ik], s.keypoint_scores[ik], s.box[ik], s.person_scores[ik],
                                          s.kp[ig], s.keypoint_scores[ig], s.box[ig], s.person_scores[ig])
                s.kp[ik], s.keypoint_scores[ik], s.box[ik], s.person_scores[ik] = merged
                s.box_scores[ik] = max(s.box_scores[ik], s.box_scores[ig])
                s.conf[ik] = max(s.conf[ik], s.conf[ig])
                s.alive[ig] = False
                s.dist = None
            else:
                s.flow[ig] = keep.id
        if gone.last_t >= keep.last_t:
            keep.kp, keep.box, keep.last_t = gone.kp, gone.box, gone.last_t
            keep.velocity, keep.closed = gone.velocity, gone.closed
            keep.app = gone.app if gone.app is not None else keep.app
        keep.first_t = min(keep.first_t, gone.first_t)
        keep.count += gone.count - overlap
        keep.conf_sum += gone.conf_sum
        keep.recent = deque(sorted(set(keep.recent) | set(gone.recent)))
        moved = self._anchors.pop(gone.id, None)
        if moved is not None and (keep.id not in self._anchors
                                  or self._anchors[keep.id].t < moved.t):
            self._anchors[keep.id] = moved
        del self._flows[gone.id]

    # -- output --------------------------------------------------------------------------------
    def _finalise(self, slot: _WindowFrame) -> FramePoses:
        """The frame as it leaves the window: PF-NMS suppresses poses of short or weak flows, gaps
        and missing joints are filled, and the flows' anchors move on to this frame."""
        keep = slot.alive.copy()
        if self.config.nms:
            for i in np.flatnonzero(keep):
                f = self._flows.get(int(slot.flow[i]))
                if f is not None and (self._too_short(f) or f.mean_conf < self.config.min_flow_score):
                    keep[i] = False
        kept = np.flatnonzero(keep)
        extra = self._fill_poses(slot, kept) if self.config.fill_gaps else []
        joints = self._fill_joints(slot, kept) if self.config.fill_joints else []
        heads = slot.source.head_boxes
        # Anchors record detected joints only, so they are updated before filling; suppressed
        # flows get one too (the look-ahead step needs their last pose) but are never filled.
        for i in np.flatnonzero(slot.alive):
            fid = int(slot.flow[i])
            head = None if heads is None else heads[i]
            a = self._anchors.get(fid)
            if a is None:
                a = self._anchors[fid] = Anchor.first(slot.t, slot.kp[i], slot.keypoint_scores[i], slot.box[i],
                                                      slot.person_scores[i], slot.box_scores[i], head)
            else:
                a.update(slot.t, slot.kp[i], slot.keypoint_scores[i], slot.box[i], slot.person_scores[i],
                         slot.box_scores[i], head)
            a.vel, a.shown = slot.vel[i].copy(), bool(keep[i])
        for i, kp, sc in joints:
            slot.kp[i] = np.where(np.isfinite(kp), kp, slot.kp[i])
            slot.keypoint_scores[i] = np.where(np.isfinite(kp).all(-1), sc, slot.keypoint_scores[i])
        horizon = max(self.config.link_len, self.config.max_fill_gap)
        for fid in [fid for fid, a in self._anchors.items() if slot.t - a.t > horizon]:
            del self._anchors[fid]
        return self._frame_of(slot, keep, extra)

    def _too_short(self, f: _Flow) -> bool:
        """PF-NMS length rule: a flow with fewer than ``min_flow_len`` poses is a ghost, unless the
        input ended before it could have reached that length.

        1. Mid-video, a frame is judged ``window`` (>= ``min_flow_len - 1``) frames after it, so
           every flow in it has had the chance to reach the length: short means suppressed.
        2. At :meth:`finish`, a flow whose first pose is fewer than ``min_flow_len`` frames before
           the end could not have been that long even if seen in every frame (a single image, a
           3-frame clip, a person entering in the last frames): it is kept.
        3. A flow that started earlier and is still short had its chance (a ghost): suppressed.
        """
        if f.count >= self.config.min_flow_len:
            return False
        return not (self._ended and self._frames_seen - f.first_t < self.config.min_flow_len)

    def _next_pose(self, fid: int, until: int) -> tuple[_WindowFrame, int] | None:
        """Flow ``fid``'s first pose in the window (after the frame being finalised), up to frame
        ``until``."""
        for sl in self._slots:
            if sl.t > until:
                break
            j = sl.index_of(fid)
            if j >= 0:
                return sl, j
        return None

    def _fill_poses(self, slot: _WindowFrame, kept: np.ndarray) -> list[tuple]:
        """Interpolated poses for the flows that skip ``slot`` and are seen again in the window:
        ``(flow id, kp, sc, box, person score, detector score, head box or None)`` each."""
        present = set(slot.flow[slot.alive].tolist())
        out = []
        for fid, a in self._anchors.items():
            if (fid in present or not a.shown or a.t >= slot.t
                    or slot.t - a.t > self.config.max_fill_gap):
                continue
            nxt = self._next_pose(fid, a.t + self.config.max_fill_gap + 1)
            if nxt is None:
                continue
            sl, j = nxt
            kp, sc = interpolate_joints(slot.t, a.kp, a.seen_at, a.joint_scores, sl.kp[j], sl.keypoint_scores[j],
                                        sl.t, self.config.max_fill_gap, self.config.fill_decay)
            if not np.isfinite(kp).all(-1).any():
                continue
            near = min(slot.t - a.t, sl.t - slot.t)
            box = interpolate_box(slot.t, a.box, a.t, sl.box[j], sl.t)
            decay = self.config.fill_decay ** near
            person_score = float(interpolate_box(slot.t, a.person_score, a.t, sl.person_scores[j], sl.t)) * decay
            box_score = float(interpolate_box(slot.t, a.box_score, a.t, sl.box_scores[j], sl.t)) * decay
            if len(kept) and self._covered(kp, box, slot, kept):
                continue
            head = None
            if slot.source.head_boxes is not None:
                hb = sl.source.head_boxes
                head = (interpolate_box(slot.t, a.head, a.t, hb[j], sl.t)
                        if a.head is not None and hb is not None else np.full(4, np.nan))
            out.append((fid, kp, sc, box, person_score, box_score, head))
        return out

    def _covered(self, kp: np.ndarray, box: np.ndarray, slot: _WindowFrame, kept: np.ndarray) -> bool:
        """A kept pose of the frame is already this person (closer than the merge threshold): a
        fill would be a duplicate."""
        scale = np.minimum(person_scale(box[None])[0], person_scale(slot.box[kept]))
        psim = pose_similarity(kp[None], slot.kp[kept], scale[None, :], self.config.sigma)[0]
        dist = 1.0 - 0.5 * (psim + box_iou(box[None], slot.box[kept])[0])
        return bool((dist < self.config.merge_threshold).any())

    def _fill_joints(self, slot: _WindowFrame, kept: np.ndarray) -> list[tuple]:
        """Interpolated joints for detected poses that lack them: ``(pose index, kp, sc)``."""
        out = []
        for i in kept:
            missing = ~np.isfinite(slot.kp[i]).all(-1)
            a = self._anchors.get(int(slot.flow[i]))
            if not missing.any() or a is None:
                continue
            nxt = self._next_pose(int(slot.flow[i]), slot.t + self.config.max_fill_gap + 1)
            if nxt is None:
                continue
            sl, j = nxt
            kp, sc = interpolate_joints(slot.t, a.kp, a.seen_at, a.joint_scores, sl.kp[j], sl.keypoint_scores[j],
                                        sl.t, self.config.max_fill_gap, self.config.fill_decay)
            kp[~missing] = np.nan
            if np.isfinite(kp).any():
                out.append((i, kp, sc))
        return out

    def _frame_of(self, slot: _WindowFrame, keep: np.ndarray | None = None,
                  extra: list[tuple] = ()) -> FramePoses:
        keep = slot.alive if keep is None else keep
        src = slot.source
        heads = None if src.head_boxes is None else src.head_boxes[keep]
        kp, sc, box = slot.kp[keep], slot.keypoint_scores[keep], slot.box[keep]
        person_scores, box_scores, ids = slot.person_scores[keep], slot.box_scores[keep], slot.flow[keep]
        if extra:
            kp = np.concatenate([kp, np.stack([e[1] for e in extra])])
            sc = np.concatenate([sc, np.stack([e[2] for e in extra])])
            box = np.concatenate([box, np.stack([e[3] for e in extra])])
            person_scores = np.concatenate([person_scores, [e[4] for e in extra]])
            box_scores = np.concatenate([box_scores, [e[5] for e in extra]])
            ids = np.concatenate([ids, [e[0] for e in extra]])
            if heads is not None:
                heads = np.concatenate([heads, np.stack([e[6] for e in extra])])
        return FramePoses(kp, sc, box, person_scores, src.schema, track_ids=ids, head_boxes=heads,
                          box_scores=box_scores)

    def _forget_old(self, t: int) -> None:
        """Drop flows that can neither be extended, re-linked nor are still in the window."""
        horizon = max(self.config.link_len, self.config.relink_gap, self.config.window)
        for fid in [fid for fid, f in self._flows.items() if t - f.last_t > horizon]:
            del self._flows[fid]
