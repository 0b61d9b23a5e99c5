"""Resolving a ``--pose-model`` / ``--detector`` argument: a registry name (from the cache,
fetched on first use) or a model file a user gave (its format and files found by
:func:`posetracker.estimators.model_formats.locate`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from posetracker.app.models.cache import ModelCache, ResolvedModel
from posetracker.app.models.catalog import DEFAULT_PACK, MODELS_DIR_ENV, REGISTRY, ModelSpec, get_spec, where_from
from posetracker.app.models.fetch import sha256_file
from posetracker.core.errors import ModelError
from posetracker.estimators.model_formats import locate


def _spec_by_sha(path: Path) -> ModelSpec | None:
    digest = sha256_file(path)
    for spec in REGISTRY.values():
        if any(f.sha256 == digest for f in spec.files):
            return spec
    return None


def _stderr_log(line: str) -> None:
    """What a fetch on first use says: on stderr, so that stdout keeps only results."""
    print(f"posetracker: {line}", file=sys.stderr, flush=True)


def resolve_model(name_or_path: str | Path, cache: ModelCache | None = None,
                  fetch_missing: bool = True,
                  log: Callable[[str], None] | None = None,
                  progress: bool | None = None) -> ResolvedModel:
    """A registry name or a model file path -> :class:`ResolvedModel`.

    Names come from the cache. On first use (``fetch_missing``, the name not in the cache) the
    whole default pack and the named model are fetched (:meth:`ModelCache.fetch`: from
    ``$POSETRACKER_MODELS`` or the pinned upstream sources), saying what and from where through
    ``log`` (default: lines ``posetracker: ...`` on stderr: each file, its size and where it
    comes from) with a tqdm bar in bytes (``progress``; default: when stderr is a terminal);
    a corrupted entry or an unobtainable file raises :class:`ModelError` naming the
    files, where they come from and the command that fixes it. Paths: any file
    :func:`posetracker.estimators.model_formats.locate` takes (a TF.js ``.json`` with its
    ``.bin`` beside it, an OpenVINO IR ``.xml`` with its ``.bin``, an ``.onnx``, a Darknet
    ``.cfg`` with ``.weights`` or ``.safetensors`` of the same stem beside it or ``.weights``
    with its ``.cfg``, an AlphaPose ``.pth`` checkpoint, or a ``.safetensors``: a cached
    TF.js/Darknet model when a ``.json``/``.cfg`` of the same stem is beside it, else a
    FastPose state_dict).
    """
    if isinstance(name_or_path, str) and name_or_path in REGISTRY:
        cache = cache or ModelCache()
        issue = cache.problem(name_or_path)
        if issue is not None:
            _fetch_on_first_use(name_or_path, issue, cache, fetch_missing, log, progress)
        return cache.paths(name_or_path)
    return _resolve_path(str(name_or_path))


def _fetch_on_first_use(name: str, issue: str, cache: ModelCache, fetch_missing: bool,
                        log: Callable[[str], None] | None, progress: bool | None) -> None:
    """Fetch the default pack and ``name``, whose cache entry has a problem (``issue``), when it
    has no entry yet and ``fetch_missing``; else raise the problem (a broken entry is never
    fetched over silently)."""
    if name in cache.manifest()["models"] or not fetch_missing:
        raise ModelError(issue)
    wanted = list(dict.fromkeys([*DEFAULT_PACK, name]))
    log = log or _stderr_log
    progress = sys.stderr.isatty() if progress is None else progress
    log(f"{name} is not in the cache ({cache.models_dir}); on first use the "
        f"whole default pack is fetched: fetching "
        + (f"{', '.join(wanted)} from ${MODELS_DIR_ENV} ({os.environ[MODELS_DIR_ENV]})"
           if os.environ.get(MODELS_DIR_ENV)
           else "; ".join(f"{n} from {where_from(get_spec(n))}" for n in wanted)))
    try:
        cache.fetch(wanted, log=log, progress=progress)
    except ModelError as e:
        raise ModelError(f"model {name} is not in the cache and fetching it "
                         f"failed: {e}") from None


def _resolve_path(text: str) -> ResolvedModel:
    """A model file a user named: its format and files, and the registry entry whose pinned
    topology has its sha256 (``kind`` from that entry, or the format's only stage; ``None`` when
    neither decides)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelError(f"model '{text}' is neither a known model name ({', '.join(REGISTRY)}) "
                         f"nor an existing file")
    fmt, topology, weights = locate(path)
    spec = _spec_by_sha(topology) if topology is not None else None
    kind = fmt.stages[0] if len(fmt.stages) == 1 else (spec.kind if spec else None)
    return ResolvedModel(path.stem, kind, fmt.name, topology, weights, spec)
