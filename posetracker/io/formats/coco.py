"""COCO keypoint files: ground truth (COCO, CrowdPose) and keypoint results, read and written.

The layout, its checks and its conversions to and from :class:`FramePoses` are
:mod:`posetracker.core.coco`; this module reads and writes the files. Results files are written
with absent joints as ``0, 0, 0``; reading, exactly ``(0, 0, 0)`` is an absent joint (NaN in
:class:`FramePoses`). The evaluators read results lists through
:func:`~posetracker.core.coco.validate_coco_results`, so they score exactly the numbers in the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from posetracker.core.coco import (
    CocoDataset,
    CocoFrames,
    CocoResults,
    check_crowdpose_gt,
    frames_to_coco_results,
    results_to_frames,
    validate_coco_results,
)
from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write_text, read_input_text
from posetracker.core.poses import FramePoses, VideoPoses
from posetracker.core.schemas import COCO17, KeypointSchema

PathLike = str | os.PathLike


def load_json(path: PathLike) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file raises :class:`InputError`."""
    p = Path(path)
    try:
        return json.loads(read_input_text(p))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, expected a JSON file") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: malformed JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read ({e})") from None


def read_coco_gt(path: PathLike) -> CocoDataset:
    """Read and validate a COCO-layout keypoint ground-truth file."""
    return CocoDataset.from_dict(load_json(path), source=str(path))


def read_crowdpose_gt(path: PathLike) -> CocoDataset:
    """Read CrowdPose ground truth: COCO layout, 14 joints, a numeric ``crowdIndex`` per image."""
    ds = read_coco_gt(path)
    check_crowdpose_gt(ds)
    return ds


# -- results ---------------------------------------------------------------------------------
def load_coco_results(path: PathLike) -> CocoResults:
    """A results file parsed but not yet checked, for an evaluation to check against its ground
    truth; a missing, unreadable or malformed file raises :class:`InputError`."""
    return CocoResults(load_json(path), str(path))


def read_coco_results(path: PathLike, schema: KeypointSchema = COCO17) -> dict[int, FramePoses]:
    """Read a keypoint results file into ``{image_id: FramePoses}``.

    Joints stored as ``(0, 0, 0)`` become absent (NaN, score 0); the joint's third value is its
    score; ``score`` is the person score; ``bbox`` (xywh) gives the box, else the joints' tight box.
    """
    results = validate_coco_results(load_json(path), str(path), schema.num_keypoints)
    return results_to_frames(results, schema)


def write_coco_results(
    frames: CocoFrames, path: PathLike, category_id: int = 1, schema: KeypointSchema | None = None
) -> None:
    """Write a keypoint results file (see :func:`frames_to_coco_results`) atomically."""
    atomic_write_text(path, json.dumps(frames_to_coco_results(frames, category_id, schema)))


def write_coco_keypoints(video: VideoPoses, path: PathLike, *, derive_head: bool = False,
                         min_score: float = 0.0) -> None:
    """The ``coco`` output format's writer: ``video`` as a COCO-17 keypoint results list, every
    joint with its score (COCO AP ranks joints by score itself: ``derive_head`` and
    ``min_score`` do not apply)."""
    write_coco_results(video, path, schema=COCO17)
