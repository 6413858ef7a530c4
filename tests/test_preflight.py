"""preflight: what every entry point checks before anything is written."""
from __future__ import annotations

import math

import pytest

from tta_bench.config import RunConfig
from tta_bench.errors import UserError
from tta_bench.preflight import check_method_options, preflight
from tta_bench.registry import UnknownNameError


@pytest.mark.parametrize("method, options, phrase", [
    ("tent", {"steps": 1.5}, "--steps must be an integer, got 1.5"),
    ("tent", {"steps": True}, "--steps must be an integer, got True"),
    ("tent", {"lr": math.inf}, "--lr must be a finite number, got inf"),
    ("tent", {"lr": "nan"}, "--lr must be a finite number, got nan"),
    ("tent", {"nonsense": 1}, "method tent has no option(s) ['nonsense']"),
    ("apm", {"compile": "maybe"}, "apm option compile must be true or false, got 'maybe'"),
    ("apm", {"chunk_size": [1]}, "apm option chunk_size must be an integer, got [1]"),
    ("no-such-method", {}, "unknown method 'no-such-method'"),
])
def test_method_options_are_typed_by_the_methods_own_declaration(method, options, phrase):
    with pytest.raises((UserError, UnknownNameError)) as error:
        check_method_options(RunConfig(method=method, method_options=options))
    assert phrase in str(error.value)


def test_options_as_typed_on_the_command_line_pass_and_stay_as_given():
    cfg = RunConfig(method="apm", method_options={"steps": "3", "lr": 0.5, "parallel": "auto", "preset": "auto",
                                                  "compile": "true"})
    check_method_options(cfg)
    assert cfg.method_options["steps"] == "3"  # the recorded configuration (and its run folder name) unchanged


def test_the_teacher_and_its_files_are_checked_too():
    with pytest.raises(UserError, match="teacher domainnet126-resnet50 needs its weights file"):
        preflight(RunConfig(teacher="domainnet126-resnet50"))
    with pytest.raises(UserError, match="^seed must be >= 0"):
        preflight(RunConfig(seed=-1), names="fields")
