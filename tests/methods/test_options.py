"""Method options: command-line strings converted to each field's type, typed values checked as they are, ranges kept
by subclasses that only change a default, every problem named in one line."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from tta_bench.errors import UserError
from tta_bench.methods.options import Options, option


@dataclass
class Base(Options):
    size: int = option(4, ge=1)
    share: float = option(0.5, gt=0, le=1)
    kind: Literal["a", "b"] = "a"
    parallel: bool | Literal["auto"] = "auto"
    flag: bool = False


@dataclass
class Child(Base):
    size: int = 8  # a new default; the range stays Base's


def test_strings_from_the_command_line_become_the_fields_types():
    o = Child.parse({"size": "3", "share": "0.25", "kind": "b", "parallel": "TRUE", "flag": "off", "lr": "1e-3"}, "m")
    assert (o.size, o.share, o.kind, o.parallel, o.flag, o.lr) == (3, 0.25, "b", True, False, 1e-3)
    assert Child.parse({"parallel": "auto", "lr": 1}, "m").parallel == "auto"
    assert isinstance(Child.parse({"lr": 1}, "m").lr, float)  # an integer where a number goes: widened


@pytest.mark.parametrize("given, phrase", [
    ({"size": 0}, "size must be an integer >= 1, got 0"),  # the range a subclass inherits
    ({"size": 1.5}, "size must be an integer >= 1, got 1.5"),  # a run file's 1.5 is not truncated
    ({"size": "1.5"}, "size must be an integer >= 1, got '1.5'"),
    ({"size": True}, "size must be an integer >= 1, got True"),
    ({"share": float("nan")}, "share must be a finite number > 0 and <= 1, got nan"),
    ({"kind": "c"}, "kind must be one of a, b, got 'c'"),
    ({"parallel": "maybe"}, "parallel must be true or false or auto, got 'maybe'"),
    ({"flag": "yes please"}, "flag must be true or false, got 'yes please'"),
    ({"reset": "never"}, "reset must be one of episodic, online, got 'never'"),
])
def test_bad_values_are_named_with_what_the_field_takes(given, phrase):
    with pytest.raises(UserError, match=f"^method m: {phrase}$".replace("(", r"\(").replace(")", r"\)")):
        Child.parse(given, "m")


def test_every_problem_in_one_line_and_unknown_names_with_the_accepted_ones():
    with pytest.raises(UserError, match="size must be .*; share must be .*; kind must be"):
        Child.parse({"size": -1, "share": 2, "kind": 3}, "m")
    with pytest.raises(UserError, match="method m has no option.* colour; it accepts: flag, kind, lr, parallel, reset"):
        Child.parse({"colour": "red"}, "m")


def test_rules_over_several_fields():
    @dataclass
    class Pair(Options):
        low: float = 0.0
        high: float = 1.0

        def problems(self) -> list[str]:
            return [f"low must be below high, got {self.low} and {self.high}"] if self.low >= self.high else []

    with pytest.raises(UserError, match="method m: low must be below high, got 2.0 and 1.0"):
        Pair.parse({"low": 2}, "m")
