"""Per-suite-family method defaults: the table is well formed, applies under the user's values, and is recorded."""
from __future__ import annotations

import dataclasses

from tta_bench import engine
from tta_bench.methods import METHODS
from tta_bench.data.suites import SUITES
from tta_bench.methods.defaults import _table, resolve
from tta_bench.report.runs import run_label


def test_every_entry_cites_its_source_and_names_real_options_and_families():
    families = {spec.builder.family for spec in SUITES}
    for method, by_family in _table().items():
        fields = {f.name for f in dataclasses.fields(METHODS.get(method).options_class)}
        for family, entry in by_family.items():
            assert family in families, (method, family)
            assert entry.get("source"), (method, family)
            assert set(entry) <= {"source", "batch_size", "options"}, (method, family)
            assert set(entry.get("options") or {}) <= fields, (method, family)


def test_tent_gets_its_paper_setting_per_family_under_the_users_values():
    cifar, imagenet = resolve("tent", "cifar10", None, {}), resolve("tent", "imagenet", None, {})
    assert (cifar.batch_size, cifar.options) == (200, {"optimizer": "adam", "lr": 0.001})
    assert (imagenet.batch_size, imagenet.options) == (64, {"optimizer": "sgd", "lr": 0.00025})
    mine = resolve("tent", "imagenet", 32, {"lr": 0.01})
    assert (mine.batch_size, mine.options) == (32, {"optimizer": "sgd", "lr": 0.01})
    assert mine.record["applied"] == {"optimizer": "sgd"}
    assert mine.record["overridden"] == {"lr": {"table": 0.00025, "used": 0.01},
                                         "batch_size": {"table": 64, "used": 32}}
    assert resolve("source", "imagenet", None, {}).batch_size == 64  # no entry: the plain default


def test_a_run_records_its_defaults_and_flags_one_batch_segments(cifar_run):
    summary = engine.run(cifar_run(method="tent", batch_size=None), progress=False, log=lambda *_: None)
    assert summary["defaults"]["applied"] == {"optimizer": "adam", "lr": 0.001, "batch_size": 200}
    assert summary["method_options"]["optimizer"] == "adam"
    # 8 samples per domain in one batch of 200: TENT predicts each domain before its first update
    assert any(n.startswith("one-batch segments") for n in summary["notes"])
    assert "one-batch segments" in run_label(summary)


def test_batches_smaller_than_the_segments_raise_no_flag(cifar_run):
    p = engine.prepare(cifar_run(method="tent", batch_size=4))
    assert p.defaults.batch_size == 4 and p.notes == []
    assert engine.prepare(cifar_run(method="source", batch_size=None)).notes == []  # episodic: never flagged
