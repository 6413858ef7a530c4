"""Per-sample outcomes of a run folder: which samples each split holds, which the run got right (top-1, top-5), and
the stream batch each one was predicted in, for intervals and paired tests.

predictions.jsonl holds the records in stream order. The batches are cut as the engine cut them: every
``batch size`` samples, and at every reset point (the start of each domain under ``reset_each_shift``, the start
of the stream otherwise), so a batch never spans a reset. A failed sample (a diverged update) counts as wrong; an
unreadable image skipped under ``--on-error skip`` took its place in the stream but is not scored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..vocabulary import PREDICTIONS
from .runs import RunFolderError, batch_size as recorded_batch_size

# The engine's batch size where neither the run nor its method's table of suite defaults sets one (the test suite
# checks it against the engine's constant).
DEFAULT_BATCH_SIZE = 64
RESETTING = "reset_each_shift"  # the settings whose name starts so reset the method at every domain
SCORED = ("ok", "failed")
METRICS = ("top1", "top5", "error")  # what per-sample outcomes give intervals for


@dataclass(frozen=True)
class SplitOutcomes:
    """One split's scored samples, in stream order."""
    keys: tuple[tuple[str, int], ...]  # (sample id, visit)
    top1: np.ndarray  # bool: right at top-1
    top5: np.ndarray  # bool: the label among the top five
    batches: np.ndarray  # int: the stream batch each sample was predicted in

    def correct(self, metric: str) -> np.ndarray:
        """1 where the sample counts for the metric's accuracy (error: 1 where it is wrong at top-1)."""
        if metric == "error":
            return ~self.top1
        return self.top5 if metric == "top5" else self.top1


@dataclass(frozen=True)
class RunOutcomes:
    folder: Path
    summary: dict
    splits: dict[str, SplitOutcomes]

    @property
    def online(self) -> bool:
        return is_online(self.summary)

    @property
    def batch_size(self) -> int:
        return batch_size(self.summary)


def is_online(summary: dict) -> bool:
    """Whether the run's predictions depend on the samples before them in its batch or stream: the method adapts
    online (its options say reset: online; BN adaptation and LAME too, whose predictions depend on the batch)."""
    return (summary.get("method_options") or {}).get("reset") == "online"


def batch_size(summary: dict) -> int:
    """The batch size the run used: as recorded, else the engine's default."""
    return int(recorded_batch_size(summary) or DEFAULT_BATCH_SIZE)


def read_predictions(path: Path) -> list[dict]:
    """The records of a predictions.jsonl; a damaged line is named (a torn last line is left out)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):  # a torn last line: the engine drops it on resume
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise RunFolderError(f"{path}: line {number} is damaged ({error.msg})") from None
    return records


def load_outcomes(folder: str | Path, summary: dict) -> RunOutcomes:
    """The run's per-sample outcomes from its predictions.jsonl."""
    folder = Path(folder)
    path = folder / PREDICTIONS
    if not path.is_file():
        raise RunFolderError(f"{folder}: no {PREDICTIONS} (intervals and paired tests need the per-sample "
                             "predictions)")
    size = batch_size(summary)
    resets_per_domain = str((summary.get("setting") or {}).get("name") or "").startswith(RESETTING)
    columns: dict[str, tuple[list, list, list, list]] = {}
    batch, in_batch, domain = -1, size, None
    for record in read_predictions(path):
        here = (record["split"], record.get("visit", 0))
        if in_batch == size or (resets_per_domain and here != domain):
            batch, in_batch = batch + 1, 0
        domain, in_batch = here, in_batch + 1
        if record.get("status") not in SCORED:
            continue
        keys, top1, top5, batches = columns.setdefault(record["split"], ([], [], [], []))
        ok = record["status"] == "ok"
        keys.append((record["id"], record.get("visit", 0)))
        top1.append(ok and record["pred"] == record["label"])
        top5.append(ok and record["label"] in (record.get("top5") or [record["pred"]]))
        batches.append(batch)
    splits = {split: SplitOutcomes(tuple(keys), np.array(top1, bool), np.array(top5, bool), np.array(batches))
              for split, (keys, top1, top5, batches) in columns.items()}
    return RunOutcomes(folder, summary, splits)
