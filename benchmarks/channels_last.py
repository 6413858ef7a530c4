"""channels_last vs NCHW on the CPU: teacher forward and forward+backward on a batch (EfficientNet-Lite0 at 224 px,
ResNet-20 at 32 px), then the README's example runs with each layout (the demo; source, BN adaptation and TENT on
the imagenet-sample photographs, N per corruption, four generated severity-5 corruptions). The layout is forced
through tta_bench.teachers.memory_format.override; everything else is the normal engine run.

    python benchmarks/channels_last.py [--batch 64] [--repeat 3] [--limit 50] [--skip-runs]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch

from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.teachers import build_teacher, memory_format

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CORRUPTIONS = ["gaussian_noise", "defocus_blur", "contrast", "jpeg_compression"]
LAYOUTS = (memory_format.CONTIGUOUS, memory_format.CHANNELS_LAST)


def timed(fn, repeat: int) -> float:
    fn()  # the first call creates the kernels' primitives: not what a run's later batches pay
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def micro(batch: int, repeat: int) -> None:
    print(f"| teacher | layout | forward s | forward+backward s |  (batch {batch}, median of {repeat})\n"
          "|---|---|---:|---:|", flush=True)
    for spec, weights, size, classes in (("effnet-lite0", None, 224, 1000),
                                         ("cifar-resnet20", str(SHARED / "weights" / "resnet20-12fca82f.th"), 32, 10)):
        for layout in LAYOUTS:
            teacher = build_teacher(spec, weights, num_classes=classes).eval()
            teacher.to(memory_format=memory_format.FORMATS[layout])
            x = memory_format.batch(torch.rand(batch, 3, size, size), layout)

            def forward(teacher=teacher, x=x) -> None:
                with torch.no_grad():
                    teacher.encode(x)

            def backward(teacher=teacher, x=x) -> None:  # what TENT/MEMO pay: gradients through the whole network
                teacher.requires_grad_(True)
                teacher.encode(x).square().mean().backward()
                teacher.zero_grad(set_to_none=True)

            print(f"| {spec} | {layout} | {timed(forward, repeat):.3f} | {timed(backward, repeat):.3f} |", flush=True)


def example_runs(limit: int, workers: int, out: Path) -> None:
    print("\n| run | NCHW s/sample | channels_last s/sample |\n|---|---:|---:|", flush=True)
    real = dict(suite="imagenet-c", source="generated", data_root=str(SHARED / "imagenet-sample"),
                corruptions=CORRUPTIONS, teacher="effnet-lite0", limit=limit, num_workers=workers)
    cases = [("demo: source", RunConfig(num_workers=workers))] + [
        (f"imagenet-sample: {m}, {limit} per corruption", RunConfig(method=m, **real))
        for m in ("source", "bn_adapt", "tent")]
    for label, cfg in cases:
        cells = []
        for layout in LAYOUTS:
            memory_format.override = layout
            folder = out / f"{label.split(':')[0]}-{cfg.method}-{layout}"
            shutil.rmtree(folder, ignore_errors=True)
            cfg.out = str(folder)
            summary = engine.run(cfg, progress=False, log=lambda *_: None)
            assert summary["provenance"]["memory_format"] == layout
            cells.append(summary["cost"]["seconds_per_sample"])
        memory_format.override = None
        print(f"| {label} | {cells[0]:.4f} | {cells[1]:.4f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results/runs/channels-last"))
    p.add_argument("--skip-runs", action="store_true")
    a = p.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    micro(a.batch, a.repeat)
    if not a.skip_runs:
        example_runs(a.limit, a.workers, a.out)


if __name__ == "__main__":
    main()
