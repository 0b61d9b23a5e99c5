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


def int_list(option: str, text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; a bad value is one line naming ``option``."""
    from posetracker.core.errors import InputError

    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"{option} {text!r}: expected comma-separated integers") from None
