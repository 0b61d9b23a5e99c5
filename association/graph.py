"""The person-joint graph of CrowdPose (Li et al., CVPR 2019, Sec. 3.2).

Nodes of two kinds:

- *person nodes*: the human proposals (one per detected box);
- *joint nodes*: for each joint type ``k``, clusters of the candidates (:mod:`posetracker.association.candidates`)
  that different proposals found at one body point. Two candidates of type ``k`` from different
  proposals denote the same joint when they lie within ``min(u1, u2) * delta_k`` pixels, ``u`` being
  the Gaussian response size of each candidate (image pixels) and
  ``delta_k = delta_scale * sigma_k / mean(sigma)`` from the schema's OKS sigmas.

An edge joins proposal ``p`` to joint node ``j`` when one of ``p``'s candidates is in ``j``; its weight is
that candidate's response. Edges never cross joint types, so the graph falls apart into one bipartite
graph per joint type, which :mod:`posetracker.association.assign` solves independently.

Departure from the paper, and why: the paper groups candidates pairwise by the distance rule. Pairwise
grouping chains (a-b close, b-c close, a-c far) and can put two candidates of one proposal in one node.
Here the grouping is *leader clustering*: candidates of a joint type are visited by decreasing response;
an unclustered candidate founds a node, and every unclustered candidate within the distance rule of the
founder joins it, at most one per proposal (its strongest). Each node is then a disc around its strongest
candidate, and each proposal has at most one edge to each node.

The graph is kept as numpy arrays (one weight matrix per joint type) for speed; :meth:`to_networkx`
gives the same graph as a ``networkx.Graph`` for inspection and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from posetracker.association.candidates import JointCandidates
from posetracker.association.config import AssociationConfig


@dataclass(frozen=True, eq=False)
class JointTypeGraph:
    """The bipartite part of the graph for one joint type: ``n`` proposals x ``q`` joint nodes.

    Attributes:
        weights: ``(n, q)`` edge weights (candidate responses); 0 = no edge.
        slot: ``(n, q)`` int, which of the proposal's candidates (index into the candidates' ``m``
            axis) lies in the node; -1 = none.
        position: ``(q, 2)`` response-weighted mean position of the node's candidates, image pixels.
        radius: ``(q,)`` the founder's grouping radius ``u * delta_k``, pixels.
    """

    weights: np.ndarray
    slot: np.ndarray
    position: np.ndarray
    radius: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.weights.shape[1])


@dataclass(frozen=True, eq=False)
class PersonJointGraph:
    """Person nodes (proposals) and per-joint-type joint nodes with weighted edges.

    Attributes:
        candidates: The candidates the graph was built from.
        joints: One :class:`JointTypeGraph` per joint type, in schema order.
        in_graph: ``(n, k, m)`` bool, the candidate is a member of a joint node (strong enough, and
            not a weaker peak of a proposal that already has a candidate in that node).
    """

    candidates: JointCandidates
    joints: tuple[JointTypeGraph, ...]
    in_graph: np.ndarray

    @property
    def num_proposals(self) -> int:
        return self.candidates.num_proposals

    def to_networkx(self) -> nx.Graph:
        """The graph as networkx: nodes ``("person", p)`` and ``("joint", k, j)``; edge attribute
        ``weight`` (response) and ``slot`` (candidate index of the proposal)."""
        g = nx.Graph()
        g.add_nodes_from((("person", p) for p in range(self.num_proposals)), kind="person")
        for k, jt in enumerate(self.joints):
            for j in range(jt.num_nodes):
                g.add_node(("joint", k, j), kind="joint", joint_type=k,
                           position=tuple(jt.position[j]))
            for p, j in zip(*np.nonzero(jt.weights > 0)):
                g.add_edge(("person", int(p)), ("joint", k, int(j)),
                           weight=float(jt.weights[p, j]), slot=int(jt.slot[p, j]))
        return g


def joint_deltas(sigmas: np.ndarray, delta_scale: float) -> np.ndarray:
    """``delta_k = delta_scale * sigma_k / mean(sigma)``: ``(k,)`` OKS sigmas -> ``(k,)`` factors."""
    s = np.asarray(sigmas, dtype=np.float64)
    return delta_scale * s / s.mean()


def build_graph(
    candidates: JointCandidates,
    sigmas: np.ndarray,
    config: AssociationConfig = AssociationConfig(),
) -> PersonJointGraph:
    """Build the person-joint graph from joint candidates.

    Args:
        candidates: ``n`` proposals' candidates, ``(n, k, m)`` slots.
        sigmas: ``(k,)`` OKS sigmas of the keypoint schema (``schema.sigma_array()``).
        config: ``delta_scale`` and ``candidate_threshold`` (only candidates at least this strong take
            part; weaker ones remain available to the assignment's fallback).

    All joint types are clustered together, vectorized over ``k``; the loop runs over the rank of the
    founder candidate (at most ``n * m`` steps, usually ~2n).
    """
    n, k, m = candidates.score.shape
    delta = joint_deltas(sigmas, config.delta_scale)
    if delta.shape != (k,):
        raise ValueError(f"{delta.shape[0]} sigmas for {k} joint types")
    strong = candidates.valid & (candidates.score >= config.candidate_threshold)
    if n == 0:
        empty = JointTypeGraph(np.zeros((0, 0)), np.zeros((0, 0), dtype=np.int64), np.zeros((0, 2)),
                               np.zeros(0))
        return PersonJointGraph(candidates, tuple(empty for _ in range(k)), strong)
    rows = _CandidateRows.of(candidates, strong)
    node, count = _leader_clusters(rows, delta)
    return _graph_of_nodes(candidates, rows, node, count, delta)


@dataclass(frozen=True)
class _CandidateRows:
    """The strong candidates of each joint type in one row, strongest first: ``c`` the longest
    row; entries past a row's end have score 0 and NaN positions."""

    score: np.ndarray      # (k, c) candidate score
    proposal: np.ndarray   # (k, c) the proposal it belongs to
    slot: np.ndarray       # (k, c) its slot among the proposal's candidates
    xy: np.ndarray         # (k, c, 2) position, heatmap cells
    size: np.ndarray       # (k, c) response width u, cells

    @classmethod
    def of(cls, candidates: JointCandidates, strong: np.ndarray) -> _CandidateRows:
        n, k, m = candidates.score.shape
        score = np.where(strong, candidates.score, 0.0).transpose(1, 0, 2).reshape(k, n * m)
        order = np.argsort(-score, axis=1, kind="stable")
        c = int(strong.sum(axis=(0, 2)).max(initial=0))  # longest row of real candidates
        order = order[:, :c]
        rows = np.arange(k)[:, None]
        xy = candidates.xy.transpose(1, 0, 2, 3).reshape(k, n * m, 2)[rows, order]
        size = candidates.size.transpose(1, 0, 2).reshape(k, n * m)[rows, order]
        return cls(score[rows, order], order // m, order % m, xy, size)


def _leader_clusters(rows: _CandidateRows, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leader clustering, all joint types at once: step r lets the r-th strongest candidate of each
    type found a node (if still free) and take in every free candidate within the distance rule.

    Returns ``(k, c)`` the node of each candidate (-1: none) and ``(k,)`` the nodes per type.
    """
    k, c = rows.score.shape
    xy, u, prop = rows.xy, rows.size, rows.proposal
    valid = rows.score > 0
    # Distance rule between every pair of candidates of one type: (k, c, c).
    dx = xy[:, :, None, 0] - xy[:, None, :, 0]
    dy = xy[:, :, None, 1] - xy[:, None, :, 1]
    limit = np.minimum(u[:, :, None], u[:, None, :]) * delta[:, None, None]
    close = dx * dx + dy * dy <= limit * limit             # NaN padding compares False
    close &= prop[:, :, None] != prop[:, None, :]

    node = np.full((k, c), -1, dtype=np.int64)
    count = np.zeros(k, dtype=np.int64)
    for r in range(c):
        free = node < 0
        lead = valid[:, r] & free[:, r]
        if not lead.any():
            continue
        join = close[:, r, :] & free & lead[:, None]
        join[:, r] = lead
        node = np.where(join, count[:, None], node)
        count += lead
    return node, count


def _graph_of_nodes(candidates: JointCandidates, rows: _CandidateRows, node: np.ndarray,
                    count: np.ndarray, delta: np.ndarray) -> PersonJointGraph:
    """The graph from the clusters: each node's members, weights, position and radius."""
    n, k, m = candidates.score.shape
    c = rows.score.shape[1]
    s, prop, slot, xy, u = rows.score, rows.proposal, rows.slot, rows.xy, rows.size
    # At most one candidate per proposal in a node: its strongest (the first in the row). Weaker peaks
    # of the same proposal inside the node are shoulders of the same joint and leave the graph.
    kk, jj = np.nonzero(node >= 0)                      # row-major: by type, then by strength
    q = int(count.max(initial=0))
    _, first = np.unique((kk * q + node[kk, jj]) * n + prop[kk, jj], return_index=True)
    kk, jj = kk[first], jj[first]                       # members; sorted by (type, node, proposal)
    nd, pr = node[kk, jj], prop[kk, jj]
    in_graph = np.zeros((k, n, m), dtype=bool)
    in_graph[kk, pr, slot[kk, jj]] = True

    weights = np.zeros((k, n, q))
    slots = np.full((k, n, q), -1, dtype=np.int64)
    weights[kk, pr, nd] = s[kk, jj]
    slots[kk, pr, nd] = slot[kk, jj]
    key = kk * q + nd
    wsum = np.bincount(key, weights=s[kk, jj], minlength=k * q)
    pos = np.stack([np.bincount(key, weights=s[kk, jj] * xy[kk, jj, d], minlength=k * q)
                    for d in (0, 1)], axis=1) / np.maximum(wsum, 1e-12)[:, None]
    pos = pos.reshape(k, q, 2)
    # The founder of each node is its strongest member: the smallest row position in the node.
    founder = np.full(k * q, c, dtype=np.int64)
    np.minimum.at(founder, key, jj)
    radius = u[np.arange(k).repeat(q), np.minimum(founder, max(c - 1, 0))].reshape(k, q) * delta[:, None]

    parts = tuple(JointTypeGraph(weights=weights[t, :, :count[t]], slot=slots[t, :, :count[t]],
                                 position=pos[t, :count[t]], radius=radius[t, :count[t]])
                  for t in range(k))
    return PersonJointGraph(candidates, parts, in_graph.transpose(1, 0, 2))
