"""The warm-up estimate of a run's duration, printed once early in the run and kept in its summary.

The first batch carries start-up costs that later batches do not: DataLoader workers starting and decoding their
first images, the first call of each kernel (oneDNN primitive creation, allocator growth). Timed from the first
batch, the estimate came out 2-3x too long, so the rate is measured from the end of the first batch on, over at
least WINDOW_BATCHES batches and WINDOW_SECONDS seconds, and the first batch's own time is counted once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

WINDOW_BATCHES = 2
WINDOW_SECONDS = 2.0


@dataclass
class Eta:
    total: int  # samples this process will run
    clock: Callable[[], float] = time.perf_counter
    start: float = field(default=0.0)
    done: int = 0
    batches: int = 0
    first: tuple[float, int] | None = None  # (time, samples) at the end of the first batch
    predicted_seconds: float | None = None  # the estimate of the whole loop's duration, once made
    predicted_at: int | None = None  # samples done when it was made

    def __post_init__(self) -> None:
        self.start = self.clock()

    def update(self, samples: int) -> str | None:
        """Count a finished batch; returns the one-line estimate the first time the window allows one."""
        now = self.clock()
        self.done += samples
        self.batches += 1
        if self.first is None:
            self.first = (now, self.done)
            return None
        if self.predicted_seconds is not None or self.done >= self.total:
            return None
        seconds, measured = now - self.first[0], self.done - self.first[1]
        if self.batches - 1 < WINDOW_BATCHES or seconds < WINDOW_SECONDS:
            return None
        per = seconds / measured
        remaining = per * (self.total - self.done)
        self.predicted_seconds, self.predicted_at = now - self.start + remaining, self.done
        return (f"warm-up: {per:.3f} s/sample after {self.done:,} samples (start-up {self.first[0] - self.start:.1f} s),"
                f" ETA {remaining / 60:.1f} min for this rank")

    def record(self) -> dict[str, float | int] | None:
        """For summary.json: the estimate and when it was made (compare with cost.seconds)."""
        if self.predicted_seconds is None or self.first is None:
            return None
        return {"predicted_seconds": self.predicted_seconds, "after_samples": self.predicted_at,
                "first_batch": {"seconds": self.first[0] - self.start, "samples": self.first[1]}}
