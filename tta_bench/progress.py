"""The loop's running account, batch by batch: the progress bar with the top-1 so far, the cost log every session of
a run adds to, the one-line ETA, and how many recomputed predictions changed.

One object the engine tells about every finished batch (``batch``): the place to watch a run from.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

from tqdm import tqdm

from .eta import Eta
from .records import CostLog
from .vocabulary import record_key


class Progress:
    def __init__(self, total: int, description: str, cost: CostLog, show: bool,
                 log: Callable[[str], None] | None) -> None:
        self.bar = tqdm(total=total, disable=not show, desc=description, unit="img", file=sys.stderr,
                        dynamic_ncols=True)
        self.cost, self.eta, self.log = cost, Eta(total), log
        self.correct = self.seen = self.changed = 0
        self.start = self.last = time.perf_counter()

    def batch(self, written: list[dict[str, Any]], previous: dict[tuple[str, str, int], dict[str, Any]], positions: int,
              predicted: int, teacher_forwards: int, adaptation_steps: int) -> None:
        """A finished batch of ``positions`` stream positions, ``predicted`` of them readable; ``written``: its new
        records, ``previous``: the records a resumed run had for them."""
        for r in written:
            self.changed += r["pred"] != previous.get(record_key(r), r)["pred"]
            self.seen += r["status"] != "error"
            self.correct += r["correct"]
        now = time.perf_counter()
        self.cost.add(seconds=now - self.last, samples=predicted, teacher_forwards=teacher_forwards,
                      adaptation_steps=adaptation_steps)
        self.last = now
        self.bar.update(positions)
        self.bar.set_postfix(top1=f"{100 * self.correct / max(self.seen, 1):.1f}%")
        if (estimate := self.eta.update(positions)) and self.log:
            self.log(estimate)

    def close(self) -> None:
        self.bar.close()
