"""Per-suite-family method defaults: the table is well formed, applies under the user's values, and is recorded."""
from __future__ import annotations

import dataclasses

from tta_bench import engine
from tta_bench.methods import METHODS
from tta_bench.data.labels import PROMPT_SPECS
from tta_bench.data.suites import SUITES
from tta_bench.methods.defaults import _table, resolve
from tta_bench.report.runs import run_label


def test_every_entry_cites_its_source_and_names_real_options_and_families():
    keys = {spec.builder.family for spec in SUITES} | set(SUITES.names())  # a family, or a suite's own name
    for method, by_family in _table().items():
        fields = {f.name for f in dataclasses.fields(METHODS.get(method).options_class)}
        for family, entry in by_family.items():
            assert family in keys, (method, family)
            assert entry.get("source"), (method, family)
            assert set(entry) <= {"source", "batch_size", "options", "prompts"}, (method, family)
            assert set(entry.get("options") or {}) <= fields, (method, family)
            assert entry.get("prompts") in (None, *PROMPT_SPECS), (method, family)


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


def test_a_suites_own_entry_takes_precedence_over_its_family():
    """TDA's configs differ per dataset: imagenet-r has its own entry (configs/imagenet_r.yaml), imagenet-c takes
    the family's (configs/imagenet.yaml)."""
    r = resolve("tda", "imagenet", None, {}, suite="imagenet-r")
    c = resolve("tda", "imagenet", None, {}, suite="imagenet-c")
    assert (r.options["pos_alpha"], r.options["pos_beta"], r.options["n_views"]) == (1.0, 8.0, 64)
    assert (c.options["pos_alpha"], c.options["pos_beta"], c.options["n_views"]) == (2.0, 5.0, 1)
    assert r.record["family"] == "imagenet-r" and "imagenet_r.yaml" in r.record["source"]
    assert c.record["family"] == "imagenet" and "configs/imagenet.yaml" in c.record["source"]


def test_a_run_records_its_defaults_and_flags_one_batch_segments(cifar_run):
    summary = engine.run(cifar_run(method="tent", batch_size=None), progress=False, log=lambda *_: None)
    assert summary["defaults"]["applied"] == {"optimizer": "adam", "lr": 0.001, "batch_size": 200}
    assert summary["method_options"]["optimizer"] == "adam"
    # 8 samples per domain in one batch of 200: TENT predicts each domain before its first update
    assert any(n.startswith("one-batch segments") for n in summary["notes"])
    assert "one-batch segments" in run_label(summary)


def test_batches_smaller_than_the_segments_raise_no_flag(cifar_run):
    p = engine.prepare(cifar_run(method="tent", batch_size=4))
    assert p.defaults.batch_size == 4 and not any(n.startswith("one-batch segments") for n in p.notes)
    assert [n for n in p.notes if "is too small for them" in n] == p.notes  # only the warning of batch 4 < 16
    assert engine.prepare(cifar_run(method="source", batch_size=None)).notes == []  # episodic: never flagged
