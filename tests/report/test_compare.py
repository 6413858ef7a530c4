"""`compare RUN_A RUN_B`: per split and overall, both accuracies, the paired difference with interval and p, the
discordant counts; refused in one line for runs on other samples."""
from __future__ import annotations

import numpy as np
import pytest

from tta_bench.cli import main
from tta_bench.report.compare import compare_command

from .conftest import write_run


def _flags(accuracy: float, seed: int, n: int = 500) -> list[bool]:
    return (np.random.default_rng(seed).random(n) < accuracy).tolist()


def _rows(text: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| ") and "split" not in line]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows}


def test_compare_prints_both_accuracies_the_difference_and_who_got_what_right(tmp_path):
    a = {"fog-5": _flags(0.7, 1), "snow-5": _flags(0.6, 2)}
    b = {"fog-5": _flags(0.3, 3), "snow-5": _flags(0.6, 2)}  # snow: the same predictions
    run_a = write_run(tmp_path, "a", "tent", a, online=True, batch_size=25)
    run_b = write_run(tmp_path, "b", "source", b)
    text = compare_command(run_a, run_b)
    rows = _rows(text)
    fog = rows["fog-5"]
    only_a = sum(x and not y for x, y in zip(a["fog-5"], b["fog-5"]))
    only_b = sum(y and not x for x, y in zip(a["fog-5"], b["fog-5"]))
    assert fog[4:7] == [str(only_a), str(only_b), "500"]
    assert fog[2].startswith("+") and "†" in fog[2] and fog[3] == "p<0.001"
    assert rows["snow-5"][2:] == ["0.00 [0.00, 0.00]", "p=1.000", "0", "0", "500"]
    assert rows["mean"][6] == "1000" and "resampled: batches of 25" in text


def test_a_deterministic_method_under_two_seeds_differs_by_zero_with_an_interval_containing_it(tmp_path):
    """The same predictions in another stream order (another seed): difference 0, interval [0, 0], p = 1."""
    flags = {"fog-5": _flags(0.4, 5)}
    run_a = write_run(tmp_path, "seed0", "source", flags, seed=0, shuffle=True)
    run_b = write_run(tmp_path, "seed1", "source", flags, seed=1, shuffle=True)
    assert _rows(compare_command(run_a, run_b))["fog-5"][2:4] == ["0.00 [0.00, 0.00]", "p=1.000"]


@pytest.mark.parametrize("change, message", [
    ({"subset": "limit-100"}, "subset full vs limit-100"),
    ({"splits": ["snow-5"]}, "splits only in A: fog-5; only in B: snow-5"),
])
def test_runs_on_other_samples_are_refused_in_one_line_naming_what_differs(tmp_path, capsys, change, message):
    run_a = write_run(tmp_path, "a", "source", {"fog-5": _flags(0.4, 5)})
    n = 100 if "subset" in change else 500
    run_b = write_run(tmp_path, "b", "tent", {split: _flags(0.4, 6, n) for split in change.get("splits", ["fog-5"])},
                      subset=change.get("subset", "full"))
    assert main(["compare", str(run_a), str(run_b)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err and "same samples" in err


def test_the_cli_compares(tmp_path, capsys):
    run_a = write_run(tmp_path, "a", "source", {"fog-5": _flags(0.4, 5)})
    run_b = write_run(tmp_path, "b", "tent", {"fog-5": _flags(0.5, 6)})
    assert main(["compare", str(run_a), str(run_b), "--metric", "error"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"A: {run_a} (source (resnet20))") and "error, percent" in out
