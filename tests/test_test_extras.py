"""The golden tests never skip in CI: a package of the ``test`` extra that is missing skips its
tests on a developer's machine and fails them under CI (``conftest.require_test_extra``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import in_ci, require_test_extra

TESTS = Path(__file__).resolve().parent
MISSING = "posetracker_no_such_module"


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no"])
def test_missing_package_skips_outside_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match=rf"{MISSING} is not installed.*\[test\]"):
        require_test_extra(MISSING)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_test_extra(MISSING)


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_missing_package_fails_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match=rf"CI requires .*{MISSING} is not installed"):
        require_test_extra(MISSING)


@pytest.mark.parametrize("value", ["", "true"])
def test_present_package_is_returned(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert require_test_extra("json") is sys.modules["json"]


def _pytest_on(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    """pytest on a file that needs a missing package at its top level (as test_formats_properties
    needs hypothesis) and one that does not, with the real conftest beside them."""
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_needs_it.py").write_text(
        f"from conftest import require_test_extra\n\nrequire_test_extra({MISSING!r})\n\n\n"
        "def test_it():\n    pass\n")
    (tmp_path / "test_other.py").write_text("def test_other():\n    assert True\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_whole_file_skips_locally_and_fails_the_run_under_ci(tmp_path):
    local = _pytest_on(tmp_path, "")
    assert local.returncode == 0 and "1 passed, 1 skipped" in local.stdout, local.stdout + local.stderr
    ci = _pytest_on(tmp_path, "true")
    assert ci.returncode != 0, ci.stdout + ci.stderr
    assert f"CI requires every package of the test extra: {MISSING}" in ci.stdout, ci.stdout


def test_no_test_skips_a_missing_test_extra_by_itself():
    """Every package of the test extra is imported through ``require_test_extra``, never
    ``pytest.importorskip`` (which skips in CI too)."""
    pyproject = (TESTS.parent / "pyproject.toml").read_text(encoding="utf-8")
    extra = re.search(r"^test = \[(.*?)\]", pyproject, flags=re.MULTILINE | re.DOTALL)
    assert extra, "pyproject.toml has no test extra"
    names = {re.split(r"[<>=!~ \[]", n.strip().strip('"'))[0] for n in extra.group(1).split(",")}
    assert {"onnxruntime", "openvino"} <= names
    for f in TESTS.glob("test_*.py"):
        for name in re.findall(r"importorskip\(\s*[\"']([\w.]+)", f.read_text(encoding="utf-8")):
            assert name.split(".")[0] not in names, f"{f.name}: importorskip({name!r}); use require_test_extra"
