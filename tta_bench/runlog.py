"""Experiment logging while a run goes (``--log csv|tensorboard|wandb``), as the unified TTA benchmark streams its
runs to wandb: after every batch, the batch's top-1 and the running top-1, the method's loss where it reports one
(``Output.loss``), and the cost (seconds, samples per second, teacher forwards, adaptation steps).

The x axis is the number of samples the run has predicted, earlier sessions of a resumed run included, so a resume
continues its curves. ``csv`` needs nothing (``log.csv`` in the run folder); ``tensorboard`` (event files under
``tensorboard/``) and ``wandb`` (under ``wandb/``) are optional packages (``pip install 'tta-bench[log]'``), imported
only when asked for: a missing one stops the run at its start in one line. wandb logs online when you are logged in
(``wandb login``), else offline for a later ``wandb sync``; ``WANDB_MODE`` decides where set.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .choices import LOGS
from .errors import UserError
from .vocabulary import LOG


@dataclass(frozen=True)
class BatchLog:
    """What one batch adds to the log."""

    step: int  # samples predicted in the run so far, earlier sessions included (the x axis)
    split: str  # the domain of the batch's first sample
    samples: int
    top1: float  # this batch, percent
    running_top1: float  # this session's batches so far, percent
    loss: float | None  # the method's objective on this batch (None: it has none, or reports none)
    seconds: float
    samples_per_second: float
    teacher_forwards: int
    adaptation_steps: int

    @classmethod
    def of(cls, step: int, records: list[dict[str, Any]], loss: float | None, seconds: float, teacher_forwards: int,
           adaptation_steps: int, correct: int, seen: int) -> "BatchLog":
        """From what the engine has after a batch: its prediction records and the session's running counts."""
        scored = [r for r in records if r["status"] != "error"]
        return cls(step, records[0]["split"] if records else "", len(scored),
                   100 * sum(r["correct"] for r in scored) / max(len(scored), 1), 100 * correct / max(seen, 1), loss,
                   seconds, len(scored) / seconds if seconds > 0 else 0.0, teacher_forwards, adaptation_steps)

    def scalars(self) -> dict[str, float]:
        """The numeric fields, for loggers that plot curves (no split name, no missing loss)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("step", "split") and v is not None}


class RunLog(Protocol):
    def batch(self, entry: BatchLog) -> None: ...

    def close(self) -> None: ...


class NoLog:
    def batch(self, entry: BatchLog) -> None:
        return None

    def close(self) -> None:
        return None


class CsvLog:
    """One row per batch in ``log.csv``, appended (a resumed run continues the file) and flushed as it goes."""

    def __init__(self, folder: Path) -> None:
        path = folder / LOG
        fresh = not path.exists() or path.stat().st_size == 0
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=[f.name for f in dataclasses.fields(BatchLog)])
        if fresh:
            self.writer.writeheader()

    def batch(self, entry: BatchLog) -> None:
        self.writer.writerow(dataclasses.asdict(entry))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLog:
    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--log tensorboard needs the tensorboard package: pip install tensorboard (or "
                            "'tta-bench[log]')") from None
        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"), flush_secs=10)

    def batch(self, entry: BatchLog) -> None:
        for name, value in entry.scalars().items():
            self.writer.add_scalar(name, value, entry.step)

    def close(self) -> None:
        self.writer.close()


class WandbLog:
    def __init__(self, folder: Path, name: str, config: dict[str, Any], log=print) -> None:
        try:
            import wandb
        except ImportError:
            raise UserError("--log wandb needs the wandb package: pip install wandb (or 'tta-bench[log]')") from None
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb.login(prompt=False, verify=False) else "offline")
        if mode == "offline":
            log(f"wandb: logging offline into {folder / 'wandb'} (not logged in; `wandb sync` uploads it later)")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "tta_bench"), name=name, config=config,
                              dir=str(folder), mode=mode, id=re.sub(r"[^A-Za-z0-9_-]", "-", name), resume="allow")

    def batch(self, entry: BatchLog) -> None:
        self.run.log({**entry.scalars(), "split": entry.split}, step=entry.step)

    def close(self) -> None:
        self.run.finish()


def open_log(kind: str | None, folder: Path, name: str, config: dict[str, Any], log=print) -> RunLog:
    """The logger ``--log`` asks for (NoLog without one), writing into the run folder."""
    if kind is None:
        return NoLog()
    if kind == "csv":
        return CsvLog(folder)
    if kind == "tensorboard":
        return TensorBoardLog(folder)
    if kind == "wandb":
        return WandbLog(folder, name, config, log)
    raise UserError(f"--log must be one of {', '.join(LOGS)}, got {kind!r}")
