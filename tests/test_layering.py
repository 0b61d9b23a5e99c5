"""Layering: the domain packages import only posetracker's vocabulary modules, never the app layer
(registry/cache, CLI, commands, pipeline, settings, sinks, rendering, benchmarks)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOMAIN = ("estimators", "association", "tracker", "evaluation")
APP = ("posetracker.models", "posetracker.cli", "posetracker.commands", "posetracker.pipeline",
       "posetracker.settings", "posetracker.sinks", "posetracker.render", "posetracker.benchmarks",
       "posetracker.build")


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every module an ``import`` statement names, anywhere in the file (also inside functions):
    ``(line, dotted name)``; ``from posetracker import models`` counts as ``posetracker.models``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _is_app(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in APP)


def test_the_scan_sees_app_imports():
    src = ("import posetracker.cli\nfrom posetracker import models\n"
           "def f():\n    from posetracker.commands.estimate_cmd import run\n"
           "from posetracker.schemas import COCO17\n")
    assert [n for _, n in imported_modules(src) if _is_app(n)] == [
        "posetracker.cli", "posetracker.models", "posetracker.commands.estimate_cmd",
        "posetracker.commands.estimate_cmd.run"]


def test_domain_packages_do_not_import_the_app_layer():
    bad = []
    files = [f for pkg in DOMAIN for f in sorted((REPO / pkg).rglob("*.py"))]
    assert len(files) > 10
    for f in files:
        for line, name in imported_modules(f.read_text()):
            if _is_app(name):
                bad.append(f"{f.relative_to(REPO)}:{line} imports {name}")
    assert not bad, "\n".join(bad)
