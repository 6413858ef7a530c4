"""Why an ordering of methods differs from the unified benchmark's CIFAR10-C tables: the reproduce target's runs
(`run_bench.py reproduce unified-cifar10c`: severity 5, the 15 corruptions, shuffled arrays, each method's CIFAR-10
defaults, RoTTA at batch 200) again under one changed condition, with the methods' ordering set beside benchmark.md's
and Spearman's rho per setting.

Conditions (``--variant``):
- ``protocol``: the reproduce target's runs as they are (a baseline, or other options through --opt/--batch-size).
- ``source-statistics``: BatchNorm layers normalise with their running (source) statistics instead of the test
  batch's, whatever the method asks for; the scale and shift still train. An experiment only (the engine has no such
  switch): it patches tta_bench.methods.common._batch_statistics for this process. It stands in for the benchmark's
  correlated backbone, a GroupNorm ResNet-26, whose normalisation does not depend on the other samples of a batch:
  if the correlated ordering comes from batch statistics of class-sorted batches, it moves towards the published one.

    python benchmarks/unified_causes.py --variant source-statistics --settings correlated \\
        --methods source,tent,eata,sar,lame --out results/runs/unified-causes
    python benchmarks/unified_causes.py --methods lame --opt affinity=kNN --batch-size 16 --settings continual

Run folders resume.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tta_bench import engine
from tta_bench.config import RunConfig, parse_key_values
from tta_bench.report import load_published
from tta_bench.sweep import expand, named_sweep
from tta_bench.sweep.paper import ranking_text

VARIANTS = ("protocol", "source-statistics")


def keep_source_statistics() -> None:
    """BN layers stay in eval mode (running statistics) where a method would switch them to test-batch statistics."""
    from tta_bench.methods import common

    common._batch_statistics = lambda layers: None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--teacher", default="cifar-resnet20", help="cifar-resnet20 or cifar-resnet56")
    p.add_argument("--variant", choices=VARIANTS, default="protocol")
    p.add_argument("--methods", default="source,bn_adapt,tent,eata,sar,rotta,lame")
    p.add_argument("--settings", default="continual,mixed_domains,correlated")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="a method option for every run")
    p.add_argument("--batch-size", type=int, help="instead of each method's CIFAR-10 default")
    p.add_argument("--limit", type=int, help="images per corruption (default: all 2,000)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default="results/runs/unified-causes")
    a = p.parse_args()
    if a.variant == "source-statistics":
        keep_source_statistics()
    weights = {"cifar-resnet20": "resnet20-12fca82f.th", "cifar-resnet56": "resnet56-4bfd9763.th"}[a.teacher]
    table = named_sweep("unified-cifar10c")
    extra = {"seed": a.seed, "source": "generated", "data_root": f"{a.data}/cifar10-test-jpeg", "teacher": a.teacher,
             "weights": f"{a.data}/weights/{weights}", "num_workers": a.workers, "limit": a.limit}
    options = parse_key_values(a.opt, "--opt")
    tag = "-".join([a.variant, *(f"{k}{v}" for k, v in options.items())] + ([f"b{a.batch_size}"] if a.batch_size else []))
    summaries = []
    for run in expand(table, a.out, extra):
        if run.cfg.setting not in a.settings.split(",") or run.cfg.method not in a.methods.split(","):
            continue
        cfg = RunConfig.from_dict({**run.cfg.to_dict(), "method_options": {**run.cfg.method_options, **options},
                                   "batch_size": a.batch_size or run.cfg.batch_size,
                                   "out": f"{a.out}/{a.teacher}-{tag}-{run.cfg.setting}-{run.cfg.method}"})
        summary = engine.run(cfg, progress=False, log=lambda *_: None)
        summaries.append(summary)
        print(f"{a.variant:18s} {cfg.setting:14s} {cfg.method:9s} error {100 - summary['mean_top1']:.1f}", flush=True)
    print(f"\n{a.teacher}, {tag}\n")
    print(ranking_text(table, summaries, load_published(), "error"))


if __name__ == "__main__":
    main()
