"""Benchmarks behind ``posetracker bench``; each module exposes ``register(bench_subparsers)``."""

from __future__ import annotations

import os
from pathlib import Path


def shared_videos(names: tuple[str, ...]) -> list[Path]:
    """The shared test videos ``names`` (``$POSETRACKER_SHARED/data/videos``; default: the
    ``shared`` folder beside the checkout)."""
    default = Path(__file__).resolve().parents[3].parent / "shared"
    shared = Path(os.environ.get("POSETRACKER_SHARED", default))
    return [shared / "data" / "videos" / v for v in names]
