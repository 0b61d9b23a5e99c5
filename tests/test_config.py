import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from posetracker.core.config import dump_config, from_dict, load_config
from posetracker.core.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    x: int = 1
    mode: Literal["a", "b"] = "a"
    t: tuple[float, ...] = (1.0,)


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    y: float = 0.5


def test_overrides_and_roundtrip(tmp_path):
    c = load_config(Outer, overrides=["inner.x=3", "y=2", "inner.t=[1,2]"])
    assert c == Outer(Inner(3, "a", (1.0, 2.0)), 2.0)
    f = tmp_path / "c.yaml"
    f.write_text(dump_config(c))
    assert load_config(Outer, f) == c


@pytest.mark.parametrize("data, msg", [
    ({"inner": {"z": 1}}, "unknown key z"),
    ({"inner": {"mode": "c"}}, "is not one of"),
    ({"y": "foo"}, "expected a number"),
    ({"inner": {"x": 1.5}}, "expected an integer"),
])
def test_rejects_bad_config(data, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(Outer, data)


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("a: [1,")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Outer, f)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(Outer, tmp_path / "missing.yaml")


# -- one source of truth: no constructor repeats a config default ----------------------------------

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ("tracker", "estimators", "association", "evaluation")
#: Names shared with a setting that mean something else in a constructor: a loader's ``device``
#: is where torch puts the module (CPU, torch's own default); the setting ``device="auto"`` is
#: resolved by the estimator (``pick_device``) and passed down.
NOT_SETTINGS = {"device"}


def _config_fields(files: list[Path]) -> dict[str, str]:
    """``{field name: "Class.field, ..."}`` of the dataclasses declared in ``files``."""
    out: dict[str, str] = {}
    for f in files:
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ClassDef) and any(
                    "dataclass" in ast.unparse(d) for d in node.decorator_list):
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        name = item.target.id
                        out[name] = ", ".join(filter(None, (out.get(name), f"{node.name}.{name}")))
    return out


def _literal(node: ast.expr) -> bool:
    try:
        return ast.literal_eval(node) is not None
    except ValueError:
        return False


def repeated_defaults(source: str, fields: dict[str, str], where: str = "") -> list[str]:
    """The parameters of public classes' constructors (``__init__`` and classmethods) in
    ``source`` that are named like a config field and have a literal default of their own."""
    found = []
    for cls in ast.walk(ast.parse(source)):
        if not isinstance(cls, ast.ClassDef) or cls.name.startswith("_"):
            continue
        for fn in cls.body:
            if not isinstance(fn, ast.FunctionDef) or not (
                    fn.name == "__init__" or any(ast.unparse(d) == "classmethod"
                                                 for d in fn.decorator_list)):
                continue
            a = fn.args
            pairs = [*zip(a.args[len(a.args) - len(a.defaults):], a.defaults),
                     *((k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None)]
            found += [f"{where}{cls.name}.{fn.name}({p.arg}={ast.unparse(d)}) repeats "
                      f"{fields[p.arg]}" for p, d in pairs if p.arg in fields and _literal(d)]
    return found


def test_the_checker_finds_a_repeated_default():
    src = ("class Tracker:\n    def __init__(self, config=None, *, window: int = 8, name='x'):\n"
           "        pass\n    @classmethod\n    def make(cls, gate=0.1): ...\n"
           "class _Private:\n    def __init__(self, window=3): ...\n")
    fields = {"window": "Config.window", "gate": "Config.gate"}
    assert repeated_defaults(src, fields) == [
        "Tracker.__init__(window=8) repeats Config.window", "Tracker.make(gate=0.1) repeats Config.gate"]


def test_no_public_constructor_repeats_a_config_default():
    """Every default lives in the frozen config dataclasses: a public class of a domain package
    (or the API) takes its config, never a literal default for one of its package's settings."""
    problems, walked = [], 0
    app_settings = [ROOT / "posetracker" / "app" / "settings.py"]
    targets = [(ROOT / d, sorted((ROOT / d).rglob("config.py"))) for d in DOMAIN]
    targets.append((ROOT / "posetracker" / "app" / "api.py",
                    app_settings + [f for _, fs in targets for f in fs]))
    for target, config_files in targets:
        fields = {k: v for k, v in _config_fields(config_files).items() if k not in NOT_SETTINGS}
        if not fields:  # a package without settings (evaluation) has none to repeat
            continue
        for f in ([target] if target.is_file() else sorted(target.rglob("*.py"))):
            if f.name == "config.py":
                continue
            walked += 1
            problems += repeated_defaults(f.read_text(), fields, f"{f.relative_to(ROOT)}: ")
    assert walked > 50
    assert not problems, "\n".join(problems)
