"""CLEAR-MOT event counting for one joint of one sequence, equal to ``motmetrics.MOTAccumulator``.

poseval feeds ``motmetrics.MOTAccumulator.update`` once per frame and joint, then reads five
counts. motmetrics records a pandas row per event, which makes 15 joints x thousands of frames
slow; :class:`MotCounter` applies the same per-frame rule (motmetrics 1.4, ``max_switch_time``
infinite) and keeps only the counts:

1. An object matched to hypothesis ``h`` before keeps ``h`` if ``h`` is present in this frame and
   their distance is finite (objects in the order given; the first unused ``h`` wins).
2. The remaining objects and hypotheses are paired by a minimum-cost assignment over the finite
   distances (most pairs first, then least total distance: NaN edges are never chosen). A pair
   whose object was last matched to another hypothesis is an ID switch.
3. Unpaired objects are misses, unpaired hypotheses false positives.

``tests/test_eval_posetrack.py`` checks the counts against motmetrics itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import isfinite

import numpy as np


def _min_cost_pairs(d: np.ndarray) -> list[tuple[int, int]]:
    """Pairs ``(row, col)`` of a maximum-cardinality, minimum-cost matching on finite entries."""
    finite = np.isfinite(d)
    if finite.sum(1).max(initial=0) <= 1 and finite.sum(0).max(initial=0) <= 1:
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(finite))]  # disjoint edges: take all
    from scipy.optimize import linear_sum_assignment  # imported here: rarely needed, slow to load

    # motmetrics' trick for scipy: an invalid edge costs more than any set of valid ones.
    c = np.abs(d[finite]).max() + 1
    cost = np.where(finite, d, 2 * min(d.shape) * c + 1)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(q)) for r, q in zip(rows, cols) if finite[r, q]]


@dataclass
class MotEvents:
    """The events of one frame (for one joint): who was paired with whom, and who was left.

    ``matches`` and ``switches`` hold ``(object id, hypothesis id)`` pairs, ``misses`` object ids,
    ``false_positives`` hypothesis ids; ids as given to :meth:`MotCounter.update`."""

    matches: list = field(default_factory=list)
    switches: list = field(default_factory=list)
    misses: list = field(default_factory=list)
    false_positives: list = field(default_factory=list)


class MotCounter:
    """Counts of CLEAR-MOT events over the frames of one sequence (for one joint).

    Attributes:
        num_objects: ground-truth occurrences (matches + switches + misses).
        num_matches, num_switches, num_misses, num_false_positives: event counts.
        sum_distance: sum of the distances of matches and switches (motmetrics' MOTP numerator).
    """

    def __init__(self) -> None:
        self.num_objects = 0
        self.num_matches = 0
        self.num_switches = 0
        self.num_misses = 0
        self.num_false_positives = 0
        self.sum_distance = 0.0
        self._last: dict = {}  # object id -> hypothesis id of its latest match

    @property
    def num_detections(self) -> int:
        return self.num_matches + self.num_switches

    def update(self, oids, hids, dists) -> MotEvents:
        """One frame: ``oids`` (n,), ``hids`` (m,), ``dists`` (n, m) with NaN for "never pair".

        Returns the frame's events (the counts are their running totals), so that a viewer shows
        the very assignment the metric counts."""
        oids = list(oids.tolist() if isinstance(oids, np.ndarray) else oids)
        hids = list(hids.tolist() if isinstance(hids, np.ndarray) else hids)
        ev = MotEvents()
        no, nh = len(oids), len(hids)
        o_used = [False] * no
        h_used = [False] * nh
        if no and nh:
            self._assign(oids, hids, np.asarray(dists, dtype=np.float64).reshape(no, nh),
                         o_used, h_used, ev)
        # 3./4. leftovers
        ev.misses = [o for o, used in zip(oids, o_used) if not used]
        ev.false_positives = [h for h, used in zip(hids, h_used) if not used]
        self.num_objects += no
        self.num_matches += len(ev.matches)
        self.num_switches += len(ev.switches)
        self.num_misses += len(ev.misses)
        self.num_false_positives += len(ev.false_positives)
        return ev

    def _assign(self, oids: list, hids: list, d: np.ndarray, o_used: list, h_used: list,
                ev: MotEvents) -> None:
        """Steps 1 and 2 on a frame with objects and hypotheses; marks the used ones."""
        dl = d.tolist()  # scalar access on lists is much faster than on small arrays
        # 1. continue previous correspondences
        for i, o in enumerate(oids):
            h_prev = self._last.get(o)
            if h_prev is None:
                continue
            for j, h in enumerate(hids):
                if not h_used[j] and h == h_prev:
                    if isfinite(dl[i][j]):
                        o_used[i] = h_used[j] = True
                        ev.matches.append((o, h))
                        self.sum_distance += dl[i][j]
                    break
        # 2. assign the rest
        rows = [i for i in range(len(oids)) if not o_used[i]]
        cols = [j for j in range(len(hids)) if not h_used[j]]
        if rows and cols and any(isfinite(dl[i][j]) for i in rows for j in cols):
            sub = d[np.ix_(rows, cols)]
            for r, c in _min_cost_pairs(sub):
                i, j = rows[r], cols[c]
                o, h = oids[i], hids[j]
                (ev.switches if o in self._last and self._last[o] != h else ev.matches).append((o, h))
                self.sum_distance += dl[i][j]
                self._last[o] = h
                o_used[i] = h_used[j] = True
