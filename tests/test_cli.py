"""The CLI's top level: --help, --version, and a help test for every subcommand."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from posetracker import __version__
from posetracker.app.cli import build_parser, main


def _subcommand_paths(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommand_paths(sub, prefix + (name,))


ALL_COMMANDS = sorted(set(_subcommand_paths(build_parser())))


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"posetracker {__version__}"


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for path in ALL_COMMANDS:
        if len(path) == 1:
            assert path[0] in out


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=[" ".join(p) for p in ALL_COMMANDS])
def test_subcommand_help(path, capsys):
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: posetracker " + " ".join(path))


def test_unknown_option_exits_2(capsys):
    assert main(["eval", "coco", "--no-such-flag"]) == 2


def test_console_script_module_runs():
    r = subprocess.run([sys.executable, "-m", "posetracker", "--version"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0 and __version__ in r.stdout
