"""The loop's running account, batch by batch: the progress bar with the top-1 so far, the clock the cost log is
charged by, the one-line ETA, the experiment log (``--log``), and how many recomputed predictions changed.

One object the engine tells about every finished batch (``batch``): the place to watch a run from.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

from tqdm import tqdm

from .eta import Eta
from .records import CostLog
from .runlog import BatchLog, RunLog
from .vocabulary import record_key


class Progress:
    def __init__(self, total: int, description: str, cost: CostLog, runlog: RunLog, show: bool,
                 log: Callable[[str], None] | None) -> None:
        self.bar = tqdm(total=total, disable=not show, desc=description, unit="img", file=sys.stderr,
                        dynamic_ncols=True)
        self.cost, self.runlog, self.eta, self.log = cost, runlog, Eta(total), log
        self.correct = self.seen = self.changed = 0
        self.start = self.last = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the previous batch ended (what the cost log is charged for this one)."""
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds

    def batch(self, written: list[dict[str, Any]], previous: dict[tuple[str, str, int], dict[str, Any]],
              predicted: list[dict[str, Any]], positions: int, seconds: float, out: Any, done: int) -> None:
        """A finished batch of ``positions`` stream positions: ``written``, its new records; ``previous``, the
        records a resumed run had; ``predicted``, the batch's prediction records; ``out``, the method's Output;
        ``done``, the records the run holds now."""
        for r in written:
            self.changed += r["pred"] != previous.get(record_key(r), r)["pred"]
            self.seen += r["status"] != "error"
            self.correct += r["correct"]
        self.runlog.batch(BatchLog.of(done, predicted, out.loss, seconds, out.teacher_forwards, out.adaptation_steps,
                                      self.correct, self.seen))
        self.bar.update(positions)
        self.bar.set_postfix(top1=f"{100 * self.correct / max(self.seen, 1):.1f}%")
        if (estimate := self.eta.update(positions)) and self.log:
            self.log(estimate)

    def close(self) -> None:
        self.bar.close()
        self.runlog.close()
