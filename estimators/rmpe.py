"""The RMPE per-frame estimator (Fang et al., ICCV 2017): detector -> symmetric spatial transformer
-> SPPE -> spatial de-transformer -> parametric pose NMS.

For a batch of frames:

1. **detect** people (boxes in original image pixels, score- and size-filtered);
2. **transform**: each box becomes a crop region padded to the SPPE's aspect ratio and enlarged by
   the scale factor; the crops are sampled from the frames (one ``cv2.warpAffine`` per crop on the
   CPU, one ``grid_sample`` call for the batch on a GPU: :func:`posetracker.estimators.transform.
   crop_people`), optionally refined by a trained STN;
3. **SPPE**: keypoints and scores in crop pixels (optionally heatmaps and multi-peak candidates);
4. **SDTN**: the inverse map takes them back to image pixels;
5. **pose NMS** per frame removes and merges duplicate poses.

:meth:`RMPEEstimator.estimate` returns one :class:`~posetracker.core.poses.FramePoses` per frame. Its
steps are public for a pipeline that runs them on separate threads: :meth:`RMPEEstimator.detect`
(1), :meth:`RMPEEstimator.estimate_people` (2-4, returning :class:`FrameIntermediates`: everything
a grouping needs, heatmaps included when it asks) and :meth:`RMPEEstimator.group` (5: the
:class:`Grouping` the estimator was built with, pose NMS by default; the application passes the
CrowdPose association instead, so this package never imports it).

The estimator loads its models from files (:class:`ModelPaths`); turning registry names into
files is the application's job (:func:`posetracker.app.build.build_estimator`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from posetracker.core.config import configured
from posetracker.core.errors import InputError, ModelError
from posetracker.core.intermediates import FrameIntermediates
from posetracker.core.pose_nms import PoseNMSConfig, pose_nms
from posetracker.core.poses import FramePoses
from posetracker.core.schemas import KeypointSchema
from posetracker.core.timing import StageTimes
from posetracker.estimators.boxes import add_missed_boxes, weighted_box_fusion
from posetracker.estimators.config import DetectorConfig, EstimatorConfig
from posetracker.estimators.sppe import SPPE, load_sppe
from posetracker.estimators.transform import STN, box_regions, crop_affines, crop_people, crop_to_image, snap_boxes

STAGES = ("detect", "transform", "sppe", "sdtn", "nms")


@dataclass(frozen=True)
class ModelPaths:
    """The files of the estimator's models (what :meth:`RMPEEstimator.from_config` loads).

    Attributes:
        sppe: A MoveNet TF.js ``model.json`` or a FastPose ``.pth``/``.safetensors``
            (see :func:`posetracker.estimators.sppe.load_sppe`).
        sppe_weights: For MoveNet, an optional ``.safetensors`` of its dequantized weights.
        detector: The person detector's topology (a Darknet ``.cfg`` or a TF.js ``model.json``,
            see :func:`load_detector`); ``None`` without detector.
        detector_weights: Its weights; ``None`` = the files beside the topology.
        ensemble: The (topology, weights) of each further detector whose boxes are fused with
            the detector's (``DetectorConfig.ensemble``).
        screen, screen_weights: The small pose estimator screening low-scored boxes
            (``EstimatorConfig.screen``), as ``sppe`` and ``sppe_weights``; ``None``: no screen.
    """

    sppe: Path
    sppe_weights: Path | None = None
    detector: Path | None = None
    detector_weights: Path | None = None
    ensemble: tuple[tuple[Path, Path | None], ...] = ()
    screen: Path | None = None
    screen_weights: Path | None = None


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` / ``cuda:N`` must exist (InputError).

    The device is returned, never made current: callers place their tensors on it explicitly."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: no such CUDA device "
                             f"({torch.cuda.device_count()} available)")
        return dev
    return torch.device(name)


def contained_boxes(dets: np.ndarray, threshold: float, score_ratio: float) -> np.ndarray:
    """``(m,)`` bool: the boxes of ``dets`` (``(m, 5)`` xyxy + score) that lie mostly inside a
    better-scored box that is itself kept.

    In score order, a box is dropped when at least ``threshold`` of its own area is inside a kept
    box and its score is below ``score_ratio`` times that box's score: a detection of a part of a
    person (an upper body, a head) whose whole the detector found with more confidence. Two
    overlapping people rarely satisfy both: the one behind is seldom inside the other's box, and
    the detector scores a real second person near the first one.
    """
    m = len(dets)
    out = np.zeros(m, dtype=bool)
    if m < 2 or threshold <= 0:
        return out
    b = dets[:, :4]
    wh = np.clip(b[:, 2:] - b[:, :2], 0, None)
    area = wh[:, 0] * wh[:, 1]
    lo = np.maximum(b[:, None, :2], b[None, :, :2])
    hi = np.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)                                 # (m, m)
    inside = inter >= threshold * np.maximum(area, 1e-9)[:, None]             # row inside column
    weaker = dets[:, None, 4] < score_ratio * dets[None, :, 4]
    drop_by = inside & weaker
    np.fill_diagonal(drop_by, False)
    for i in np.argsort(-dets[:, 4], kind="stable"):
        out[i] = bool((drop_by[i] & ~out).any())
    return out


class PersonDetector:
    """Any person detector with the config's thresholds, box filters and test-time runs.

    Args:
        detector: Anything with ``detect(frames, conf=, nms=, max_detections=)`` returning
            ``(m, 5)`` xyxy + score per frame (:func:`load_detector`'s RTMDet, PicoDet, Darknet
            YOLO, TF.js CenterNet/NanoDet).
        config: The thresholds and filters of
            :class:`posetracker.estimators.config.DetectorConfig` (``conf_threshold``,
            ``nms_threshold``, ``max_people``, ``min_box_size``, ``contain_*``, ``flip``,
            ``fusion``, ``fusion_iou``; which models, at which sizes, are the caller's: ``detector`` and
            ``members``); ``None``: the defaults.
        members: Further detectors run on every frame beside ``detector`` (the same model at
            the other ``sizes``, the ``ensemble``'s models), their boxes fused with its.
        **overrides: Fields of ``config`` to replace, checked by the config.
    """

    def __init__(self, detector, config: DetectorConfig | None = None, *,
                 members: Sequence[Any] = (), **overrides: Any):
        self.detector = detector
        self.members = tuple(members)
        self.config = configured(DetectorConfig, config, overrides)

    @property
    def runs(self) -> int:
        """Detector runs per frame: each detector, on the frame and, with ``flip``, its mirror."""
        return (1 + len(self.members)) * (2 if self.config.flip else 1)

    def _run(self, detector, frames: list[np.ndarray]) -> list[list[np.ndarray]]:
        """One detector on ``frames`` (and, with ``flip``, their mirrors, in the same batch):
        per run, per frame ``(m, 5)`` boxes in the frame's own pixels."""
        c = self.config
        mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in frames] if c.flip else []
        dets = [np.asarray(d, dtype=np.float64).reshape(-1, 5)
                for d in detector.detect(frames + mirrored, conf=c.conf_threshold,
                                         nms=c.nms_threshold, max_detections=c.max_people)]
        runs = [dets[:len(frames)]]
        if mirrored:
            back = []
            for f, d in zip(frames, dets[len(frames):]):
                d = d.copy()
                d[:, [0, 2]] = f.shape[1] - d[:, [2, 0]]  # x -> W - x; the corners swap
                back.append(d)
            runs.append(back)
        return runs

    def __call__(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``(m, 5)`` xyxy + score per frame, best first: the boxes that reach the pose model.

        1. Each run (every detector, on the frame and, with ``flip``, on its mirror): boxes
           scored at least ``conf_threshold``, its box NMS at ``nms_threshold``, at most
           ``max_people``.
        2. With more than one run, their boxes fused at ``fusion_iou`` by ``fusion``: the first
           run's boxes plus the people only the others found
           (:func:`posetracker.estimators.boxes.add_missed_boxes`), or weighted boxes fusion
           (:func:`posetracker.estimators.boxes.weighted_box_fusion`); at most ``max_people``.
        3. Boxes whose shorter side is under ``min_box_size`` pixels are dropped.
        4. Boxes mostly inside a better-scored box (``contain_threshold``,
           ``contain_score_ratio``; :func:`contained_boxes`) are dropped.
        """
        c = self.config
        frames = list(frames)
        runs = [run for det in (self.detector, *self.members) for run in self._run(det, frames)]
        out = []
        fuse = weighted_box_fusion if c.fusion == "wbf" else add_missed_boxes
        for i in range(len(frames)):
            d = runs[0][i] if len(runs) == 1 else \
                fuse([r[i] for r in runs], c.fusion_iou)[:c.max_people]
            d = d[np.minimum(d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]) >= c.min_box_size]
            out.append(d[~contained_boxes(d, c.contain_threshold, c.contain_score_ratio)])
        return out


def load_detector(topology: str | Path, weights: str | Path | None = None,
                  device: torch.device | str = "cpu", input_size: int | None = None,
                  backend: str = "torch", threads: int = 0):
    """A person detector from its files, by format (the readers
    :mod:`posetracker.estimators.model_formats` names): RTMDet (``.onnx``,
    :func:`posetracker.estimators.rtmdet.load_rtmdet`), PicoDet (OpenVINO IR ``.xml`` and its ``.bin``,
    :func:`posetracker.estimators.picodet.load_picodet`), a Darknet YOLO
    (:class:`posetracker.estimators.runtimes.darknet.DarknetYolo`) from its ``.cfg`` and weights (``.weights`` or
    ``.safetensors``; default: the ``.weights`` beside the ``.cfg``), or a TF.js CenterNet/NanoDet
    (:func:`posetracker.estimators.tfjs_detectors.load_tfjs_detector`) from its ``model.json`` and weights
    (``.safetensors``; default: the ``.bin`` beside it). Registry names are resolved by the
    application (:func:`posetracker.app.build.detector_files`).

    ``input_size``: square side in pixels for the detectors whose graphs take any size (RTMDet,
    Darknet YOLO; a multiple of 32); the PicoDet and TF.js graphs fix theirs and ignore it.
    ``backend``: ``estimator.backend``
    (:meth:`posetracker.estimators.model_formats.ModelFormat.backend`); default torch;
    ``threads``: CPU threads per call of a native backend (0: its default). The backend that runs
    it is :func:`posetracker.estimators.runtimes.native.backend_of` the result."""
    from posetracker.estimators.model_formats import format_of

    topology = Path(topology)
    fmt = format_of(topology, "detector")
    weights = None if weights is None else Path(weights)
    backend = fmt.backend(backend, device, weights)
    native = {"backend": backend, "threads": threads} if fmt.runtimes else {}
    return fmt.reader("detector")(topology, weights, device=device, input_size=input_size,
                                  **native)



def load_person_detector(config: DetectorConfig, main: tuple[Path, Path | None],
                         ensemble: Sequence[tuple[Path, Path | None]], device: torch.device | str,
                         backend: str = "torch", threads: int = 0) -> PersonDetector:
    """The :class:`PersonDetector` ``config`` describes: ``model`` (its (topology, weights)
    files ``main``) at ``input_size`` and at each of ``sizes``, and each model of the config's
    ``ensemble`` (their files ``ensemble``, in order); ``backend``, ``threads``: see
    :func:`load_detector`.

    Raises:
        ModelError: the files do not match the ensemble, or ``sizes`` for a graph of a fixed
            input size.
    """
    if len(ensemble) != len(config.ensemble):
        raise ModelError(f"detector.ensemble names {len(config.ensemble)} models, "
                         f"{len(ensemble)} given")

    def load(files: tuple[Path, Path | None], size: int):
        return load_detector(*files, device, size, backend, threads)

    members = []
    for size in config.sizes:
        members.append(load(main, size))
        if tuple(members[-1].input_size) != (size, size):
            h, w = members[-1].input_size
            raise ModelError(f"detector.sizes {list(config.sizes)}: {config.model} takes "
                             f"{w}x{h} input only")
    members += [load(files, config.input_size) for files in ensemble]
    return PersonDetector(load(main, config.input_size), config, members=members)


class Grouping(Protocol):
    """How one frame's per-box poses become its people (redundant poses removed).

    ``heatmaps``: whether it needs the SPPE's heatmaps in the
    :class:`FrameIntermediates` (:meth:`RMPEEstimator.estimate_people` then keeps them).
    ``__call__(inter, schema, person_scores)`` returns the frame's :class:`FramePoses`, ranked by
    ``person_scores(box_scores (m,), keypoint_scores (m, k)) -> (m,)``.
    """

    heatmaps: bool

    def __call__(self, inter: FrameIntermediates, schema: KeypointSchema,
                 person_scores: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FramePoses: ...


@dataclass(frozen=True)
class PoseNMSGrouping:
    """RMPE's parametric pose NMS (:func:`posetracker.core.pose_nms.pose_nms`) as a
    :class:`Grouping`: each box's pose scored by ``person_scores``, duplicates removed."""

    nms: PoseNMSConfig = field(default_factory=PoseNMSConfig)
    heatmaps: bool = False

    def __call__(self, inter: FrameIntermediates, schema: KeypointSchema,
                 person_scores: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> FramePoses:
        scores = person_scores(inter.box_scores, inter.keypoint_scores)
        poses = FramePoses(inter.keypoints, inter.keypoint_scores, inter.boxes, scores, schema,
                           box_scores=inter.box_scores)
        return pose_nms(poses, self.nms)[0]


class RMPEEstimator:
    """Multi-person pose estimation per frame, top-down, as RMPE.

    The steps are public so that a pipeline can run them on separate threads and batches:
    :meth:`detect` (frames -> boxes), :meth:`estimate_people` (frames + boxes -> per-box poses,
    :class:`FrameIntermediates`) and :meth:`group` (one frame's per-box poses -> its people);
    :meth:`estimate` runs all three.

    Args:
        sppe: The single-person pose estimator.
        detector: A :class:`PersonDetector`; may be ``None`` if boxes are always given.
        config: Thresholds, scale factor, NMS parameters and pose scoring.
        stn: Optional trained :class:`~posetracker.estimators.transform.STN` refining the box crops.
        grouping: How a frame's per-box poses become its people; default pose NMS with
            ``config.nms`` (the application passes the CrowdPose association instead when asked).
        screen: Optional small SPPE screening the detector's boxes scored under
            ``config.screen.below`` (:class:`~posetracker.estimators.config.ScreenConfig`).
    """

    def __init__(self, sppe: SPPE, detector: PersonDetector | None = None,
                 config: EstimatorConfig = EstimatorConfig(), stn: STN | None = None,
                 grouping: Grouping | None = None, screen: SPPE | None = None):
        self.sppe = sppe
        self.screen = screen
        self.detector = detector
        self.config = config
        self.stn = stn
        self.device = sppe.device
        self.times = StageTimes(STAGES, total=True)
        self.grouping = grouping if grouping is not None else PoseNMSGrouping(config.nms)

    @property
    def schema(self) -> KeypointSchema:
        """The keypoint schema of the poses (the SPPE's)."""
        return self.sppe.schema

    @property
    def has_detector(self) -> bool:
        return self.detector is not None

    def runtimes(self) -> dict[str, dict[str, str]]:
        """What runs each model, for a run's metadata: ``{"detector": {"backend": ...,
        "precision": "fp32"}, "sppe": {"backend": ..., "precision": ...}}`` (no detector entry
        without one)."""
        from posetracker.estimators.runtimes.native import backend_of

        out = {"sppe": {"backend": self.sppe.backend, "precision": self.sppe.precision}}
        if self.screen is not None:
            out["screen"] = {"backend": self.screen.backend, "precision": self.screen.precision}
        if self.detector is not None:
            out["detector"] = {"backend": backend_of(self.detector.detector), "precision": "fp32"}
        return out

    @classmethod
    def from_config(cls, config: EstimatorConfig, paths: ModelPaths, *,
                    with_detector: bool = True, grouping: Grouping | None = None,
                    threads: int) -> RMPEEstimator:
        """Load the models from ``paths`` (the files of the models ``config`` names) onto the
        config's device, with the config's thresholds (``grouping``: see the class;
        ``threads``: CPU threads per call of a native backend, the caller's torch threads per
        call; 0: the runtime's default)."""
        device = pick_device(config.device)
        s = config.sppe
        native = {"precision": config.precision, "backend": config.backend, "threads": threads,
                  "batch_size": s.batch_size, "refine": s.refine}
        sppe = load_sppe(paths.sppe, weights=paths.sppe_weights, device=device,
                         flip_test=s.flip_test, **native)
        screen = None
        if paths.screen is not None and with_detector:
            screen = load_sppe(paths.screen, weights=paths.screen_weights, device=device, **native)
        detector = None
        if with_detector:
            if paths.detector is None:
                raise ModelError("no detector model file given (pass boxes, or a detector)")
            detector = load_person_detector(config.detector,
                                            (paths.detector, paths.detector_weights),
                                            paths.ensemble, device, config.backend, threads)
        stn = None
        if s.stn_checkpoint:
            stn = STN()
            try:
                stn.load_state_dict(torch.load(s.stn_checkpoint, map_location="cpu", weights_only=True))
            except (OSError, RuntimeError) as e:
                raise ModelError(f"cannot load STN checkpoint {s.stn_checkpoint}: {e}") from None
            stn = stn.to(device).eval()
        elif paths.sppe_weights is not None and Path(paths.sppe_weights).suffix == ".safetensors":
            from posetracker.estimators.checkpoint import load_checkpoint_stn  # trained with --stn

            stn = load_checkpoint_stn(paths.sppe_weights)
            stn = None if stn is None else stn.to(device)
        return cls(sppe, detector, config, stn, grouping, screen)

    # -- stages ----------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _tick(self, stage: str, t0: float, frames: int = 0, persons: int = 0) -> float:
        self._sync()
        t = time.perf_counter()
        self.times.add(stage, t - t0, frames, persons)
        return t

    def _check(self, frames: Sequence[np.ndarray]) -> None:
        for i, f in enumerate(frames):
            if not (isinstance(f, np.ndarray) and f.ndim == 3 and f.shape[2] == 3 and f.dtype == np.uint8):
                raise InputError(f"frame {i}: expected an (H, W, 3) uint8 RGB image, got "
                                 f"{getattr(f, 'shape', type(f))} {getattr(f, 'dtype', '')}")

    def _boxes(self, frames, boxes) -> list[np.ndarray]:
        if boxes is not None:
            if len(boxes) != len(frames):
                raise InputError(f"{len(boxes)} box arrays for {len(frames)} frames")
            out = []
            for b in boxes:
                b = np.asarray(b, dtype=np.float64)
                b = b.reshape(-1, b.shape[-1] if b.size else 5)
                out.append(np.column_stack([b[:, :4], b[:, 4] if b.shape[1] > 4 else np.ones(len(b))]))
            return out
        return self._detected(frames)

    def _detected(self, frames) -> list[np.ndarray]:
        """Stage 1: the boxes that reach the pose model, ``(m, 5)`` per frame (the detector's,
        less those the screen rejects)."""
        if self.detector is None:
            raise InputError("this estimator has no detector: pass boxes")
        return self._screened(frames, self.detector(list(frames)))

    def _crops(self, frames, boxes: np.ndarray, size: tuple[int, int],
               affines: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2 for ``boxes`` ``(m, 6)`` of ``frames`` (xyxy, score, frame index): the crop
        affines ``(m, 2, 3)`` on the device (``affines`` if given, e.g. an STN's) and the
        ``(m, 3, *size)`` crops, masked outside each box as the config says."""
        b = snap_boxes(boxes[:, :4])
        A = crop_affines(box_regions(b, size, self.config.sppe.scale_factor), size).to(self.device) \
            if affines is None else affines
        keep = None
        if self.config.sppe.mask_outside_box:
            pad = self.config.sppe.mask_margin * (b[:, 2:] - b[:, :2])
            keep = np.concatenate([b[:, :2] - pad, b[:, 2:] + pad], axis=1)
        return A, crop_people(frames, boxes[:, 5].astype(np.int64), A, size, self.device, keep)

    def _screened(self, frames, dets: list[np.ndarray]) -> list[np.ndarray]:
        """The detector's boxes ``(m, 5)`` per frame without those the screen rejects
        (:class:`~posetracker.estimators.config.ScreenConfig`): each box scored under
        ``below`` passes only if its score x the screen's mean joint score reaches
        ``min_score``."""
        c = self.config.screen
        low = [np.flatnonzero(d[:, 4] < c.below) for d in dets]
        if self.screen is None or not sum(map(len, low)):
            return dets
        rows = np.concatenate([np.column_stack([d[i], np.full(len(i), f)])
                               for f, (d, i) in enumerate(zip(dets, low))])
        with torch.inference_mode():
            _, crops = self._crops(frames, rows, self.screen.input_size)
            scores = self.screen(crops).scores.float().cpu().numpy()
        passed = np.split(rows[:, 4] * self.joint_scores(scores) >= c.min_score,
                          np.cumsum([len(i) for i in low])[:-1])
        return [np.delete(d, i[~ok], axis=0) for d, i, ok in zip(dets, low, passed)]

    def _per_box(self, frames, boxes, heatmaps: bool, candidates: int):
        """Stages 1-4 for a batch: returns per-frame boxes and the flat per-box SPPE results."""
        self._check(frames)
        t = time.perf_counter()
        dets = self._boxes(frames, boxes)
        t = self._tick("detect", t, len(frames))
        counts = [len(d) for d in dets]
        allb = np.concatenate(dets) if sum(counts) else np.zeros((0, 5))
        fidx = np.repeat(np.arange(len(frames)), counts)
        size = self.sppe.input_size
        if len(allb):
            rows = np.column_stack([allb, fidx])
            A, crops = self._crops(frames, rows, size)
            if self.stn is not None:
                with torch.inference_mode():
                    A = self.stn.refine(crops, A, size)
                A, crops = self._crops(frames, rows, size, A)
        else:
            A = crop_affines(box_regions(np.zeros((0, 4)), size, self.config.sppe.scale_factor), size)
            crops = torch.zeros(0, 3, *size, device=self.device)
        t = self._tick("transform", t, len(frames))
        out = self.sppe(crops, heatmaps=heatmaps, candidates=candidates)
        t = self._tick("sppe", t, len(frames))
        kp = crop_to_image(out.keypoints, A.to(out.keypoints.device)).cpu().numpy()
        sc = out.scores.cpu().numpy().astype(np.float64)
        cand = None
        if out.candidates is not None and len(allb):
            c = out.candidates.float()
            m, k, nc, _ = c.shape
            xy = crop_to_image(c[..., :2].reshape(m, k * nc, 2), A.to(c.device)).reshape(m, k, nc, 2)
            cand = torch.cat([xy, c[..., 2:].double()], -1).cpu().numpy()
        t = self._tick("sdtn", t, len(frames))
        return dets, counts, A, kp, sc, out, cand, t

    def joint_scores(self, kp_scores: np.ndarray) -> np.ndarray:
        """``(m,)`` mean of each pose's joint scores ``(m, k)`` above ``config.kpt_threshold`` (all
        joints' mean when none is above): the SPPE's own evidence of a person in the crop."""
        above = kp_scores > self.config.kpt_threshold
        return np.where(above.any(1), (kp_scores * above).sum(1) / np.maximum(above.sum(1), 1),
                        kp_scores.mean(1) if kp_scores.size else 0.0)

    def person_scores(self, box_scores: np.ndarray, kp_scores: np.ndarray) -> np.ndarray:
        """People's result scores ``(m,)`` from detector scores ``(m,)`` and joint scores ``(m, k)``
        (``config.pose_score``: detector score x mean of the joints above ``kpt_threshold``)."""
        kmean = self.joint_scores(kp_scores)
        if self.config.pose_score == "kpt":
            return kmean
        if self.config.pose_score == "box":
            return box_scores
        return box_scores * kmean

    # -- public API --------------------------------------------------------------------------
    def detect(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The person detector on ``frames`` (``(H, W, 3)`` uint8 RGB): per frame an ``(m, 5)``
        array of boxes xyxy (image pixels) and detector score, best first."""
        self._check(frames)
        t = time.perf_counter()
        with torch.inference_mode():
            out = self._detected(frames)
        self._tick("detect", t, len(frames))
        return out

    def estimate_people(self, frames: Sequence[np.ndarray], detections: Sequence[np.ndarray], *,
                        heatmaps: bool | None = None, candidates: int = 0
                        ) -> list[FrameIntermediates]:
        """Each detected person's pose (crop, SPPE, back to image pixels), before grouping.

        Args:
            frames: ``(H, W, 3)`` uint8 RGB images.
            detections: Per frame ``(m, 4)`` or ``(m, 5)`` boxes xyxy [+ score] (e.g. from
                :meth:`detect`); all people of all frames go through the SPPE together, in
                batches of ``config.sppe.batch_size``.
            heatmaps: Keep the SPPE heatmaps (default: when the grouping needs them).
            candidates: Multi-peak joint candidates per joint to keep (0: none).
        """
        if heatmaps is None:
            heatmaps = self.grouping.heatmaps
        with torch.inference_mode():
            return self.intermediates(list(frames), heatmaps=heatmaps, candidates=candidates,
                                      boxes=list(detections))

    def group(self, inter: FrameIntermediates) -> FramePoses:
        """One frame's people from its per-box poses, by the estimator's grouping; the poses'
        scores are the person scores (:meth:`person_scores`)."""
        return self.grouping(inter, self.schema, self.person_scores)

    def estimate(self, frames: Sequence[np.ndarray], boxes: Sequence[np.ndarray] | None = None
                 ) -> list[FramePoses]:
        """Poses of every frame: :meth:`detect`, :meth:`estimate_people` and :meth:`group`.

        Args:
            frames: ``(H, W, 3)`` uint8 RGB images (sizes may differ).
            boxes: Optional per-frame ``(m, 4)`` or ``(m, 5)`` person boxes (xyxy [+ score]) to use
                instead of the detector (e.g. ground-truth boxes).

        Returns:
            One :class:`FramePoses` per frame (the SPPE's schema); the poses' scores are the
            person scores (``config.pose_score``), boxes are the detector's.
        """
        out: list[FramePoses] = []
        step = self.config.frame_batch
        heatmaps = self.grouping.heatmaps
        for s in range(0, len(frames), step):
            fr = frames[s: s + step]
            bx = None if boxes is None else boxes[s: s + step]
            with torch.inference_mode():
                inters = self.intermediates(fr, heatmaps=heatmaps, candidates=0, boxes=bx)
            t = time.perf_counter()
            people = 0
            for inter in inters:
                poses = self.group(inter)
                out.append(poses)
                people += len(poses)
            self._tick("nms", t, len(fr), people)
        return out

    def intermediates(self, frames: Sequence[np.ndarray], *, heatmaps: bool = True,
                      candidates: int = 3, boxes: Sequence[np.ndarray] | None = None
                      ) -> list[FrameIntermediates]:
        """Stages 1-4 without grouping: per frame, the per-box heatmaps, candidates and affines,
        for the joint-candidate association to use instead of NMS. Heatmaps and offsets are moved
        to the CPU."""
        result: list[FrameIntermediates] = []
        step = self.config.frame_batch
        for s in range(0, len(frames), step):
            fr = frames[s: s + step]
            bx = None if boxes is None else boxes[s: s + step]
            dets, counts, A, kp, sc, out, cand, _ = self._per_box(fr, bx, heatmaps, candidates)
            start = 0
            for d, n in zip(dets, counts):
                sl = slice(start, start + n)
                start += n
                result.append(FrameIntermediates(
                    boxes=d[:, :4], box_scores=d[:, 4], affines=A[sl].cpu(), keypoints=kp[sl],
                    keypoint_scores=sc[sl],
                    heatmaps=None if out.heatmaps is None else out.heatmaps[sl].cpu(),
                    heatmap_stride=out.heatmap_stride,
                    candidates=None if cand is None else cand[sl],
                    offsets=None if out.offsets is None else out.offsets[sl].cpu(),
                    heatmap_offset=out.heatmap_offset))
        return result
