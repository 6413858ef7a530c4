"""Faults during a run: disk full, out of memory, failed samples; each says what happened and keeps what was
written."""
from __future__ import annotations

import errno
import json
import os
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch

from tta_bench import engine, records
from tta_bench.cli import main
from tta_bench.methods import METHODS
from tta_bench.methods.base import Batch, Method, Output
from tta_bench.records import read_records

from conftest import WNIDS, write_images
from tta_bench.vocabulary import CONFIG, PREDICTIONS


@pytest.fixture
def data(tmp_path: Path) -> Path:
    write_images(tmp_path / "val", {w: 4 for w in WNIDS}, size=8)
    return tmp_path / "val"


@pytest.fixture
def registered():
    """Registers a test method through the registry's public API for the test's duration."""
    with ExitStack() as stack:
        yield lambda name, cls: stack.enter_context(METHODS.added(name, cls, "test method"))


def test_disk_full_stops_with_a_clear_message_and_keeps_the_config(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "run"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the disk fills up when the first predictions are flushed
        if os.readlink(f"/proc/self/fd/{fd}").endswith(PREDICTIONS):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(records.os, "fsync", fsync)
    code = main(["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny",
                 "--workers", "0", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot write {out / PREDICTIONS}" in err and "No space left on device" in err and "Traceback" not in err
    assert json.loads((out / CONFIG).read_text())["suite"] == "imagenet"


class FlakyMemory(Method):
    """Runs out of memory until its chunk is small enough, like APM's query chunks."""

    per_sample = True
    chunk = 64

    def predict(self, batch: Batch) -> Output:
        if self.chunk > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return Output(self.teacher(batch.images))

    def on_out_of_memory(self) -> bool:
        self.chunk //= 2
        return True


class AlwaysOutOfMemory(FlakyMemory):
    def on_out_of_memory(self) -> bool:
        return False


def test_out_of_memory_retries_with_a_smaller_chunk(registered, tiny_config, data):
    registered("test-flaky-memory", FlakyMemory)
    cfg = tiny_config(suite="imagenet", data_root=str(data), allow_partial=True, method="test-flaky-memory")
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["splits"]["imagenet"]["n"] == 12


def test_out_of_memory_without_a_smaller_chunk_says_what_to_do(registered, tmp_path, data, capsys):
    registered("test-always-oom", AlwaysOutOfMemory)
    code = main(["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny",
                 "--workers", "0", "--out", str(tmp_path / "run"), "--no-progress", "--method", "test-always-oom"])
    assert code == 2
    assert "ran out of memory" in capsys.readouterr().err


class FailsOdd(Method):
    """Marks every other sample failed (what APM does for a NaN loss)."""

    per_sample = True

    def predict(self, batch: Batch) -> Output:
        extras = [{"status": "failed"} if s % 2 else {} for s in batch.seeds]
        return Output(self.teacher(batch.images), extras)


def test_failed_samples_are_recorded_counted_and_scored_wrong(registered, tiny_config, data):
    registered("test-fails-odd", FailsOdd)
    cfg = tiny_config(suite="imagenet", data_root=str(data), allow_partial=True, method="test-fails-odd")
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    records = read_records(Path(cfg.out) / PREDICTIONS)
    failed = [r for r in records if r["status"] == "failed"]
    assert failed and all(not r["correct"] for r in failed)
    assert summary["splits"]["imagenet"]["failed"] == len(failed)
    assert summary["splits"]["imagenet"]["n"] == 12


def test_disk_full_during_the_final_merge_is_one_line_and_the_rerun_completes(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = ["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny", "--workers", "0",
            "--out", str(out), "--no-progress"]
    real_replace = os.replace

    def replace(src, dst):  # the disk is full when the merged predictions are renamed into place
        if str(dst).endswith(PREDICTIONS):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(records.os, "replace", replace)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(out.glob(".*.tmp"))  # the temporary file is gone
    monkeypatch.setattr(records.os, "replace", real_replace)  # space freed
    assert main(argv) == 0
    assert len(read_records(out / PREDICTIONS)) == 12


class Diverges(Method):
    """An online method whose update went to NaN after the first batch: every later output is NaN."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.calls = 0

    def predict(self, batch: Batch) -> Output:
        self.calls += 1
        logits = self.teacher(batch.images)
        return Output(logits if self.calls == 1 else torch.full_like(logits, float("nan")))


def test_a_diverged_online_method_is_marked_failed_not_scored(registered, tiny_config, data):
    registered("test-diverges", Diverges)
    cfg = tiny_config(suite="imagenet", data_root=str(data), allow_partial=True, method="test-diverges", batch_size=4)
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    records = read_records(Path(cfg.out) / PREDICTIONS)
    assert [r["status"] for r in records] == ["ok"] * 4 + ["failed"] * 8
    assert summary["splits"]["imagenet"]["failed"] == 8 and not any(r["correct"] for r in records[4:])


def test_nan_weights_fail_every_sample_and_score_zero(tmp_path, data, capsys):
    """Every logit NaN: the argmax is class 0 and the top-5 the first five classes, which hold these labels."""
    from tta_bench.teachers import build_teacher

    state = build_teacher("tiny", num_classes=1000).model.state_dict()
    torch.save({k: v * float("nan") if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "nan.th")
    out = tmp_path / "run"
    assert main(["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny", "--weights",
                 str(tmp_path / "nan.th"), "--workers", "0", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    split = summary["splits"]["imagenet"]
    assert split["failed"] == split["n"] == summary["failed"] == 12
    assert split["top1"] == split["top5"] == summary["mean_top1"] == summary["mean_top5"] == 0.0


@pytest.mark.parametrize("full_at", [PREDICTIONS, ".rank0.json.tmp"])
def test_a_disk_full_mid_run_keeps_cost_and_predictions_consistent(tmp_path, data, capsys, monkeypatch, full_at):
    """The disk fills up at the second batch, while its predictions or its cost are written: whatever was written
    for that batch is taken back, so that the cost log counts exactly the recorded samples (it lagged one batch)."""
    out = tmp_path / "run"
    argv = ["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny", "--workers", "0",
            "--batch-size", "4", "--out", str(out), "--no-progress"]
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(full_at):
            calls.append(fd)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(records.os, "fsync", fsync)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "is full" in err
    assert "mounted at /" in err and "rerun" in err
    cost = json.loads((out / "cost" / "rank0.json").read_text())
    assert cost["samples"] == len(read_records(out / PREDICTIONS)) == 4
    monkeypatch.setattr(records.os, "fsync", real_fsync)  # space freed
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost"]["samples"] == len(read_records(out / PREDICTIONS)) == 12


def test_a_learning_rate_beyond_float32_is_one_line(tmp_path, data, capsys):
    """--lr 1e200: SGD could not take the step (the scalar overflows float32) and ended in a traceback mid-run."""
    code = main(["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny", "--workers",
                 "0", "--method", "tent", "--lr", "1e200", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--lr must be a finite number <= 3.4e+38, got 1e+200" in err


def test_a_huge_learning_rate_diverges_into_failed_samples_not_a_crash(tiny_config, data):
    """A rate float32 can hold that blows the weights up: the samples after the first update are failed, none is
    scored right."""
    cfg = tiny_config(suite="imagenet", data_root=str(data), allow_partial=True, method="shot_im", batch_size=4,
                      method_options={"lr": 1e30})
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    records = read_records(Path(cfg.out) / PREDICTIONS)
    failed = [r for r in records if r["status"] == "failed"]
    assert failed and summary["failed"] == len(failed) and not any(r["correct"] for r in failed)
