"""Building the estimator from settings: the one place where model names become model files.

The domain packages load models from files only (:class:`posetracker.estimators.rmpe.ModelPaths`); the
registry and its cache (:mod:`posetracker.app.models`) belong to the application. Every command and
benchmark that needs the estimator calls :func:`build_estimator` (or, for a single model,
:func:`sppe_files` / :func:`detector_files`), so names resolve the same way everywhere: a registry
name from the cache (fetched on first use when the registry allows), or a user's file path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from posetracker.core.errors import ModelError
from posetracker.estimators.model_formats import MODEL_FORMATS


def sppe_files(model: str, log: Callable[[str], None] | None = None
               ) -> tuple[Path, Path | None]:
    """The files of a pose estimator named by ``model`` (registry name or path): the path to give
    :func:`posetracker.estimators.sppe.load_sppe` and its ``weights`` (``None``: beside the path)."""
    from posetracker.app.checkpoints import checkpoint_sppe_files
    from posetracker.app.models.resolve import resolve_model

    if (trained := checkpoint_sppe_files(model, log)) is not None:  # ``posetracker train sppe``
        return trained
    r = resolve_model(model, log=log)
    if "sppe" in MODEL_FORMATS.get(r.format).stages and r.kind in ("sppe", None):
        # a checkpoint format has no topology: its weights file is the path
        return r.path, r.weights if r.topology is not None else None
    raise ModelError(f"{model}: a {r.kind or r.format} model is not a pose estimator")


def detector_files(model: str, log: Callable[[str], None] | None = None
                   ) -> tuple[Path, Path | None]:
    """The files of a person detector named by ``model`` (registry name or path): topology and
    weights for :func:`posetracker.estimators.rmpe.load_detector`."""
    from posetracker.app.models.resolve import resolve_model

    r = resolve_model(model, log=log)
    if r.kind not in ("detector", None) or "detector" not in MODEL_FORMATS.get(r.format).stages:
        raise ModelError(f"{model}: a {r.kind} model is not a person detector")
    return r.topology, r.weights


def model_paths(config, *, with_detector: bool = True,
                log: Callable[[str], None] | None = None):
    """:class:`posetracker.estimators.rmpe.ModelPaths` of the models an
    :class:`posetracker.estimators.config.EstimatorConfig` names (no detector when ``with_detector`` is off)."""
    from posetracker.estimators.rmpe import ModelPaths

    sppe, sppe_weights = sppe_files(config.sppe.model, log)
    detector = detector_weights = screen = screen_weights = None
    ensemble: tuple = ()
    if with_detector:
        detector, detector_weights = detector_files(config.detector.model, log)
        ensemble = tuple(detector_files(name, log) for name in config.detector.ensemble)
        if config.screen.model:  # it screens detections only
            screen, screen_weights = sppe_files(config.screen.model, log)
    return ModelPaths(sppe, sppe_weights, detector, detector_weights, ensemble, screen,
                      screen_weights)


def build_grouping(method: str, estimator_config, association_config=None):
    """The one place that picks how a frame's per-box poses become its people: ``nms`` (RMPE pose
    NMS with ``estimator_config.nms``), ``crowdpose`` (the joint-candidate association with
    ``association_config``, an ``AssociationConfig``) or ``auto`` (the association on frames
    whose people overlap, pose NMS elsewhere; the rule: ``association_config.auto``). The result
    is passed to the estimator."""
    from posetracker.association.config import AssociationConfig
    from posetracker.estimators.rmpe import PoseNMSGrouping

    config = association_config or AssociationConfig()
    if method == "nms":
        return PoseNMSGrouping(estimator_config.nms)
    if method == "crowdpose":
        from posetracker.association.assign import AssociationGrouping

        return AssociationGrouping(config)
    if method == "auto":
        from posetracker.association.auto import AutoGrouping

        return AutoGrouping(PoseNMSGrouping(estimator_config.nms), config)
    raise ValueError(f"grouping must be 'auto', 'nms' or 'crowdpose', got {method!r}")


def build_estimator(config, *, with_detector: bool = True,
                    log: Callable[[str], None] | None = None, grouping=None, threads: int = 0):
    """The :class:`posetracker.estimators.rmpe.RMPEEstimator` an ``EstimatorConfig`` describes, its model
    names resolved through the registry (``with_detector=False``: boxes will be given;
    ``grouping``: from :func:`build_grouping`, default pose NMS; ``threads``: the torch threads
    per call the caller runs it with, for the native backends, 0: their default)."""
    from posetracker.app.models.resolve import _stderr_log
    from posetracker.estimators.rmpe import RMPEEstimator

    paths = model_paths(config, with_detector=with_detector, log=log)
    estimator = RMPEEstimator.from_config(config, paths, with_detector=with_detector,
                                          grouping=grouping, threads=threads)
    if config.backend not in ("auto", "torch"):
        names = {"detector": config.detector.model, "sppe": config.sppe.model,
                 "screen": config.screen.model}
        ran = {names[stage]: r["backend"] for stage, r in estimator.runtimes().items()}
        if estimator.detector is not None:  # the ensemble's further detectors
            from posetracker.estimators.runtimes.native import backend_of

            members = estimator.detector.members[len(config.detector.sizes):]
            ran.update(zip(config.detector.ensemble, map(backend_of, members)))
        for name, backend in ran.items():
            if backend != config.backend:
                (log or _stderr_log)(f"note: backend {config.backend} cannot run {name}; "
                                     f"it runs on {backend}")
    return estimator
