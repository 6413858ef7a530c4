"""Baselines on the real data of ../shared/data, through the engine, printed as a Markdown table (top-1 %).

  imagenet: EfficientNet-Lite0 (real ImageNet weights) on imagenet-sample/ (500 ImageNet val photographs, one per
            even class) corrupted on the fly (ImageNet-C constants, severity 5) with four corruptions:
            source, bn_adapt, tent (its ImageNet setting: SGD momentum 0.9, lr 0.00025, batch 64), memo, and
            eata, sar, cotta, rotta, lame, shot_im with their ImageNet defaults (all BN-teacher methods).
  cifar:    ResNet-20 (He et al.) on cifar10-test-jpeg/ (2,000 CIFAR-10 test images) with generated CIFAR-10-C
            (CIFAR-C constants, severity 5, all 15 corruptions): source, bn_adapt, tent (Adam lr 1e-3).

Every run keeps its run folder (default results/runs/baselines_real/), so a rerun resumes and reuses finished
runs. ``--limit`` evaluates N images per corruption (evenly spread over the classes); ``--memo-limit`` does so
for MEMO alone, the costly one (64 forward+backward passes per image), ``--limit-for M=N`` for any method. Example:

    python benchmarks/baselines_real.py --parts cifar
    python benchmarks/baselines_real.py --parts imagenet --limit 200 --memo-limit 20
    python benchmarks/baselines_real.py --parts imagenet --methods source,bn_adapt,tent,eata,sar,cotta,rotta,lame,shot_im
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tta_bench import engine  # noqa: E402
from tta_bench.config import RunConfig  # noqa: E402
from tta_bench.vocabulary import CORRUPTIONS  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Part:
    suite: str
    teacher: str
    data: str  # folder under the shared data directory
    corruptions: tuple[str, ...]
    methods: dict[str, dict[str, Any]]  # method -> options (beyond its paper defaults)
    weights: str | None = None  # file under the shared data directory
    notes: tuple[str, ...] = field(default=())


PARTS = {
    "imagenet": Part(
        "imagenet-c", "effnet-lite0", "imagenet-sample",
        ("gaussian_noise", "defocus_blur", "contrast", "jpeg_compression"),
        {"source": {}, "bn_adapt": {}, "tent": {"optimizer": "sgd", "lr": 0.00025}, "memo": {},
         **{m: {} for m in ("eata", "sar", "cotta", "rotta", "lame", "shot_im")}},
        notes=("tent: SGD momentum 0.9, lr 0.00025 (TENT's ImageNet setting); memo: 64 AugMix views, SGD lr "
               "0.00025, BN prior N=16 (MEMO's ImageNet setting); eata, sar, cotta, rotta, lame, shot_im: their "
               "ImageNet defaults (tta_bench/assets/method_defaults.yaml)",)),
    "cifar": Part(
        "cifar10-c", "cifar-resnet20", "cifar10-test-jpeg", CORRUPTIONS,
        {"source": {}, "bn_adapt": {}, "tent": {}},
        weights="weights/resnet20-12fca82f.th", notes=("tent: Adam lr 1e-3 (TENT's CIFAR setting)",)),
}
SHORT = {"gaussian_noise": "gauss", "shot_noise": "shot", "impulse_noise": "impul", "defocus_blur": "defoc",
         "glass_blur": "glass", "motion_blur": "motn", "zoom_blur": "zoom", "snow": "snow", "frost": "frost",
         "fog": "fog", "brightness": "brit", "contrast": "contr", "elastic_transform": "elast", "pixelate": "pixel",
         "jpeg_compression": "jpeg"}


def config(name: str, part: Part, method: str, args: argparse.Namespace) -> RunConfig:
    limit = args.memo_limit if method == "memo" and args.memo_limit else args.limit
    limit = dict(item.split("=") for item in args.limit_for.split(",") if item).get(method, limit)
    limit = int(limit) if limit else None
    return RunConfig(
        suite=part.suite, source="generated", data_root=str(args.data / part.data), teacher=part.teacher,
        weights=str(args.data / part.weights) if part.weights else None, corruptions=list(part.corruptions),
        severities=[5], limit=limit, batch_size=args.batch_size, num_workers=args.workers, device=args.device,
        method=method, method_options=dict(part.methods[method]),
        out=str(args.out / (f"{name}-{method}" + (f"-limit{limit}" if limit else ""))))


def table(part: Part, summaries: dict[str, dict[str, Any]]) -> str:
    head = ["method", "n/corruption", *(SHORT[c] for c in part.corruptions), "mean", "s/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, s in summaries.items():
        splits = [s["splits"][f"{c}-5"] for c in part.corruptions]
        cells = [method, str(splits[0]["n"]), *(f"{x['top1']:.1f}" for x in splits), f"{s['mean_top1']:.1f}",
                 f"{s['cost']['seconds_per_sample']:.3f}" if s["cost"].get("seconds_per_sample") else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="imagenet,cifar", help="comma list of: " + ", ".join(PARTS))
    p.add_argument("--methods", help="comma list restricting each part's methods")
    p.add_argument("--data", type=Path, default=SHARED, help="the shared data folder (default: %(default)s)")
    p.add_argument("--limit", type=int, help="images per corruption (default: all)")
    p.add_argument("--memo-limit", type=int, help="images per corruption for memo (default: --limit)")
    p.add_argument("--limit-for", default="", help="comma list of METHOD=N: images per corruption for METHOD")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 avoids stalls on an oversubscribed machine)")
    p.add_argument("--out", type=Path, default=Path("results/runs/baselines_real"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = set(args.methods.split(",")) if args.methods else None
    for name in args.parts.split(","):
        part = PARTS[name]
        summaries = {}
        for method in part.methods:
            if wanted is None or method in wanted:
                print(f"== {name}: {method}", file=sys.stderr)
                summaries[method] = engine.run(config(name, part, method, args), log=lambda m: print(m, file=sys.stderr))
        print(f"\n### {name}: {part.teacher} on {part.suite} (generated, severity 5), top-1 %, batch {args.batch_size}\n")
        print(table(part, summaries))
        for note in part.notes:
            print(f"\n{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
