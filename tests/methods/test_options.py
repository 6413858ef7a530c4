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
    ({"size": 0}, "m option size must be >= 1, got 0"),  # the range a subclass inherits
    ({"size": 1.5}, "m option size must be an integer, got 1.5"),  # a run file's 1.5 is not truncated
    ({"size": "1.5"}, "m option size must be an integer, got '1.5'"),
    ({"size": True}, "m option size must be an integer, got True"),
    ({"share": float("nan")}, "m option share must be a finite number, got nan"),
    ({"share": 0}, "m option share must be a finite number > 0, got 0.0"),
    ({"kind": "c"}, "m option kind must be one of a, b, got 'c'"),
    ({"parallel": "maybe"}, "m option parallel must be true or false or one of auto, got 'maybe'"),
    ({"flag": "yes please"}, "m option flag must be true or false, got 'yes please'"),
    ({"reset": "never"}, "--reset must be one of episodic, online, got 'never'"),  # an option with a flag of its own
    ({"lr": 1e200}, "--lr must be a finite number <= 3.4e\\+38, got 1e\\+200"),  # float32 cannot take the step
])
def test_bad_values_are_named_with_what_the_field_takes(given, phrase):
    with pytest.raises(UserError, match=f"^{phrase}$".replace("(", r"\(").replace(")", r"\)")):
        Child.parse(given, "m")


def test_every_problem_in_one_line_and_unknown_names_with_the_accepted_ones():
    with pytest.raises(UserError, match="size must be .*; m option share must be .*; m option kind must be"):
        Child.validate(Child(size=-1, share=2.0, kind="c"), "m")
    with pytest.raises(UserError, match="method m has no option.*colour.*; it accepts: flag, kind, lr, parallel, reset"):
        Child.parse({"colour": "red"}, "m")


def test_rules_over_several_fields():
    @dataclass
    class Pair(Options):
        low: float = 0.0
        high: float = 1.0

        def problems(self) -> list[str]:
            return [f"low must be below high, got {self.low} and {self.high}"] if self.low >= self.high else []

    with pytest.raises(UserError, match="^low must be below high, got 2.0 and 1.0$"):
        Pair.parse({"low": 2}, "m")
