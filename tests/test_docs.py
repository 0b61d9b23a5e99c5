"""The documents speak of the product: no internal issue numbers, every relative link points to a
file, and the README states the output policy and keeps the set-up commands CI relies on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
INTERNAL = re.compile(r"\b(?:issues?|stop|item|round)\s+#?\d+\b|(?<![\w&/])#\d+\b", re.IGNORECASE)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_internal_issue_numbers(path):
    text = path.read_text(encoding="utf-8")
    found = [m.group(0) for m in INTERNAL.finditer(text)]
    assert not found, f"{path.name}: {found}: say what the product does, not which issue changed it"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#", 1)[0]).resolve()
        assert file.exists(), f"{path.name} links to missing {target}"


def test_pattern_catches_issue_numbers():
    for text in ("since issue 11", "for issue 13 (2-core", "see #12.", "stop 9 of the plan", "Issues 3"):
        assert INTERNAL.search(text), text
    for text in ("[cli](#posetracker-track)", "colour #1f77b4", "&#8212;", "step 3 of the paper"):
        assert not INTERNAL.search(text), text


def test_readme_states_the_output_policy_and_the_two_setup_commands():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert ("Every output path is checked before any model loads: a path that is an input of the run, "
            "another output of the run, not writable, or in use by another running posetracker is "
            "refused with one line and exit 2; every file is written beside its target and renamed "
            "when complete, so an output is either complete or absent.") in readme
    assert 'pip install -e ".[openvino]" && POSETRACKER_MODELS=../shared/models posetracker track ' in readme
    assert 'pip install -e ".[test]" && ruff check . && python -m pytest -q' in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -q -e ".[test]"' in ci and "ruff check ." in ci and "pytest -q" in ci
