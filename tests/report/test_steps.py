"""`table --at-step N` and the steps plot read the per-step records of one run."""
from __future__ import annotations

import json

import pytest

from tta_bench.report import plot_command, table_command
from tta_bench.report.runs import RunFolderError
from tta_bench.report.steps import curve, summary_at_step

from .conftest import make_summary
from tta_bench.vocabulary import CONFIG, PREDICTIONS, SUMMARY


def _run(tmp_path):
    run = tmp_path / "apm-run"
    run.mkdir()
    splits = {"fog-5": {"n": 4, "top1": 75.0, "top5": 100.0, "teacher_top1": 75.0, "agreement": 100.0}}
    summary = make_summary("apm-run", "apm", "tiny", splits, source="generated", options={"steps": 10})
    (run / SUMMARY).write_text(json.dumps(summary))
    (run / CONFIG).write_text(json.dumps(summary["config"]))
    labels, at0, at10 = [0, 1, 2, 3], [5, 5, 5, 3], [0, 1, 2, 0]
    with open(run / PREDICTIONS, "w") as f:
        for i, (y, p0, p10) in enumerate(zip(labels, at0, at10)):
            f.write(json.dumps({"split": "fog-5", "id": str(i), "label": y, "pred": p10, "status": "ok",
                                "steps": {"0": {"pred": p0, "agree": False}, "10": {"pred": p10, "agree": i != 3}}}) + "\n")
    return run


def test_summary_at_step_recomputes_accuracy_and_agreement(tmp_path):
    run = _run(tmp_path)
    s0, s10 = summary_at_step(run, 0), summary_at_step(run, 10)
    assert s0["splits"]["fog-5"]["top1"] == 25.0 and s0["splits"]["fog-5"]["agreement"] == 0.0
    assert s10["splits"]["fog-5"]["top1"] == 75.0 and s10["splits"]["fog-5"]["agreement"] == 75.0
    assert curve(run) == ([0, 10], [25.0, 75.0], [0.0, 75.0])
    with pytest.raises(RunFolderError, match="recorded: \\[0, 10\\]"):
        summary_at_step(run, 5)


def test_table_at_step_and_steps_plot(tmp_path):
    run = _run(tmp_path)
    text = table_command([str(run)], "md", False, "top1", at_step=0)
    assert "apm@0" in text and "25.0" in text
    paths = plot_command([str(run)], tmp_path / "plots")
    steps_png = [p for p in paths if p.name.startswith("steps_") and p.suffix == ".png"]
    assert steps_png and steps_png[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
