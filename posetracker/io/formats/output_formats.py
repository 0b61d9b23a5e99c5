"""Output formats: the one table of the final files a run can write (``--format``), each with its
writer, its file suffixes, the joints it holds and where the run's metadata goes.

Everything that depends on the output format asks this table: the ``--format`` choices and help
of ``track``, ``track-dataset`` and ``convert jsonl``, the settings' check of
``pipeline.output.format``, the final-file sink (:class:`posetracker.io.sinks.FinalJsonSink`), the
output policy (which joints are written), and ``track-dataset``'s resume check (metadata) and
summary (track ids read back).

Adding a format: its writer in a module of this package, and one :class:`OutputFormat` line in
:data:`OUTPUT_FORMATS` (``docs/extending.md``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write
from posetracker.core.poses import VideoPoses
from posetracker.core.registry import Registry
from posetracker.core.schemas import POSETRACK17, POSETRACK18, KeypointSchema
from posetracker.io.formats import coco, posetrack

#: ``write(video, path, *, derive_head, min_score)``: the whole file at ``path``.
Writer = Callable[..., None]


@dataclass(frozen=True)
class OutputFormat:
    """One final-file format.

    Attributes:
        name: The ``--format`` value.
        help: One line for ``--help`` and the docs.
        write: ``write(video, path, *, derive_head: bool, min_score: float)`` writes the whole
            file (``derive_head`` and ``min_score`` as
            :func:`posetracker.io.formats.posetrack.write_posetrack18` takes them; a format
            whose ``schema`` is ``None`` ignores them).
        suffixes: The output's suffix, then those of files written beside it (the metadata
            sidecar when ``meta_inside`` is off).
        schema: Keypoint schema of the written joints (``None``: the model's own joints, every
            one with its score: the policy keeps them as they are).
        meta_inside: The run's metadata goes into the file as a top-level ``"meta"`` key (a
            JSON object its readers ignore); else into ``<stem><suffixes[1]>`` beside it.
        read: Reads the file back as :class:`VideoPoses` with its track ids, or ``None`` when
            it cannot (its ids are then read from the run's JSON lines).
        max_track_id: The largest track id the format's official tools accept (a warning
            beyond it), or ``None``.
        video_only: Only a VIDEO run writes it; ``track --poses`` (poses read from a file)
            refuses it.
    """

    name: str
    help: str
    write: Writer
    suffixes: tuple[str, ...] = (".json",)
    schema: KeypointSchema | None = None
    meta_inside: bool = True
    read: Callable[[Path], VideoPoses] | None = None
    max_track_id: int | None = None
    video_only: bool = False

    def __post_init__(self) -> None:
        if not self.meta_inside and len(self.suffixes) < 2:
            raise ValueError(f"output format {self.name}: metadata beside the file needs the "
                             f"sidecar's suffix in suffixes")

    def meta_file(self, output: Path) -> Path:
        """The file holding the run's metadata of ``output``."""
        if self.meta_inside:
            return output
        return output.with_name(output.name.removesuffix(self.suffixes[0]) + self.suffixes[1])

    def read_meta(self, output: Path) -> dict | None:
        """The run's metadata written with ``output`` (``None``: missing or unreadable)."""
        try:
            data = json.loads(self.meta_file(output).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if self.meta_inside:
            data = data.get("meta") if isinstance(data, dict) else None
        return data if isinstance(data, dict) else None

    def write_final(self, video: VideoPoses, tmp: Path, output: Path, *, derive_head: bool,
                    min_score: float) -> None:
        """Write ``video`` into ``tmp`` (the caller renames it over ``output``) with its
        metadata ``video.meta``: inside, or in the sidecar beside ``output`` (atomically)."""
        self.write(video, tmp, derive_head=derive_head, min_score=min_score)
        if not self.meta_inside:
            atomic_write(self.meta_file(output),
                         lambda m: m.write_text(json.dumps(video.meta, indent=1, default=str)))
        elif video.meta:
            data = json.loads(tmp.read_text(encoding="utf-8"))
            data["meta"] = video.meta
            tmp.write_text(json.dumps(data, separators=(",", ":"), default=str), encoding="utf-8")


#: The output formats (``pipeline.output.format`` and ``--format`` name one).
OUTPUT_FORMATS: Registry[OutputFormat] = Registry("output format", (
    OutputFormat("posetrack18", "PoseTrack 2018 JSON (the official evaluation's)",
                 posetrack.write_posetrack18, schema=POSETRACK18, read=posetrack.read_posetrack,
                 max_track_id=999),
    OutputFormat("posetrack17", "PoseTrack 2017 JSON (annolist)", posetrack.write_posetrack17,
                 schema=POSETRACK17, read=posetrack.read_posetrack, max_track_id=999),
    OutputFormat("coco", "a COCO keypoint results list (COCO-17 joints; metadata in "
                 "<out>.meta.json)", coco.write_coco_keypoints, (".json", ".meta.json"),
                 meta_inside=False, video_only=True),
), InputError)

#: The built-in format names as a type (the settings and the Python API are typed with it).
OutputFormatName = Literal[OUTPUT_FORMATS.names()]  # type: ignore[valid-type]


def format_help() -> str:
    """The formats as ``--format`` help lists them: ``name: what it is`` joined by ``; ``."""
    return "; ".join(f"{f.name}: {f.help}" for f in OUTPUT_FORMATS)
