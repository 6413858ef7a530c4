"""CCC on real data: a continuously changing corruption stream generated from the 500 ImageNet photographs of
../shared/data/imagenet-sample for EfficientNet-Lite0, with source, BN adaptation and TENT run over it through the
engine; prints accuracy per stretch of the stream and plots windowed accuracy against stream position.

CPU-sized (stated in the output): the CCC-Medium noise set and target (20%), a faster transition speed than CCC's
1000 images per severity step so that a few thousand samples cross several corruption pairs, and a lighter
calibration (32 images, measured grid step 2.5 instead of the suite's 64 images at step 1).

    python benchmarks/ccc_stream.py [--limit 3000] [--speed 40] [--figure docs/figures/ccc_stream.png]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from tta_bench import engine
from tta_bench.config import RunConfig
from tta_bench.data.suites import SUITES
from tta_bench.registry import Entry
from tta_bench.vocabulary import PREDICTIONS

METHODS = ("source", "bn_adapt", "tent")
COLOURS = {"source": "#444444", "bn_adapt": "#1f77b4", "tent": "#d62728"}


def cpu_suite(level: str, images: int, grid_step: float) -> str:
    """ccc-<level> with a lighter calibration, registered under its own name so no result passes for the suite's."""
    base = SUITES.get(f"ccc-{level}")
    name = f"{base.name}-cpu"
    calibration = {**base.layout_args["calibration"], "images": images, "grid_step": grid_step}
    spec = dataclasses.replace(base, name=name, layout_args={**base.layout_args, "calibration": calibration},
                               description=base.description + f" (calibration: {images} images, grid step {grid_step:g})")
    SUITES._entries[name] = Entry(name, spec, spec.description)
    return name


def stream_records(folder: Path) -> list[dict]:
    records = [json.loads(line) for line in (folder / PREDICTIONS).read_text().splitlines()]
    return sorted(records, key=lambda r: r["id"])  # ids start with the zero-padded stream position


def segments(records: list[dict]) -> list[tuple[int, str]]:
    """(first position, 'a -> b') of every corruption pair along the stream."""
    out: list[tuple[int, str]] = []
    for position, record in enumerate(records):
        pair = record["id"].split("/")[1]
        first, second = (part.split("@")[0] for part in pair.split("+"))
        label = f"{first} -> {second}"
        if not out or out[-1][1] != label:
            out.append((position, label))
    return out


def windowed(correct: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(correct) // window
    values = correct[: n * window].reshape(n, window).mean(axis=1) * 100
    centres = np.arange(n) * window + window / 2
    return centres, values


def plot(runs: dict[str, list[dict]], target: float, window: int, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    first = next(iter(runs.values()))
    bounds = segments(first) + [(len(first), "")]
    for k, ((start, _), (end, _)) in enumerate(zip(bounds[:-1], bounds[1:])):
        if k % 2:
            ax.axvspan(start, end, color="#f0f0f0", zorder=0)
        ax.text((start + end) / 2, 0.97, str(k + 1), transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=7, color="#666666")
    for method, records in runs.items():
        x, y = windowed(np.array([r["correct"] for r in records], dtype=float), window)
        overall = 100 * np.mean([r["correct"] for r in records])
        ax.plot(x, y, marker="o", ms=3, lw=1.5, color=COLOURS.get(method), label=f"{method} ({overall:.1f}% overall)")
    ax.axhline(target, color="black", ls="--", lw=1, label=f"target source accuracy ({target:g}%)")
    ax.set_xlabel(f"stream position (samples); accuracy over windows of {window}; numbered bands: corruption pairs")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_xlim(0, len(first))
    ax.set_ylim(0, max(45, ax.get_ylim()[1]))
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, fontsize=8, frameon=False)  # below the axes: no curve hidden
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"))
    p.add_argument("--level", default="medium", choices=("easy", "medium", "hard"))
    p.add_argument("--speed", type=int, default=40, help="images per severity step (CCC: 1000, 2000, 5000)")
    p.add_argument("--limit", type=int, default=3000, help="stream length (CCC: 7.5M)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--calibration-images", type=int, default=32)
    p.add_argument("--grid-step", type=float, default=2.5)
    p.add_argument("--window", type=int, default=200)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default="results/runs/ccc-stream")
    p.add_argument("--figure", default="docs/figures/ccc_stream.png")
    a = p.parse_args()
    suite = cpu_suite(a.level, a.calibration_images, a.grid_step)
    target = SUITES.get(suite).layout_args["target"]
    runs, rows = {}, []
    for method in a.methods.split(","):
        cfg = RunConfig(suite=suite, data_root=a.data, teacher="effnet-lite0", method=method,
                        corruptions=[f"speed_{a.speed}"], limit=a.limit, num_workers=a.workers, device="cpu",
                        out=f"{a.out}/{suite}-speed{a.speed}-{a.limit}-{method}")
        summary = engine.run(cfg, progress=False, log=print)
        records = stream_records(Path(cfg.out))
        runs[method] = records
        correct = np.array([r["correct"] for r in records], dtype=float)
        thirds = [100 * part.mean() for part in np.array_split(correct, 3)]
        rows.append((method, 100 * correct.mean(), *thirds, summary["cost"]["seconds_per_sample"],
                     summary["setting"]["stream_hash"][:12], summary["defaults"]["applied"]))
    print(f"\nstream: {suite} (target {target:g}%), speed {a.speed} images per severity step, {a.limit} samples, "
          f"EfficientNet-Lite0, data {a.data}")
    print("corruption pairs:", "; ".join(f"{label} from {start}" for start, label in segments(next(iter(runs.values())))))
    print("\n| method | top-1 (all) | first third | second third | last third | s/sample | stream hash | defaults |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for method, overall, t1, t2, t3, sps, digest, applied in rows:
        print(f"| {method} | {overall:.1f} | {t1:.1f} | {t2:.1f} | {t3:.1f} | {sps:.3f} | {digest} | {applied} |")
    title = (f"CCC-{a.level.capitalize()} stream generated from 500 ImageNet photographs, EfficientNet-Lite0 "
             f"(speed {a.speed}, {a.limit} samples, CPU)")
    plot(runs, target, a.window, title, Path(a.figure))
    print(f"figure: {a.figure}")


if __name__ == "__main__":
    main()
