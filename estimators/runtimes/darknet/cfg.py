"""Darknet ``.cfg`` files: ``[kind]`` sections of ``key=value`` options."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from posetracker.core.errors import ModelError


@dataclass(frozen=True)
class CfgSection:
    """One ``[kind]`` block of a Darknet ``.cfg``: its options as strings, and where it starts."""

    kind: str
    options: dict[str, str]
    line: int
    source: str = "<cfg>"

    def where(self) -> str:
        return f"{self.source}:{self.line} [{self.kind}]"

    def get_int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise ModelError(f"{self.where()}: missing option '{key}'")
            return default
        try:
            return int(self.options[key])
        except ValueError:
            raise ModelError(f"{self.where()}: option '{key}' is not an integer: "
                             f"{self.options[key]!r}") from None

    def get_float(self, key: str, default: float) -> float:
        try:
            return float(self.options.get(key, default))
        except ValueError:
            raise ModelError(f"{self.where()}: option '{key}' is not a number: "
                             f"{self.options[key]!r}") from None

    def get_ints(self, key: str, default: Sequence[int] | None = None) -> list[int]:
        if key not in self.options:
            if default is None:
                raise ModelError(f"{self.where()}: missing option '{key}'")
            return list(default)
        try:
            return [int(v) for v in self.options[key].split(",") if v.strip()]
        except ValueError:
            raise ModelError(f"{self.where()}: option '{key}' is not a list of integers: "
                             f"{self.options[key]!r}") from None

    def get_str(self, key: str, default: str) -> str:
        return self.options.get(key, default).strip()


def parse_cfg(text: str, source: str = "<cfg>") -> list[CfgSection]:
    """Parse Darknet ``.cfg`` text into sections; ``#``/``;`` start comments.

    The first section must be ``[net]`` (or ``[network]``). Raises :class:`ModelError` naming
    the file and line for malformed lines.
    """
    sections: list[CfgSection] = []
    kind, options, start = None, {}, 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ModelError(f"{source}:{lineno}: malformed section header {raw.strip()!r}")
            if kind is not None:
                sections.append(CfgSection(kind, options, start, source))
            kind, options, start = line[1:-1].strip().lower(), {}, lineno
            continue
        if kind is None or "=" not in line:
            raise ModelError(f"{source}:{lineno}: expected 'key=value' inside a section, "
                             f"got {raw.strip()!r}")
        key, value = line.split("=", 1)
        options[key.strip()] = value.strip()
    if kind is not None:
        sections.append(CfgSection(kind, options, start, source))
    if not sections or sections[0].kind not in ("net", "network"):
        raise ModelError(f"{source}: a Darknet cfg must start with a [net] section")
    return sections


def read_cfg(path: str | Path) -> list[CfgSection]:
    """Read and parse a ``.cfg`` file (see :func:`parse_cfg`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ModelError(f"cannot read Darknet cfg {path}: {e.strerror or e}") from None
    return parse_cfg(text, source=str(path))


def cfg_input_size(cfg: str | Path) -> tuple[int, int]:
    """(height, width) of a cfg's ``[net]`` section."""
    net = read_cfg(cfg)[0]
    return net.get_int("height", 416), net.get_int("width", 416)
