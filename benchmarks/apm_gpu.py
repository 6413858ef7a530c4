"""APM's speed on a GPU, in three parts (benchmarks/gpu_check.sh runs the first two as its stages 2 and 3):

  ratio    samples/s of the APM method (paper preset, S test samples trained together, 250 steps each, the teacher's
           forward and head included: `predict` as the engine calls it) against the official demo loop's protocol
           (benchmarks/apm_ttt.py: 8 copies per step, teacher image and 1000 class texts re-encoded at every step)
           on the same chip and teacher (open_clip ViT-L-14, random weights: speed does not depend on them).
  floor    ms per training step of S stacked paper-preset students against the step's floor, both measured in this
           process: the step's matrix products at the measured bf16 GEMM rate (batched products of the step's own
           shapes) plus Adam's float32 state (28 bytes a weight: read weight, gradient and two moments, write weight
           and two moments) at the measured device-to-device copy bandwidth. An update waits for its gradients, so
           the two add up. For each S, eager and torch.compile'd forward, and each lever combination (below).
  profile  the kernels of a few steps of S students, by device time.

Levers (a '+'-joined set; `today` is none: torch's fused Adam on float32 weights, bias added in a pass of its own):
  foreach  torch's foreach Adam instead of its fused one;
  baddbmm  the bias read by the batched product (StackedAPMStudent bias_in_product);
  master   MasterAdam (methods/apm_step.py): bf16 weights in the forward, float32 masters, the bf16 copy written by
           the update in one compiled pass, instead of autocast's cast of every weight and gradient;
  graph    the whole step recorded once as a CUDA graph and replayed (with master; CUDA only).

    python benchmarks/apm_gpu.py ratio --json ratio.json         # on a CUDA machine (about 1 minute)
    python benchmarks/apm_gpu.py floor --json floor.json         # about 3-4 minutes (mostly compilation)
    python benchmarks/apm_gpu.py profile --samples 32 --levers master+baddbmm
    python benchmarks/apm_gpu.py floor --device cpu --quick      # a rehearsal: cpu preset, tiny sizes
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from apm_ttt import clip_teacher, cpu_name, official_steps  # noqa: E402
from tta_bench.device import autocast  # noqa: E402
from tta_bench.methods import build_method  # noqa: E402
from tta_bench.methods.apm import PRESET_OPTIONS, Targets, fit  # noqa: E402
from tta_bench.methods.apm_step import Step  # noqa: E402
from tta_bench.methods.base import Batch  # noqa: E402
from tta_bench.models.apm_student import (  # noqa: E402
    APMConfig,
    APMStudent,
    StackedAPMStudent,
    analytic_flops_per_step,
    count_parameters,
    preset,
)

LEVERS = ("foreach", "baddbmm", "master", "graph")
DEFAULT_LEVERS = "today,foreach,baddbmm,master,baddbmm+master,baddbmm+master+graph"
ADAM_BYTES_PER_WEIGHT = 28
GOAL_SIZES = (32, 64)  # the step's goal (<= 1.25x its floor) is stated at these


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


def hardware(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def rounded(value: Any, digits: int = 4) -> Any:
    """Figures as a reader wants them in JSON: 4 significant digits, recursively."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def saver(path: str | None, out: dict[str, Any]) -> Callable[[], None]:
    """Write everything measured so far (each phase as soon as it is done: a later one may run out of time)."""
    return (lambda: Path(path).write_text(json.dumps(rounded(out), indent=1))) if path else (lambda: None)


# ---------------------------------------------------------------------------------------------------------- ratio
def ratio(a: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Samples/s at `steps` steps a sample: the APM method on `samples` images together (one `predict`: teacher,
    students drawn, every step, the head), against the official protocol's timed steps (one sample at a time)."""
    out: dict[str, Any] = {"device": hardware(device), "torch": torch.__version__, "arch": a.arch,
                           "classes": a.classes, "preset": a.preset, "samples": a.samples, "steps": a.steps}
    save = saver(a.json, out)
    precision = "bf16" if device.type == "cuda" else "fp32"  # each device's default for APM (engine.resolve_precision)
    teacher = clip_teacher(a.arch, a.classes, device)
    cfg = preset(a.preset, teacher.feature_dim)
    size = teacher.transform(Image.new("RGB", (256, 256))).shape[-1]
    images = torch.rand(a.samples, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    batch = Batch(images, list(range(a.samples)))
    clock = Clock(device)
    options = {"preset": a.preset, "parallel": "true"}
    with autocast(device, precision):
        build_method("apm", teacher, {**options, "steps": 2}, device).predict(batch)  # warm-up: kernels, workspaces
        method = build_method("apm", teacher, {**options, "steps": a.steps}, device)
        method.predict(Batch(images[:1], [0]))  # its first batch also counts the teacher's FLOPs: not timed
        with clock() as ours:
            method.predict(batch)
        official_steps(teacher, cfg, images[:1], 1, a.classes)  # warm-up
        with clock() as theirs:
            official_steps(teacher, cfg, images[:1], a.official_steps, a.classes)
    official_step = theirs[0] / a.official_steps
    out |= {"precision": precision, "method_seconds": ours[0], "method_samples_per_second": a.samples / ours[0],
            "official_seconds_per_step": official_step, "official_steps_timed": a.official_steps,
            "official_samples_per_second": 1 / (a.steps * official_step)}
    out["ratio"] = out["method_samples_per_second"] / out["official_samples_per_second"]
    save()
    print(f"device {out['device']}, torch {out['torch']}, teacher {a.arch} (random weights), {a.classes} classes, "
          f"preset {a.preset}, {precision}")
    print(f"APM method: {a.samples} samples x {a.steps} steps in {ours[0]:.2f} s = "
          f"{out['method_samples_per_second']:.3g} samples/s (teacher forward and head included)")
    print(f"official protocol: {1000 * official_step:.1f} ms/step ({a.official_steps} timed) = "
          f"{out['official_samples_per_second']:.3g} samples/s at {a.steps} steps")
    print(f"ratio: {out['ratio']:.1f}x (goal >= 50x)")
    return out


# ---------------------------------------------------------------------------------------------------------- floor
@dataclasses.dataclass(frozen=True)
class Levers:
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> "Levers":
        names = frozenset() if text == "today" else frozenset(text.split("+"))
        unknown = names - set(LEVERS)
        if unknown:
            raise SystemExit(f"error: unknown lever(s) {', '.join(sorted(unknown))}; choose from today, "
                             f"{', '.join(LEVERS)} joined by +")
        return cls(names)

    @property
    def label(self) -> str:
        return "+".join(n for n in LEVERS if n in self.names) or "today"

    @property
    def step(self) -> Step:
        update = "master" if "master" in self.names else "foreach" if "foreach" in self.names else "fused"
        return Step(update, graph="graph" in self.names)


def gemm_tflops(cfg: APMConfig, s: int, device: torch.device, clock: Clock, reps: int) -> float:
    """TFLOP/s of one training step's matrix products alone, as bf16 batched products of the per-student shapes:
    per layer of the MLP and feature head the forward (L x in @ in x out), the input gradient (L x out @ out x in)
    and the weight gradient (in x L @ L x out), L = locations per student."""
    n = cfg.locations
    g = torch.Generator(device=device).manual_seed(0)
    ops = []
    for a, b in pairwise((cfg.query_dim, *cfg.hidden, cfg.feature_dim)):
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


def copy_bandwidth(device: torch.device, clock: Clock, mib: int, reps: int) -> float:
    """Bytes a second that a device-to-device copy moves (read + write) on a buffer of `mib` MiB."""
    src = torch.ones(mib * 2**18, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    with clock() as t:
        for _ in range(reps):
            dst.copy_(src)
    return 2 * src.numel() * 4 * reps / t[0]


def the_floor(cfg: APMConfig, s: int, device: torch.device, clock: Clock, quick: bool,
              bandwidth: float) -> dict[str, float]:
    rate = gemm_tflops(cfg, s, device, clock, 2 if quick else 10)
    weights = s * count_parameters(APMStudent(cfg, seed=None))
    gemm_ms = 1000 * analytic_flops_per_step(cfg) * s / (rate * 1e12)
    adam_ms = 1000 * ADAM_BYTES_PER_WEIGHT * weights / bandwidth
    return {"gemm_tflops": rate, "gemm_ms": gemm_ms, "adam_gb": ADAM_BYTES_PER_WEIGHT * weights / 1e9,
            "adam_ms": adam_ms, "floor_ms": gemm_ms + adam_ms}


def problem(cfg: APMConfig, s: int, device: torch.device, levers: Levers
            ) -> tuple[StackedAPMStudent, torch.Tensor, Targets]:
    g = torch.Generator().manual_seed(s)
    x = torch.randn(s, 1, 3, cfg.image_size, cfg.image_size, generator=g).to(device)
    target = (0.1 * torch.randn(s, 1, cfg.feature_dim, generator=g)).to(device)
    student = StackedAPMStudent(cfg, list(range(s)), device, bias_in_product="baddbmm" in levers.names)
    return student, x, Targets(target, None, None)


def fit_seconds(forward: Callable, student: StackedAPMStudent, x: torch.Tensor, targets: Targets, steps: int,
                options, step: Step, clock: Clock) -> float:
    with clock() as t:
        for _ in fit(forward, list(student.parameters()), x, targets, dataclasses.replace(options, steps=steps), step):
            pass
    return t[0]


def step_ms(forward: Callable, student: StackedAPMStudent, x: torch.Tensor, targets: Targets, options, step: Step,
            clock: Clock, steps: int) -> float:
    """One step of `fit` from two timed runs (steps and 2 x steps) after a warm-up run: what a run pays once
    (optimiser state, a graph's capture, the last forward) cancels."""
    fit_seconds(forward, student, x, targets, 2, options, step, clock)
    short = fit_seconds(forward, student, x, targets, steps, options, step, clock)
    long = fit_seconds(forward, student, x, targets, 2 * steps, options, step, clock)
    if long <= short:  # a machine busy with other work: no figure rather than a negative one
        raise TimingNoise(f"timing noise: {2 * steps} steps took {long:.3f} s, {steps} steps {short:.3f} s")
    return 1000 * (long - short) / steps


class TimingNoise(Exception):
    """The longer of two timed runs was not the slower (other work on the machine)."""


def floor(a: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    cfg = preset(a.preset, 768)  # ViT-L/14's width
    options = PRESET_OPTIONS[a.preset]
    clock = Clock(device)
    try:
        torch._dynamo.config.recompile_limit = 64  # one compiled forward per (S, levers): more than the default 8
    except AttributeError:
        torch._dynamo.config.cache_size_limit = 64
    out: dict[str, Any] = {"device": hardware(device), "torch": torch.__version__, "preset": a.preset,
                           "precision": "bf16", "analytic_flops_per_step": analytic_flops_per_step(cfg),
                           "adam_bytes_per_weight": ADAM_BYTES_PER_WEIGHT, "floors": {}, "rows": []}
    save = saver(a.json, out)
    out["copy_bandwidth_tb_s"] = copy_bandwidth(device, clock, 16 if a.quick else 1024, 2 if a.quick else 20) / 1e12
    print(f"device {out['device']}, torch {out['torch']}, preset {a.preset} ({cfg.grid}x{cfg.grid} grid, "
          f"{cfg.readout} readout, D={cfg.feature_dim}), bf16 autocast; copy bandwidth "
          f"{out['copy_bandwidth_tb_s']:.3g} TB/s", flush=True)
    levers = [Levers.parse(t) for t in a.levers.split(",")]
    # every eager configuration first, then the compiled ones until the budget is spent (compilation dominates):
    # the sizes the goal names first, and among them the fullest lever set first
    eager = [(s, lever, False) for s in a.sizes for lever in levers] if False in a.modes else []
    compiled = sorted(((s, lever, True) for s in a.sizes for lever in levers),
                      key=lambda c: (c[0] not in GOAL_SIZES, -levers.index(c[1]))) if True in a.modes else []
    plan = eager + compiled
    compiling_since = None
    for s, lever, compiled in plan:
        if str(s) not in out["floors"]:
            with autocast(device, "bf16"):
                f = out["floors"][str(s)] = the_floor(cfg, s, device, clock, a.quick, out["copy_bandwidth_tb_s"] * 1e12)
            print(f"S={s}: floor {f['floor_ms']:.2f} ms = GEMMs {f['gemm_ms']:.2f} ms ({f['gemm_tflops']:.3g} "
                  f"TFLOP/s) + Adam {f['adam_ms']:.2f} ms ({f['adam_gb']:.3g} GB)", flush=True)
        row: dict[str, Any] = {"samples": s, "levers": lever.label, "compiled": compiled}
        if "graph" in lever.names and device.type != "cuda":
            row["skipped"] = "CUDA graphs need a CUDA device"
        elif compiled and time.perf_counter() - (compiling_since or time.perf_counter()) > a.budget:
            row["skipped"] = "time budget spent"
        else:
            compiling_since = compiling_since or (time.perf_counter() if compiled else None)
            row |= measure(cfg, s, lever, compiled, options, device, clock, a.steps, out["floors"][str(s)])
        out["rows"].append(row)
        print(row_line(row), flush=True)
        save()
    return out


def measure(cfg: APMConfig, s: int, lever: Levers, compiled: bool, options, device: torch.device, clock: Clock,
            steps: int, the_floor: dict[str, float]) -> dict[str, Any]:
    """ms/step of one configuration; a failure (a compiler's, a capture's, memory) is a finding, not a stop."""
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the previous configuration's students are gone
    try:
        student, x, targets = problem(cfg, s, device, lever)
        forward = torch.compile(student, dynamic=False) if compiled else student
        with autocast(device, "bf16"):
            ms = step_ms(forward, student, x, targets, options, lever.step, clock, steps)
    except Exception as exc:  # recorded with its type and message
        return {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"ms_per_step": ms, "times_floor": ms / the_floor["floor_ms"],
            "tflops": analytic_flops_per_step(cfg) * s / (ms / 1000) / 1e12}


def row_line(r: dict[str, Any]) -> str:
    head = f"S={r['samples']} {r['levers']}{' compiled' if r['compiled'] else ''}"
    if "ms_per_step" not in r:
        return f"{head}: {r.get('error') or r.get('skipped')}"
    return f"{head}: {r['ms_per_step']:.2f} ms/step = {r['times_floor']:.2f}x floor, {r['tflops']:.3g} TFLOP/s"


def print_floor_table(out: dict[str, Any]) -> None:
    print("\n| S | levers | forward | ms/step | floor ms | x floor | TFLOP/s |\n|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        f = out["floors"][str(r["samples"])]
        forward = "compiled" if r["compiled"] else "eager"
        if "ms_per_step" in r:
            print(f"| {r['samples']} | {r['levers']} | {forward} | {r['ms_per_step']:.2f} | {f['floor_ms']:.2f} | "
                  f"{r['times_floor']:.2f} | {r['tflops']:.3g} |")
        else:
            print(f"| {r['samples']} | {r['levers']} | {forward} | {r.get('error') or r.get('skipped')} | "
                  f"{f['floor_ms']:.2f} | | |")


# -------------------------------------------------------------------------------------------------------- profile
def profile(a: argparse.Namespace, device: torch.device) -> None:
    """The kernels of `steps` training steps of S students with the given levers, by device time."""
    cfg = preset(a.preset, 768)
    options = PRESET_OPTIONS[a.preset]
    lever = Levers.parse(a.levers)
    student, x, targets = problem(cfg, a.samples, device, lever)
    clock = Clock(device)
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA]
                                                           if device.type == "cuda" else [])
    with autocast(device, "bf16"):
        fit_seconds(student, student, x, targets, 2, options, lever.step, clock)
        with torch.profiler.profile(activities=activities) as prof:
            fit_seconds(student, student, x, targets, a.steps, options, lever.step, clock)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=70))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("ratio", "floor", "profile"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="a rehearsal: cpu preset, small sizes, few steps "
                                                          "(ratio: a ViT-B-32 teacher, 10 classes)")
    p.add_argument("--preset", default="paper", help="student preset (default: paper)")
    p.add_argument("--json", help="write every figure here")
    g = p.add_argument_group("ratio")
    g.add_argument("--arch", default="ViT-L-14", help="open_clip architecture of the teacher (random weights)")
    g.add_argument("--classes", type=int, default=1000, help="classes the official protocol re-encodes per step")
    g.add_argument("--samples", type=int, default=64, help="samples APM trains together (ratio, profile)")
    g.add_argument("--steps", type=int, default=None, help="ratio: steps a sample (default 250); floor: timed "
                                                          "steps per measurement (default 20); profile (default 3)")
    g.add_argument("--official-steps", type=int, default=10, help="official protocol steps timed")
    g = p.add_argument_group("floor")
    g.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")], default=[32, 64, 8])
    g.add_argument("--levers", default=None, help=f"comma list of lever sets (default: {DEFAULT_LEVERS}; "
                                                  "profile: one set, default today)")
    g.add_argument("--modes", type=lambda t: [v == "compiled" for v in t.split(",")], default=[False, True],
                   help="eager,compiled (default both)")
    g.add_argument("--budget", type=float, default=150, help="seconds for the compiled measurements, after which "
                                                             "the rest are skipped (compilation dominates)")
    a = p.parse_args()
    device = torch.device(a.device)
    if a.quick:
        a.preset, a.arch, a.classes, a.official_steps = "cpu", "ViT-B-32", 10, 1
        a.samples, a.sizes = 2, [2]
        a.steps = a.steps or 4
        a.budget = min(a.budget, 5)  # one compiled configuration: compiling on a CPU takes a minute
    a.levers = a.levers or ("today" if a.part == "profile" else DEFAULT_LEVERS)
    if a.part == "ratio":
        a.steps = a.steps or 250
        ratio(a, device)
    elif a.part == "floor":
        a.steps = a.steps or 20
        print_floor_table(floor(a, device))
    else:
        a.steps = a.steps or 3
        profile(a, device)


if __name__ == "__main__":
    main()
