"""``posetracker bench association``: cost of the CrowdPose association, and its AP against pose NMS.

Speed: synthetic crowded frames (:mod:`posetracker.association.synthetic`: every proposal's heatmaps show all the
people inside its crop) at several people counts; milliseconds per frame of candidate extraction
(torch, CPU), graph building, matching + poses, and the association total (graph + matching + poses
from the candidates, what replaces pose NMS), each the fastest of ``--repeat`` runs, median over frames.
One torch thread.

Accuracy (``--coco DIR``, ``--composites DIR``): every image through the estimator as
``posetracker estimate`` runs it (the estimate settings: detector, pose model, flip test; detected
boxes), the SPPE heatmaps kept, and each frame's per-box results grouped three ways: pose NMS
(``nms``), the association on every frame (``crowdpose``) and the ``auto`` rule. COCO keypoint AP
on all images and per ground-truth crowd-index bin (0-0.2, 0.2-0.5, >= 0.5, and >= 0.2); the
per-person breakdown (people lost, of them without a proposal box, duplicates kept, joints given
to the wrong person); and the images where the association differs most from pose NMS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from posetracker.app.benchmarks import int_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "association", help="CrowdPose association: ms/frame at N people; AP vs pose NMS per crowd "
        "bucket", description=__doc__.split("\n\n")[1])
    p.add_argument("--people", default="1,5,15,30", help="people counts of the synthetic frames "
                   "(default: %(default)s)")
    p.add_argument("--frames", type=int, default=20, help="synthetic frames per people count "
                   "(default: %(default)s)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per frame, the fastest kept "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--coco", metavar="DIR", help="also compare AP and errors on a COCO-format "
                   "folder (annotations/*.json + val2017/), e.g. ../shared/data/coco_mini_val2017")
    p.add_argument("--composites", metavar="DIR", help="also on the val and train splits of a "
                   "`train make-crowds` folder")
    p.add_argument("--candidates", action="store_true", help="also measure the candidates against "
                   "the ground truth: response threshold and merge radius (delta_scale)")
    p.add_argument("--worst", type=int, default=5, help="images listed where the association "
                   "does worst and best against pose NMS, per set (default: %(default)s)")
    p.add_argument("--pictures", metavar="FILE.png", help="with --coco/--composites: draw those "
                   "images into one PNG, a row each: ground truth, pose NMS, the association "
                   "(a pose in its person's colour, dark grey: duplicate, light grey: nobody's, "
                   "rings: joints nearer another person's, pale: a person lost)")
    p.add_argument("--pictures-over", choices=("image", "blank"), default="image",
                   help="draw the pictures over the image or a blank page (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set association.delta_scale=3")
    p.add_argument("--out", metavar="FILE", help="also write the tables (.csv, .json or .md; the AP "
                   "table gets the suffix _ap)")
    p.set_defaults(func=run)


# -- speed ----------------------------------------------------------------------------------------
def speed_table(people: list[int], frames: int, seed: int, config, repeat: int = 5):
    """Milliseconds per frame of each association step on synthetic frames, one row per people count.

    Each frame is timed ``repeat`` times and the fastest run kept (on a shared machine the slower
    runs measure the neighbours); the table gives the median and 90th percentile over frames.
    """
    import pandas as pd

    from posetracker.association.assign import assign, assignment_poses
    from posetracker.association.candidates import extract_candidates
    from posetracker.association.graph import build_graph
    from posetracker.association.synthetic import make_scene
    from posetracker.core.schemas import COCO17

    def best(fn):
        times, result = [], None
        for _ in range(max(repeat, 1)):
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        return 1000.0 * min(times), result

    rng = np.random.default_rng(seed)
    sigmas = COCO17.sigma_array()
    rows = []
    for n in people:
        t_cand, t_graph, t_assign, t_total, cands = [], [], [], [], []
        for _ in range(frames):
            scene = make_scene(n, rng)
            ms, cand = best(lambda: extract_candidates(scene.heatmaps, scene.heatmap_to_image, config))
            t_cand.append(ms)
            ms, graph = best(lambda: build_graph(cand, sigmas, config))
            t_graph.append(ms)
            ms, _ = best(lambda: assignment_poses(graph, assign(graph, config), scene.boxes,
                                                  np.ones(n), COCO17, config))
            t_assign.append(ms)

            def whole():
                g = build_graph(cand, sigmas, config)
                return assignment_poses(g, assign(g, config), scene.boxes, np.ones(n), COCO17, config)
            t_total.append(best(whole)[0])
            cands.append(graph.in_graph.sum() / max(n, 1) / COCO17.num_keypoints)
        rows.append({"people": n, "candidates/joint": float(np.mean(cands)),
                     "extract ms": float(np.median(t_cand)), "graph ms": float(np.median(t_graph)),
                     "match+poses ms": float(np.median(t_assign)),
                     "association ms": float(np.median(t_total)),
                     "association p90 ms": float(np.percentile(t_total, 90))})
    return pd.DataFrame(rows).set_index("people")


#: Crowd-index bin limits of the accuracy tables (ground-truth crowd index of each image): bins
#: 0-0.2, 0.2-0.5 and >= 0.5, and all images >= 0.2.
CROWD_LIMITS = (0.2, 0.5)
#: The groupings compared, as ``--association`` names them.
PATHS = ("nms", "crowdpose", "auto")


def accuracy_sets(coco: str | None, composites: str | None) -> list[tuple[str, object, object]]:
    """The evaluated sets ``(name, ground-truth file, image folder)``: a COCO folder
    (``annotations/*.json`` + ``val2017/``) and the validation and train splits of a
    ``train make-crowds`` folder (``val.json`` + ``val/``, ``train.json`` + ``train/``)."""
    from posetracker.core.errors import InputError

    sets = []
    if coco:
        root = Path(coco)
        ann = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
        if not ann:
            raise InputError(f"--coco {root}: no annotations/*.json")
        images = next((d for d in (root / "val2017", root / "images") if d.is_dir()), root)
        sets.append((root.name, ann[0], images))
    if composites:
        root = Path(composites)
        for split in ("val", "train"):
            if not (root / f"{split}.json").is_file():
                raise InputError(f"--composites {root}: no {split}.json (made by train make-crowds)")
            sets.append((f"composites {split}", root / f"{split}.json", root / split))
    return sets


def group_set(config, gt_path, image_dir, log=lambda s: None, stats=None):
    """Every image of one set through the estimator of ``config.estimate`` (detected boxes, its
    models and settings, the SPPE heatmaps kept), each frame grouped by every path of
    :data:`PATHS` from the same per-box results.

    Returns ``(ground truth, {path: {image_id: FramePoses}}, {image_id: proposal boxes},
    {image_id: True where auto associated})``; only poses are kept, frame by frame (and what
    ``stats``, a :class:`CandidateStats`, collects from each frame's candidates).
    """
    import cv2
    import torch

    from posetracker.app import build
    from posetracker.core.errors import InputError
    from posetracker.io.formats.coco import read_coco_gt

    gt = read_coco_gt(gt_path)
    e = config.estimate
    est = build.build_estimator(e.estimator, threads=e.threads)
    groupings = {p: build.build_grouping(p, e.estimator, config.association) for p in PATHS}
    preds: dict = {p: {} for p in PATHS}
    proposals, auto_used = {}, {}
    for n, im in enumerate(gt.images):
        bgr = cv2.imread(str(image_dir / im["file_name"]))
        if bgr is None:
            raise InputError(f"cannot read image {image_dir / im['file_name']}")
        with torch.inference_mode():
            inter = est.intermediates([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)], heatmaps=True,
                                      candidates=0)[0]
        iid = int(im["id"])
        for p, g in groupings.items():
            if p == "auto":
                preds[p][iid], auto_used[iid] = g.group(inter, est.schema, est.person_scores)
            else:
                preds[p][iid] = g(inter, est.schema, est.person_scores)
        proposals[iid] = inter.boxes
        if stats is not None and len(inter.boxes):
            stats.add(gt, iid, inter, config.association)
        if (n + 1) % 20 == 0:
            log(f"  {n + 1}/{len(gt.images)} images")
    return gt, preds, proposals, auto_used


class CandidateStats:
    """What the candidates are worth, measured against the ground truth (``--candidates``).

    - every *secondary* candidate (not a proposal's strongest peak of its joint type): its
      person-weighted response and whether it lies on a ground-truth joint of its type (COCO's
      per-joint OKS term >= 0.5 with some person): the response threshold's precision and recall;
    - every pair of two proposals' strongest candidates of one joint type that both lie on a
      ground-truth joint: their distance in units of ``min(u1, u2) * sigma_k / mean(sigma)``, on
      the same joint (should be one node) or on two people's (should not): the merge radius
      ``delta_scale``.
    """

    THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2)
    DELTAS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)

    def __init__(self) -> None:
        self.score: list = []
        self.on_joint: list = []
        self.same: list = []
        self.other: list = []

    def add(self, gt, iid: int, inter, config) -> None:
        """One frame's proposals (``inter``) against image ``iid`` of ``gt``."""
        from posetracker.association.assign import frame_candidates
        from posetracker.evaluation.grouping_errors import GroundTruthPeople, joint_similarity

        people = GroundTruthPeople.from_annotations(list(gt.annotations_by_image().get(iid, [])),
                                                    gt.num_keypoints)
        if not len(people.area):
            return
        sigmas = _sigmas(gt)
        cand = frame_candidates(inter, config)
        n, k, m = cand.score.shape
        for slot in range(1, m):
            sim = np.nan_to_num(joint_similarity(people, cand.xy[:, :, slot], sigmas), nan=0.0)
            valid = cand.valid[:, :, slot]
            self.score.append(cand.score[:, :, slot][valid])
            self.on_joint.append(sim.max(0)[valid] >= 0.5)
        sim = np.nan_to_num(joint_similarity(people, cand.xy[:, :, 0], sigmas), nan=0.0)
        owner = np.where(sim.max(0) >= 0.5, sim.argmax(0), -1)          # (n, k)
        rel = sigmas / sigmas.mean()
        i, j = np.triu_indices(n, 1)
        d = np.linalg.norm(cand.xy[i, :, 0] - cand.xy[j, :, 0], axis=-1)
        d = d / (np.minimum(cand.size[i, :, 0], cand.size[j, :, 0]) * rel)
        both = (owner[i] >= 0) & (owner[j] >= 0)
        self.same.append(d[both & (owner[i] == owner[j])])
        self.other.append(d[both & (owner[i] != owner[j])])

    def tables(self, name: str):
        """``(threshold rows, delta rows)`` of this set."""
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
        score, on = cat(self.score), cat(self.on_joint).astype(bool)
        same, other = cat(self.same), cat(self.other)
        thr = [{"set": name, "response >=": t, "secondary candidates": int((score >= t).sum()),
                "on a joint": float(on[score >= t].mean()) if (score >= t).any() else float("nan"),
                "of all on a joint": float((on & (score >= t)).sum() / max(on.sum(), 1))}
               for t in self.THRESHOLDS]
        delta = [{"set": name, "delta_scale": t, "same joint merged": float((same <= t).mean()),
                  "two people's merged": float((other <= t).mean()),
                  "wrong pairs": int((same > t).sum() + (other <= t).sum())}
                 for t in self.DELTAS] if len(same) and len(other) else []
        return thr, delta


def ap_rows(name: str, gt, preds: dict, auto_used: dict) -> list[dict]:
    """COCO keypoint AP of each path on all images and per crowd bin (:data:`CROWD_LIMITS`)."""
    from posetracker.evaluation.crowdpose import evaluate_coco_by_crowd

    lo, hi = CROWD_LIMITS
    rows = []
    for path, by_image in preds.items():
        bins = evaluate_coco_by_crowd(gt, by_image, thresholds=CROWD_LIMITS)
        crowded = evaluate_coco_by_crowd(gt, by_image, thresholds=(lo, lo)).loc["hard"]
        row = {"set": name, "path": path}
        parts = (("all", bins.loc["overall"]), (f"ci<{lo:g}", bins.loc["easy"]),
                 (f"ci {lo:g}-{hi:g}", bins.loc["medium"]), (f"ci>={hi:g}", bins.loc["hard"]),
                 (f"ci>={lo:g}", crowded))
        for label, r in parts:
            row[f"AP {label}"] = r["AP"]
        row["images"] = "/".join(str(int(r["images"])) for _, r in parts)
        row["frames associated"] = (len(by_image) if path == "crowdpose" else
                                    sum(auto_used.values()) if path == "auto" else 0)
        rows.append(row)
    return rows


def error_rows(name: str, gt, preds: dict, proposals: dict, worst: int = 5):
    """The per-person breakdown (:mod:`posetracker.evaluation.grouping_errors`) of each path,
    summed over the set, and the ``worst`` images where the association does worst and best
    against pose NMS (by lost + duplicate + wrong-joint counts)."""
    from posetracker.core.coco import crowd_index
    from posetracker.evaluation.grouping_errors import ERROR_KINDS, GroundTruthPeople, error_table

    by_image = gt.annotations_by_image()
    k = gt.num_keypoints
    people = {int(im["id"]): GroundTruthPeople.from_annotations(list(by_image.get(int(im["id"]), [])), k)
              for im in gt.images}
    sigmas = _sigmas(gt)
    tables = {p: error_table(people, preds[p], sigmas, proposals) for p in preds}
    totals = [{"set": name, "path": p, **{e: sum(r[e] for r in t.values()) for e in ERROR_KINDS}}
              for p, t in tables.items()]

    def bad(r: dict) -> int:
        return r["lost"] + r["duplicate"] + r["wrong_joint"]

    files = {int(im["id"]): im["file_name"] for im in gt.images}
    cases = []
    for iid in people:
        a, b = tables["nms"][iid], tables["crowdpose"][iid]
        if a != b:
            cases.append({"set": name, "image_id": iid, "file": files[iid],
                          "crowd index": crowd_index(list(by_image.get(iid, []))),
                          "errors nms": bad(a), "errors crowdpose": bad(b),
                          **{f"{e} (nms/crowdpose)": f"{a[e]}/{b[e]}"
                             for e in ERROR_KINDS[2:]}})
    cases.sort(key=lambda c: c["errors nms"] - c["errors crowdpose"])
    picked = cases[:worst] + [c for c in cases[-worst:][::-1] if c not in cases[:worst]]
    return totals, picked


def _sigmas(gt):
    from posetracker.evaluation.coco import coco_sigmas

    return coco_sigmas(gt)


def accuracy_tables(config, coco: str | None, composites: str | None, worst: int = 5,
                    log=lambda s: None, candidates: bool = False,
                    pictures_over: str | None = None) -> dict:
    """On every set of :func:`accuracy_sets`: AP per path and crowd bin (``"ap"``), the error
    totals (``"errors"``), the images where the association does worst and best against pose
    NMS (``"cases"``), and with ``candidates`` the :class:`CandidateStats` tables
    (``"thresholds"``, ``"deltas"``); each a DataFrame. With ``pictures_over`` (``image`` or
    ``blank``) also ``"pictures"``: the cases drawn (:func:`case_picture`), one RGB row each."""
    import pandas as pd

    rows: dict[str, list] = {"ap": [], "errors": [], "cases": [], "thresholds": [], "deltas": []}
    pictures = []
    for name, gt_path, images in accuracy_sets(coco, composites):
        log(f"{name}: {gt_path}")
        stats = CandidateStats() if candidates else None
        gt, preds, proposals, auto_used = group_set(config, gt_path, images, log, stats)
        rows["ap"] += ap_rows(name, gt, preds, auto_used)
        t, c = error_rows(name, gt, preds, proposals, worst)
        rows["errors"] += t
        rows["cases"] += c
        if pictures_over is not None:
            pictures += [case_picture(case, gt, preds, images, pictures_over) for case in c]
        if stats is not None:
            thr, delta = stats.tables(name)
            rows["thresholds"] += thr
            rows["deltas"] += delta
    index = {"ap": ["set", "path"], "errors": ["set", "path"], "cases": ["set", "image_id"],
             "thresholds": ["set", "response >="], "deltas": ["set", "delta_scale"]}
    out = {key: pd.DataFrame(r).set_index(index[key]) if r else pd.DataFrame()
           for key, r in rows.items()}
    if pictures_over is not None:
        out["pictures"] = pictures
    return out


#: Colours (RGB) of the pictures: a prediction that is nobody's, a duplicate, a misplaced joint.
_NOBODY, _DUPLICATE, _WRONG = (170, 170, 170), (70, 70, 70), (0, 0, 0)
_PANEL_H, _TITLE_H = 280, 24  # pixels: each panel's drawing, its title strip


def case_picture(case: dict, gt, preds: dict, image_dir, over: str = "image") -> np.ndarray:
    """One case of :func:`error_rows` drawn as a row of three panels ``(h, w, 3)`` uint8 RGB.

    The panels: the ground truth (each person in a colour, numbered), then pose NMS's poses and
    the association's, each prediction in the colour of the person it matched
    (:func:`posetracker.evaluation.grouping_errors.match_poses`), dark grey when a duplicate,
    light grey when nobody's, with a black ring on each joint nearer another person's same
    joint, and each person no prediction matched (lost) thin and pale; the titles count lost
    people, duplicates and such joints. Each panel shows the region of the image's people and
    poses, over the image (``over="image"``, paled) or a blank page (``"blank"``), scaled to
    ``_PANEL_H`` pixels high. ``image_dir``: the set's image folder (``case["file"]`` in it)."""
    import cv2

    from posetracker.core.errors import InputError
    from posetracker.core.poses import FramePoses
    from posetracker.evaluation.grouping_errors import GroundTruthPeople, match_poses
    from posetracker.io.render import draw_poses, track_colour

    iid = int(case["image_id"])
    anns = list(gt.annotations_by_image().get(iid, []))
    people = GroundTruthPeople.from_annotations(anns, gt.num_keypoints)
    nms, assoc = preds["nms"][iid], preds["crowdpose"][iid]
    schema = nms.schema
    bgr = cv2.imread(str(Path(image_dir) / case["file"]))
    if bgr is None:
        raise InputError(f"cannot read image {Path(image_dir) / case['file']}")
    h, w = bgr.shape[:2]
    page = (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) // 2 + 128 if over == "image"
            else np.full_like(bgr, 255))
    labelled = ~np.isnan(people.keypoints[..., 0])
    truth = FramePoses.from_keypoints(np.nan_to_num(people.keypoints), labelled.astype(float),
                                      schema, track_ids=np.arange(len(people.area)))
    sigmas = _sigmas(gt)
    # the region of everyone drawn, with a margin, at most the image
    boxes = np.concatenate([people.boxes, nms.boxes, assoc.boxes]).reshape(-1, 4)
    x0, y0 = np.maximum(boxes[:, :2].min(0) - 20, 0) if len(boxes) else (0, 0)
    x1, y1 = np.minimum(boxes[:, 2:].max(0) + 20, [w, h]) if len(boxes) else (w, h)
    region = (slice(int(y0), int(max(y1, y0 + 1))), slice(int(x0), int(max(x1, x0 + 1))))
    t = max(1, round(max(region[0].stop - region[0].start, region[1].stop - region[1].start) / 300))

    def grouping(poses: FramePoses, label: str) -> tuple[np.ndarray, str]:
        m = match_poses(people, poses, sigmas)
        mine = np.flatnonzero(m.owner >= 0)
        out = page
        for g in sorted(set(range(len(people.area))) - set(m.owner[mine].tolist())):
            pale = tuple(int(c + 2 * 255) // 3 for c in track_colour(g))
            out = draw_poses(out, truth.subset([g]), colour=pale, thickness=max(1, t // 2))
        out = draw_poses(out, poses.subset(np.flatnonzero((m.owner < 0) & ~m.duplicate)),
                         colour=_NOBODY, thickness=t)
        out = draw_poses(out, poses.subset(mine).with_track_ids(m.owner[mine]), thickness=t)
        # a duplicate lies on its person's pose (OKS >= 0.5): drawn over it, thinner
        out = draw_poses(out, poses.subset(np.flatnonzero(m.duplicate)), colour=_DUPLICATE,
                         thickness=max(1, t // 2))
        for j, k in zip(*np.nonzero(m.wrong_joint)):
            x, y = poses.keypoints[j, k]
            cv2.circle(out, (int(x), int(y)), 4 * t, _WRONG, t, cv2.LINE_AA)
        lost = len(people.area) - len(mine)
        return out, (f"{label}: lost {lost}, duplicate {int(m.duplicate.sum())}, "
                     f"wrong joints {int(m.wrong_joint.sum())}")

    panels = [(draw_poses(page, truth, thickness=t),
               f"{case['set']} {iid} (crowd index {case['crowd index']:.2f}): "
               f"{len(people.area)} people")]
    panels += [grouping(nms, "pose NMS"), grouping(assoc, "association")]
    drawn = []
    for img, title in panels:
        crop = img[region]
        scale = _PANEL_H / crop.shape[0]
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), _PANEL_H),
                          interpolation=cv2.INTER_AREA)
        width = max(crop.shape[1], 8 * len(title) + 10)
        panel = np.full((_TITLE_H + _PANEL_H + 6, width + 6, 3), 255, np.uint8)
        panel[_TITLE_H: _TITLE_H + _PANEL_H, 3: 3 + crop.shape[1]] = crop
        panel[:, -2:] = 200  # the border between panels
        cv2.putText(panel, title, (4, _TITLE_H - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        drawn.append(panel)
    return np.concatenate(drawn, axis=1)


def save_pictures(rows: list[np.ndarray], path: str) -> None:
    """The rows of :func:`case_picture`, one under the other (white to the widest), as one PNG
    written whole or not at all."""
    import cv2

    from posetracker.core.fileio import atomic_write_bytes

    width = max(r.shape[1] for r in rows)
    page = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)),
                                  constant_values=255) for r in rows])
    ok, png = cv2.imencode(".png", cv2.cvtColor(page, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("OpenCV could not encode the pictures as PNG")
    atomic_write_bytes(path, png.tobytes())


def run(args: argparse.Namespace) -> int:
    import torch

    from posetracker.app.settings import load_app_config
    from posetracker.core.errors import InputError
    from posetracker.evaluation.report import format_table, save_report

    torch.set_num_threads(args.threads)
    if args.pictures and not (args.coco or args.composites):
        raise InputError("--pictures draws the --coco/--composites images: give one of them")
    if args.pictures and not args.pictures.lower().endswith(".png"):
        raise InputError(f"--pictures {args.pictures}: the pictures are written as one .png file")
    config = load_app_config(None, args.overrides)
    people = int_list("--people", args.people)
    speed = speed_table(people, args.frames, args.seed, config.association, args.repeat)
    print(f"association on synthetic crowded frames, CPU, {args.threads} thread(s), fastest of "
          f"{args.repeat} runs per frame, median (and p90) over {args.frames} frames:")
    print(format_table(speed))
    if args.out:
        save_report(speed, args.out)
    if args.coco or args.composites:
        def log(s: str) -> None:
            print(s, file=sys.stderr, flush=True)

        tables = accuracy_tables(config, args.coco, args.composites, args.worst, log,
                                 args.candidates, args.pictures_over if args.pictures else None)
        pictures = tables.pop("pictures", [])
        ap, totals, cases = tables["ap"], tables["errors"], tables["cases"]
        e = config.estimate.estimator
        print(f"\nCOCO keypoint AP by ground-truth crowd index, detected boxes ({e.detector.model}, "
              f"{e.sppe.model}, the estimate settings); frames associated: by the association:")
        print(format_table(ap))
        print("\nper person (lost: no pose at OKS >= 0.5, of them no proposal box; duplicate; "
              "wrong joint: nearer another person's same joint):")
        print(format_table(totals))
        print("\nimages where the association differs most from pose NMS (errors = lost + "
              "duplicate + wrong joints), worst for it first:")
        print(format_table(cases) if len(cases) else "(none)")
        if args.candidates:
            print("\nsecondary candidates (not a proposal's strongest peak) by person-weighted "
                  "response: how many, the share on a ground-truth joint, the share of all those "
                  "on a joint kept:")
            print(format_table(tables["thresholds"]))
            print("\ntwo proposals' strongest candidates on ground-truth joints, merged into one "
                  "node by delta_scale: on the same joint (should) / on two people's (should not):")
            print(format_table(tables["deltas"]))
        if args.pictures:
            if pictures:
                save_pictures(pictures, args.pictures)
                print(f"\n{len(pictures)} images drawn into {args.pictures}")
            else:
                print("\nno image where the groupings differ: no pictures written")
        if args.out:
            p = Path(args.out)
            for suffix, df in tables.items():
                if len(df):
                    save_report(df, p.with_name(f"{p.stem}_{suffix}{p.suffix}"))
    return 0
