"""Fit the four parametric pose NMS parameters (sigma1, sigma2, lam, eta) on a validation set.

As in RMPE (section 3.3), the parameters are optimised two at a time with the other two fixed,
alternating until nothing improves: each step tries a grid of multiplicative changes of the pair
around the current values, keeps the best (ties keep the current values), and when a full round
brings no gain the grid is refined (factors' square roots) up to ``refinements`` times.

The search is pure: it runs pose NMS on cached pre-NMS poses and asks ``score_fn`` (e.g. COCO AP
of the merged poses) for the figure to maximise, so the expensive network runs only once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from posetracker.core.pose_nms import PoseNMSConfig, pose_nms
from posetracker.core.poses import FramePoses

#: The pairs optimised together, in turn.
PAIRS: tuple[tuple[str, str], ...] = (("sigma2", "eta"), ("sigma1", "lam"))
#: Multiplicative steps tried for each parameter of a pair.
FACTORS: tuple[float, ...] = (0.5, 0.71, 1.0, 1.41, 2.0)


@dataclass
class FitResult:
    """Outcome of :func:`fit_nms`.

    Attributes:
        config: The best NMS config found (mode ``rmpe``).
        score: Its score.
        start_score: The score of the starting config.
        history: Every evaluated ``(sigma1, sigma2, lam, eta, score)``, in order.
    """

    config: PoseNMSConfig
    score: float
    start_score: float
    history: list = field(default_factory=list)


def apply_nms(candidates: Mapping[int, FramePoses], config: PoseNMSConfig) -> dict[int, FramePoses]:
    """Pose NMS on each image's pre-NMS poses."""
    return {i: pose_nms(p, config)[0] for i, p in candidates.items()}


def fit_nms(candidates: Mapping[int, FramePoses], score_fn: Callable[[dict], float],
            start: PoseNMSConfig = PoseNMSConfig(), *, max_rounds: int = 4, refinements: int = 1,
            factors: tuple[float, ...] = FACTORS,
            log: Callable[[str], None] | None = None) -> FitResult:
    """Coordinate search over pairs of NMS parameters maximising ``score_fn``.

    Args:
        candidates: ``{image_id: FramePoses}`` before pose NMS (the estimator with ``mode=none``).
        score_fn: Maps ``{image_id: FramePoses}`` after NMS to the figure to maximise (AP).
        start: Starting parameters (its ``mode`` is forced to ``rmpe``).
        max_rounds: At most this many rounds (each round optimises every pair once) per grid.
        refinements: How many times the grid is refined after a round without gain.
        factors: Multiplicative steps tried per parameter.
        log: Called with one line per improvement.
    """
    cache: dict[tuple, float] = {}
    history: list = []

    def score(cfg: PoseNMSConfig) -> float:
        key = tuple(round(getattr(cfg, p), 9) for p in ("sigma1", "sigma2", "lam", "eta"))
        if key not in cache:
            cache[key] = float(score_fn(apply_nms(candidates, cfg)))
            history.append((*key, cache[key]))
        return cache[key]

    best = replace(start, mode="rmpe")
    best_score = start_score = score(best)
    steps = tuple(factors)
    for _ in range(refinements + 1):
        for _ in range(max_rounds):
            improved = False
            for a, b in PAIRS:
                trial_best, trial_score = best, best_score
                for fa in steps:
                    for fb in steps:
                        cfg = replace(best, **{a: getattr(best, a) * fa, b: getattr(best, b) * fb})
                        s = score(cfg)
                        if s > trial_score + 1e-9:
                            trial_best, trial_score = cfg, s
                if trial_score > best_score:
                    best, best_score, improved = trial_best, trial_score, True
                    if log:
                        log(f"{a}={getattr(best, a):.4g} {b}={getattr(best, b):.4g}: {best_score:.4f}")
            if not improved:
                break
        steps = tuple(f ** 0.5 for f in steps)
    return FitResult(best, best_score, start_score, history)
