"""The closed sets of choices: each defined once (choices.py), the command line's choices and the checks taken from
there, and no copy of a set left elsewhere in the package."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tta_bench import choices, cli
from tta_bench.config import RunConfig

PACKAGE = Path(__file__).resolve().parents[1] / "tta_bench"
SETS = {name: getattr(choices, name) for name in dir(choices) if name.isupper()}


def test_the_stream_settings_are_the_settings_choices():
    from tta_bench.stream import SETTINGS

    assert sorted(SETTINGS.names()) == sorted(choices.SETTINGS)


def test_the_named_prompt_sets_are_the_prompt_choices():
    from tta_bench.data.labels import NAMED_TEMPLATES, PROMPT_SPECS

    assert PROMPT_SPECS == choices.PROMPT_SETS and set(NAMED_TEMPLATES) <= set(choices.PROMPT_SETS)


@pytest.mark.parametrize("flag, values", [
    ("--source", choices.SOURCES), ("--device", choices.DEVICES), ("--precision", choices.PRECISIONS),
    ("--on-error", choices.ON_ERROR), ("--sorter", choices.SORTERS), ("--label-index", choices.LABEL_INDICES),
    ("--setting", choices.SETTINGS), ("--reset", choices.RESET_MODES),
])
def test_the_command_line_takes_its_choices_from_the_definitions(flag, values):
    (action,) = [a for a in cli.run_parser()._actions if flag in a.option_strings]
    assert tuple(action.choices) == values


def test_validate_checks_every_closed_set_field():
    for name, values in (("source", choices.SOURCES), ("setting", choices.SETTINGS), ("device", choices.DEVICES)):
        for value in values:
            RunConfig(**{name: value}).validate()


def test_no_closed_set_is_written_out_again_in_the_package():
    """A tuple, list or set of string literals equal to a closed set, outside choices.py, is a second definition."""
    sets = {frozenset(values): name for name, values in SETS.items() if len(values) > 1}
    copies = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "choices.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                found = frozenset(e.value for e in node.elts)
                if found in sets:
                    copies.append(f"{path.relative_to(PACKAGE)}:{node.lineno} repeats {sets[found]}")
    assert copies == []
