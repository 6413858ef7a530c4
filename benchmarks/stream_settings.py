"""Stream settings on real data: ResNet-20 on generated CIFAR-10-C (../shared/data/cifar10-test-jpeg, 2,000 images,
all 15 corruptions at severity 5), source vs BN adaptation vs TENT under reset_each_shift, continual, mixed_domains
and correlated (Dirichlet 0.1). Prints a Markdown table of mean top-1 and per-setting details.

    python benchmarks/stream_settings.py [--data ../shared/data] [--out results/runs/stream-settings]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.vocabulary import CORRUPTIONS

SETTINGS = ("reset_each_shift", "continual", "mixed_domains", "correlated")
METHODS = ("source", "bn_adapt", "tent")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--out", default="results/runs/stream-settings")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    rows = []
    for setting in SETTINGS:
        for method in METHODS:
            cfg = RunConfig(suite="cifar10-c", source="generated", data_root=f"{a.data}/cifar10-test-jpeg",
                            teacher="cifar-resnet20", weights=f"{a.data}/weights/resnet20-12fca82f.th",
                            method=method, setting=setting, dirichlet=0.1, batch_size=64, num_workers=a.workers,
                            out=f"{a.out}/{setting}-{method}")
            s = engine.run(cfg, progress=False, log=lambda *_: None)
            rows.append((setting, method, s["mean_top1"], s["splits"]["gaussian_noise-5"]["top1"],
                         s["cost"]["seconds_per_sample"]))
            print(f"{setting:18s} {method:9s} mean {s['mean_top1']:.1f}  gaussian_noise {rows[-1][3]:.1f}", flush=True)
    print("\n| setting | method | mean top-1 (15 corruptions, sev 5) | gaussian_noise-5 | s/sample |")
    print("|---|---|---:|---:|---:|")
    for setting, method, mean, gauss, sps in rows:
        print(f"| {setting} | {method} | {mean:.1f} | {gauss:.1f} | {sps:.4f} |")


if __name__ == "__main__":
    main()
