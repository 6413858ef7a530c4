"""Stream settings on real data: ResNet-20 on generated CIFAR-10-C (../shared/data/cifar10-test-jpeg, 2,000 images,
all 15 corruptions at severity 5), methods x settings. Prints a Markdown table of mean top-1 and per-setting details.

Default (the original table): source vs BN adaptation vs TENT under reset_each_shift, continual, mixed_domains and
correlated (Dirichlet 0.1), batch 64 for all. The classifier-method grid of benchmarks/RESULTS.md:

    python benchmarks/stream_settings.py --methods source,bn_adapt,tent,eata,sar,rotta,lame,shot_im,cotta \\
        --settings reset_each_shift,continual,correlated --batch-size family --limit 500 --limit-for cotta=200 \\
        --out results/runs/classifier-methods --per-corruption

``--batch-size family`` gives each method its paper's batch size for CIFAR-10 (tta_bench/assets/method_defaults.yaml);
``--limit N`` evaluates N images per corruption (spread over the classes), ``--limit-for M=N`` does so for method M
alone. Run folders resume.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.methods.defaults import DEFAULT_BATCH_SIZE
from tta_bench.vocabulary import CORRUPTIONS, SHORT_NAMES

SETTINGS = ("reset_each_shift", "continual", "mixed_domains", "correlated")
METHODS = ("source", "bn_adapt", "tent")


def batch_of(summary: dict) -> int:
    return summary["config"]["batch_size"] or summary["defaults"]["applied"].get("batch_size", DEFAULT_BATCH_SIZE)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--out", default="results/runs/stream-settings")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--batch-size", default="64", help="an integer for every method, or 'family': each method's own")
    p.add_argument("--limit", type=int, help="images per corruption, spread over the classes (default: all)")
    p.add_argument("--limit-for", default="", help="comma list of METHOD=N: N images per corruption for METHOD")
    p.add_argument("--per-corruption", action="store_true", help="a per-corruption table for each setting too")
    a = p.parse_args()
    limits = {m: int(n) for m, n in (item.split("=") for item in a.limit_for.split(",") if item)}
    batch_size = None if a.batch_size == "family" else int(a.batch_size)
    rows = []
    for setting in a.settings.split(","):
        for method in a.methods.split(","):
            limit = limits.get(method, a.limit)
            cfg = RunConfig(suite="cifar10-c", source="generated", data_root=f"{a.data}/cifar10-test-jpeg",
                            teacher="cifar-resnet20", weights=f"{a.data}/weights/resnet20-12fca82f.th",
                            method=method, setting=setting, dirichlet=0.1, batch_size=batch_size, limit=limit,
                            num_workers=a.workers, out=f"{a.out}/{setting}-{method}" + (f"-limit{limit}" if limit else ""))
            s = engine.run(cfg, progress=False, log=lambda *_: None)
            rows.append((setting, method, s))
            print(f"{setting:18s} {method:9s} mean {s['mean_top1']:.1f}  "
                  f"gaussian_noise {s['splits']['gaussian_noise-5']['top1']:.1f}", flush=True)
    print("\n| setting | method | images / corruption | batch | mean top-1 (15 corruptions, sev 5) | gaussian_noise-5 "
          "| s/sample |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for setting, method, s in rows:
        print(f"| {setting} | {method} | {s['splits']['gaussian_noise-5']['n']} | {batch_of(s)} "
              f"| {s['mean_top1']:.1f} | {s['splits']['gaussian_noise-5']['top1']:.1f} "
              f"| {s['cost']['seconds_per_sample']:.4f} |")
    if a.per_corruption:
        for setting in dict.fromkeys(r[0] for r in rows):
            print(f"\n{setting}:\n\n| method | " + " | ".join(SHORT_NAMES[c] for c in CORRUPTIONS) + " | mean |")
            print("|---|" + "---:|" * (len(CORRUPTIONS) + 1))
            for _, method, s in (r for r in rows if r[0] == setting):
                cells = [f"{s['splits'][f'{c}-5']['top1']:.1f}" for c in CORRUPTIONS]
                print(f"| {method} | " + " | ".join(cells) + f" | {s['mean_top1']:.1f} |")


if __name__ == "__main__":
    main()
