"""Pretrained models: the named catalog, the local cache, obtaining/verifying/converting, and
resolving model names and paths.

Application layer: the estimators never import this package; they take file paths, which
:func:`resolve_model` produces from a registry name (via the cache) or from a user's path. How a
model file is read, and which stages it serves, is the estimators' table of model formats
(:mod:`posetracker.estimators.model_formats`).

Modules, by job: :mod:`.catalog` (the named models, pinned sources, the default pack),
:mod:`.fetch` (obtaining and verifying source files), :mod:`.cache` (the cache folder and its
manifest; fetching into it), :mod:`.resolve` (a ``--pose-model``/``--detector`` argument -> files).
This package's namespace is their public API.
"""

from posetracker.app.models.cache import CACHE_FORMAT, ModelCache, ResolvedModel, default_cache_dir
from posetracker.app.models.catalog import (
    DEFAULT_PACK,
    MODELS_DIR_ENV,
    NPM_PACKAGE,
    NPM_TARBALL_SHA256,
    REGISTRY,
    GitHubSource,
    ModelFile,
    ModelSpec,
    NpmSource,
    get_spec,
)
from posetracker.app.models.fetch import download_file, npm_pack_command, sha256_file
from posetracker.app.models.resolve import resolve_model

__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_PACK",
    "MODELS_DIR_ENV",
    "NPM_PACKAGE",
    "NPM_TARBALL_SHA256",
    "REGISTRY",
    "GitHubSource",
    "ModelCache",
    "ModelFile",
    "ModelSpec",
    "NpmSource",
    "ResolvedModel",
    "default_cache_dir",
    "download_file",
    "get_spec",
    "npm_pack_command",
    "resolve_model",
    "sha256_file",
]
