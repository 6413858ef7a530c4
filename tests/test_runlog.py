"""--log csv|tensorboard|wandb: one entry per batch while the run goes, read back from what each logger wrote
(tensorboard's event files and wandb's offline run file, no network), matched with the run's own predictions."""
from __future__ import annotations

import csv
import dataclasses
import glob
import sys
from pathlib import Path

import pytest

from conftest import WNIDS, write_images
from tta_bench import engine
from tta_bench.cli import main
from tta_bench.errors import UserError
from tta_bench.methods.source import Source
from tta_bench.records import default_out, read_records
from tta_bench.vocabulary import LOG, PREDICTIONS

BATCH = 4
PER_CLASS = 6  # 18 images: batches of 4, 4, 4, 4, 2


@pytest.fixture
def config(tmp_path, tiny_config):
    write_images(tmp_path / "val", {w: PER_CLASS for w in WNIDS}, size=16)
    return lambda **kw: tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), allow_partial=True,
                                    batch_size=BATCH, **kw)


def _batch_top1(out: Path) -> list[float]:
    """Each batch's top-1 from predictions.jsonl (stream order, batches of BATCH)."""
    records = read_records(out / PREDICTIONS)
    batches = [records[i:i + BATCH] for i in range(0, len(records), BATCH)]
    return [100 * sum(r["correct"] for r in b) / len(b) for b in batches]


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / LOG).open() as f:
        return list(csv.DictReader(f))


def test_csv_logs_every_batch_with_accuracy_loss_and_cost(config):
    cfg = config(method="tent", log="csv")
    engine.run(cfg, progress=False)
    rows = _rows(Path(cfg.out))
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16, 18]
    assert [int(r["samples"]) for r in rows] == [4, 4, 4, 4, 2]
    assert [float(r["top1"]) for r in rows] == pytest.approx(_batch_top1(Path(cfg.out)))
    assert all(float(r["loss"]) > 0 for r in rows)  # TENT's entropy: positive for a random tiny teacher
    assert all(float(r["seconds"]) > 0 and int(r["adaptation_steps"]) == 1 for r in rows)
    # a logger is not part of what a run computes: the same folder with or without it
    assert default_out(dataclasses.replace(cfg, out=None)) == default_out(
        dataclasses.replace(cfg, out=None, log=None))


def test_a_resumed_run_continues_its_csv_log(config, monkeypatch):
    cfg = config(method="source", log="csv")
    real, calls = Source.predict, []

    def dies_at_batch_3(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Source, "predict", dies_at_batch_3)
    with pytest.raises(KeyboardInterrupt):
        engine.run(cfg, progress=False)
    monkeypatch.setattr(Source, "predict", real)
    engine.run(cfg, progress=False)
    rows = _rows(Path(cfg.out))
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16, 18]  # one header, the second session after the first
    assert all(r["loss"] == "" for r in rows)  # the frozen model has no objective


def test_tensorboard_writes_event_files_with_the_batch_curves(config):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config(method="tent", log="tensorboard")
    engine.run(cfg, progress=False)
    events = EventAccumulator(str(Path(cfg.out) / "tensorboard"))
    events.Reload()
    assert {"top1", "running_top1", "loss", "seconds", "samples_per_second"} <= set(events.Tags()["scalars"])
    top1 = events.Scalars("top1")
    assert [e.step for e in top1] == [4, 8, 12, 16, 18]
    assert [e.value for e in top1] == pytest.approx(_batch_top1(Path(cfg.out)))


def test_wandb_logs_offline_without_a_network(config, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = config(method="tent", log="wandb")
    engine.run(cfg, progress=False)
    (run_file,) = glob.glob(str(Path(cfg.out) / "wandb" / "offline-run-*" / "run-*.wandb"))
    data = Path(run_file).read_bytes()
    # wandb's offline record log: each history entry names its keys (plus the summary's)
    assert data.count(b"running_top1") >= 5 and data.count(b"samples_per_second") >= 5


def test_a_missing_logger_package_and_an_unknown_logger_stop_in_one_line(config, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(UserError, match="--log wandb needs the wandb package: pip install wandb"):
        engine.run(config(method="source", log="wandb"), progress=False)
    with pytest.raises(UserError, match="--log must be one of csv, tensorboard, wandb, got 'mlflow'"):
        config(log="mlflow").validate()
    assert main(["--log", "mlflow", "--dry-run"]) == 2
    assert "--log must be one of csv, tensorboard, wandb, got 'mlflow'" in capsys.readouterr().err
