"""Layering, read from the folders: every file's layer is the folder it lives in, every import's layer is the
package it names, and a layer may import only the layers below it.

    posetracker/core        schemas, poses, errors, file helpers, config loading   -> core
    posetracker/io          formats, sources, sinks, rendering                     -> core, io
    tracker/, estimators/, association/, evaluation/  (posetracker.<folder>)       -> core, io, the domain
    posetracker/app and posetracker/__init__.py (the application and its API)      -> anything

``estimators`` never imports ``association`` (the association takes the estimator's intermediates, not the other
way round), and nothing imports the domain folders by their old top-level names.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOMAIN = ("tracker", "estimators", "association", "evaluation")
ALLOWED = {"core": {"core"}, "io": {"core", "io"}, **{d: {"core", "io", *DOMAIN} for d in DOMAIN}}
FORBIDDEN_PAIRS = {("estimators", "association")}


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every module an ``import`` statement names, anywhere in the file (also inside functions):
    ``(line, dotted name)``; ``from posetracker.app import models`` counts as ``posetracker.app.models``."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def layer_of_module(name: str) -> str | None:
    """The layer a dotted module name belongs to (``None``: not ours, or the top-level package itself)."""
    parts = name.split(".")
    if parts[0] != "posetracker" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ("core", "io", "app", *DOMAIN) else None


def layer_of_file(path: Path) -> str:
    rel = path.relative_to(REPO).parts
    if rel[0] in DOMAIN:
        return rel[0]
    return rel[1] if len(rel) > 2 else "app"  # posetracker/__init__.py and __main__.py: the API


def source_files() -> list[Path]:
    return [f for top in ("posetracker", *DOMAIN) for f in sorted((REPO / top).rglob("*.py"))]


def test_the_scan_sees_every_import_and_its_layer():
    src = ("import posetracker.app.cli\nfrom posetracker.app import models\n"
           "def f():\n    from posetracker.app.commands.estimate_cmd import run\n"
           "from posetracker.core.schemas import COCO17\nimport numpy\n")
    layers = sorted((line, layer_of_module(n) or "-") for line, n in imported_modules(src))
    assert layers == [(1, "app"), (2, "app"), (2, "app"), (4, "app"), (4, "app"), (5, "core"), (5, "core"),
                      (6, "-")]
    assert layer_of_file(REPO / "tracker" / "poseflow.py") == "tracker"
    assert layer_of_file(REPO / "posetracker" / "io" / "formats" / "coco.py") == "io"
    assert layer_of_file(REPO / "posetracker" / "__init__.py") == "app"


def test_every_layer_imports_only_the_layers_below_it():
    files = source_files()
    assert len(files) > 60
    bad = []
    for f in files:
        mine = layer_of_file(f)
        for line, name in imported_modules(f.read_text()):
            theirs = layer_of_module(name)
            if theirs is None or mine == "app":
                continue
            if theirs not in ALLOWED[mine] or (mine, theirs) in FORBIDDEN_PAIRS:
                bad.append(f"{f.relative_to(REPO)}:{line} ({mine}) imports {name} ({theirs})")
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_domain_folders_by_top_level_name():
    bad = []
    for f in source_files() + sorted((REPO / "tests").rglob("*.py")) + sorted((REPO / "tools").rglob("*.py")):
        for line, name in imported_modules(f.read_text()):
            if name.split(".")[0] in DOMAIN:
                bad.append(f"{f.relative_to(REPO)}:{line} imports {name}")
    assert not bad, "\n".join(bad)
