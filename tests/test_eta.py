"""The warm-up ETA: measured after the first batch, whose start-up costs it would otherwise multiply."""
from __future__ import annotations

from tta_bench import engine, eta
from tta_bench.config import RunConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _simulate(first: float, per_batch: float, batches: int, size: int) -> tuple[eta.Eta, list[str]]:
    clock = Clock()
    estimate = eta.Eta(batches * size, clock=clock)
    lines = []
    for k in range(batches):
        clock.now += first if k == 0 else per_batch
        if (line := estimate.update(size)) is not None:
            lines.append(line)
    return estimate, lines


def test_start_up_in_the_first_batch_does_not_inflate_the_estimate():
    # 20 batches of 32: the first takes 12 s (workers starting, first kernels), the others 1 s each
    estimate, lines = _simulate(first=12.0, per_batch=1.0, batches=20, size=32)
    actual = 12.0 + 19 * 1.0
    assert len(lines) == 1 and "ETA" in lines[0]
    assert abs(estimate.predicted_seconds - actual) / actual < 0.01
    naive = 12.0 / 32 * 20 * 32  # the old estimate: the first batch's rate for every sample
    assert naive / actual > 7


def test_the_estimate_waits_for_its_window():
    estimate, lines = _simulate(first=1.0, per_batch=0.1, batches=10, size=4)  # 0.1 s batches: 2 s after 20
    assert lines == [] and estimate.record() is None  # the run ends before a 2 s window
    estimate, lines = _simulate(first=1.0, per_batch=0.5, batches=10, size=4)
    assert estimate.record() == {"predicted_seconds": 5.5, "after_samples": 20,  # 2 s after the first batch
                                 "first_batch": {"seconds": 1.0, "samples": 4}}


def test_the_engine_keeps_its_estimate_in_the_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(eta, "WINDOW_SECONDS", 0.0)
    lines = []
    summary = engine.run(RunConfig(suite="demo", teacher="tiny", corruptions=["fog", "contrast"], num_workers=0,
                                   device="cpu", batch_size=2, out=str(tmp_path / "run")),
                         progress=False, log=lines.append)
    record = summary["cost"]["eta"]
    assert record["after_samples"] == 6 and record["predicted_seconds"] > 0
    assert any(line.startswith("warm-up: ") for line in lines)
