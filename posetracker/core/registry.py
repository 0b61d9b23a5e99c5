"""A registry: the one table of some kind of entry (model formats, output formats), by name.

Entries are frozen dataclasses with a ``name``; the table keeps their order (the order choices are
listed in, and tried in where that matters). Adding an entry is one line in the table that owns
the registry; :meth:`Registry.register` also adds one at run time (a plug-in, a test), and every
reader of the table (CLI choices, checks, dispatch) sees it from then on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar


class _Named(Protocol):
    """What a registry entry must have: the name it is listed and looked up by."""

    @property
    def name(self) -> str: ...


E = TypeVar("E", bound=_Named)


class Registry(Generic[E]):
    """Entries by name, in registration order.

    Args:
        what: What an entry is, for messages (``"output format"``).
        entries: The built-in entries.
        error: The exception :meth:`get` raises for an unknown name (one line naming the known
            ones).
    """

    def __init__(self, what: str, entries: tuple[E, ...], error: type[Exception] = KeyError):
        self.what = what
        self.error = error
        self._entries: dict[str, E] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: E) -> E:
        """Add ``entry``; a name already taken raises ``ValueError``. Returns ``entry``."""
        if entry.name in self._entries:
            raise ValueError(f"{self.what} {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove the entry ``name`` (a plug-in unloaded, a test's entry)."""
        del self._entries[name]

    def get(self, name: str) -> E:
        """The entry ``name``; ``error`` naming the known entries otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(f"unknown {self.what} {name!r} (choose from "
                             f"{', '.join(self._entries)})") from None

    def names(self) -> tuple[str, ...]:
        """The entries' names, in order (argparse ``choices``)."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[E]:
        return iter(tuple(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)
