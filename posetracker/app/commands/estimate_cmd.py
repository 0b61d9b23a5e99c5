"""``posetracker estimate SOURCE -o preds.json``: per-frame multi-person poses (RMPE) as COCO
keypoint results, for an image, an image folder (or glob) or a video.

Frames are read and estimated a batch at a time (memory does not grow with the video); each
finished frame can be streamed to a JSON-lines file (``--jsonl``); the results file is written
atomically at the end, so it is either complete or absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from posetracker.app.commands.settings_args import (
    add_config_options,
    config_files,
    default,
    dump,
    settings,
)
from posetracker.core.errors import InputError
from posetracker.core.outputs import POLICY


def add_estimator_options(p: argparse.ArgumentParser, threads: int | None = None) -> None:
    """Options shared by ``estimate``, ``fit-nms`` and the estimator benchmarks: the settings'
    ``estimate`` section. ``threads``: a benchmark's own default for ``--threads`` (default:
    the setting's, ``estimate.threads``)."""
    g = p.add_argument_group("estimator (settings section estimate)")
    add_config_options(g)
    e = "estimate.estimator"
    g.add_argument("--pose-model", metavar="NAME|PATH", help="pose estimator: registry "
                   "name (tinypose-256x192, tinypose-128x96, movenet-thunder, ...) or a model file "
                   f"({e}.sppe.model, default: {default(e + '.sppe.model')})")
    g.add_argument("--detector", metavar="NAME|PATH", help="person detector: registry name "
                   "(rtmdet-nano, picodet-s-320, centernet, ...) or an RTMDet .onnx, PicoDet .xml, "
                   f"Darknet .cfg or TF.js model.json path ({e}.detector.model, default: "
                   f"{default(e + '.detector.model')})")
    g.add_argument("--device", metavar="auto|cpu|cuda[:N]", help="where the models run "
                   f"({e}.device, default: {default(e + '.device')})")
    g.add_argument("--backend", choices=("auto", "torch", "openvino", "onnxruntime"),
                   help=f"what runs the models' graphs ({e}.backend, default: "
                   f"{default(e + '.backend')} = torch on CUDA, else the fastest installed CPU "
                   "runtime for each model)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help=f"SPPE arithmetic ({e}.precision, default: {default(e + '.precision')} "
                   "= bf16 on CPUs with AMX, else fp32; fp16 on CUDA)")
    g.add_argument("--half", action="store_true", default=None,
                   help="the same as --precision fp16 (CUDA; default: off)")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="flip test: average with the mirrored crops "
                   f"({e}.sppe.flip_test, default: {default(e + '.sppe.flip_test')})")
    g.add_argument("--nms", choices=("rmpe", "alphapose", "none"), help="pose NMS mode "
                   f"({e}.nms.mode, default: {default(e + '.nms.mode')})")
    g.add_argument("--frame-batch", type=int, metavar="N", help="frames per detector/crop batch "
                   f"({e}.frame_batch, default: {default(e + '.frame_batch')})")
    g.add_argument("--threads", type=int, default=threads, metavar="N",
                   help="torch CPU threads; 0 = torch's default (estimate.threads, default: "
                   f"{default('estimate.threads') if threads is None else threads})")


def app_settings(args: argparse.Namespace):
    """The :class:`~posetracker.app.settings.AppConfig` of an estimator command."""
    return settings(args, "estimate")


def estimator_config(args: argparse.Namespace):
    """The :class:`EstimatorConfig` an estimator command runs (``estimate.estimator``)."""
    return app_settings(args).estimate.estimator


def set_threads(args: argparse.Namespace) -> None:
    """A benchmark process's torch threads from ``--threads`` (0 leaves torch's default); the
    commands pass the count down instead (``estimate.threads``)."""
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate", help="multi-person poses per frame (RMPE) -> COCO keypoint results",
        description="Detect people, estimate each one's pose, remove duplicates with parametric "
        "pose NMS, and write COCO keypoint results (image_id, category_id, keypoints, score, bbox).",
        epilog=POLICY)
    p.add_argument("source", nargs="?", metavar="SOURCE",
                   help="an image, an image folder, a glob, or a video")
    p.add_argument("-o", "--output", metavar="JSON", help="results file (written "
                   "atomically at the end; required)")
    p.add_argument("--jsonl", metavar="PATH", help="also stream each finished frame to this "
                   "JSON-lines file (default: none)")
    p.add_argument("--gt", metavar="COCO_JSON", help="COCO ground truth whose images' file names "
                   "give the image ids (default: the number in the file name, or the frame index)")
    p.add_argument("--gt-boxes", action="store_true", help="use the --gt people's boxes instead of "
                   "the detector (pose AP with ground-truth boxes; default: off)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames "
                   "(default: all)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar (shown on a "
                   "terminal only) and no summary line (default: off)")
    from posetracker.app.settings import ASSOCIATIONS

    p.add_argument("--association", choices=ASSOCIATIONS, default=None,
                   help="group each frame's per-box poses by parametric pose NMS, by CrowdPose "
                   "joint-candidate association, or auto: the association on images whose "
                   "proposals overlap, pose NMS elsewhere (estimate.association, default: "
                   f"{default('estimate.association')})")
    add_estimator_options(p)
    p.set_defaults(func=run)


def image_id_for(name: str, index: int, ids_by_name: dict[str, int] | None) -> int:
    """COCO image id of a frame: from the ground truth's file names, else the digits of the file
    stem (``000000000785.jpg`` -> 785), else the frame index."""
    base = Path(name).name
    if ids_by_name is not None:
        if base not in ids_by_name:
            raise InputError(f"{name}: not an image of the --gt file")
        return ids_by_name[base]
    stem = Path(base).stem
    return int(stem) if stem.isdigit() else index


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for it in items:
        batch.append(it)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def estimate_source(estimator, frames: Iterable, batch: int,
                    boxes_for: Callable[[str], np.ndarray] | None = None,
                    on_frame: Callable | None = None) -> Iterator[tuple]:
    """Run ``estimator`` over ``SourceFrame``s a batch at a time; yields ``(frame, poses)``.

    ``boxes_for(name)`` gives a frame's person boxes (``(m, 4|5)``) instead of the detector.
    """
    for chunk in batched(frames, batch):
        images = [f.image for f in chunk]
        boxes = None if boxes_for is None else [boxes_for(f.name) for f in chunk]
        for f, poses in zip(chunk, estimator.estimate(images, boxes=boxes)):
            if on_frame is not None:
                on_frame(f, poses)
            yield f, poses


def gt_boxes_lookup(dataset) -> tuple[dict[str, int], Callable[[str], np.ndarray]]:
    """File name -> image id, and a ``boxes_for(name)`` of the ground truth's non-crowd people."""
    ids = {Path(im["file_name"]).name: int(im["id"]) for im in dataset.images}
    boxes: dict[int, list] = {i: [] for i in ids.values()}
    for a in dataset.annotations:
        if not a.get("iscrowd") and "bbox" in a:
            x, y, w, h = a["bbox"]
            boxes.setdefault(int(a["image_id"]), []).append([x, y, x + w, y + h, 1.0])

    def boxes_for(name: str) -> np.ndarray:
        return np.array(boxes.get(ids.get(Path(name).name, -1), []), dtype=np.float64).reshape(-1, 5)
    return ids, boxes_for


def estimate_coco_images(estimator, dataset, images_dir: str | Path, batch: int,
                         gt_boxes: bool = False,
                         boxes: Callable[[str], np.ndarray] | None = None) -> dict:
    """``{image_id: FramePoses}`` of ``estimator`` on every image of a COCO-layout ``dataset``
    (files looked up by name in ``images_dir``), with the detector, the GT people's boxes
    (``gt_boxes``), or ``boxes(file_name)`` ``(m, 5)`` (e.g. a detector's, computed once)."""
    from posetracker.io.sources import read_image

    boxes_for = boxes
    if gt_boxes:
        _, boxes_for = gt_boxes_lookup(dataset)
    out = {}
    imgs = list(dataset.images)
    for s in range(0, len(imgs), batch):
        chunk = imgs[s: s + batch]
        names = [Path(im["file_name"]).name for im in chunk]
        frames = []
        for name in names:
            path = Path(images_dir) / name
            if not path.is_file():
                raise InputError(f"{path}: image of {dataset.source} not found")
            frames.append(read_image(path))
        given = None if boxes_for is None else [boxes_for(n) for n in names]
        for im, poses in zip(chunk, estimator.estimate(frames, boxes=given)):
            out[int(im["id"])] = poses
    return out


def run(args: argparse.Namespace) -> int:
    from posetracker.core.outputs import claim_outputs, source_inputs
    from posetracker.io.sources import open_source

    config = app_settings(args)
    if args.dump_config:
        return dump(config)
    if not args.source or not args.output:
        raise InputError("estimate needs SOURCE and -o JSON")
    if args.gt_boxes and not args.gt:
        raise InputError("--gt-boxes needs --gt COCO_JSON")
    source = open_source(args.source, max_frames=args.max_frames)
    with claim_outputs({"-o": args.output, "--jsonl": args.jsonl},
                       [*source_inputs(source), args.gt, *config_files(args)]):
        return _estimate(args, config, source)


def _estimate(args: argparse.Namespace, config, source) -> int:
    """``estimate`` once its outputs are claimed."""
    from posetracker.app.api import PoseTracker
    from posetracker.app.commands.track_cmd import _progress
    from posetracker.core.coco import frames_to_coco_results
    from posetracker.io.formats.coco import read_coco_gt
    from posetracker.io.sinks import JsonlSink, atomic_write

    ids_by_name, boxes_for = None, None
    if args.gt:
        ids_by_name, lookup = gt_boxes_lookup(read_coco_gt(args.gt))
        boxes_for = lookup if args.gt_boxes else None
    tracker = PoseTracker(config)
    tracker.estimator(with_detector=not args.gt_boxes)  # load the models before the clock starts
    sink = JsonlSink(args.jsonl) if args.jsonl else None
    results: list[dict] = []
    t0 = time.perf_counter()
    n_frames = 0
    bar = _progress(source.expected_frames, args.quiet)  # on a terminal only, as track's
    try:
        for frame, poses in estimate_source(tracker, source, config.estimate.estimator.frame_batch,
                                            boxes_for, on_frame=sink.write if sink else None):
            image_id = image_id_for(frame.name, frame.index, ids_by_name)
            results.extend(frames_to_coco_results([(image_id, poses)]))
            n_frames += 1
            bar.update(1)
    except BaseException:
        bar.close()
        if sink:
            sink.abort()
        raise
    bar.close()
    if sink:
        sink.close({})

    def write(tmp: Path) -> None:
        import json
        tmp.write_text(json.dumps(results))
    atomic_write(args.output, write)
    if not args.quiet:
        dt = time.perf_counter() - t0
        print(f"{n_frames} frames, {len(results)} people, {n_frames / max(dt, 1e-9):.2f} frames/s "
              f"on {tracker.device} -> {args.output}", file=sys.stderr)
    return 0
