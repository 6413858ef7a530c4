"""Name -> builder registries for suites, teachers and methods.

Adding a suite, teacher or method is one file plus one registry line, the way timm and open_clip register models.
``lazy`` registers a builder by its import path ("package.module:attr"), imported on first use: listing names
(``run_bench.py list``) then imports neither torch nor any model code. Lookups of unknown names fail with the list of
known ones.
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A user asked for a name no registry entry carries; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


@dataclass
class Entry(Generic[T]):
    name: str
    target: T | str  # the builder, or its import path "package.module:attr" (``Registry.lazy``)
    help: str
    accepts: str = ""  # methods: the teachers it runs on, in words (``list`` shows it without importing it)

    @property
    def builder(self) -> T:
        """The builder itself; a lazy entry imports its module here, once."""
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attr)
        return self.target


class Registry(Generic[T]):
    """A named collection of builders with one-line help texts (shown by ``run_bench.py list``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str = "", accepts: str = "") -> Callable[[T], T]:
        def decorator(builder: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, builder, help or (getattr(builder, "__doc__", "") or "").strip().split("\n")[0],
                                        accepts)
            return builder

        return decorator

    @contextmanager
    def scoped(self) -> Iterator["Registry[T]"]:
        """Entries registered or overridden inside the block are gone after it (a test's own methods, suites or
        teachers); the registry's own entries are as before."""
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries = saved

    @contextmanager
    def added(self, name: str, builder: T, help: str = "", accepts: str = "") -> Iterator[T]:
        """An entry for the duration of a block, removed afterwards."""
        with self.scoped():
            self.register(name, help, accepts)(builder)
            yield builder

    def override(self, name: str, builder: T, help: str) -> None:
        """Replace a registered entry (inside ``scoped``: a test's teacher whose download fails)."""
        self.entry(name)
        self._entries[name] = Entry(name, builder, help)

    def lazy(self, name: str, target: str, help: str, accepts: str = "") -> None:
        """Register ``target`` ("package.module:attr") under ``name`` without importing it; ``help`` is required
        because listing must not import the builder to read its docstring."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if ":" not in target or not help:
            raise ValueError(f"{self.kind} {name!r}: lazy registration needs 'package.module:attr' and a help text")
        self._entries[name] = Entry(name, target, help, accepts)

    def get(self, name: str) -> T:
        return self.entry(name).builder

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; expected one of: {known}") from None

    def name_of(self, builder: object) -> str | None:
        """The name ``builder`` is registered under (a lazy entry matched by its import path, so that asking does
        not import the others); None for a builder outside the registry."""
        path = f"{getattr(builder, '__module__', '')}:{getattr(builder, '__qualname__', '')}"
        return next((e.name for e in self._entries.values() if e.target is builder or e.target == path), None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)
