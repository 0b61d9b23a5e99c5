"""Shared test fixtures: where the real data and models are (``../shared`` beside the repo), and
:func:`require_test_extra` for the packages of the ``test`` extra."""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSETRACKER_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
MODELS = SHARED / "models"


def load_tool(name: str) -> ModuleType:
    """The script ``tools/<name>.py`` as a module (``tools/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_ci() -> bool:
    """True when the tests run under CI: ``CI`` set to anything but empty, ``0``, ``false`` or
    ``no`` (GitHub Actions, GitLab CI and most others set ``CI=true``; so does ``.ci/run``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_test_extra(module: str) -> ModuleType:
    """Import ``module``, a package of the ``test`` extra (``pip install -e ".[test]"``): the
    reference runtimes OpenVINO and onnxruntime that the golden tests compare the model readers
    with, hypothesis, Ray.

    Missing, the test is skipped on a developer's machine (one line says what to install) but
    FAILS under CI (:func:`in_ci`): a CI run without the extra would otherwise pass while proving
    nothing about the readers. Called at a module's top level it skips (or fails) the whole
    file."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        why = f"{module} is not installed ({e}); it comes with the test extra: pip install -e \".[test]\""
        if in_ci():
            pytest.fail(f"CI requires every package of the test extra: {why}", pytrace=False)
        pytest.skip(why, allow_module_level=True)  # a module-level call skips its file


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


def _refuse_download(url, *args, **kwargs):
    """Stands for ``urlopen`` and for the model cache's download: tests never reach the
    network."""
    import urllib.error

    raise urllib.error.URLError("network disabled in tests")


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Iterator[Path]:
    """The default model cache (``$POSETRACKER_CACHE``) of the whole session: the default pack,
    copied from ``../shared/models`` once, as ``posetracker models fetch --from`` leaves it on a
    user's machine. Runs that name a default model by its registry name (``track``'s screen,
    beside models given as paths) find it there, offline, on a fresh machine as on one whose own
    cache holds other models; tests of the cache itself set their own."""
    from posetracker.app.models import ModelCache

    root = tmp_path_factory.mktemp("model-cache")
    if MODELS.is_dir():  # without it the tests that need models fail on ``models_dir``
        ModelCache(root).fetch(source_dir=MODELS, download=_refuse_download)
    with pytest.MonkeyPatch.context() as mp:  # set before any fixture of a narrower scope
        mp.setenv("POSETRACKER_CACHE", str(root))
        yield root


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never reach the network: a model download fails at once, as offline."""
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", _refuse_download)
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


def signal_later(p, delay: float, sig: int) -> bool:
    """Wait up to ``delay`` s for the process ``p`` to end; send it ``sig`` if it still runs.
    Returns whether the signal was sent (``False``: the run had finished first)."""
    import subprocess

    try:
        p.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        p.send_signal(sig)
        return True
