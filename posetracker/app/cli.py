"""The ``posetracker`` command line: ``main(argv) -> int``.

Each subcommand lives in its own module under :mod:`posetracker.app.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int`` as the default.
Heavy imports (torch, OpenCV) happen inside the command functions, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from posetracker import __version__
from posetracker.core.errors import PosetrackerError
from posetracker.core.outputs import POLICY
from posetracker.core.paths import printable


def plain(text: str) -> str:
    """Help text without the reStructuredText markup docstrings use (``:mod:`x``` -> ``x``)."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    return text.replace("``", "")


class PlainHelpFormatter(argparse.HelpFormatter):
    """Argparse's formatter, with descriptions and option helps as :func:`plain` text."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))


class Parser(argparse.ArgumentParser):
    """The CLI's parser class: subcommand parsers are of it too (argparse makes them with the
    parent's class), so every help text is plain."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="posetracker",
        description="Multi-person 2D pose estimation and tracking, and PoseTrack/COCO/CrowdPose "
        "evaluation.",
        epilog="No input file is ever changed. " + POLICY,  # the policy, also before a COMMAND
    )
    parser.add_argument("--version", action="version", version=f"posetracker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # imported here, not at the top: a Ctrl-C while the commands load is then inside
    # main_entry's handler (one line, exit 130) instead of a traceback from the import
    from posetracker.app.commands import COMMAND_MODULES

    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Status 0 on success, 2 on bad input or usage (one line on stderr, no traceback; file names
    shown with undecodable bytes as ``\\xNN`` and control characters escaped), 130 when
    interrupted (Ctrl-C), 143 when terminated (SIGTERM, under :func:`main_entry`).
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
        print(f"posetracker: error: {printable(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C (130), or SIGTERM under main_entry (143)
        print("posetracker: " + ("terminated" if isinstance(e, Terminated) else "interrupted"),
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except BrokenPipeError:
        return 1
    except OSError as e:
        if e.filename is None:  # not about a file the user named: a bug, with its traceback
            raise
        # the file system refused a named file (a name too long, a vanished folder, ...)
        print(f"posetracker: error: {printable(e.filename)}: {e.strerror or e}", file=sys.stderr)
        return 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that a run stops the same clean way
    (stage threads joined, streams closed, finished frames kept); exit status 143."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _redeliver_signal(unraisable: sys.UnraisableHookArgs) -> None:
    """``sys.unraisablehook`` of the command line: a signal's exception raised while a finalizer
    ran (a progress bar's ``__del__``, say) is swallowed by Python, and the run would go on. It is
    raised again 10 ms later by an alarm, once this hook and the finalizer are done (raised here,
    or sent again at once, it would land inside this hook and be swallowed again); an alarm that
    lands in another finalizer comes back here and is set again. Every other unraisable
    exception goes to Python's own hook."""
    import signal
    import threading

    exc = unraisable.exc_value
    if not isinstance(exc, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)
        return
    if threading.current_thread() is not threading.main_thread():  # handlers run in main only
        signal.raise_signal(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        return
    again = Terminated if isinstance(exc, Terminated) else KeyboardInterrupt

    def raise_again(signum: int, frame: object) -> None:
        raise again

    signal.signal(signal.SIGALRM, raise_again)
    signal.setitimer(signal.ITIMER_REAL, 0.01)


def main_entry() -> None:
    """Console-script entry point; the process is ours, so SIGTERM gets a handler here (and a
    signal that lands inside a finalizer is delivered again: :func:`_redeliver_signal`)."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    sys.unraisablehook = _redeliver_signal
    try:
        code = main()
    except KeyboardInterrupt as e:  # before main's own handler (start-up) or during its report
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
            signal.signal(sig, signal.SIG_IGN)
        code = 143 if isinstance(e, Terminated) else 130
        print("posetracker: " + ("terminated" if code == 143 else "interrupted"), file=sys.stderr)
    # the run has stopped: exit with its status (a re-delivery alarm still set is void now)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    main_entry()
