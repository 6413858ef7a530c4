"""Per-sample outcomes read back from predictions.jsonl: correctness, failed samples, and the stream batches."""
from __future__ import annotations

import pytest

from tta_bench.report.outcomes import DEFAULT_BATCH_SIZE, batch_size, load_outcomes
from tta_bench.report.runs import RunFolderError, load_summary
from tta_bench.vocabulary import PREDICTIONS

from .conftest import write_run


def _outcomes(run_dir):
    return load_outcomes(run_dir, load_summary(run_dir))


def test_batches_are_cut_every_batch_size_and_at_each_domain_under_reset_each_shift(tmp_path):
    run = write_run(tmp_path, "bn", "bn_adapt", {"fog-5": [True] * 70, "snow-5": [False] * 10}, online=True,
                    batch_size=64)
    splits = _outcomes(run).splits
    assert splits["fog-5"].batches.tolist() == [0] * 64 + [1] * 6
    assert splits["snow-5"].batches.tolist() == [2] * 10  # a reset starts a new batch


def test_a_continual_stream_has_one_reset_so_a_batch_spans_two_domains(tmp_path):
    run = write_run(tmp_path, "bn", "bn_adapt", {"fog-5": [True] * 70, "snow-5": [False] * 10}, online=True,
                    batch_size=64, setting="continual")
    splits = _outcomes(run).splits
    assert splits["fog-5"].batches.tolist()[-6:] == [1] * 6 and splits["snow-5"].batches.tolist() == [1] * 10


def test_failed_samples_count_as_wrong_and_keys_follow_the_stream(tmp_path):
    run = write_run(tmp_path, "t", "tent", {"fog-5": [True, True, False, True]}, failed={"fog-5": 2}, shuffle=True,
                    seed=3)
    fog = _outcomes(run).splits["fog-5"]
    right = dict(zip((key for key, _ in fog.keys), fog.top1.tolist()))
    assert right == {"s0000": False, "s0001": False, "s0002": False, "s0003": True}
    assert fog.correct("error").tolist() == [not r for r in fog.top1.tolist()]


def test_the_batch_size_is_read_as_the_run_used_it():
    assert batch_size({"config": {"batch_size": 16}}) == 16
    assert batch_size({"config": {"batch_size": None}, "defaults": {"applied": {"batch_size": 200}}}) == 200
    assert batch_size({"config": {}}) == DEFAULT_BATCH_SIZE


def test_the_default_batch_size_is_the_engines():
    from tta_bench.methods.defaults import DEFAULT_BATCH_SIZE as ENGINE

    assert DEFAULT_BATCH_SIZE == ENGINE


def test_missing_and_damaged_predictions_are_named(tmp_path):
    run = write_run(tmp_path, "t", "tent", {"fog-5": [True, False]})
    lines = (run / PREDICTIONS).read_text().splitlines()
    (run / PREDICTIONS).write_text(lines[0] + "\n{oops\n")
    with pytest.raises(RunFolderError, match="line 2 is damaged"):
        _outcomes(run)
    (run / PREDICTIONS).unlink()
    with pytest.raises(RunFolderError, match="no predictions.jsonl"):
        _outcomes(run)
