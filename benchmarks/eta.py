"""Warm-up ETA against the real duration on the README's example runs: the demo (`python run_bench.py`) and
EfficientNet-Lite0 on the real ImageNet photographs of ../shared/data/imagenet-sample with four generated severity-5
corruptions (source, BN adaptation, TENT, MEMO, APM), N photographs per corruption. Each run's summary keeps the
estimate (cost.eta: predicted seconds, and the first batch's time); the old estimate (the first batch's rate for
every sample) is computed from the same run for comparison.

    python benchmarks/eta.py [--limit 100] [--apm-limit 25] [--memo-limit 15] [--out results/runs/eta]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from tta_bench import engine
from tta_bench.config import RunConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
CORRUPTIONS = ["gaussian_noise", "defocus_blur", "contrast", "jpeg_compression"]


def runs(limit: int, apm_limit: int, memo_limit: int, workers: int) -> list[tuple[str, RunConfig]]:
    demo = RunConfig(num_workers=workers)  # python run_bench.py
    real = dict(suite="imagenet-c", source="generated", data_root=str(DATA), corruptions=CORRUPTIONS,
                teacher="effnet-lite0", num_workers=workers)
    return [("demo: source", demo)] + [
        (f"imagenet-sample: {method}, {n} per corruption", RunConfig(method=method, limit=n, **real))
        for method, n in (("source", limit), ("bn_adapt", limit), ("tent", limit), ("memo", memo_limit),
                          ("apm", apm_limit))]


def errors(summary: dict) -> tuple[float, float | None, float | None]:
    cost = summary["cost"]
    actual, record = cost["seconds"], cost.get("eta")
    if not record:
        return actual, None, None
    first = record["first_batch"]
    old = first["seconds"] / first["samples"] * cost["samples"]
    return actual, record["predicted_seconds"] / actual - 1, old / actual - 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--apm-limit", type=int, default=25)
    p.add_argument("--memo-limit", type=int, default=15)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="results/runs/eta")
    a = p.parse_args()
    print("| run | samples | real s | ETA error | old ETA error |\n|---|---:|---:|---:|---:|", flush=True)
    for label, cfg in runs(a.limit, a.apm_limit, a.memo_limit, a.workers):
        out = Path(a.out) / label.replace(":", "").replace(", ", "-").replace(" ", "_")
        shutil.rmtree(out, ignore_errors=True)  # a fresh run each time: a reused summary has nothing to time
        cfg.out = str(out)
        summary = engine.run(cfg, progress=False, log=lambda *_: None)
        actual, new, old = errors(summary)
        pct = lambda e: "no estimate (too short)" if e is None else f"{100 * e:+.0f}%"  # noqa: E731
        print(f"| {label} | {summary['cost']['samples']} | {actual:.1f} | {pct(new)} | {pct(old)} |", flush=True)


if __name__ == "__main__":
    main()
