"""``posetracker bench tracking``: trackers on perturbed Bonn ground truth, scored like poseval.

For every noise level and seed, each ground-truth video loses its track ids and is perturbed as a
detector would (:mod:`posetracker.tracker.perturb`); each tracker (and each PoseFlow variant) tracks the same
perturbed poses. Scores, side by side:

- the PoseTrack evaluation per joint (:mod:`posetracker.evaluation.posetrack`, poseval's rules): MOTA, MOTP,
  AP (means over joints), ID switches, misses and false positives (sums over joints);
- per person, with motmetrics: IDF1, ID switches and fragmentations. A predicted person matches a
  ground-truth person when at least half of the person's annotated joints lie within PCKh 0.5
  (distance ``1 - PCKh``); frames without ground-truth people are skipped, as poseval does;
- frames/s: CPU time of the tracking calls alone (one thread).

Deterministic for given seeds. ``--crossing`` adds the appearance measurement on a video's own
tracked poses (:func:`crossing_rows`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from posetracker.app.benchmarks import int_list

#: Benchmark rows: a tracker kind, or a PoseFlow variant (its settings in :data:`VARIANTS`).
TRACKERS = ("poseflow", "poseflow-online", "poseflow-nojointfill", "poseflow-nofill",
            "poseflow-landed", "poseflow-nonms", "iou", "alphapose", "none")
#: PoseFlow variants: overrides of the default PoseFlow settings.
VARIANTS: dict[str, dict] = {
    "poseflow": {},
    "poseflow-online": {"lookahead": 0},                        # one-frame building
    "poseflow-nojointfill": {"fill_joints": False},             # missed people filled only
    "poseflow-nofill": {"fill_gaps": False, "fill_joints": False},
    # The tracker before look-ahead building and filling (issue 16), for before/after figures.
    "poseflow-landed": {"lookahead": 0, "fill_gaps": False, "fill_joints": False, "w_app": 0.0,
                        "gate": 0.15},
    "poseflow-nonms": {"nms": False},
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tracking", help="trackers on perturbed Bonn PoseTrack ground truth: MOTA, IDF1, frames/s",
        description="Track perturbed Bonn PoseTrack ground truth with each tracker and PoseFlow "
        "variant and score it with the PoseTrack evaluation (MOTA, MOTP, AP, ID switches, misses, "
        "false positives) and per person with motmetrics (IDF1, ID switches, fragmentations), per "
        "noise level and seed.")
    p.add_argument("--bonn", required=True, metavar="annolist.mat",
                   help="Bonn PoseTrack annotation file, e.g. "
                   "../shared/data/bonn_posetrack/annolist/test/annolist.mat")
    p.add_argument("--noise", default="low,moderate,high",
                   help="comma-separated noise levels: none, low, moderate, high "
                   "(default: %(default)s)")
    p.add_argument("--trackers", default=",".join(TRACKERS),
                   help="comma-separated trackers and PoseFlow variants (default: %(default)s)")
    p.add_argument("--seeds", default="0,1",
                   help="comma-separated random seeds of the perturbation (default: %(default)s)")
    p.add_argument("--seed", type=int, metavar="N", help="one seed (same as --seeds N)")
    p.add_argument("--videos", type=int, default=0, metavar="N",
                   help="use the first N videos only (default: all)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a tracker setting, e.g. --set tracker.poseflow.window=12")
    p.add_argument("--speed-video", metavar="VIDEO",
                   help="also time the trackers with ORB on this video's frames resized to "
                   "960x540 (e.g. ../shared/data/videos/two_people.mp4)")
    p.add_argument("--speed-frames", type=int, default=100, metavar="N",
                   help="frames for the speed runs with images (default: %(default)s)")
    p.add_argument("--crossing", metavar="TRACKED.json",
                   help="also measure the appearance cue: a PoseTrack file of a video's poses "
                   "whose track ids are right (checked by eye), perturbed and re-tracked with the "
                   "frames (--crossing-frames) with and without the torso histograms")
    p.add_argument("--crossing-frames", metavar="DIR", help="the frames of --crossing's video")
    p.add_argument("--crossing-seeds", default="0,1,2,3,4",
                   help="perturbation seeds of --crossing (default: %(default)s)")
    p.add_argument("--crossing-weights", default="0,1",
                   help="torso histogram weights w_app compared by --crossing "
                   "(default: %(default)s)")
    p.add_argument("--out", metavar="FILE", help="also write the table: .csv, .json or .md")
    p.set_defaults(func=run)


def tracker_config(name: str, overrides=()):
    """The :class:`TrackerConfig` of a benchmark row: a tracker kind, or a PoseFlow variant of
    :data:`VARIANTS` (its settings applied over the defaults, before ``overrides``, which are
    ``--set`` keys rooted at the whole settings: ``tracker.poseflow.window=12``)."""
    from posetracker.app.settings import load_section

    if name in VARIANTS:
        variant = [f"tracker.poseflow.{k}={v}" for k, v in VARIANTS[name].items()]
        return dataclasses.replace(load_section("tracker", [*variant, *overrides]), kind="poseflow")
    return dataclasses.replace(load_section("tracker", overrides), kind=name)


def person_distances(gt, pred) -> np.ndarray:
    """``(G, P)`` per-person distances ``1 - PCKh`` (NaN under PCKh 0.5) between ground-truth and
    predicted people of one frame, in PoseTrack 2017 joints, head size from the head box."""
    from posetracker.core.schemas import POSETRACK17, convert_keypoints
    from posetracker.evaluation.posetrack import HEAD_SIZE_FACTOR, PCKH_THRESHOLD

    g, _ = convert_keypoints(gt.keypoints, gt.keypoint_scores, gt.schema, POSETRACK17)
    p, _ = convert_keypoints(pred.keypoints, pred.keypoint_scores, pred.schema, POSETRACK17)
    out = np.full((len(g), len(p)), np.nan)
    if not len(g) or not len(p) or gt.head_boxes is None:
        return out
    head = HEAD_SIZE_FACTOR * np.linalg.norm(gt.head_boxes[:, 2:] - gt.head_boxes[:, :2], axis=1)
    d = np.linalg.norm(g[:, None] - p[None], axis=-1) / head[:, None, None]   # (G, P, 15)
    annotated = np.isfinite(g).all(-1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pck = (d <= PCKH_THRESHOLD).sum(-1) / annotated[:, None]
    return np.where(pck >= 0.5, 1.0 - pck, np.nan)


def person_metrics(gt_videos, pred_videos) -> dict[str, float]:
    """IDF1 (percent), ID switches and fragmentations per person, with motmetrics."""
    import motmetrics as mm

    accs = []
    for gv, pv in zip(gt_videos, pred_videos):
        acc = mm.MOTAccumulator(auto_id=True)
        for gf, pf in zip(gv.frames, pv.frames):
            if len(gf.poses) == 0:
                continue
            g_ids = (gf.poses.track_ids if gf.poses.track_ids is not None
                     else np.arange(len(gf.poses)))
            p_ids = pf.poses.track_ids if pf.poses.track_ids is not None else np.zeros(0)
            acc.update(list(g_ids), list(p_ids), person_distances(gf.poses, pf.poses))
        accs.append(acc)
    summary = mm.metrics.create().compute_many(
        accs, metrics=["idf1", "num_switches", "num_fragmentations"], generate_overall=True)
    row = summary.loc["OVERALL"]
    return {"IDF1": 100.0 * float(row["idf1"]), "person switches": int(row["num_switches"]),
            "fragments": int(row["num_fragmentations"])}


def run_benchmark(gt_videos, levels: list[str], trackers: list[str], seeds: int | list[int],
                  overrides=()):
    """One row per (noise level, seed, tracker): the columns of the module docstring."""
    import pandas as pd

    from posetracker.evaluation.posetrack import evaluate_videos_per_joint
    from posetracker.tracker import make_tracker, track_frames
    from posetracker.tracker.perturb import NOISE_LEVELS, perturb_video

    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    rows = []
    for level in levels:
        for seed in seeds:
            noisy = [perturb_video(v, NOISE_LEVELS[level], seed + i)
                     for i, v in enumerate(gt_videos)]
            for name in trackers:
                tracker = make_tracker(tracker_config(name, overrides))
                preds, seconds, frames = [], 0.0, 0
                for v in noisy:
                    start = time.process_time()  # CPU time: steadier than wall time
                    out = track_frames(tracker, [f.poses for f in v.frames])
                    seconds += time.process_time() - start
                    frames += len(out)
                    preds.append(dataclasses.replace(
                        v, frames=[dataclasses.replace(f, poses=o) for f, o in zip(v.frames, out)]))
                joints = evaluate_videos_per_joint(gt_videos, preds)
                rows.append({"noise": level, "seed": seed, "tracker": name,
                             "MOTA": float(joints["MOTA"].mean()),
                             "MOTP": float(joints["MOTP"].mean()),
                             "AP": float(joints["AP"].mean()),
                             "ID switches": int(joints["ID switches"].sum()),
                             "misses": int(joints["Misses"].sum()),
                             "false pos.": int(joints["False positives"].sum()),
                             **person_metrics(gt_videos, preds),
                             "frames/s": frames / max(seconds, 1e-9)})
    return pd.DataFrame(rows).set_index(["noise", "seed", "tracker"])


def walking_people(n_frames: int, n_people: int = 5, width: float = 960.0):
    """Synthetic frames: ``n_people`` walking people (PoseTrack 2017 joints), for speed runs."""
    from posetracker.core.poses import FramePoses
    from posetracker.core.schemas import POSETRACK17

    rng = np.random.default_rng(0)
    template = rng.normal(0, 40, (POSETRACK17.num_keypoints, 2)) * (0.5, 1.5)
    frames = []
    for t in range(n_frames):
        kp = np.stack([template + (60 + (width - 120) * (i + 0.5) / n_people + 1.5 * t
                                   * (-1) ** i, 270) for i in range(n_people)])
        kp = kp + rng.normal(0, 2, kp.shape)
        frames.append(FramePoses.from_keypoints(kp, np.full(kp.shape[:2], 0.9), POSETRACK17))
    return frames


def speed_rows(trackers: list[str], n_frames: int = 1000, images=None, overrides=()):
    """CPU frames/s of each tracker on 5 walking people per frame (with ``images``: one per frame,
    ORB and torso histograms on)."""
    from posetracker.tracker import make_tracker, track_frames

    frames = walking_people(len(images) if images is not None else n_frames)
    rows = []
    for name in trackers:
        tracker = make_tracker(tracker_config(name, overrides))
        start = time.process_time()
        track_frames(tracker, frames, images)
        rows.append({"tracker": name, "images": "960x540 + ORB" if images is not None else "none",
                     "frames": len(frames),
                     "frames/s": len(frames) / max(time.process_time() - start, 1e-9)})
    return rows


def crossing_rows(reference, images, levels: list[str], seeds: list[int], overrides=(),
                  weights=(0.0, 1.0)):
    """The appearance cue measured where geometry is ambiguous.

    ``reference`` is a video's tracked poses whose ids are right (e.g. basketball_crossing.mp4,
    the players checked by their shirts); each seed perturbs it (track ids give the misses and
    duplicates their persons), PoseFlow re-tracks it with the frames (ORB on) with each torso
    histogram weight ``w_app`` in ``weights``, and the ids are scored against the reference per
    person (IDF1, ID switches; a person matches within 0.3 of the person size, mean joint
    distance, since the reference has no head boxes).
    """
    import motmetrics as mm
    import pandas as pd

    from posetracker.core.poses import keypoint_boxes
    from posetracker.tracker import make_tracker, track_frames
    from posetracker.tracker.perturb import NOISE_LEVELS, perturb_video
    from posetracker.tracker.similarity import person_scale

    def distances(g, p):
        out = np.full((len(g), len(p)), np.nan)
        if not len(g) or not len(p):
            return out
        d = np.linalg.norm(g.keypoints[:, None] - p.keypoints[None], axis=-1)  # NaN: absent
        ok = np.isfinite(d)
        mean = np.where(ok.any(-1), np.where(ok, d, 0.0).sum(-1) / np.maximum(ok.sum(-1), 1),
                        np.inf) / person_scale(keypoint_boxes(g.keypoints))[:, None]
        return np.where(mean < 0.3, mean, np.nan)

    rows = []
    for level in levels:
        for w in weights:
            switches, idf1 = [], []
            for seed in seeds:
                v = perturb_video(reference, NOISE_LEVELS[level], seed)
                tracker = make_tracker(tracker_config("poseflow", [*overrides,
                                                                   f"tracker.poseflow.w_app={w}"]))
                out = track_frames(tracker, [f.poses for f in v.frames], images)
                acc = mm.MOTAccumulator(auto_id=True)
                for g, p in zip(reference.frames, out):
                    ids = g.poses.track_ids if g.poses.track_ids is not None else np.zeros(0)
                    acc.update(list(ids), list(p.track_ids), distances(g.poses, p))
                s = mm.metrics.create().compute(acc, metrics=["num_switches", "idf1"])
                switches.append(int(s["num_switches"].iloc[0]))
                idf1.append(100.0 * float(s["idf1"].iloc[0]))
            rows.append({"noise": level, "w_app": w, "seeds": len(seeds),
                         "ID switches": sum(switches), "IDF1": float(np.mean(idf1)),
                         "switches per seed": " ".join(map(str, switches))})
    return pd.DataFrame(rows)


def read_speed_frames(path: str, n: int, size=(960, 540)):
    """The first ``n`` frames of a video resized to ``size`` (BGR uint8)."""
    import cv2

    from posetracker.core.errors import InputError

    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < n:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        raise InputError(f"{path}: cannot read video frames")
    return frames


def _read_crossing(args):
    """The ``--crossing`` reference and its frames (every frame's image, in order)."""
    import cv2

    from posetracker.app.commands.track_cmd import frame_images
    from posetracker.core.errors import InputError
    from posetracker.io.formats.posetrack import read_posetrack

    if not args.crossing_frames:
        raise InputError("--crossing needs --crossing-frames DIR")
    reference = read_posetrack(args.crossing)
    images = []
    for path in frame_images(reference, args.crossing_frames):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"{path}: cannot read image")
        images.append(img)
    return reference, images


def run(args) -> int:
    from posetracker.core.errors import InputError
    from posetracker.evaluation.report import format_table, save_report
    from posetracker.io.formats.bonn import read_bonn_mat
    from posetracker.tracker.perturb import NOISE_LEVELS

    levels = [s.strip() for s in args.noise.split(",") if s.strip()]
    trackers = [s.strip() for s in args.trackers.split(",") if s.strip()]
    seeds = [args.seed] if args.seed is not None else int_list("--seeds", args.seeds)
    crossing_seeds = int_list("--crossing-seeds", args.crossing_seeds)
    for lv in levels:
        if lv not in NOISE_LEVELS:
            raise InputError(f"unknown noise level {lv!r} (known: {', '.join(NOISE_LEVELS)})")
    for tr in trackers:
        if tr not in TRACKERS:
            raise InputError(f"unknown tracker {tr!r} (known: {', '.join(TRACKERS)})")
    crossing = _read_crossing(args) if args.crossing else None
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # one core: ORB timings are not spread over threads
    videos = read_bonn_mat(args.bonn)
    if args.videos > 0:
        videos = videos[:args.videos]
    df = run_benchmark(videos, levels, trackers, seeds, args.set)
    n_frames = sum(len(v) for v in videos)
    print(f"{len(videos)} videos, {n_frames} frames, seeds {','.join(map(str, seeds))}; "
          "MOTA/MOTP/AP in percent (PoseTrack evaluation, mean over joints); ID switches, misses "
          "and false positives summed over joints; IDF1, person switches and fragments per "
          "person (motmetrics)")
    print(format_table(df.reset_index(), digits=2))
    sys.stdout.flush()
    if args.out:
        save_report(df.reset_index(), args.out)
    import pandas as pd

    speed = speed_rows(trackers, overrides=args.set)
    if args.speed_video:
        images = read_speed_frames(args.speed_video, args.speed_frames)
        speed += speed_rows([t for t in trackers if t in ("poseflow", "poseflow-online",
                                                          "alphapose")],
                            images=images, overrides=args.set)
    print("\nSpeed: 5 walking people per frame, CPU time of the tracking calls, one thread")
    print(format_table(pd.DataFrame(speed), digits=1))
    if crossing is not None:
        reference, images = crossing
        try:
            weights = [float(w) for w in args.crossing_weights.split(",") if w.strip()]
        except ValueError:
            raise InputError(f"--crossing-weights {args.crossing_weights!r}: expected "
                             "comma-separated numbers") from None
        table = crossing_rows(reference, images, levels, crossing_seeds, args.set, weights)
        print(f"\nAppearance: {args.crossing} perturbed and re-tracked with its frames, "
              "PoseFlow with and without torso histograms (w_app)")
        print(format_table(table, digits=1))
    return 0
