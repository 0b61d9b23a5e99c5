from dataclasses import dataclass, field
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
