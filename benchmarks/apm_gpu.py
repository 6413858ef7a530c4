"""APM's parallel students on a GPU: ms per test-time-training step and achieved TFLOP/s for S samples trained
together (StackedAPMStudent under bf16 autocast, the method's own `fit` loop, Adam and StepLR included), eager and
torch.compile'd, beside bf16 matrix products of the same step's own shapes timed in the same process; then the
official demo protocol (benchmarks/apm_ttt.py) at 1000 classes, for the samples/s ratio.

Figures, per S:
  - ms/step: one training step of all S students (forward, backward, Adam), from the difference of two timed runs
    of `fit` (so optimiser creation and the final forward cancel).
  - TFLOP/s: analytic FLOPs of the step (models.apm_student.analytic_flops_per_step: 2 per multiply-add, a step =
    3 forward passes of every matrix product) x S over the step time. The analytic count is checked against
    torch.utils.flop_counter on one step.
  - fwd+bwd ms and Adam ms: the step taken apart (Adam over S x 22M float32 weights moves ~28 bytes per weight: it is
    bound by memory bandwidth, not by the matrix units).
  - GEMM TFLOP/s: the step's matrix products alone (per layer: forward, input gradient, weight gradient, as batched
    bf16 products of the per-student shapes), the rate the step could reach if nothing else took time.
Targets (benchmarks, not tests): step rate >= 50% of that GEMM rate for S >= 32; samples/s >= 50x the official
protocol at 1000 classes on the same GPU.

    python benchmarks/apm_gpu.py --json apm_gpu.json             # on a GPU (benchmarks/gpu_check.sh runs it)
    python benchmarks/apm_gpu.py --device cpu --quick            # rehearsal: cpu preset, tiny sizes
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from apm_ttt import clip_teacher, cpu_name, official_steps  # noqa: E402
from tta_bench.device import autocast  # noqa: E402
from tta_bench.methods import build_method  # noqa: E402
from tta_bench.methods.apm import PRESET_OPTIONS, Targets, fit, sample_losses  # noqa: E402
from tta_bench.methods.base import Batch  # noqa: E402
from tta_bench.models.apm_student import APMConfig, StackedAPMStudent, analytic_flops_per_step, preset  # noqa: E402


class Clock:
    """Elapsed seconds of a block: CUDA events on a GPU (device work is asynchronous), perf_counter on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @contextmanager
    def __call__(self) -> Iterator[list[float]]:
        box: list[float] = []
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield box
            end.record()
            end.synchronize()
            box.append(start.elapsed_time(end) / 1000)
        else:
            t = time.perf_counter()
            yield box
            box.append(time.perf_counter() - t)


def layer_shapes(cfg: APMConfig) -> list[tuple[int, int]]:
    """(in, out) of every matrix product a query goes through: the MLP and the feature head."""
    return list(pairwise((cfg.query_dim, *cfg.hidden, cfg.feature_dim)))


def gemm_rate(cfg: APMConfig, s: int, device: torch.device, clock: Clock, reps: int) -> float:
    """TFLOP/s of one training step's matrix products alone, as bf16 batched products of the per-student shapes:
    per layer the forward (L x in @ in x out), the input gradient (L x out @ out x in) and the weight gradient
    (in x L @ L x out), L = locations per student."""
    n = cfg.locations
    g = torch.Generator(device=device).manual_seed(0)
    ops = []
    for a, b in layer_shapes(cfg):
        for m, k, nn in ((n, a, b), (n, b, a), (a, n, b)):
            ops.append((torch.randn(s, m, k, device=device, dtype=torch.bfloat16, generator=g),
                        torch.randn(s, k, nn, device=device, dtype=torch.bfloat16, generator=g)))
    flops = sum(2 * x.shape[0] * x.shape[1] * x.shape[2] * y.shape[2] for x, y in ops)
    for x, y in ops:  # warm-up: cuBLAS handles and heuristics
        torch.bmm(x, y)
    with clock() as t:
        for _ in range(reps):
            for x, y in ops:
                torch.bmm(x, y)
    return flops * reps / t[0] / 1e12


def square_gemm_rate(device: torch.device, clock: Clock, size: int, reps: int) -> float:
    """The chip's bf16 matrix rate on one large square product (random data), for scale."""
    g = torch.Generator(device=device).manual_seed(1)
    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16, generator=g) for _ in range(2))
    a @ b
    with clock() as t:
        for _ in range(reps):
            a @ b
    return 2 * size**3 * reps / t[0] / 1e12


def problem(cfg: APMConfig, s: int, device: torch.device) -> tuple[StackedAPMStudent, torch.Tensor, Targets]:
    g = torch.Generator().manual_seed(s)
    x = torch.randn(s, 1, 3, cfg.image_size, cfg.image_size, generator=g).to(device)
    target = (0.1 * torch.randn(s, 1, cfg.feature_dim, generator=g)).to(device)
    return StackedAPMStudent(cfg, list(range(s)), device), x, Targets(target, None, None)


def fit_seconds(forward: Callable, student: StackedAPMStudent, x: torch.Tensor, targets: Targets, steps: int,
                options, clock: Clock) -> float:
    with clock() as t:
        for _ in fit(forward, list(student.parameters()), x, targets, replace(options, steps=steps)):
            pass
    return t[0]


def step_ms(forward: Callable, student: StackedAPMStudent, x: torch.Tensor, targets: Targets, options, clock: Clock,
            steps: int) -> float:
    """One step of `fit` from two timed runs (steps and 2 x steps), after a warm-up run."""
    fit_seconds(forward, student, x, targets, 2, options, clock)
    short = fit_seconds(forward, student, x, targets, steps, options, clock)
    long = fit_seconds(forward, student, x, targets, 2 * steps, options, clock)
    return 1000 * (long - short) / steps


def step_parts_ms(student: StackedAPMStudent, x: torch.Tensor, targets: Targets, options, clock: Clock,
                  reps: int) -> tuple[float, float]:
    """(forward + backward, Adam step) in ms, each timed alone over `reps` repetitions."""
    optimizer = torch.optim.Adam(student.parameters(), lr=options.lr, fused=True)

    def forward_backward() -> None:
        sample_losses(student(x), targets, options).sum().backward()

    forward_backward()
    optimizer.step()
    with clock() as fb:
        for _ in range(reps):
            forward_backward()
    with clock() as opt:
        for _ in range(reps):
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return 1000 * fb[0] / reps, 1000 * opt[0] / reps


def counted_flops(cfg: APMConfig, device: torch.device, options) -> int:
    """FLOPs of one forward + backward of one student, counted by torch (matrix products and convolutions)."""
    student, x, targets = problem(cfg, 1, device)
    with FlopCounterMode(display=False) as counter:
        sample_losses(student(x), targets, options).sum().backward()
    return counter.get_total_flops()


def sizes_sweep(a: argparse.Namespace, cfg: APMConfig, options, device: torch.device, clock: Clock) -> list[dict]:
    rows = []
    flops_step = analytic_flops_per_step(cfg)
    for s in a.sizes:
        student, x, targets = problem(cfg, s, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ms = step_ms(student, student, x, targets, options, clock, a.steps)
        fb_ms, adam_ms = step_parts_ms(student, x, targets, options, clock, a.steps)
        gemm = gemm_rate(cfg, s, device, clock, max(2, a.steps // 2))
        tflops = flops_step * s / (ms / 1000) / 1e12
        rows.append({"samples": s, "compiled": False, "ms_per_step": ms, "ms_per_sample_step": ms / s,
                     "tflops": tflops, "gemm_tflops": gemm, "share_of_gemm": tflops / gemm,
                     "fwd_bwd_ms": fb_ms, "adam_ms": adam_ms,
                     "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
                     else None})
        print(f"S={s}: {ms:.2f} ms/step, {tflops:.3g} TFLOP/s ({100 * tflops / gemm:.0f}% of its GEMMs' "
              f"{gemm:.3g}); fwd+bwd {fb_ms:.2f} ms, Adam {adam_ms:.2f} ms", flush=True)
        del student, x, targets
    return rows


def compiled_sweep(a: argparse.Namespace, cfg: APMConfig, options, device: torch.device, clock: Clock) -> list[dict]:
    """torch.compile of the stacked forward, one size at a time (each compiles anew, static shapes), the sizes most
    informative first, until the time budget is spent."""
    rows, start = [], time.perf_counter()
    flops_step = analytic_flops_per_step(cfg)
    order = sorted(a.sizes, key=lambda s: (s != 32, s != 1, s))
    for s in order:
        if time.perf_counter() - start > a.compile_budget:
            rows.append({"samples": s, "compiled": True, "skipped": "compile time budget spent"})
            continue
        torch._dynamo.reset()
        student, x, targets = problem(cfg, s, device)
        try:
            compiled = torch.compile(student, dynamic=False)
            t0 = time.perf_counter()
            fit_seconds(compiled, student, x, targets, 2, options, clock)  # compiles
            compile_s = time.perf_counter() - t0
            ms = step_ms(compiled, student, x, targets, options, clock, a.steps)
        except Exception as exc:  # a compiler failure is a finding to record, not a reason to stop the check
            rows.append({"samples": s, "compiled": True, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            print(f"S={s} compiled: failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            continue
        tflops = flops_step * s / (ms / 1000) / 1e12
        rows.append({"samples": s, "compiled": True, "ms_per_step": ms, "ms_per_sample_step": ms / s,
                     "tflops": tflops, "compile_seconds": compile_s})
        print(f"S={s} compiled: {ms:.2f} ms/step, {tflops:.1f} TFLOP/s (compile {compile_s:.0f} s)", flush=True)
    return rows


def official_vs_ours(a: argparse.Namespace, cfg: APMConfig, best: dict, device: torch.device, clock: Clock) -> dict:
    """Samples/s at `project` steps: the official demo protocol (timed steps at `classes` classes) against the APM
    method itself (`predict` on a batch of S: teacher forward, students drawn, every step, the head), and against the
    projection from the step time alone."""
    teacher = clip_teacher(a.arch, a.classes, device)
    cfg = replace(cfg, feature_dim=teacher.feature_dim)
    size = teacher.transform(Image.new("RGB", (256, 256))).shape[-1]
    s, n = best["samples"], a.project_steps
    images = torch.rand(s, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    options = {"preset": "cpu" if a.quick else "paper", "steps": n}
    with autocast(device, "bf16"):
        with torch.no_grad():
            teacher.encode(images)
            with clock() as enc:
                teacher.encode(images)
        build_method("apm", teacher, {**options, "steps": 2}, device).predict(Batch(images, list(range(s))))
        method = build_method("apm", teacher, options, device)
        with clock() as whole:
            method.predict(Batch(images, list(range(s))))
        official_steps(teacher, cfg, images[:1], 1, a.classes)  # warm-up
        with clock() as t:
            official_steps(teacher, cfg, images[:1], a.official_steps, a.classes)
    official_ms = 1000 * t[0] / a.official_steps
    official_sps = 1 / (n * official_ms / 1000)
    method_sps = s / whole[0]
    projected_sps = s / (enc[0] + n * best["ms_per_step"] / 1000)
    return {"classes": a.classes, "official_ms_per_step": official_ms, "official_steps_timed": a.official_steps,
            "teacher_seconds_per_sample": enc[0] / s, "project_steps": n, "samples": s,
            "method_samples_per_second": method_sps, "projected_samples_per_second": projected_sps,
            "official_samples_per_second": official_sps, "ratio": method_sps / official_sps,
            "projected_ratio": projected_sps / official_sps,
            "projected_from": {k: best[k] for k in ("samples", "compiled", "ms_per_step")}}


def profile(cfg: APMConfig, options, s: int, device: torch.device, steps: int) -> None:
    """The kernels of `steps` eager training steps of S students, by device time (where the step's time goes)."""
    student, x, targets = problem(cfg, s, device)
    with autocast(device, "bf16"):
        fit_seconds(student, student, x, targets, 2, options, Clock(device))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
            fit_seconds(student, student, x, targets, steps, options, Clock(device))
    print(prof.key_averages().table(sort_by="self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total",
                                    row_limit=25, max_name_column_width=70))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true",
                   help="rehearsal: cpu preset, S = 1, 2, few steps, a ViT-B-32 teacher, 10 classes")
    p.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")], default=[1, 8, 32, 64])
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--compile-budget", type=float, default=120, help="seconds for the torch.compile sizes")
    p.add_argument("--arch", default="ViT-L-14", help="open_clip architecture of the teacher (random weights)")
    p.add_argument("--classes", type=int, default=1000, help="classes the official protocol re-encodes per step")
    p.add_argument("--official-steps", type=int, default=5)
    p.add_argument("--project-steps", type=int, default=250, help="steps per sample for samples/s (paper preset)")
    p.add_argument("--json", help="write every figure here")
    p.add_argument("--profile", type=int, metavar="S", help="only print the kernel profile of S students' steps")
    a = p.parse_args()
    device = torch.device(a.device)
    name = "paper"
    if a.quick:
        name, a.sizes, a.steps, a.classes, a.official_steps, a.compile_budget = "cpu", [1, 2], 2, 10, 1, 1
        a.arch = "ViT-B-32"
    cfg = preset(name, 768)  # ViT-L/14's width
    options = PRESET_OPTIONS[name]
    clock = Clock(device)
    if a.profile:
        return profile(cfg, options, a.profile, device, a.steps)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"device {hardware}, torch {torch.__version__}, preset {name} ({cfg.grid}x{cfg.grid} grid, "
          f"{cfg.readout} readout, D={cfg.feature_dim}), bf16 autocast", flush=True)
    out: dict[str, Any] = {"device": hardware, "torch": torch.__version__, "preset": name,
                           "analytic_flops_per_step": analytic_flops_per_step(cfg)}
    save = (lambda: Path(a.json).write_text(json.dumps(out, indent=1))) if a.json else (lambda: None)
    out["square_gemm_tflops"] = square_gemm_rate(device, clock, 512 if a.quick else 8192, 2 if a.quick else 10)
    with autocast(device, "bf16"):
        out["counted_flops_per_step"] = counted_flops(cfg, device, options)
        out["rows"] = sizes_sweep(a, cfg, options, device, clock)
        save()  # each phase is kept as soon as it is measured: a later one may run out of time
        out["rows"] += compiled_sweep(a, cfg, options, device, clock)
        save()
    # the method itself runs uncompiled (its compile option is off by default): its batch size is the best eager S
    best = min((r for r in out["rows"] if "ms_per_sample_step" in r and not r["compiled"]),
               key=lambda r: r["ms_per_sample_step"])
    out["official"] = official_vs_ours(a, cfg, best, device, clock)
    save()
    print_tables(out)


def print_tables(out: dict[str, Any]) -> None:
    print(f"\nflops per step: analytic {out['analytic_flops_per_step'] / 1e9:.1f} G, counted by torch "
          f"{out['counted_flops_per_step'] / 1e9:.1f} G; square bf16 GEMM {out['square_gemm_tflops']:.0f} TFLOP/s")
    print("| S | compiled | ms/step | ms/sample-step | TFLOP/s | GEMM TFLOP/s | share | fwd+bwd ms | Adam ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        if "ms_per_step" not in r:
            print(f"| {r['samples']} | {r['compiled']} | {r.get('error') or r.get('skipped')} |||||||")
            continue
        share = f"{100 * r['share_of_gemm']:.0f}%" if "share_of_gemm" in r else ""
        gemm = f"{r['gemm_tflops']:.1f}" if "gemm_tflops" in r else ""
        parts = f"{r['fwd_bwd_ms']:.2f} | {r['adam_ms']:.2f}" if "adam_ms" in r else " | "
        print(f"| {r['samples']} | {r['compiled']} | {r['ms_per_step']:.2f} | {r['ms_per_sample_step']:.3f} | "
              f"{r['tflops']:.1f} | {gemm} | {share} | {parts} |")
    o = out["official"]
    print(f"\nofficial demo protocol at {o['classes']} classes: {o['official_ms_per_step']:.1f} ms/step. Samples/s at "
          f"{o['project_steps']} steps: APM method (predict on {o['samples']} samples) "
          f"{o['method_samples_per_second']:.3f}, projected from the step time {o['projected_samples_per_second']:.3f}, "
          f"official {o['official_samples_per_second']:.5f}: {o['ratio']:.0f}x ({o['projected_ratio']:.0f}x projected)")


if __name__ == "__main__":
    main()
