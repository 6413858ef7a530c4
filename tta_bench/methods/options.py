"""A method's options: a dataclass of typed fields, every value checked in one place before a run starts.

A field's type says what it takes (``int``, ``float``: finite, ``bool``, ``str``, a ``Literal`` of choices, a union
of them), ``option(default, ge=, gt=, le=)`` its range, and ``Options.problems`` the rules that involve several
fields. Command-line values arrive as strings and are converted to the field's type; a run file's or the Python API's
values must already have it (1.5 for an integer is refused, not truncated).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ..choices import ResetMode
from ..errors import UserError

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def option(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """An option field with its valid range (pydantic's words: ge >=, gt >, le <=). A subclass that redeclares the
    field with a plain default keeps the range declared here."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}
    return field(default=default, metadata={"bounds": bounds})


@dataclass
class Options:
    """The options every method accepts (``--steps --lr --reset``); methods subclass it with their paper's defaults
    and add their own fields. Every field is checked by ``validate``: its type (``Literal`` fields: the choices), its
    range (``option``), and the subclass's own rules (``problems``)."""

    steps: int = option(0, ge=0)
    lr: float = option(0.0, ge=0)
    reset: ResetMode = "episodic"  # episodic: restore the initial state before every batch; online: keep adapting

    @classmethod
    def parse(cls, given: dict[str, Any], owner: str) -> "Options":
        """Options from ``given`` (command-line strings converted to each field's type), validated; unknown names are
        refused with the accepted ones."""
        hints = _hints(cls)
        unknown = sorted(set(given) - set(hints))
        if unknown:
            raise UserError(f"method {owner} has no option(s) {', '.join(unknown)}; it accepts: "
                            f"{', '.join(sorted(hints))}")
        problems: list[str] = []
        values = {k: _convert(k, hints[k], v, _bounds(cls, k), problems) for k, v in given.items()}
        if problems:
            raise UserError(f"method {owner}: {'; '.join(problems)}")
        options = cls(**values)
        options.validate(owner)
        return options

    def validate(self, owner: str) -> None:
        """Every problem with the values in one line: types, choices, ranges, then the subclass's own rules."""
        hints = _hints(type(self))
        problems = [p for f in dataclasses.fields(self) if (p := _problem(f.name, hints[f.name], getattr(self, f.name),
                                                                          _bounds(type(self), f.name)))]
        problems += self.problems() if not problems else []
        if problems:
            raise UserError(f"method {owner}: {'; '.join(problems)}")

    def problems(self) -> list[str]:
        """Rules that involve several fields or values a range cannot say (subclasses override)."""
        return []


@functools.cache
def _hints(cls: type[Options]) -> dict[str, Any]:
    """Field name -> its type, annotations resolved (``Literal`` choices included)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in names}


def _bounds(cls: type[Options], name: str) -> dict[str, float]:
    """The range declared for a field, by the nearest class in the hierarchy that declared one."""
    for klass in cls.__mro__:
        declared = getattr(klass, "__dataclass_fields__", {}).get(name)
        if declared is not None and declared.metadata.get("bounds"):
            return declared.metadata["bounds"]
    return {}


def _members(kind: Any) -> tuple[Any, ...]:
    """A union's member types; any other type alone."""
    return typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)


def _convert(name: str, kind: Any, value: Any, bounds: dict[str, float], problems: list[str]) -> Any:
    """A command-line string as the field's type (the first of a union's members that takes it); other values as
    given (``validate`` checks them), ints widened where the field is a float."""
    members = _members(kind)
    if not isinstance(value, str):
        return float(value) if float in members and isinstance(value, int) and not isinstance(value, bool) else value
    for member in members:
        if member is str or (typing.get_origin(member) is Literal and value in typing.get_args(member)):
            return value
        if member is bool and value.lower() in TRUE + FALSE:
            return value.lower() in TRUE
        if member in (int, float):
            try:
                return member(value)
            except ValueError:
                continue
    problems.append(f"{name} must be {_expected(kind, bounds)}, got {value!r}")
    return value


def _problem(name: str, kind: Any, value: Any, bounds: dict[str, float]) -> str | None:
    """What is wrong with one value, or None."""
    expected = _expected(kind, bounds)
    if not any(_fits(member, value) for member in _members(kind)):
        return f"{name} must be {expected}, got {value!r}"
    if not bounds or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if all({"ge": value >= limit, "gt": value > limit, "le": value <= limit}[k] for k, limit in bounds.items()):
        return None
    return f"{name} must be {expected}, got {value!r}"


def _expected(kind: Any, bounds: dict[str, float]) -> str:
    """What a field takes, in words: "an integer >= 1", "one of ce, symmetric"."""
    words = {"ge": ">=", "gt": ">", "le": "<="}
    return " ".join([_describe(kind), " and ".join(f"{words[k]} {v:g}" for k, v in bounds.items())]).strip()


def _fits(kind: Any, value: Any) -> bool:
    if typing.get_origin(kind) is Literal:
        return isinstance(value, str) and value in typing.get_args(kind)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    words = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        return str(choices[0]) if len(choices) == 1 else "one of " + ", ".join(map(str, choices))
    members = _members(kind)
    return " or ".join(_describe(m) for m in members) if len(members) > 1 else words.get(kind, str(kind))
