"""`sweep --dry-run` and `reproduce --dry-run` estimate wall time from the measured cost of finished runs of the same
method and teacher, and say when there are none."""
from __future__ import annotations

import yaml

from tta_bench import cli
from tta_bench.sweep.status import duration, seconds_per_sample

from tests.report.conftest import make_summary, split, write_runs

SWEEP = {"name": "timed", "base": {"suite": "demo", "teacher": "tiny", "limit": 1, "corruptions": ["gaussian_noise"],
                                   "num_workers": 0, "device": "cpu", "batch_size": 1},
         "grid": {"method": ["source", "tent"]}}


def test_dry_run_times_runs_by_finished_runs_of_the_same_method_and_teacher(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # results/runs/ of this folder holds the finished runs that time the sweep
    runs = [make_summary(f"source-{k}", "source", "tiny", {"fog-5": split(10.0)}, seconds=seconds)
            for k, seconds in enumerate((20.0, 40.0, 60.0))]
    runs.append(make_summary("source-other-teacher", "source", "resnet50", {"fog-5": split(10.0)}, seconds=999.0))
    write_runs(tmp_path / "results" / "runs", runs)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
    assert cli.main(["sweep", "sweep.yaml", "--dry-run", "--out", str(tmp_path / "sweeps" / "timed")]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[2]: line for line in text.splitlines() if line[:1].isdigit() and "method=" in line}
    assert "≈ 40 s" in lines["method=source"]  # the median of 20, 40, 60 s per sample x 1 sample
    assert lines["method=tent"].split()[6] == "?"
    assert "wall time to run: ≈ 40 s for 1 run(s)" in text and "no finished run of tent/tiny to time the rest by" in text


def test_costs_scale_with_adaptation_steps_and_durations_read_as_minutes_and_hours():
    assert seconds_per_sample([(1.0, 10), (3.0, 10)], 20) == 4.0
    assert seconds_per_sample([(1.0, 0)], 0) == 1.0 and seconds_per_sample([], 5) is None
    assert [duration(s) for s in (40, 600, 9000)] == ["40 s", "10 min", "2.5 h"]
