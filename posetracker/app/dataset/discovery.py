"""Finding a dataset's sequences: video files and folders of frames under a root, with names
unique across the tree (``OUT_DIR/<name>.json``), and what identifies each one's input."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from posetracker.core.errors import InputError

#: Video files a sequence can be (frame folders: :data:`posetracker.io.sources.IMAGE_SUFFIXES`).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                            ".wmv", ".flv", ".mts", ".ts"})
#: Folder in OUT_DIR holding one finished-sequence record each (the resume state).


@dataclass(frozen=True)
class Sequence:
    """One sequence of a dataset.

    Attributes:
        name: Output stem: ``OUT_DIR/<name>.json``. The folder's name (frames) or the file's stem
            (videos); where two sequences would share one, the path under ROOT instead, with
            ``__`` for ``/`` (and ``_<suffix>`` for videos that differ only by suffix).
        path: The video file or the frame folder.
        kind: ``video`` or ``frames``.
        rel: ``path`` relative to ROOT (POSIX; ``.`` when ROOT is the sequence).
    """

    name: str
    path: Path
    kind: str
    rel: str


def images_in(folder: Path) -> list[str]:
    from posetracker.io.sources import IMAGE_SUFFIXES

    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [e.name for e in entries if not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()]


def _without_masks(found: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """``found`` less PoseTrack's ignore-region masks: a frame folder ``.../mask/<split>/<seq>``
    when ``.../images/<split>/<seq>`` is found too (the masks of its frames, no sequence)."""
    folders = {p for p, k in found if k == "frames"}

    def is_mask(p: Path) -> bool:
        parts = p.parts
        return any(part in ("mask", "masks") and Path(*parts[:i], "images", *parts[i + 1:])
                   in folders for i, part in enumerate(parts))

    return [(p, k) for p, k in found if k != "frames" or not is_mask(p)]


def discover(root: str | Path, exclude: Iterable[str | Path] = ()) -> list[Sequence]:
    """Every sequence under ``root``, sorted by name: video files and folders that hold images,
    at any depth (hidden files and folders, the folders in ``exclude``, and PoseTrack's
    ``mask/<split>/<seq>`` beside ``images/<split>/<seq>`` left out; symbolic links followed
    once). ``root`` itself may be a video file or a frame folder.

    Names are unique and depend only on the tree: the folder name or video stem, and for
    sequences that would share one (compared case-insensitively), their path under ``root``.

    Raises:
        InputError: ``root`` does not exist, or holds no sequence.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder")
    found: list[tuple[Path, str]] = []
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"{root}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or a "
                             "folder")
        found.append((root, "video"))
        root_dir = root.parent
    else:
        root_dir = root
        skip = {os.path.realpath(p) for p in exclude}
        seen: set[str] = set()
        unreadable: list[OSError] = []  # a folder that cannot be listed may hold sequences
        for here, dirs, files in os.walk(root, onerror=unreadable.append, followlinks=True):
            real = os.path.realpath(here)
            if real in seen or real in skip:  # a link cycle, or the output folder
                dirs[:] = []
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if images_in(Path(here)):
                found.append((Path(here), "frames"))
            found += [(Path(here) / f, "video") for f in sorted(files)
                      if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES]
        if unreadable:  # refused, not skipped: a run that leaves sequences out is no success
            e = unreadable[0]
            raise InputError(f"cannot read {e.filename}: {e.strerror or e}")
    found = _without_masks(found)
    if not found:
        raise InputError(f"{root}: no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) and no folders "
                         "of images found")
    rels = [p.relative_to(root_dir).as_posix() if p != root_dir else "." for p, _ in found]
    base = [(p.resolve().name if r == "." else p.name) if k == "frames" else p.stem
            for (p, k), r in zip(found, rels)]
    counts: dict[str, int] = {}
    for b in base:
        counts[b.casefold()] = counts.get(b.casefold(), 0) + 1
    names = []
    for (_p, kind), rel, b in zip(found, rels, base):
        if counts[b.casefold()] == 1:
            names.append(b)
            continue
        parts = Path(rel).parts if rel != "." else (b,)
        if kind == "video":  # the suffix too: a.mp4 and a.avi in one folder
            parts = (*parts[:-1], Path(parts[-1]).stem + "_" + Path(parts[-1]).suffix[1:])
        names.append("__".join(parts))
    if len({n.casefold() for n in names}) != len(names):  # e.g. a folder named "x__a" beside x/a
        dup = sorted({n for n in names if sum(m.casefold() == n.casefold() for m in names) > 1})
        raise InputError(f"{root}: sequences {', '.join(dup)} would write the same output file; "
                         "rename one")
    return sorted((Sequence(n, p, k, r) for n, (p, k), r in zip(names, found, rels)),
                  key=lambda s: s.name)


def select(sequences: list[Sequence], patterns: Iterable[str]) -> list[Sequence]:
    """The sequences whose name or path under ROOT matches one of ``patterns`` (shell
    wildcards, ``fnmatch``); all of them when there are no patterns."""
    patterns = list(patterns)
    if not patterns:
        return list(sequences)
    return [s for s in sequences
            if any(fnmatch.fnmatchcase(s.name, p) or fnmatch.fnmatchcase(s.rel, p)
                   for p in patterns)]


def frame_count(seq: Sequence, max_frames: int | None = None) -> int | None:
    """Frames the sequence should give (images in the folder, or the video header's count;
    ``None`` when unknown), capped at ``max_frames``."""
    if seq.kind == "frames":
        n: int | None = len(images_in(seq.path))
    else:  # any file name (OpenCV given a name that is not UTF-8 would crash the run)
        from posetracker.io.sources import video_frame_count

        n = video_frame_count(seq.path)
    if n is not None and max_frames is not None:
        n = min(n, max_frames)
    return n


def fingerprint(seq: Sequence) -> dict:
    """What identifies a sequence's input, independent of where ROOT is and of file times (a
    copied dataset keeps its outputs)."""
    if seq.kind == "frames":
        names = sorted(images_in(seq.path))
        return {"kind": "frames", "rel": seq.rel, "images": len(names),
                "names": hashlib.sha256("\n".join(names).encode()).hexdigest()}
    return {"kind": "video", "rel": seq.rel, "bytes": seq.path.stat().st_size}
