"""Layering, read from the folders: every file's layer is the folder it lives in, every import's layer is
the package it names.

    posetracker/core        schemas, poses, boxes, COCO data, pose NMS, errors, file helpers, config loading -> core
    posetracker/io          formats, sources, sinks, rendering                                       -> core, io
    tracker/, estimators/, association/, evaluation/  (posetracker.<folder>)        -> core and the folder itself
    posetracker/app and posetracker/__init__.py (the application and its API)       -> anything

So a domain folder never imports another domain folder, ``io`` or the app: what two of them share (the
estimator's output types the association reads, the COCO data the evaluation and the training read, pose
NMS) lives in ``core``, and the app reads files and wires the pieces together (the association's loss into
the estimator's training, the readers' data into the evaluations). Every import counts: at the top of the
file or inside a function, absolute or relative, or through ``importlib.import_module``.

Library code (``core`` and the domain folders) changes no process-wide setting: no torch/OpenCV thread
count, global seed, default dtype, environment variable, working directory, warning filter, logging
setup, signal handler, numpy error mode, nor an attribute of an imported module. The app sets what it needs
at its edge, scoped where it can (``posetracker.app.pipeline.torch_threads``). Nothing imports the domain
folders by their old top-level names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOMAIN = ("tracker", "estimators", "association", "evaluation")
ALLOWED = {"core": {"core"}, "io": {"core", "io"}, **{d: {"core", d} for d in DOMAIN}}
LIBRARY = ("core", *DOMAIN)

#: Calls that change a process-wide setting (module names as imported, aliases resolved).
PROCESS_WIDE_CALLS = {
    "torch.set_num_threads", "torch.set_num_interop_threads", "torch.set_default_dtype",
    "torch.set_default_device", "torch.set_default_tensor_type", "torch.manual_seed",
    "torch.use_deterministic_algorithms", "torch.set_float32_matmul_precision", "torch.set_flush_denormal",
    "cv2.setNumThreads", "cv2.setUseOptimized", "cv2.ocl.setUseOpenCL", "numpy.random.seed", "random.seed",
    "numpy.seterr", "numpy.set_printoptions", "os.chdir", "os.putenv", "os.unsetenv",
    "os.environ.setdefault", "os.environ.update", "os.environ.pop", "os.environ.clear", "sys.setrecursionlimit",
    "warnings.filterwarnings", "warnings.simplefilter", "logging.basicConfig", "logging.disable",
    "signal.signal", "importlib.reload",
}


# -- reading a file -----------------------------------------------------------------------------------
def module_of_file(rel: Path) -> str:
    """The dotted module a file of the checkout installs as (``tracker/base.py`` -> ``posetracker.tracker.base``)."""
    parts = list(rel.with_suffix("").parts)
    if parts[0] in DOMAIN:
        parts = ["posetracker", *parts]
    return ".".join(parts)


def layer_of_file(rel: Path) -> str:
    if rel.parts[0] in DOMAIN:
        return rel.parts[0]
    return rel.parts[1] if len(rel.parts) > 2 else "app"  # posetracker/__init__.py and __main__.py: the API


def layer_of_module(name: str) -> str | None:
    """The layer a dotted module name belongs to (``None``: not ours, or the top-level package itself)."""
    parts = name.split(".")
    if parts[0] != "posetracker" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ("core", "io", "app", *DOMAIN) else None


def imported_modules(source: str, module: str = "posetracker.app.x", is_package: bool = False
                     ) -> list[tuple[int, str]]:
    """Every module the file ``module`` imports, anywhere in it: ``(line, dotted name)``.

    ``from posetracker.app import models`` counts as ``posetracker.app`` and ``posetracker.app.models``;
    relative imports are resolved against ``module``; ``importlib.import_module("...")`` with a literal name
    counts too.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif (isinstance(node, ast.Call) and _dotted(node.func) in ("importlib.import_module", "import_module",
                                                                     "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append((node.lineno, node.args[0].value))
    return out


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of a name or attribute chain, else ``""``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return ""


def _module_aliases(tree: ast.AST) -> dict[str, str]:
    """Names bound to imported modules: ``import numpy as np`` -> ``{"np": "numpy"}``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:  # from os import environ; from numpy import random
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


# -- the two rules ------------------------------------------------------------------------------------
def import_violations(rel: Path, source: str) -> list[str]:
    """The imports of the file ``rel`` (relative to the checkout) that break the layering."""
    mine = layer_of_file(rel)
    if mine == "app":
        return []
    bad = []
    for line, name in imported_modules(source, module_of_file(rel), rel.name == "__init__.py"):
        theirs = layer_of_module(name)
        if theirs is not None and theirs not in ALLOWED[mine]:
            bad.append(f"{rel}:{line} ({mine}) imports {name} ({theirs})")
    return bad


def setting_violations(rel: Path, source: str) -> list[str]:
    """The places where library file ``rel`` changes a process-wide setting."""
    if layer_of_file(rel) not in LIBRARY:
        return []
    tree = ast.parse(source)
    aliases = _module_aliases(tree)

    def resolved(node: ast.AST) -> str:
        name = _dotted(node)
        head, _, rest = name.partition(".")
        if head not in aliases:
            return ""
        full = aliases[head] + ("." + rest if rest else "")
        return full.replace("np.", "numpy.", 1) if full.startswith("np.") else full

    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and resolved(node.func) in PROCESS_WIDE_CALLS:
            bad.append(f"{rel}:{node.lineno} calls {resolved(node.func)}")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                inner = t.value if isinstance(t, ast.Subscript) else t
                if isinstance(t, (ast.Attribute, ast.Subscript)) and resolved(inner):
                    bad.append(f"{rel}:{node.lineno} assigns to {resolved(inner)}")
    return bad


def source_files() -> list[Path]:
    return [f for top in ("posetracker", *DOMAIN) for f in sorted((REPO / top).rglob("*.py"))]


# -- the tree keeps them ------------------------------------------------------------------------------
def test_every_layer_imports_only_what_it_may():
    files = source_files()
    assert len(files) > 60
    bad = [v for f in files for v in import_violations(f.relative_to(REPO), f.read_text())]
    assert not bad, "\n".join(bad)


def test_library_code_changes_no_process_wide_setting():
    bad = [v for f in source_files() for v in setting_violations(f.relative_to(REPO), f.read_text())]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_domain_folders_by_top_level_name():
    bad = []
    for f in source_files() + sorted((REPO / "tests").rglob("*.py")) + sorted((REPO / "tools").rglob("*.py")):
        for line, name in imported_modules(f.read_text()):
            if name.split(".")[0] in DOMAIN:
                bad.append(f"{f.relative_to(REPO)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


# -- the checks catch what they should, and only that ---------------------------------------------------
@pytest.mark.parametrize("path, source", [
    ("tracker/fake.py", "from posetracker.estimators.rmpe import RMPEEstimator\n"),
    ("association/fake.py", "import posetracker.estimators.config\n"),
    ("association/fake.py", "from posetracker.evaluation import crowdpose\n"),
    ("estimators/training/fake.py", "def f():\n    from posetracker.association.loss import joint_candidate_loss\n"),
    ("estimators/fake.py", "from ..association import loss\n"),
    ("evaluation/fake.py", "def f():\n    from posetracker.io.formats.coco import read_coco_gt\n"),
    ("tracker/fake.py", "import importlib\nm = importlib.import_module('posetracker.app.cli')\n"),
    ("posetracker/core/fake.py", "from posetracker.io import sources\n"),
    ("posetracker/core/fake.py", "from ..tracker import base\n"),
    ("posetracker/io/fake.py", "from posetracker.tracker.base import Tracker\n"),
])
def test_a_forbidden_import_is_caught(path, source):
    assert len(import_violations(Path(path), source)) >= 1


@pytest.mark.parametrize("path, source", [
    ("association/fake.py", "from posetracker.core.poses import FramePoses\nfrom posetracker.association.loss "
                            "import joint_candidate_loss\nfrom . import graph\nimport numpy as np\n"),
    ("estimators/training/fake.py", "from ..config import SPPEConfig\nfrom .data import CropMaker\n"),
    ("posetracker/io/fake.py", "from posetracker.core.coco import CocoDataset\nfrom . import sources\n"),
    ("posetracker/app/fake.py", "from posetracker.association.loss import joint_candidate_loss\n"
                                "from posetracker.estimators.training.loop import Trainer\n"),
    ("posetracker/__init__.py", "from posetracker.app.api import PoseTracker\n"),
])
def test_an_allowed_import_passes(path, source):
    assert import_violations(Path(path), source) == []


@pytest.mark.parametrize("source", [
    "import torch\ndef run():\n    torch.set_num_threads(4)\n",
    "import torch as T\nT.backends.cudnn.benchmark = True\n",
    "import os\nos.environ['OMP_NUM_THREADS'] = '1'\n",
    "from os import environ\nenviron.setdefault('X', '1')\n",
    "import numpy as np\nnp.random.seed(0)\n",
    "import cv2\ncv2.setNumThreads(1)\n",
    "import warnings\nwarnings.filterwarnings('ignore')\n",
])
def test_a_process_wide_setting_in_library_code_is_caught(source):
    assert len(setting_violations(Path("estimators/training/fake.py"), source)) == 1
    assert setting_violations(Path("posetracker/app/fake.py"), source) == []  # the app's edge may


def test_scoped_or_local_settings_pass():
    source = ("import numpy as np\nimport torch\nwith np.errstate(invalid='ignore'):\n    pass\n"
              "with torch.no_grad():\n    pass\nrng = np.random.default_rng(0)\nx = {}\nx['a'] = 1\n"
              "class A:\n    pass\nA.b = 1\n")
    assert setting_violations(Path("tracker/fake.py"), source) == []


def test_the_scan_sees_every_import_and_its_layer():
    src = ("import posetracker.app.cli\nfrom posetracker.app import models\n"
           "def f():\n    from posetracker.app.commands.estimate_cmd import run\n"
           "from posetracker.core.schemas import COCO17\nimport numpy\nfrom . import sibling\n")
    found = imported_modules(src, "posetracker.tracker.poseflow")
    layers = sorted((line, layer_of_module(n) or "-") for line, n in found)
    assert layers == [(1, "app"), (2, "app"), (2, "app"), (4, "app"), (4, "app"), (5, "core"), (5, "core"),
                      (6, "-"), (7, "tracker"), (7, "tracker")]
    assert layer_of_file(Path("tracker/poseflow.py")) == "tracker"
    assert layer_of_file(Path("posetracker/io/formats/coco.py")) == "io"
    assert layer_of_file(Path("posetracker/__init__.py")) == "app"
    assert module_of_file(Path("estimators/training/loop.py")) == "posetracker.estimators.training.loop"
