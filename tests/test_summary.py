"""summary.json from records: per split, means, teacher agreement, severity means."""
from __future__ import annotations

import pytest

from tta_bench.summary import Summary, summarize


def _r(split, label, pred, **extra):
    return {"split": split, "id": f"{split}/{label}/{pred}", "label": label, "pred": pred, "top5": [pred, label],
            "correct": label == pred, "status": "ok", **extra}


def test_summary_means_and_teacher_agreement():
    records = [_r("fog-1", 0, 0, teacher_pred=0), _r("fog-1", 1, 2, teacher_pred=1),
               _r("fog-5", 0, 0, teacher_pred=1), _r("fog-5", 1, 1, teacher_pred=1),
               {**_r("fog-5", 2, 0), "status": "error", "pred": -1, "top5": []}]
    meta = dict(run_name="r", suite="x", method="m", teacher="t", source="generated", data={}, setting={}, seed=0,
                config={}, method_options={}, cost={})
    s = summarize(records, ["fog-1", "fog-5"], meta).to_dict()
    assert s["splits"]["fog-1"]["top1"] == 50.0 and s["splits"]["fog-1"]["top5"] == 100.0
    assert s["splits"]["fog-5"]["n"] == 2 and s["splits"]["fog-5"]["skipped"] == 1
    assert s["splits"]["fog-5"]["agreement"] == 50.0 and s["splits"]["fog-5"]["teacher_top1"] == 50.0
    assert s["mean_top1"] == 75.0 and s["mean_top1_by_severity"] == {"1": 50.0, "5": 100.0}
    assert s["teacher_mean_top1"] == 75.0 and s["mean_agreement"] == 50.0


def test_optional_means_are_absent_where_they_do_not_apply():
    s = Summary.of({"clean": {"top1": 10.0, "top5": 20.0}}, run_name="r", suite="x", method="m", teacher="t",
                   source="published", data={}, setting={}, seed=0, config={}, method_options={}, cost={}).to_dict()
    assert s["mean_top1"] == 10.0 and not set(Summary.OPTIONAL) & set(s)


def test_failed_samples_count_wrong_in_top1_and_top5_and_are_counted():
    """A diverged sample's record holds the argmax of NaN (class 0) and a top-5 of the first classes: no prediction."""
    failed = {"status": "failed", "correct": False}
    records = [{**_r("fog-5", 0, 0), **failed, "top5": [0, 1, 2, 3, 4]}, {**_r("fog-5", 1, 0), **failed,
                                                                          "top5": [0, 1, 2, 3, 4]},
               _r("fog-5", 2, 2), {**_r("fog-1", 3, 0), **failed, "top5": [0, 1, 2, 3, 4]}]
    meta = dict(run_name="r", suite="x", method="m", teacher="t", source="generated", data={}, setting={}, seed=0,
                config={}, method_options={}, cost={})
    s = summarize(records, ["fog-1", "fog-5"], meta).to_dict()
    assert s["splits"]["fog-5"]["top1"] == s["splits"]["fog-5"]["top5"] == pytest.approx(100 / 3)
    assert s["splits"]["fog-5"]["failed"] == 2 and s["splits"]["fog-1"]["failed"] == 1
    assert s["splits"]["fog-1"]["top1"] == s["splits"]["fog-1"]["top5"] == 0.0
    assert s["failed"] == 3
