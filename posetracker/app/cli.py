"""The ``posetracker`` command line: ``main(argv) -> int``.

Each subcommand lives in its own module under :mod:`posetracker.app.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int`` as the default.
Heavy imports (torch, OpenCV) happen inside the command functions, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from posetracker import __version__
from posetracker.app.commands import COMMAND_MODULES
from posetracker.core.errors import PosetrackerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posetracker",
        description="Multi-person 2D pose estimation and tracking, and PoseTrack/COCO/CrowdPose "
        "evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"posetracker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Status 0 on success, 2 on bad input or usage (one line on stderr, no traceback), 130 when
    interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as e:  # argparse exits for --help, --version and usage errors
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except PosetrackerError as e:
        print(f"posetracker: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("posetracker: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_entry()
