"""Shared test fixtures: where the real data and models are (``../shared`` beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSETRACKER_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
MODELS = SHARED / "models"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"shared data not found at {DATA} (set POSETRACKER_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not MODELS.is_dir():
        pytest.fail(f"shared models not found at {MODELS} (set POSETRACKER_SHARED)")
    return MODELS


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never reach the network: a model download fails at once, as offline."""
    import urllib.error
    import urllib.request

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    # A user's local model folder would let the offline-error tests find the files.
    monkeypatch.delenv("POSETRACKER_MODELS", raising=False)


@pytest.fixture(scope="module")
def shared_models():
    """``build_estimator`` with the loaded models kept for the module that asks for it (same
    settings, same estimator: loading is most of a small CLI run's time; the fault matrices)."""
    from posetracker.app import build

    real = build.build_estimator
    cache: dict = {}

    def cached(config, *args, **kwargs):
        key = (repr(config), repr(args), repr(sorted(kwargs.items(), key=lambda kv: kv[0])
                                              if "log" not in kwargs else None))
        if key not in cache:
            cache[key] = real(config, *args, **kwargs)
        return cache[key]

    build.build_estimator = cached
    yield
    build.build_estimator = real
