"""Frozen-dataclass configs loaded from YAML, with unknown keys rejected.

Each domain package declares its own config as a frozen dataclass (fields with defaults and
docstrings); this module turns YAML mappings and ``--set key=value`` overrides into instances of
them, checking every key and type. Nothing here holds global state.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from posetracker.core.errors import ConfigError
from posetracker.core.fileio import read_input_text

T = TypeVar("T")


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: cannot read {value!r} as {getattr(tp, '__name__', tp)}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise :class:`ConfigError`.

    Keys missing from ``data`` keep the dataclass defaults. Nested dataclass fields take nested
    mappings.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def configured(cls: type[T], config: T | None, overrides: Mapping[str, Any]) -> T:
    """``config`` (``None``: the defaults of ``cls``) with the fields named in ``overrides``
    replaced by :func:`dataclasses.replace`, so the class checks them: the one way a domain object
    (tracker, detector, ...) turns its ``config`` and keyword overrides into its settings.

    Raises:
        TypeError: an unknown field. ValueError: a value the class rejects.
    """
    return dataclasses.replace(cls() if config is None else config, **overrides)


def to_dict(obj: Any) -> Any:
    """A dataclass config as plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; an unreadable file or a non-mapping raises :class:`ConfigError`."""
    p = Path(path)
    try:
        data = yaml.safe_load(read_input_text(p))
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:  # a binary file given as --config
        raise ConfigError(f"{p}: not a YAML text file ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"tracker.link_len=100"`` -> ``(["tracker", "link_len"], 100)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def merge_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply ``key.sub=value`` overrides to a nested mapping (a new mapping is returned)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {text}: {part} is not a section")
            node = nxt
        node[path[-1]] = value
    return out


def update_config(obj: T, data: Mapping[str, Any], where: str = "config") -> T:
    """``obj`` with the keys of the nested mapping ``data`` replaced; keys left out keep ``obj``'s
    values (not the class defaults: a section given in part keeps the rest of ``obj``'s section).

    Raises:
        ConfigError: an unknown key, a wrong type or an invalid value (the message names the key).
    """
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"{where}: not a settings section")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(sorted(names))})")
    changes: dict[str, Any] = {}
    for k, v in data.items():
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current) and isinstance(v, Mapping):
            changes[k] = update_config(current, v, f"{where}.{k}")
        else:
            changes[k] = _convert(hints[k], v, f"{where}.{k}")
    try:
        return dataclasses.replace(obj, **changes)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def replace_path(obj: T, path: str, value: Any) -> T:
    """``obj`` with the field at the dotted ``path`` (``"estimator.sppe.batch_size"``) set to
    ``value`` by :func:`dataclasses.replace` down the sections (the value is used as given, not
    parsed; the dataclasses' checks run)."""
    head, _, rest = path.partition(".")
    if not dataclasses.is_dataclass(obj) or head not in {f.name for f in dataclasses.fields(obj)}:
        raise ConfigError(f"{path}: no such setting")
    new = replace_path(getattr(obj, head), rest, value) if rest else value
    try:
        return dataclasses.replace(obj, **{head: new})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None


def get_path(obj: Any, path: str) -> Any:
    """The value at the dotted ``path`` of a dataclass config."""
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def apply_overrides(obj: T, overrides: Sequence[str], where: str = "--set") -> T:
    """``obj`` with ``key.sub=value`` overrides applied in order, keys rooted at ``obj`` (values
    read as YAML, as in a settings file)."""
    for text in overrides:
        path, value = parse_override(text)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        try:
            obj = update_config(obj, nested, "settings")
        except ConfigError as e:
            raise ConfigError(f"{where} {text}: {str(e).split(': ', 1)[-1]}") from None
    return obj


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of ``cls``, updated by the YAML file at ``path`` and then by ``overrides``."""
    data = load_yaml(path) if path is not None else {}
    where = str(path) if path is not None else "config"
    return from_dict(cls, merge_overrides(data, overrides), where)


def dump_config(obj: Any) -> str:
    """YAML text of a config, loadable again by :func:`load_config`."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
