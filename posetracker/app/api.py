"""The Python API: :class:`PoseTracker` (estimate and track poses), :class:`TrackedFrame`, and the
evaluations returning pandas DataFrames. ``posetracker track``, ``posetracker estimate`` and
``posetracker bench pipeline`` call it; everything they do is reachable from here.

Example::

    from posetracker import PoseTracker

    tracker = PoseTracker(device="cpu")
    for frame in tracker.track("video.mp4", max_frames=50):
        print(frame.index, frame.poses.track_ids, frame.poses.keypoints.shape)
    summary = tracker.track_to("video.mp4", "out.json")   # as `posetracker track`

Images are RGB ``(H, W, 3)`` uint8 arrays; coordinates are pixels of the original image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from posetracker.app.flags import API_KEYWORDS
from posetracker.app.pipeline import RunFigures
from posetracker.app.settings import AppConfig, load_app_config
from posetracker.core.config import replace_path, update_config
from posetracker.core.errors import ConfigError, InputError
from posetracker.core.poses import FramePoses
from posetracker.io.formats.output_formats import OutputFormatName


@dataclass(frozen=True)
class TrackedFrame:
    """One tracked frame, as :meth:`PoseTracker.track` yields it.

    Attributes:
        index: 0-based position of the frame in the input (before ``start``/``stride``).
        image_size: ``(width, height)`` of the frame in pixels.
        poses: The frame's people: ``keypoints`` ``(n, k, 2)`` pixels, ``keypoint_scores``
            ``(n, k)``, ``boxes`` ``(n, 4)`` xyxy, ``scores`` ``(n,)`` person scores,
            ``track_ids`` ``(n,)`` int (final: numbered 0, 1, 2, ... in order of appearance),
            ``schema``.
        name: The frame's file name (image inputs) or the video's name.
    """

    index: int
    image_size: tuple[int, int]
    poses: FramePoses
    name: str = ""


@dataclass(frozen=True)
class TrackSummary(RunFigures):
    """What :meth:`PoseTracker.track_to` (``posetracker track``) reports.

    Attributes:
        output: The final JSON file.
        jsonl, csv, render: The other files written (``None``: not asked for).
        frames: Frames written.
        people: Poses written, summed over frames.
        wall_seconds: First read to last write.
        mode: ``threaded`` or ``sequential``.
        device: Where the models ran.
        ms_per_frame: Milliseconds of work per frame of each stage.
        meta: The metadata written into the output.
    """

    output: Path
    jsonl: Path | None
    csv: Path | None
    render: Path | None
    frames: int
    people: int
    wall_seconds: float
    mode: str
    device: str
    ms_per_frame: dict[str, float]
    meta: dict


def _config_from(config: AppConfig | str | Path | Mapping[str, Any] | None) -> AppConfig:
    if config is None:
        return AppConfig()
    if isinstance(config, AppConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_app_config(config)
    if isinstance(config, Mapping):
        return update_config(AppConfig(), config, "config")
    raise ConfigError(f"config must be an AppConfig, a YAML path or a mapping, got "
                      f"{type(config).__name__}")


def apply_keywords(config: AppConfig, overrides: Mapping[str, Any]) -> AppConfig:
    """``config`` with keyword overrides: a flag's keyword
    (:data:`posetracker.app.flags.API_KEYWORDS`), a section given whole
    (``tracker=TrackerConfig(...)``) or in part (``tracker={"kind": "iou"}``), or a settings
    path with ``__`` for dots (``tracker__poseflow__window=5``)."""
    sections = {f.name for f in dataclasses.fields(AppConfig)}
    for key, value in overrides.items():
        paths = API_KEYWORDS.get(key, (key.replace("__", "."),))
        if paths[0].split(".", 1)[0] not in sections:
            raise ConfigError(f"PoseTracker: unknown setting {key!r} (shortcuts: "
                              f"{', '.join(API_KEYWORDS)}; or a section such as tracker=..., or a "
                              "path such as tracker__poseflow__window=5)")
        for path in paths:
            if isinstance(value, Mapping):
                nested: Any = dict(value)
                for part in reversed(path.split(".")):
                    nested = {part: nested}
                config = update_config(config, nested, "PoseTracker")
            else:
                config = replace_path(config, path, value)
    return config


def build_stages(config: AppConfig):
    """Load the estimator ``config.estimator`` names, with the grouping ``pipeline.association``
    picks, as pipeline stages; returns the :class:`~posetracker.app.pipeline.RMPEStages` and the
    device they run on, as text."""
    from posetracker.app import build
    from posetracker.app.pipeline import RMPEStages

    grouping = build.build_grouping(config.pipeline.association, config.estimator,
                                    config.association)
    from posetracker.app.pipeline import PipelineOptions

    estimator = build.build_estimator(config.estimator, grouping=grouping,
                                      threads=PipelineOptions.from_config(config).torch_threads)
    return RMPEStages(estimator, min_pose_score=config.pipeline.min_pose_score), \
        str(estimator.device)


def model_files(name: str) -> dict[str, str]:
    """The files behind a model name or path, with their SHA-256 (for the output's metadata)."""
    from posetracker.app.models.resolve import resolve_model
    from posetracker.core.errors import PosetrackerError
    from posetracker.core.fileio import sha256_file
    from posetracker.estimators.model_formats import MODEL_FORMATS

    try:
        r = resolve_model(name, fetch_missing=False)
    except PosetrackerError:  # metadata only; the estimator already loaded (or refused) it
        return {}
    files = [r.topology, r.weights]
    implicit = MODEL_FORMATS.get(r.format).implicit_weights
    if implicit and r.weights is None and r.topology is not None:
        files.append(r.topology.with_suffix(implicit))  # the weights its reader finds itself
    return {f.name: sha256_file(f) for f in files if f is not None and f.is_file()}


def _opened(source: Any) -> bool:
    """Whether ``source`` is an opened source (an iterable of ``SourceFrame`` with ``name``,
    ``fps``, ``start_frame``, ``stride`` and ``expected_frames``, e.g. from ``open_source``)."""
    return hasattr(source, "__iter__") and hasattr(source, "expected_frames")


def _open(source: Any, start: int, max_frames: int | None, stride: int):
    from posetracker.io.sources import open_source

    if _opened(source):
        return source
    return open_source(_source_text(source), start_frame=start, max_frames=max_frames,
                       stride=stride)


def _source_text(source: Any) -> str:
    if _opened(source):
        return str(source.name)
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return str(int(source))  # a webcam index
    if isinstance(source, (str, Path)):
        return str(source)
    raise InputError(f"source must be a video file, an image folder, an image or a webcam "
                     f"index, got {type(source).__name__}")


class PoseTracker:
    """Multi-person pose estimation and tracking, as ``posetracker track`` runs it.

    Args:
        config: The settings: an :class:`~posetracker.app.settings.AppConfig`, a YAML file of
            them (as ``--config``), a nested mapping, or ``None`` for the defaults.
        **overrides: Settings on top of ``config``: the command-line flags' keywords
            (:data:`posetracker.app.flags.API_KEYWORDS`: ``device="cpu"``, ``tracker="iou"``,
            ``association="crowdpose"``, ``detector=...``, ``pose_model=...``, ``precision``,
            ``backend``, ``det_batch``, ``pose_batch``, ``mode``, ``threads``, ``min_pose_score``,
            ``render_boxes``, ``format``; ``device``, ``detector``, ``pose_model``, ``precision`` and
            ``backend`` set both the tracking and the per-image estimator), whole or partial sections
            (``tracker={"kind": "iou"}``), or settings paths with ``__`` for dots
            (``pipeline__output__keypoint_threshold=0.3``).

    Models load on first use (``track``/``track_to`` load the tracking estimator, ``estimate``
    the per-image one, ``config.estimate``) and are kept for later calls. Model names resolve
    through the model registry (``POSETRACKER_MODELS`` names a local model folder).

    Raises:
        ConfigError: an unknown setting or a bad value.
    """

    def __init__(self, config: AppConfig | str | Path | Mapping[str, Any] | None = None,
                 **overrides: Any):
        self.config: AppConfig = apply_keywords(_config_from(config), overrides)
        self._stages = None
        self._device = ""
        self._estimator = None

    # -- tracking -----------------------------------------------------------------------------
    def load(self) -> PoseTracker:
        """Load the tracking models now rather than on the first :meth:`track` (e.g. once per
        worker before its first sequence); returns ``self``."""
        self._track_stages()
        return self

    def _track_stages(self):
        if self._stages is None:
            self._stages, self._device = build_stages(self.config)
        return self._stages, self._device

    def _pipeline(self, config: AppConfig):
        """The pipeline's stages, a new tracker and the run's options for ``config``."""
        from posetracker.app.pipeline import PipelineOptions
        from posetracker.tracker import make_tracker

        stages, _ = self._track_stages()
        return stages, make_tracker(config.tracker), PipelineOptions.from_config(config)

    def track(self, source: str | Path | int, *, start: int = 0, max_frames: int | None = None,
              stride: int = 1) -> Iterator[TrackedFrame]:
        """Estimate and track poses in ``source``; yields each frame as soon as its track ids
        are final (a windowed tracker such as PoseFlow finalises a frame some frames later).

        Args:
            source: A video file, an image folder, a glob such as ``"frames/*.jpg"``, a single
                image, a webcam index (``0``), or an already opened source
                (:func:`posetracker.io.sources.open_source`).
            start: First frame to read (0-based).
            max_frames: Read at most this many frames (``None``: all).
            stride: Read every ``stride``-th frame.

        The stages run on threads (``pipeline.mode="threaded"``) while frames are consumed;
        stopping early (``break``, or ``close()`` on the generator) stops and joins them.

        Raises:
            InputError: the source cannot be opened or read (before any model loads when the
                source is unreadable).
        """
        from posetracker.app.pipeline import iter_pipeline

        src = _open(source, start, max_frames, stride)
        frames = iter_pipeline(src, *self._pipeline(self.config))
        try:
            for frame, poses in frames:
                h, w = frame.image.shape[:2]
                yield TrackedFrame(int(frame.index), (int(w), int(h)), poses, frame.name)
        finally:
            frames.close()  # stops and joins the stage threads when the consumer stops early

    def track_to(self, source: str | Path | int, output: str | Path, *,
                 format: OutputFormatName | None = None, jsonl: bool | str | Path | None = None,
                 render: str | Path | None = None, csv: str | Path | None = None,
                 start: int = 0, max_frames: int | None = None, stride: int = 1,
                 progress: Callable[[int, int | None], None] | None = None,
                 inputs: Sequence[str | Path] = ()) -> TrackSummary:
        """Track ``source`` and write the files, exactly as ``posetracker track`` does.

        Args:
            source: As :meth:`track`.
            output: The final JSON file, written atomically at the end with the run's metadata.
                Every file gets the same joints (:class:`posetracker.app.output.OutputPolicy`:
                for the PoseTrack formats, head joints derived and joints under
                ``pipeline.output.keypoint_threshold`` absent).
            format: An output format's name (:data:`posetracker.io.formats.output_formats.
                OUTPUT_FORMATS`: ``posetrack18``, ``posetrack17``, ``coco``; default: the
                settings' ``pipeline.output.format``, ``posetrack18``).
            jsonl: Stream every finished frame to ``<output>.jsonl`` (``True``), to this path,
                or not (``False``); default: the settings' ``pipeline.output.jsonl`` (on).
            render: Also draw the tracked skeletons into this video (H.264 with PyAV, else mp4v).
            csv: Also write one row per frame x track x joint to this file.
            start, max_frames, stride: Frame selection, as :meth:`track`.
            progress: ``progress(n, total)``: called with ``n = 0`` once the run starts (outputs
                open, models loaded), then with the count of frames written after each one;
                ``total`` is the number of frames expected (``None``: unknown).
            inputs: Other files the run reads (its settings files): no output may be one of them.

        Returns:
            The run's :class:`TrackSummary`.

        Raises:
            InputError: an output is an input, another output, cannot be written or is being
                written by another run (:mod:`posetracker.core.outputs`; checked before a model
                loads, nothing is left behind), or the source cannot be read. If the run fails
                or is interrupted, the finished frames stay in the JSON lines, the CSV and the
                rendered video are finalised (removed if writing them failed), and no final JSON
                is written.
        """
        from posetracker.core.outputs import claim_outputs, source_inputs
        from posetracker.io.render import check_render_target
        from posetracker.io.sinks import meta_path

        config = self.config
        if format is not None:
            config = replace_path(config, "pipeline.output.format", format)
        jsonl_path = self.jsonl_path(output, jsonl)
        out = Path(output)
        src = _open(source, start, max_frames, stride)
        # Every output is checked and claimed for the run before a model loads (nothing is left
        # behind by a refused run); the claim goes when the run ends, however it ends.
        claim = claim_outputs({"-o": output, "--jsonl": jsonl_path, "--csv": csv,
                               "--render": render, "-o metadata": meta_path(out)},
                              [*source_inputs(src), *inputs])
        try:
            if render:
                check_render_target(render)  # the writer opened on a dummy frame, before any model
            return self._track_claimed(src, out, config, jsonl_path, render, csv, source,
                                       progress)
        finally:
            claim.release()

    def _track_claimed(self, src, out: Path, config, jsonl_path, render, csv, source,
                       progress) -> TrackSummary:
        """:meth:`track_to` once its outputs are claimed."""
        from posetracker import __version__
        from posetracker.app.output import OutputPolicy
        from posetracker.app.pipeline import run_pipeline
        from posetracker.core.config import to_dict
        from posetracker.io.render import VideoRenderer
        from posetracker.io.sinks import CsvSink, FinalJsonSink, JsonlSink, SinkSet

        stages, device = self._track_stages()
        out_cfg = config.pipeline.output
        fps = src.fps / src.stride if src.fps else 0.0
        sinks = []
        if jsonl_path is not None:
            sinks.append(JsonlSink(jsonl_path))
        # the joints written are decided once, here, for every sink (output.py)
        sinks.append(FinalJsonSink(out, out_cfg.format, src.name))
        if csv:
            sinks.append(CsvSink(csv))
        if render:
            sinks.append(VideoRenderer(render, fps or 25.0, boxes=out_cfg.render_boxes,
                                       trail=out_cfg.render_trail,
                                       kpt_threshold=out_cfg.render_threshold))
        sink = SinkSet(sinks)
        policy = OutputPolicy.for_output(out_cfg)
        stages, tracker, options = self._pipeline(config)
        total = src.expected_frames
        if progress is not None:
            progress(0, total)
        try:
            run = run_pipeline(src, stages, tracker,
                               lambda frame, poses: sink.write(frame, policy(poses)), options,
                               None if progress is None else lambda n: progress(n, total))
        except BaseException:
            sink.abort()
            raise
        meta = {
            "version": __version__,
            "source": {"input": _source_text(source), "frames": run.frames, "fps": src.fps,
                       "start_frame": src.start_frame, "stride": src.stride},
            "models": {m: model_files(m) for m in (config.estimator.detector.model,
                                                   config.estimator.sppe.model)},
            "device": device,
            # what actually ran each model (estimator.backend and .precision resolved)
            "runtimes": stages.runtimes(),
            "config": to_dict(config),
            "timings": run.as_dict(),
        }
        sink.close(meta)
        return TrackSummary(out, None if jsonl_path is None else Path(jsonl_path),
                            None if csv is None else Path(csv),
                            None if render is None else Path(render), run.frames, run.people,
                            run.wall_seconds, run.mode, device, run.ms_per_frame, meta)

    def jsonl_path(self, output: str | Path, jsonl: bool | str | Path | None = None
                   ) -> Path | None:
        """Where :meth:`track_to` streams the JSON lines for ``jsonl`` (see there)."""
        if jsonl is None:
            jsonl = self.config.pipeline.output.jsonl
        if jsonl is True:
            return Path(output).with_suffix(".jsonl")
        if jsonl is False:
            return None
        return Path(jsonl)

    # -- per image ----------------------------------------------------------------------------
    def estimator(self, *, with_detector: bool = True):
        """The per-image estimator of ``config.estimate`` (loaded once; ``with_detector=False``
        when boxes will always be given)."""
        if self._estimator is None or (with_detector and not self._estimator.has_detector):
            from posetracker.app import build

            e = self.config.estimate
            grouping = build.build_grouping(e.association, e.estimator, self.config.association)
            self._estimator = build.build_estimator(e.estimator, with_detector=with_detector,
                                                    grouping=grouping, threads=e.threads)
        return self._estimator

    @property
    def device(self) -> str:
        """Where the models run (once loaded; empty before)."""
        if self._device:
            return self._device
        return str(self._estimator.device) if self._estimator is not None else ""

    def estimate(self, images: Sequence[np.ndarray | str | Path] | np.ndarray | str | Path,
                 boxes: Sequence[np.ndarray] | None = None) -> list[FramePoses]:
        """Each image's people, without tracking, as ``posetracker estimate`` finds them (the
        settings' ``estimate`` section: the estimator at its accuracy settings).

        Args:
            images: ``(H, W, 3)`` uint8 RGB arrays or image files (one, or a sequence).
            boxes: Optional per-image ``(m, 4)`` or ``(m, 5)`` person boxes (xyxy [+ score])
                to use instead of the detector.

        Returns:
            One :class:`FramePoses` per image; ``track_ids`` is ``None``.
        """
        from posetracker.app.pipeline import torch_threads
        from posetracker.io.sources import read_image

        if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray)
                                               and images.ndim == 3):
            images = [images]
        frames = [read_image(im) if isinstance(im, (str, Path)) else im for im in images]
        est = self.estimator(with_detector=boxes is None)
        with torch_threads(self.config.estimate.threads):
            return est.estimate(frames, boxes=boxes)


def evaluate_posetrack(gt_dir: str | Path, pred_dir: str | Path, per_sequence: bool = False,
                       strict_poseval: bool = False):
    """PoseTrack evaluation (per-joint AP, MOTA and its parts, as the official poseval) of the
    prediction files in ``pred_dir`` against the ground truth in ``gt_dir`` (folders, or single
    files); a pandas DataFrame in percent. ``per_sequence=True`` gives a row per sequence.

    Each ground-truth file ``NAME.json`` needs ``PRED/NAME.json`` (when ``pred_dir`` is a folder)
    in either PoseTrack version; the files are read here and scored by
    :func:`posetracker.evaluation.posetrack.evaluate_videos` (``strict_poseval``: see there).
    """
    from posetracker.evaluation.posetrack import evaluate_videos

    gt_videos, pred_videos = read_posetrack_pairs(gt_dir, pred_dir)
    return evaluate_videos(gt_videos, pred_videos, per_sequence=per_sequence,
                           strict_poseval=strict_poseval)


def read_posetrack_pairs(gt_dir: str | Path, pred_dir: str | Path) -> tuple[list, list]:
    """The ground-truth and prediction sequences :func:`evaluate_posetrack` scores, paired in
    order: ``GT/NAME.json`` with ``PRED/NAME.json`` (or the one file with the one file), equal
    frame counts. Raises InputError, one line."""
    from posetracker.io.formats.posetrack import posetrack_files, read_posetrack

    gt_files = posetrack_files(gt_dir)
    pred_path = Path(pred_dir)
    gt_videos, pred_videos = [], []
    for f in gt_files:
        gt_videos.append(read_posetrack(f))
        if pred_path.is_dir():
            pf = pred_path / f.name
            if not pf.is_file():
                raise InputError(f"{pf}: no prediction file for ground-truth sequence {f.name}")
        elif len(gt_files) == 1 and pred_path.is_file():
            pf = pred_path
        else:
            raise InputError(f"{pred_path}: expected a folder of prediction files "
                             f"(or one file when the ground truth is one file)")
        v = read_posetrack(pf)
        if len(v) != len(gt_videos[-1]):
            raise InputError(f"{pf}: {len(v)} frames, but the ground truth {f} has "
                             f"{len(gt_videos[-1])} (one entry per ground-truth frame, in order)")
        v.name = gt_videos[-1].name  # a single prediction file pairs with the single GT file
        pred_videos.append(v)
    if not any(np.isfinite(f.poses.keypoints).all(-1).any() for v in gt_videos
               for f in v.frames if f.labeled):
        # every AP and MOTA would be NaN: say why instead of printing a table of them
        raise InputError(f"{gt_dir}: the ground truth has no person with a labelled joint, so "
                         "there is nothing to score the predictions against")
    return gt_videos, pred_videos


def _coco_inputs(gt: Any, pred: Any) -> tuple[Any, Any]:
    """Ground truth and predictions for the COCO-style evaluations: files read here (the
    evaluations take data in memory), anything else passed on as it is."""
    from posetracker.io.formats.coco import load_coco_results, read_coco_gt

    if isinstance(gt, (str, Path)):
        gt = read_coco_gt(gt)
    if isinstance(pred, (str, Path)):
        pred = load_coco_results(pred)
    return gt, pred


def evaluate_coco(gt: Any, pred: Any):
    """Standard COCO keypoint evaluation (AP, AP50, ..., AR) of ``pred`` (results file, list, or
    ``{image_id: FramePoses}``) against ``gt`` (a COCO file or dict); a pandas DataFrame."""
    from posetracker.evaluation.coco import evaluate_coco as run

    return run(*_coco_inputs(gt, pred))


def evaluate_coco_by_crowd(gt: Any, pred: Any, **kw: Any):
    """COCO keypoint evaluation overall and on the easy / medium / hard images by crowd index
    (:func:`posetracker.evaluation.crowdpose.evaluate_coco_by_crowd`), of files or data as
    :func:`evaluate_coco` takes them; a pandas DataFrame."""
    from posetracker.evaluation.crowdpose import evaluate_coco_by_crowd as run

    return run(*_coco_inputs(gt, pred), **kw)


def evaluate_crowdpose(gt: Any, pred: Any, **kw: Any):
    """CrowdPose evaluation (AP, AR, AP easy/medium/hard) of ``pred`` against ``gt``; a pandas
    DataFrame. COCO-17 predictions are converted to CrowdPose-14."""
    from posetracker.evaluation.crowdpose import evaluate_crowdpose as run

    return run(*_coco_inputs(gt, pred), **kw)


__all__ = [
    "PoseTracker",
    "TrackSummary",
    "TrackedFrame",
    "build_stages",
    "evaluate_coco",
    "evaluate_coco_by_crowd",
    "evaluate_crowdpose",
    "evaluate_posetrack",
    "model_files",
]
