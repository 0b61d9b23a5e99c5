"""The ``--format`` option of the commands that write a final file (``track``, ``track-dataset``,
``convert jsonl``): its choices and help made from the table of output formats
(:data:`posetracker.io.formats.output_formats.OUTPUT_FORMATS`), read when the parser is built."""

from __future__ import annotations

import argparse

from posetracker.io.formats.output_formats import OUTPUT_FORMATS


def add_format_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                      default: str | None, default_text: str, setting: str | None = None,
                      video_mode: bool = False) -> None:
    """Add ``--format`` to ``p``: one choice per output format, each named with what it is.

    Args:
        default: argparse's default (``None``: the settings decide).
        default_text: What the help says the default is.
        setting: The setting the option stands for, named in the help.
        video_mode: The command also has ``track``'s ``--poses`` mode; the help names the
            formats only its VIDEO mode writes.
    """
    formats = "; ".join(f"{f.name}: {f.help}" + (", VIDEO mode only" if video_mode and f.video_only
                                                 else "") for f in OUTPUT_FORMATS)
    p.add_argument("--format", choices=OUTPUT_FORMATS.names(), default=default,
                   help=f"output format ({setting + ', ' if setting else ''}default: "
                   f"{default_text}; {formats})")
