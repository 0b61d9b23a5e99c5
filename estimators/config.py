"""Configuration of the RMPE per-frame estimator, as frozen dataclasses.

The application composes it into its settings (``posetracker.app.settings.AppConfig``); load one
on its own from YAML with :func:`posetracker.core.config.load_config` (unknown keys are rejected).
Every default below says where it comes from (the RMPE paper, AlphaPose's released code, or a
measurement on COCO-mini, whose figures are in docs/models.md, "Settings of the estimator").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from posetracker.core.pose_nms import PoseNMSConfig


@dataclass(frozen=True)
class DetectorConfig:
    """Person detector stage.

    Attributes:
        model: Registry name (``rtmdet-nano``, ``picodet-s-320``, ``centernet``, ``nanodet``,
            ``yolo-fastest-xl``, ``yolo-fastest-body``) or a model file: an RTMDet ``.onnx``, a
            PicoDet IR ``.xml``, a Darknet ``.cfg`` whose ``.weights`` lie beside it, or a TF.js
            CenterNet/NanoDet ``model.json`` (the implementation follows the file format).
            Default RTMDet-nano: the highest keypoint AP behind it on COCO-mini (docs/models.md).
        input_size: Square side in pixels of the detectors whose graphs take any size (RTMDet,
            letterboxed; Darknet YOLO); PicoDet (320) and the TF.js graphs (CenterNet 512, NanoDet
            416) fix theirs. 416: RTMDet-nano (trained at 320) finds more small people there and
            keypoint AP behind it is highest (docs/models.md, "Settings of the estimator").
        conf_threshold: Minimum person score kept (objectness x class probability). Low, because
            the pose score re-ranks people later and COCO AP rewards recall (docs/models.md).
        nms_threshold: IoU above which the detector's box NMS suppresses a lower-scored box.
        max_people: At most this many boxes per frame (highest scores first).
        min_box_size: Boxes whose shorter side is below this many pixels are dropped. 20: on
            COCO-mini the poses of smaller boxes were mostly false positives (keypoint AP 0.6174
            at 4 px, 0.620 at 16, 0.628-0.630 from 20 to 28, 0.605 at 32) and a quarter of the
            boxes go (``track`` keeps 16: docs/models.md, "Which detections reach the pose
            model").
        contain_threshold: A box with at least this share of its own area inside a better-scored
            box is dropped when its score is also below ``contain_score_ratio`` times that box's
            (:func:`posetracker.estimators.rmpe.contained_boxes`: detections of a part of a person
            the detector also found whole; they only cost pose-estimator calls and their poses
            are duplicates for pose NMS); 0 turns it off. Off: on COCO-mini every setting tried
            lost keypoint AP (0.8 / 0.5: 0.600 against 0.617; 0.9 / 0.2: 0.617 with 3 % fewer
            boxes), so the boxes it drops hold real people (docs/models.md, "Which detections
            reach the pose model").
        contain_score_ratio: The score ratio of ``contain_threshold``, in (0, 1].
        flip: Test-time augmentation: every detector also runs on the mirrored frame, its boxes
            mirrored back and fused with the others' (``fusion``). On (``track``: off): with
            ``add_missed`` keypoint AP rose a little on COCO-mini (0.6313 -> 0.6328) and on
            crowd composites (0.4223 -> 0.4252), the detector's time doubles (a few % of
            ``estimate``'s); fused by ``wbf`` it found more people but lost COCO-mini AP
            (docs/models.md, "More people found in crowds").
        sizes: Test-time augmentation: further square input sizes (multiples of 32) ``model``
            also runs at, beside ``input_size``, fused with the other runs (graphs of a fixed
            size, PicoDet and TF.js, cannot take them).
        ensemble: Further detectors (registry names or model files, as ``model``) run on every
            frame (at ``input_size`` where their graph takes any size), fused with ``model``'s
            boxes.
        fusion_iou: With more than one run (``flip``, ``sizes``, ``ensemble``), each run keeps
            ``conf_threshold``, ``nms_threshold`` and ``max_people``, then the runs' boxes are
            merged by ``fusion`` at this IoU (0.55: the weighted boxes fusion paper's), then
            ``max_people`` again.
        fusion: ``add_missed`` (default): ``model``'s own run at ``input_size`` as it is, plus
            the people only the other runs found
            (:func:`posetracker.estimators.boxes.add_missed_boxes`); ``wbf``: weighted boxes
            fusion of all runs (:func:`posetracker.estimators.boxes.weighted_box_fusion`: corners
            averaged by score, a box found by T of N runs scored T / N of its mean), which moves
            and rescores the boxes the first run found (COCO-mini keypoint AP 0.6141 with flip,
            against 0.6328).
    """

    model: str = "rtmdet-nano"
    input_size: int = 416
    conf_threshold: float = 0.1
    nms_threshold: float = 0.5
    max_people: int = 30
    min_box_size: float = 20.0
    contain_threshold: float = 0.0
    contain_score_ratio: float = 1.0
    flip: bool = True
    sizes: tuple[int, ...] = ()
    ensemble: tuple[str, ...] = ()
    fusion_iou: float = 0.55
    fusion: Literal["wbf", "add_missed"] = "add_missed"

    def __post_init__(self) -> None:
        if any(s <= 0 or s % 32 for s in self.sizes):
            raise ValueError(f"sizes must be positive multiples of 32, got {list(self.sizes)}")
        if not 0.0 < self.fusion_iou <= 1.0:
            raise ValueError("fusion_iou must be in (0, 1]")
        if self.fusion not in ("wbf", "add_missed"):
            raise ValueError(f"fusion must be wbf or add_missed, got {self.fusion!r}")
        if not 0.0 <= self.contain_threshold <= 1.0 or not 0.0 < self.contain_score_ratio <= 1.0:
            raise ValueError("contain_threshold must be in [0, 1] and contain_score_ratio in (0, 1]")
        if not 0.0 <= self.conf_threshold <= 1.0 or not 0.0 < self.nms_threshold <= 1.0:
            raise ValueError("conf_threshold must be in [0, 1] and nms_threshold in (0, 1]")
        if self.input_size <= 0 or self.input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {self.input_size}")
        if self.max_people <= 0:
            raise ValueError("max_people must be positive")


@dataclass(frozen=True)
class SPPEConfig:
    """Single-person pose estimator stage (and the spatial transformer feeding it).

    Attributes:
        model: Registry name or path: ``tinypose-256x192`` (default; docs/models.md), ``tinypose-128x96``,
            ``movenet-thunder``, ``movenet-lightning``, a TinyPose-style heatmap IR ``.xml``, a
            MoveNet ``model.json`` or a FastPose checkpoint (``fast_res50_256x192.pth``).
        scale_factor: The box (after padding to the SPPE's aspect ratio) is enlarged by this factor
            before cropping, so that limbs the detector cut off are still in view. 1.25 is
            TinyPose's own training crop (docs/models.md).
        flip_test: Also run the horizontally flipped crops and average (left/right swapped;
            heatmap nets average the maps before decoding). Twice the SPPE work for a little
            AP (docs/models.md); ``track`` turns it off for speed.
        batch_size: At most this many crops per SPPE forward call.
        stn_checkpoint: Optional trained STN (localization net) state dict; empty = the analytic
            box transform, the default.
        mask_outside_box: Blank (set to 0, as outside the frame) the parts of each crop that lie
            outside its box enlarged by ``mask_margin``. The crop is the box padded to a square,
            so a narrow box's crop shows its neighbours too, and a single-person model may pose the
            more prominent neighbour instead (two people hugging: both boxes got the same person's
            pose, and pose NMS then removed one of them).
        mask_margin: Enlargement of the box on each side before masking, as a fraction of its
            width and height (limbs the detector cut off stay in view; docs/models.md).
        refine: Sub-cell refinement of a heatmap SPPE's arg-max (TinyPose, FastPose ignores
            it): ``dark`` (distribution-aware Taylor step), ``quarter`` (0.25 cell towards the
            higher neighbour) or ``none`` (:func:`posetracker.estimators.heatmaps.decode_heatmaps`;
            measurements: docs/models.md).
    """

    model: str = "tinypose-256x192"
    scale_factor: float = 1.25
    flip_test: bool = True
    batch_size: int = 64
    stn_checkpoint: str = ""
    mask_outside_box: bool = True
    mask_margin: float = 0.2
    refine: Literal["dark", "quarter", "none"] = "dark"

    def __post_init__(self) -> None:
        if self.scale_factor <= 0:
            raise ValueError("scale_factor must be positive")
        if self.mask_margin < 0:
            raise ValueError("mask_margin must be >= 0")
        if self.batch_size <= 0:
            raise ValueError("batch_size must be positive")
        if self.refine not in ("dark", "quarter", "none"):
            raise ValueError(f"refine must be dark, quarter or none, got {self.refine!r}")


@dataclass(frozen=True)
class ScreenConfig:
    """A small pose model that screens the detector's low-scored boxes before the pose model.

    A person's score is the detector score x the mean joint score
    (:meth:`posetracker.estimators.rmpe.RMPEEstimator.person_scores`), so a box scored 0.2 needs
    joints averaging 0.75 to reach ``track``'s ``pipeline.min_pose_score`` of 0.15; most such
    boxes never do (street_crowd.avi: 9.2 boxes a frame scored 0.2-0.25, 1.0 kept). Each box
    scored below ``below`` first goes through ``model`` (a quarter of the pose model's work for
    TinyPose 128x96 against 256x192); it reaches the pose model only if the detector score x its
    mean joint score (the joints above ``EstimatorConfig.kpt_threshold``) is at least
    ``min_score``. Boxes scored ``below`` or more, and boxes the caller gives (ground truth, the
    tracker's proposals), are never screened. Figures: docs/models.md, "Screening low-scored
    boxes".

    Attributes:
        model: A small pose estimator (registry name or file, as ``SPPEConfig.model``; it crops
            with the pose model's ``scale_factor`` and mask, without flip test); empty: off (the
            default; ``track`` turns it on).
        below: Boxes scored under this are screened.
        min_score: A screened box passes at this detector x mean joint score or more.
    """

    model: str = ""
    below: float = 0.25
    min_score: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.below <= 1.0 or not 0.0 <= self.min_score <= 1.0:
            raise ValueError("screen.below and screen.min_score must be in [0, 1]")


@dataclass(frozen=True)
class EstimatorConfig:
    """The whole per-frame estimator: detector -> transform -> SPPE -> SDTN -> pose NMS.

    Attributes:
        detector, sppe, nms: The stages' configs.
        screen: A small pose model that screens low-scored detections (:class:`ScreenConfig`);
            off by default (``track`` turns it on).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` (the current CUDA device) or
            ``cuda:N`` (CUDA device N); the models are placed there explicitly.
        frame_batch: Frames run through the detector (and cropped) together.
        pose_score: How a person's COCO result score is formed: ``box_x_kpt`` = detector score x
            mean keypoint score of joints above ``kpt_threshold``; ``kpt`` = that mean alone;
            ``box`` = the detector score.
        kpt_threshold: Joints at or below this score do not count in the pose score's mean (0: the
            mean of all joints; docs/models.md).
        backend: What runs the detector's and the pose estimator's graphs: ``torch`` (this
            package's readers of the model files; CUDA, training), ``openvino`` or
            ``onnxruntime`` (the native runtimes, CPU only, for the formats they read: OpenVINO
            IR and ONNX; the ``openvino`` extra installs them), or ``auto``: torch on CUDA; on the
            CPU the fastest installed runtime for each model's format as measured
            (:attr:`posetracker.estimators.model_formats.ModelFormat.runtimes`, docs/models.md,
            "CPU backends"), else torch. Pre- and post-processing are the same code for every
            backend. A runtime named here runs the models it reads; the others (TF.js, Darknet,
            FastPose, a fine-tuned ``.safetensors``, an IR under onnxruntime) stay torch with a
            one-line note. Naming a runtime on CUDA, or one not installed, is an error.
        precision: The pose estimator's arithmetic: ``fp32``; ``fp16`` (CUDA only); ``bf16``
            (a CPU with AVX512_BF16 or AMX, or CUDA; OpenVINO's inference precision hint, or the
            torch network in bfloat16); ``auto``: bf16 on a CPU with AMX (TinyPose in
            OpenVINO 1.6x, in torch 1.3x the float32 rate there, for at most 0.0035 AP), fp32
            elsewhere (on AVX512_BF16 without AMX bf16 was no faster; fp16 on CUDA is not
            measured: docs/models.md, "CPU backends"). Asking for a precision the device lacks
            is an error. The detector runs in float32.
    """

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    sppe: SPPEConfig = field(default_factory=SPPEConfig)
    nms: PoseNMSConfig = field(default_factory=PoseNMSConfig)
    screen: ScreenConfig = field(default_factory=ScreenConfig)
    device: str = "auto"
    frame_batch: int = 4
    pose_score: Literal["box_x_kpt", "kpt", "box"] = "box_x_kpt"
    kpt_threshold: float = 0.0
    backend: Literal["auto", "torch", "openvino", "onnxruntime"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "torch", "openvino", "onnxruntime"):
            raise ValueError(f"backend must be auto, torch, openvino or onnxruntime, got "
                             f"{self.backend!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.frame_batch <= 0:
            raise ValueError("frame_batch must be positive")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
