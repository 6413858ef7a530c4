"""A method's options: a dataclass of typed fields, every value checked in one place before a run starts.

A field's type says what it takes (``int``, ``float``: finite, ``bool``, ``str``, a ``Literal`` of choices, a union
of them), ``option(default, ge=, gt=, le=)`` its range, and ``Options.problems`` the rules that involve several
fields. Values pass through the configuration's one conversion (``config.convert``: command-line text to the type, a
run file's or the API's value as it is, 1.5 for an integer refused); a message names an option by its flag where it
has one (``--lr``), else as "<method> option <name>".
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..choices import ResetMode
from ..config import RunConfig, conforms, convert, describe, hints
from ..errors import UserError

# beyond it SGD cannot even take the step (the scalar overflows float32); below it a huge rate diverges, and the
# engine marks the samples of a NaN update failed
LARGEST_LR = float(np.finfo(np.float32).max)
WORDS = {"ge": ">=", "gt": ">", "le": "<="}


def option(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """An option field with its valid range (pydantic's words: ge >=, gt >, le <=). A subclass that redeclares the
    field keeps the bounds declared above it and adds its own."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}
    return field(default=default, metadata={"bounds": bounds})


@dataclass
class Options:
    """The options every method accepts (``--steps --lr --reset``); methods subclass it with their paper's defaults
    and add their own fields. ``validate`` checks every field: its type (``Literal`` fields: the choices), its range
    (``option``), and the subclass's own rules (``problems``)."""

    steps: int = option(0, ge=0)
    lr: float = option(0.0, ge=0, le=LARGEST_LR)
    reset: ResetMode = "episodic"  # episodic: restore the initial state before every batch; online: keep adapting

    @classmethod
    def parse(cls, given: dict[str, Any], owner: str) -> "Options":
        """Options from ``given`` (command-line text converted to each field's type), validated; unknown names are
        refused with the accepted ones."""
        names = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise UserError(f"method {owner} has no option(s) {unknown}; it accepts: {', '.join(names)}")
        kinds = hints(cls)
        options = cls(**{k: convert(kinds[k], v, option_name(owner, k)) for k, v in given.items()})
        options.validate(owner)
        return options

    def validate(self, owner: str) -> None:
        """Every problem with the values in one line: types, choices, ranges, then the subclass's own rules."""
        kinds = hints(type(self))
        problems = [p for f in dataclasses.fields(self) if (p := _problem(
            option_name(owner, f.name), kinds[f.name], getattr(self, f.name), bounds(type(self), f.name)))]
        problems += self.problems() if not problems else []
        if problems:
            raise UserError("; ".join(problems))

    def problems(self) -> list[str]:
        """Rules that involve several fields or values a range cannot say (subclasses override)."""
        return []


def option_name(method: str, key: str) -> str:
    """How a message names an option: its command-line flag where it has one, else "<method> option <key>"."""
    flags = {k.key: k.spelling for f in dataclasses.fields(RunConfig) for k in f.metadata.get("keys", ())}
    return flags.get(key, f"{method} option {key}")


def bounds(cls: type[Options], name: str) -> dict[str, float]:
    """A field's range: the bounds every class of the hierarchy declared for it, the nearest winning."""
    out: dict[str, float] = {}
    for klass in reversed(cls.__mro__):
        declared = getattr(klass, "__dataclass_fields__", {}).get(name)
        if declared is not None:
            out |= declared.metadata.get("bounds", {})
    return out


def _problem(name: str, kind: Any, value: Any, limits: dict[str, float]) -> str | None:
    """What is wrong with one value, or None."""
    if not conforms(kind, value):
        return f"{name} must be {describe(kind)}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    broken = [f"{WORDS[k]} {v:.3g}" for k, v in limits.items()
              if not {"ge": value >= v, "gt": value > v, "le": value <= v}[k]]
    if not broken:
        return None
    number = "a finite number " if isinstance(value, float) else ""
    return f"{name} must be {number}{' and '.join(broken)}, got {value!r}"
