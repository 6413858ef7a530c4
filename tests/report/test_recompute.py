"""`metrics` through the real entry point: ECE for a --save-logits run (and `table --metric ece` after it);
top-1, top-5 and per-class from the predictions of a run without saved logits; a failed sample counts as wrong."""
from __future__ import annotations

import json

import pytest

from tta_bench.cli import main
from tta_bench.report.recompute import prediction_metrics, recompute
from tta_bench.vocabulary import METRICS, SUMMARY

from tests.conftest import WNIDS, write_images


def _run(tmp_path, name: str, *extra: str):
    data = tmp_path / "val"
    if not data.is_dir():
        write_images(data, {w: 4 for w in WNIDS}, size=8)
    out = tmp_path / name
    assert main(["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny",
                 "--batch-size", "4", "--workers", "0", "--device", "cpu", "--out", str(out), "--no-progress",
                 *extra]) == 0
    return out


def test_metrics_prints_ece_for_a_run_with_saved_logits_and_table_shows_it(tmp_path, capsys):
    out = _run(tmp_path, "logits", "--save-logits")
    capsys.readouterr()
    assert main(["metrics", str(out)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("| split"))
    assert header == "| split | top1 | top5 | ece | nll | brier |"
    values = json.loads((out / METRICS).read_text())["splits"]["imagenet"]
    summary = json.loads((out / SUMMARY).read_text())["splits"]["imagenet"]
    assert values["top1"] == summary["top1"] and 0 <= values["ece"] <= 100 and values["nll"] > 0
    assert f"| imagenet | {summary['top1']:.2f} | {summary['top5']:.2f} | {values['ece']:.2f} |" in text
    assert main(["table", str(out), "--metric", "ece"]) == 0
    assert f"{values['ece']:.1f}" in capsys.readouterr().out


def test_metrics_without_logits_gives_what_the_predictions_hold(tmp_path, capsys):
    out = _run(tmp_path, "plain")
    capsys.readouterr()
    assert main(["metrics", str(out), "--metric", "top1,top5"]) == 0
    text = capsys.readouterr().out
    assert "| split | top1 | top5 |" in text and "need saved logits: rerun with --save-logits" in text
    assert main(["metrics", str(out)]) == 0  # the default: every metric the run can give
    values = json.loads((out / METRICS).read_text())["splits"]["imagenet"]
    assert set(values) == {"top1", "top5", "per-class"}
    assert main(["metrics", str(out), "--metric", "ece"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ece need saved logits (rerun with --save-logits" in err


def test_prediction_metrics_count_failed_samples_as_wrong_and_per_class():
    records = [{"split": "s", "id": str(i), "label": label, "pred": pred, "top5": [pred, 1, 2, 3, 4], "status": status}
               for i, (label, pred, status) in enumerate([(0, 0, "ok"), (0, 0, "failed"), (1, 1, "ok"),
                                                          (1, 3, "ok"), (2, 2, "error")])]
    values = prediction_metrics(records, ("top1", "top5", "per-class"))
    assert values == {"top1": 50.0, "top5": 75.0, "per-class": {0: 50.0, 1: 50.0}}


def test_unknown_metrics_are_named(tmp_path):
    out = _run(tmp_path, "plain")
    with pytest.raises(ValueError, match="unknown metric\\(s\\) accuracy"):
        recompute(out, ("accuracy",))
