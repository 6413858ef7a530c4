"""Faults during a run: disk full, out of memory, failed samples; each says what happened and keeps what was
written."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from tta_bench import engine, records
from tta_bench.cli import main
from tta_bench.methods import METHODS
from tta_bench.methods.base import Batch, Method, Output
from tta_bench.records import read_records
from tta_bench.registry import Entry

from conftest import WNIDS, write_images
from tta_bench.vocabulary import CONFIG, PREDICTIONS


@pytest.fixture
def data(tmp_path: Path) -> Path:
    write_images(tmp_path / "val", {w: 4 for w in WNIDS}, size=8)
    return tmp_path / "val"


def _register(monkeypatch, cls: type[Method]) -> None:
    monkeypatch.setitem(METHODS._entries, cls.name, Entry(cls.name, cls, "test method"))


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
    assert "cannot write predictions" in err and "No space left on device" in err and "Traceback" not in err
    assert json.loads((out / CONFIG).read_text())["suite"] == "imagenet"


class FlakyMemory(Method):
    """Runs out of memory until its chunk is small enough, like APM's query chunks."""

    name, episodic = "test-flaky-memory", True
    chunk = 64

    def predict(self, batch: Batch) -> Output:
        if self.chunk > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return Output(self.teacher(batch.images))

    def on_out_of_memory(self) -> bool:
        self.chunk //= 2
        return True


class AlwaysOutOfMemory(FlakyMemory):
    name = "test-always-oom"

    def on_out_of_memory(self) -> bool:
        return False


def test_out_of_memory_retries_with_a_smaller_chunk(monkeypatch, tiny_config, data):
    _register(monkeypatch, FlakyMemory)
    cfg = tiny_config(suite="imagenet", data_root=str(data), allow_partial=True, method=FlakyMemory.name)
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    assert summary["splits"]["imagenet"]["n"] == 12


def test_out_of_memory_without_a_smaller_chunk_says_what_to_do(monkeypatch, tmp_path, data, capsys):
    _register(monkeypatch, AlwaysOutOfMemory)
    code = main(["--suite", "imagenet", "--data-root", str(data), "--allow-partial", "--teacher", "tiny",
                 "--workers", "0", "--out", str(tmp_path / "run"), "--no-progress", "--method", AlwaysOutOfMemory.name])
    assert code == 2
    assert "ran out of memory" in capsys.readouterr().err


class FailsOdd(Method):
    """Marks every other sample failed (what APM does for a NaN loss)."""

    name, episodic = "test-fails-odd", True

    def predict(self, batch: Batch) -> Output:
        extras = [{"status": "failed"} if s % 2 else {} for s in batch.seeds]
        return Output(self.teacher(batch.images), extras)


def test_failed_samples_are_recorded_counted_and_scored_wrong(monkeypatch, tiny_config, data):
    _register(monkeypatch, FailsOdd)
    cfg = tiny_config(suite="imagenet", data_root=str(data), allow_partial=True, method=FailsOdd.name)
    summary = engine.run(cfg, progress=False, log=lambda *_: None)
    records = read_records(Path(cfg.out) / PREDICTIONS)
    failed = [r for r in records if r["status"] == "failed"]
    assert failed and all(not r["correct"] for r in failed)
    assert summary["splits"]["imagenet"]["failed"] == len(failed)
    assert summary["splits"]["imagenet"]["n"] == 12
