"""Name -> builder registries for suites, teachers and methods.

Adding a suite, teacher or method is one file plus one ``@REGISTRY.register`` line, the way timm and
open_clip register models. Lookups of unknown names fail with the list of known ones.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A user asked for a name no registry entry carries; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    builder: T
    help: str


class Registry(Generic[T]):
    """A named collection of builders with one-line help texts (shown by ``run_bench.py list``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def decorator(builder: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, builder, help or (getattr(builder, "__doc__", "") or "").strip().split("\n")[0])
            return builder

        return decorator

    @contextmanager
    def added(self, name: str, builder: T, help: str = "") -> Iterator[T]:
        """An entry for the duration of a block (a test's own method or suite), removed afterwards."""
        self.register(name, help)(builder)
        try:
            yield builder
        finally:
            del self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).builder

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; expected one of: {known}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)
