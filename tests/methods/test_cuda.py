"""The GPU path (``pytest -m cuda``; skipped without CUDA): every method under the engine's bf16 autocast against its
float32 CPU prediction, stacked APM students against one-at-a-time students under bf16, the out-of-memory
back-off, and APM's step choices (the compiled master update, the CUDA-graph step). benchmarks/gpu_check.sh runs
these on a CUDA machine; ``TTA_BENCH_TEST_DEVICE=cpu`` rehearses them on the CPU (bf16 autocast there), except the
tests that need CUDA itself (its allocator, CUDA graphs).

Each test appends what it measured to the JSON-lines file named by ``TTA_BENCH_GPU_REPORT`` (when set), so the
deviations behind the stated tolerances land in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from PIL import Image

from tests.conftest import ACCELERATOR, on_accelerator, on_cuda
from tests.methods.conftest import CPU, photographs
from tta_bench import engine
from tta_bench.device import autocast
from tta_bench.data.labels import label_space
from tta_bench.methods import METHODS, build_method
from tta_bench.methods.apm import APM
from tta_bench.methods.base import Batch
from tta_bench.teachers import build_teacher
from tta_bench.teachers.base import Teacher


@dataclass(frozen=True)
class Case:
    """How a method is checked on the accelerator: its teacher, options, the batches it sees (online methods: the
    later ones are predicted by the adapted model) and the stated tolerances of its bf16 run against float32 on the
    CPU. Its float32 run on the device must match the CPU within FP32_REL, every top-1 equal."""

    teacher: str
    options: dict[str, Any] = field(default_factory=dict)
    batches: int = 1
    n: int = 8  # images per batch
    agree: float = 0.85  # least share of bf16 top-1 predictions equal to the float32 CPU ones
    rel: float = 0.1  # largest ||bf16 logits - cpu logits|| / ||cpu logits|| over the whole output


# float32 on CUDA (TF32 off, device.autocast) differs from the CPU only by summation order and kernel choice.
FP32_REL = 5e-3
# bf16 keeps 8 bits of mantissa. Measured with CPU bf16 autocast on these photographs (benchmarks/RESULTS.md):
# EfficientNet-Lite0 logits move 4% in eval mode and 18% (a third of the top-1s of a 16-image batch) when its BN
# layers normalise with batch statistics, which amplifies the rounding of low-variance channels: hence the wide
# tolerances of bn_adapt and tent, and why those methods run in float32 by default. tiny-clip is random, so its
# classes sit close together.
CASES: dict[str, Case] = {
    "source": Case("effnet-lite0", n=16),
    "bn_adapt": Case("effnet-lite0", n=16, agree=0.5, rel=0.35),
    "tent": Case("effnet-lite0", batches=2, agree=0.5, rel=0.35),
    "memo": Case("effnet-lite0", {"n_views": 16}, n=4, agree=0.75, rel=0.25),
    "tpt": Case("tiny-clip", agree=0.75, rel=0.35),
    "tda": Case("tiny-clip", {"n_views": 16}, batches=2, agree=0.75, rel=0.35),  # caches carried to batch 2
    "zero": Case("tiny-clip", agree=0.75, rel=0.5),  # logits are vote counts: one moved vote moves two entries
    "apm": Case("effnet-lite0", {"steps": 40, "init_device": "cpu"}, n=16),  # the CPU's start on both sides
    # The classifier TTA methods below run in float32 by default, as their reference code; bf16 is checked with the
    # tolerances of TENT (the same BN batch-statistics amplification), the second batch predicted by the adapted
    # model. EATA computes its Fisher on the first batch's images (run_method); EATA and SAR let every sample
    # through their filters (with 8 photographs a batch no entropy was below 0.4 ln 1000, and nothing moved); CoTTA
    # always averages 2 augmented copies (the same seeded draws on both sides); RoTTA updates after 8 samples.
    "eata": Case("effnet-lite0", {"e_margin": 1.0, "d_margin": 1.0, "optimizer": "adam", "lr": 0.001}, batches=2,
                 agree=0.5, rel=0.35),
    "sar": Case("effnet-lite0", {"e_margin": 1.0, "lr": 0.001}, batches=2, agree=0.5, rel=0.35),
    "cotta": Case("effnet-lite0", {"optimizer": "sgd", "lr": 0.01, "loss": "symmetric", "threshold": 1.01,
                                   "n_augmentations": 2, "restore": 0.001}, batches=2, agree=0.5, rel=0.35),
    "rotta": Case("effnet-lite0", {"update_every": 8, "memory_size": 8}, batches=2, agree=0.5, rel=0.35),
    "lame": Case("effnet-lite0", n=16, agree=0.75, rel=0.35),  # eval-mode teacher; log-probabilities compared
    "shot_im": Case("effnet-lite0", batches=2, agree=0.5, rel=0.35),
}


def report(test: str, **figures: Any) -> None:
    path = os.environ.get("TTA_BENCH_GPU_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"test": test, "device": device_name(), **figures}) + "\n")


def device_name() -> str:
    if ACCELERATOR is not None and ACCELERATOR.type == "cuda":
        return torch.cuda.get_device_name(ACCELERATOR)
    return str(ACCELERATOR)


def frozen_teacher(name: str, device: torch.device) -> Teacher:
    t = build_teacher(name).to(device).eval().requires_grad_(False)
    t.set_classes(label_space("imagenet1k"), range(1000), ("a photo of a {}.",))
    return t


def run_method(name: str, case: Case, device: torch.device, precision: str) -> torch.Tensor:
    teacher = frozen_teacher(case.teacher, device)
    size = teacher.transform(Image.new("RGB", (256, 256))).shape[-1]
    method = build_method(name, teacher, dict(case.options), device)
    x = photographs(case.n * case.batches, size).to(device)
    if method.source_samples():  # the engine's source-data hook, on the first batch's images
        with autocast(device, precision):
            method.prepare_source(iter([x[:case.n]]))
    logits = []
    for b in range(case.batches):
        part = x[b * case.n:(b + 1) * case.n]
        with autocast(device, precision):
            logits.append(method.predict(Batch(part, list(range(b * case.n, (b + 1) * case.n)))).logits.float().cpu())
    return torch.cat(logits)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_every_method_has_a_gpu_case() -> None:
    """A method added without a GPU check fails here, on any machine."""
    assert set(CASES) == set(METHODS.names())


@pytest.mark.parametrize("name", sorted(CASES))
@on_accelerator
def test_method_under_bf16_autocast_matches_float32_cpu(name: str) -> None:
    case = CASES[name]
    reference = run_method(name, case, CPU, "fp32")
    figures = {}
    for precision in ("fp32", "bf16"):
        logits = run_method(name, case, ACCELERATOR, precision)
        assert logits.isfinite().all()
        figures[precision] = (float((logits.argmax(1) == reference.argmax(1)).float().mean()), relative(logits, reference))
    report(f"method:{name}", teacher=case.teacher, n=len(reference), fp32_agree=figures["fp32"][0],
           fp32_rel=figures["fp32"][1], bf16_agree=figures["bf16"][0], bf16_rel=figures["bf16"][1],
           bf16_agree_min=case.agree, bf16_rel_max=case.rel)
    (agree32, rel32), (agree, rel) = figures["fp32"], figures["bf16"]
    assert agree32 == 1.0 and rel32 <= FP32_REL, f"{name} float32: agreement {agree32:.3f}, difference {rel32:.4f}"
    assert agree >= case.agree and rel <= case.rel, f"{name} bf16: agreement {agree:.3f}, difference {rel:.4f}"


def apm_on(device: torch.device, **options: Any) -> APM:
    return build_method("apm", frozen_teacher("effnet-lite0", device), options, device)


@pytest.mark.parametrize("readout", ["mean", "attention"])
@on_accelerator
def test_stacked_students_match_one_at_a_time_under_bf16(readout: str) -> None:
    """Stacked students and one-at-a-time students train the same networks from the same seeds; under bf16
    only rounding differs (batched vs plain matrix products), and 30 Adam steps carry it into the weights.
    Tolerance: relative logit difference <= 0.25 and >= 6 of 8 top-1 equal; a pairing error between students and
    samples gives ~1 and chance agreement. The float32 run beside them measures the scale of bf16 noise itself
    (0.11 with CPU bf16)."""
    x = photographs(8, 224).to(ACCELERATOR)
    seeds = list(range(8))
    logits = {}
    for label, parallel, precision in (("stacked", "true", "bf16"), ("one_at_a_time", "false", "bf16"),
                                       ("float32", "false", "fp32")):
        method = apm_on(ACCELERATOR, steps=30, parallel=parallel, readout=readout)
        with autocast(ACCELERATOR, precision):
            logits[label] = method.predict(Batch(x, seeds)).logits.float().cpu()
    stacked, single = logits["stacked"], logits["one_at_a_time"]
    rel, agree = relative(stacked, single), float((stacked.argmax(1) == single.argmax(1)).float().mean())
    report(f"apm:stacked_vs_one_at_a_time:{readout}", steps=30, n=8, rel=rel, agree=agree,
           bf16_vs_float32=relative(single, logits["float32"]))
    assert rel <= 0.25 and agree >= 0.75, f"stacked vs one at a time: difference {rel:.4f}, agreement {agree:.3f}"


@on_cuda
def test_out_of_memory_halves_the_group_and_finishes() -> None:
    """Paper-preset students cost ~0.4 GB each (float32 weights, gradients, two Adam moments); with the process
    allowed ~2.5 GB, 16 together cannot fit: the engine's back-off halves the group until they do, and the batch
    finishes with the predictions of an unconstrained run."""
    device = torch.device("cuda", torch.cuda.current_device())
    x, seeds = photographs(16, 224).to(device), list(range(16))
    free = apm_on(device, preset="paper", steps=2)
    with autocast(device, "bf16"):
        expected = free.predict(Batch(x, seeds)).logits.float().cpu()
    del free
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    method = apm_on(device, preset="paper", steps=2)
    torch.cuda.reset_peak_memory_stats(device)
    torch.cuda.set_per_process_memory_fraction(2.5 * 2**30 / total, device)
    try:
        with autocast(device, "bf16"):
            out = engine._predict(method, Batch(x, seeds))
        peak = torch.cuda.max_memory_allocated(device)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    logits = out.logits.float().cpu()
    report("apm:oom_backoff", group=method.group, peak_gib=peak / 2**30, rel=relative(logits, expected))
    assert method.group is not None and method.group < 16
    assert logits.shape == expected.shape and logits.isfinite().all()
    assert relative(logits, expected) <= 0.05


@on_accelerator
def test_compiled_master_update_equals_the_eager_one() -> None:
    """The master update as one compiled pass per tensor (how it runs on CUDA; a CPU rehearsal compiles it to C++)
    against its eager form, with and without the bf16 copy: the same masters, moments and copies to float
    rounding."""
    from tta_bench.methods.apm_step import MasterAdam

    g = torch.Generator().manual_seed(0)
    shapes = ((4, 96, 48), (4, 48), (4, 1, 1, 32), (1,))
    start = [torch.randn(*s, generator=g).to(ACCELERATOR) for s in shapes]
    grads = [[torch.randn(*s, generator=g).to(ACCELERATOR) for s in shapes] for _ in range(3)]
    worst = 0.0
    for dtype in (torch.float32, torch.bfloat16):
        runs = []
        for compiled in (False, True):
            params = [torch.nn.Parameter(t.clone()) for t in start]
            opt = MasterAdam(params, 1e-2, dtype, compiled=compiled)
            for step in grads:
                for p, grad in zip(params, step):
                    p.grad = grad.to(dtype)
                opt.step()
            runs.append((params, opt))
        (eager, eager_opt), (compiled, compiled_opt) = runs
        for a, b in zip(eager, compiled):
            assert a.dtype == b.dtype == dtype
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
            for key in ("master", "exp_avg", "exp_avg_sq"):
                x, y = compiled_opt.state[b][key], eager_opt.state[a][key]
                torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)
                worst = max(worst, relative(x, y))
    report("apm:compiled_master_update", rel=worst)


@on_cuda
def test_graph_replayed_step_trains_as_the_eager_step() -> None:
    """Paper-preset stacked students (4 together, 12 steps, StepLR at 5) under bf16 autocast: the step recorded as a
    CUDA graph and replayed against the same master-update step run eagerly (the same kernels, so equal to float
    rounding), and both against torch's fused Adam on float32 weights (today's step): bf16 rounding only, far below
    what a pairing error or a lost update gives (~1)."""
    import dataclasses

    from tta_bench.methods.apm import PRESET_OPTIONS, Targets, fit
    from tta_bench.methods.apm_step import Step
    from tta_bench.models.apm_student import StackedAPMStudent, preset

    device = torch.device("cuda", torch.cuda.current_device())
    cfg = preset("paper", 768)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 3, cfg.image_size, cfg.image_size, generator=g).to(device)
    targets = Targets((0.1 * torch.randn(4, 1, 768, generator=g)).to(device), None, None)
    options = dataclasses.replace(PRESET_OPTIONS["paper"], steps=12, step_size=5)
    features, losses = {}, {}
    for label, step in (("graph", Step("master", graph=True)), ("master", Step("master")), ("fused", Step("fused"))):
        student = StackedAPMStudent(cfg, [1, 2, 3, 4], device)
        with engine.autocast(device, "bf16"):
            run = [(out.feature.float().cpu(), loss.cpu()) for _, out, loss in
                   fit(student, list(student.parameters()), x, targets, options, step)]
        assert all(p.dtype == torch.float32 for p in student.parameters())
        features[label], losses[label] = run[-1][0], torch.stack([loss for _, loss in run])
    graph_rel = relative(features["graph"], features["master"])
    fused_rel = relative(features["master"], features["fused"])
    report("apm:graph_step", steps=12, graph_vs_eager=graph_rel, master_vs_fused=fused_rel,
           loss_drop=float(losses["graph"][-1].sum() / losses["graph"][0].sum()))
    assert graph_rel <= 1e-3, f"graph-replayed vs eager step: {graph_rel:.2e}"
    torch.testing.assert_close(losses["graph"], losses["master"], rtol=1e-3, atol=1e-6)
    assert fused_rel <= 2e-2, f"master update vs torch's fused Adam under bf16: {fused_rel:.2e}"
    assert losses["graph"][-1].sum() < losses["graph"][0].sum()  # and it learns
