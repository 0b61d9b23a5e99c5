"""Write ``docs/cli.md``, the command-line reference, from the CLI's own parsers.

    python tools/make_cli_doc.py            # rewrite docs/cli.md
    python tools/make_cli_doc.py --check    # exit 1 (and say so) if docs/cli.md is stale

Every command and subcommand gets its usage, description, arguments and options with their help,
defaults filled in as ``--help`` fills them (``posetracker.app.cli.build_parser`` is the only
source). The text is laid out here rather than by argparse's ``HelpFormatter``, so that it does not
depend on the terminal's width or the Python version (argparse's layout of ``-o, --output X``
changed in Python 3.13, and 3.14 colours it); ``tests/test_cli_doc.py`` regenerates it in memory
and fails when the file differs.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "docs" / "cli.md"
COMMAND = "python tools/make_cli_doc.py"
WIDTH = 100  # columns of the help text inside each code block
HELP_COLUMN = 24  # where an option's help starts, as argparse's default layout

HEADER = f"""# Command-line reference

Generated from the parsers of `posetracker` by `{COMMAND}`; do not edit by hand
(`tests/test_cli_doc.py` fails when this file is out of date). Every command also takes `-h`/`--help`,
which prints the same text on the terminal. Exit status: 0 on success, 2 on bad input or usage (one
line on stderr), 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM); `track-dataset` exits
1 when a sequence failed.
"""


def _plain(text: str) -> str:
    from posetracker.app.cli import plain

    return " ".join(plain(text).split())


def _metavar(action: argparse.Action, default: str) -> tuple[str, ...]:
    """The action's argument names, as argparse's usage and help show them."""
    if action.metavar is not None:
        m = action.metavar
    elif action.choices is not None:
        m = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        m = default
    return m if isinstance(m, tuple) else (m,)


def _args(action: argparse.Action, default: str) -> str:
    """``METAVAR`` with the action's ``nargs`` (``[M]``, ``[M ...]``, ``M [M ...]``, ...)."""
    names = _metavar(action, default)
    n = action.nargs

    def m(i: int = 0) -> str:
        return names[min(i, len(names) - 1)]

    if n is None:
        return m()
    if n == argparse.OPTIONAL:
        return f"[{m()}]"
    if n == argparse.ZERO_OR_MORE:
        return f"[{m()} ...]"
    if n == argparse.ONE_OR_MORE:
        return f"{m()} [{m(1)} ...]"
    if n == argparse.REMAINDER:
        return "..."
    if n == argparse.PARSER:
        return f"{m()} ..."
    return " ".join(m(i) for i in range(int(n)))


def _is_shown(action: argparse.Action) -> bool:
    return action.help is not argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)


def _invocation(action: argparse.Action) -> str:
    """``-o, --output OUT_DIR`` for an option, ``OUT_DIR`` for a positional argument."""
    if not action.option_strings:
        return _args(action, action.dest)
    flags = ", ".join(action.option_strings)
    return flags if action.nargs == 0 else f"{flags} {_args(action, action.dest.upper())}"


def _usage_part(action: argparse.Action) -> str:
    if not action.option_strings:
        return _args(action, action.dest)
    flag = action.option_strings[0]
    text = flag if action.nargs == 0 else f"{flag} {_args(action, action.dest.upper())}"
    return text if action.required else f"[{text}]"


def _help(action: argparse.Action, prog: str) -> str:
    """The action's help with ``%(default)s`` and the like filled in, as argparse fills them."""
    if not action.help:
        return ""
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = prog
    for k, v in list(params.items()):
        if hasattr(v, "__name__"):
            params[k] = v.__name__
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return _plain(action.help % params)


def _item(left: str, text: str) -> list[str]:
    """One argument: its invocation, then its help from column ``HELP_COLUMN``."""
    indent = " " * HELP_COLUMN
    if not text:
        return [f"  {left}"]
    lines = textwrap.wrap(text, WIDTH - HELP_COLUMN)
    if len(left) + 2 <= HELP_COLUMN - 2:
        return [f"  {left}".ljust(HELP_COLUMN) + lines[0], *(indent + x for x in lines[1:])]
    return [f"  {left}", *(indent + x for x in lines)]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _block(parser: argparse.ArgumentParser) -> str:
    """The help text of one parser."""
    actions = [a for a in parser._actions if _is_shown(a)]
    lines = [f"usage: {parser.prog}"]
    indent = " " * len(lines[0])
    for part in (_usage_part(a) for a in actions):  # wrapped between parts, never inside one
        if len(lines[-1]) + 1 + len(part) > WIDTH and lines[-1] != indent:
            lines.append(indent)
        lines[-1] += ("" if lines[-1] == indent else " ") + part
    if parser.description:
        lines += ["", *textwrap.wrap(_plain(parser.description), WIDTH)]
    positionals = [a for a in actions if not a.option_strings
                   and not isinstance(a, argparse._SubParsersAction)]
    optionals = [a for a in actions if a.option_strings]
    sub = _subcommands(parser)
    if sub is not None:
        lines += ["", f"{_args(sub, 'COMMAND').split()[0].lower()}s:"]
        for choice in sub._choices_actions:
            lines += _item(choice.dest, _plain(choice.help or ""))
    for title, group in (("arguments", positionals), ("options", optionals)):
        if group:
            lines += ["", f"{title}:"]
            for a in group:
                lines += _item(_invocation(a), _help(a, parser.prog))
    if parser.epilog:
        lines += ["", *textwrap.wrap(_plain(parser.epilog), WIDTH)]
    return "\n".join(line.rstrip() for line in lines)


def _parsers(parser: argparse.ArgumentParser, depth: int = 1) -> Iterator[tuple[int, argparse.ArgumentParser]]:
    """Every parser under ``parser``, depth first, in the order ``--help`` lists them."""
    yield depth, parser
    sub = _subcommands(parser)
    if sub is not None:
        for choice in sub._choices_actions:
            yield from _parsers(sub.choices[choice.dest], depth + 1)


def render() -> str:
    """The whole of ``docs/cli.md``."""
    from posetracker.app.cli import build_parser

    found = list(_parsers(build_parser()))
    toc = [f"{'  ' * (d - 2)}- [`{p.prog}`](#{p.prog.replace(' ', '-')})" for d, p in found if d > 1]
    parts = [HEADER, "Commands:\n", *toc, ""]
    for depth, p in found:
        parts += [f"{'#' * min(depth + 1, 4)} `{p.prog}`", "", "```text", _block(p), "```", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None, target: Path = TARGET) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help=f"exit 1 if {target.name} is stale")
    args = ap.parse_args(argv)
    text = render()
    shown = target.relative_to(REPO) if target.is_relative_to(REPO) else target
    if args.check:
        current = target.read_text(encoding="utf-8") if target.is_file() else ""
        if current != text:
            print(f"{shown} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    tmp = target.with_name(f".{target.name}.tmp")  # written beside it and renamed: complete or absent
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
