"""APM (Asynchronous Perception Machine, Modi & Rawat, NeurIPS 2024): test-time training of one fresh student per
test sample, which then classifies with the teacher's head.

For every sample, independently: the teacher encodes it once (its global feature is the target; optionally its dense
grid too); a student seeded by the sample's own seed (``Batch.seeds``, so a result never depends on the sample's
position) takes the image resized to (g·p)² and ImageNet-normalised; ``steps`` Adam updates fit the student's readout
to the target by MSE (plus dense and RGB terms when weighted); the teacher's head scores the student's feature.
Weights, optimiser state and schedule start afresh for every sample.

Presets (``--opt preset=NAME``; explicit options override the preset's values):

- ``cpu`` (default, so a run works anywhere): an 8 x 8 grid of 16-pixel patches (128² input), MLP 128-512-256 +
  feature head, mean readout, Adam lr 1e-3 constant, 80 steps. Chosen by measurement with EfficientNet-Lite0 on real
  ImageNet photographs with generated ImageNet-C corruptions (benchmarks/RESULTS.md): teacher agreement is 75.5% after
  10 steps, 92% after 25, 97.5% after 50, 99.5% after 80 and 100% after 150, so 80 steps buys 99.5% at 0.29 s per
  sample; lr 1e-3 beat 3e-4 and 3e-3 at 10-25 steps on the clean photographs. Mean readout, because attention pooling
  reached the same agreement at 50 steps (97.5%), no better, while a step costs about 9x as much here (its 4·D²
  weights dwarf this small MLP): at equal time the mean readout is far ahead. The paper preset keeps the official
  code's attention readout, whose cost there is about 6% of the MLP's.
- ``paper``: the official test-time-training code: p = 14, g = 32 (448² input), MLP 2048-4096-2048-1024 + head to
  the teacher width, attention readout as in the official code, Adam 1e-4, StepLR(200, 0.1) stepped per iteration,
  250 iterations (the paper's Figure 3; the count behind its tables is not published).

Neither schedule depends on the step count, so ``--record-steps 10,25,50`` in one run gives the predictions that runs
of 10, 25 and 50 steps would give.

Efficiency: one batched teacher forward per batch; text embeddings come from the teacher (once per run); every query
of a chunk goes through the MLP in one matmul; on CUDA the engine's bf16 autocast applies and the samples of a batch
train in parallel, each with its own weights (``parallel``, via StackedAPMStudent; the same predictions as one at a
time up to float rounding). On a 2-core CPU parallel training measured no gain, so it is off there by default.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from ..errors import UserError
from ..models.apm_student import (
    PRESETS,
    READOUTS,
    APMConfig,
    APMOutput,
    APMStudent,
    StackedAPMStudent,
    analytic_flops_per_step,
    analytic_macs_per_image,
    init_student_,
    preset,
)
from ..teachers.base import Teacher
from .apm_step import STEP, Step, build_optimizer, release, training_steps
from .base import Batch, Method, Output
from .options import Options

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SCHEDULES = ("constant", "step")


@dataclass
class APMOptions(Options):
    """Defaults are the ``cpu`` preset; ``parse_options`` starts from the chosen preset's values instead."""

    steps: int = 80
    lr: float = 1e-3
    preset: str = "cpu"  # network shape and training defaults: cpu | paper (given as auto: build_options decides)
    readout: str = PRESETS["cpu"].readout  # mean | attention: how the grid is pooled into the feature
    schedule: str = "constant"  # constant | step (StepLR stepped per iteration)
    step_size: int = 200  # StepLR period (iterations)
    gamma: float = 0.1  # StepLR factor
    chunk_size: int = 0  # queries per chunk (asynchronous perception); 0 = all locations at once
    parallel: bool | Literal["auto"] = "auto"  # train the samples of a batch together; auto = on CUDA only
    dense_weight: float = 0.0  # weight of the dense term (teachers with a patch grid: DINO)
    rgb_weight: float = 0.0  # weight of the per-location mean-colour term (enables the RGB head)
    compile: bool = False  # torch.compile the student's forward
    grid: int = 0  # locations per side (0: the preset's; finer grids show islands in more detail)
    patch: int = 0  # pixels per location side (0: the preset's); the student's input is grid x patch pixels
    init_device: str = "train"  # where initial weights are drawn: train (the student's device, as the official
    # code) | cpu (the same start on every device; costs ~0.1 s per paper-preset student on a GPU machine)

    def problems(self) -> list[str]:
        """What the types cannot say: the choices named by the student network's module, ranges, and pairs."""
        o = self
        problems = [
            o.steps < 1 and f"steps must be >= 1, got {o.steps}",
            o.lr <= 0 and f"lr must be > 0, got {o.lr}",
            o.readout not in READOUTS and f"readout must be one of {', '.join(READOUTS)}, got {o.readout!r}",
            o.schedule not in SCHEDULES and f"schedule must be one of {', '.join(SCHEDULES)}, got {o.schedule!r}",
            o.chunk_size < 0 and f"chunk_size must be >= 0, got {o.chunk_size}",
            (o.grid < 0 or o.grid == 1 or o.patch < 0)
            and f"grid must be 0 or >= 2 and patch >= 0, got {o.grid}, {o.patch}",
            (o.dense_weight < 0 or o.rgb_weight < 0) and "dense_weight and rgb_weight must be >= 0",
            o.preset not in PRESETS and f"unknown network preset {o.preset!r}",
            o.init_device not in ("train", "cpu") and f"init_device must be train or cpu, got {o.init_device!r}",
        ]
        return [p for p in problems if p]


PRESET_OPTIONS: dict[str, APMOptions] = {
    "cpu": APMOptions(),
    "paper": APMOptions(steps=250, lr=1e-4, preset="paper", readout=PRESETS["paper"].readout, schedule="step",
                        step_size=200, gamma=0.1),
}


@dataclass
class Targets:
    """What the student fits, per sample on the leading dimension."""

    feature: Tensor  # (N, D) teacher's global feature
    dense: Tensor | None  # (N, g², D) teacher's patch grid resized to the student's grid
    rgb: Tensor | None  # (N, g², 3) mean colour of each student patch, in [0, 1]

    def take(self, fn: Callable[[Tensor], Tensor]) -> "Targets":
        """The same targets with `fn` applied to each tensor (slice one sample, add a student dimension)."""
        return Targets(*(None if t is None else fn(t) for t in (self.feature, self.dense, self.rgb)))


def student_config(options: APMOptions, feature_dim: int) -> APMConfig:
    cfg = preset(options.preset, feature_dim)
    return dataclasses.replace(cfg, readout=options.readout, rgb_head=options.rgb_weight > 0,
                               grid=options.grid or cfg.grid, patch=options.patch or cfg.patch)


def student_input(images: Tensor, cfg: APMConfig) -> Tensor:
    """[0, 1] images (B, 3, H, W) -> (g·p)² and ImageNet-normalised: the student's input."""
    x = F.interpolate(images.float(), size=(cfg.image_size, cfg.image_size), mode="bilinear", antialias=True,
                      align_corners=False)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def student_inputs(batch: Batch, cfg: APMConfig) -> Tensor:
    """The student's inputs as the official code builds them (rajatmodi62/apm single_token_segmentation/
    model_tta.py: ``Resize((448, 448))`` of the whole picture, ToTensor, ImageNet normalisation): each sample's full
    decoded image (``Batch.raw``) resized to (g·p)² regardless of its aspect, not the teacher's centre crop."""
    device = batch.images.device
    out = []
    for k in range(len(batch.images)):
        image = batch.raw_image(k)
        image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        out.append(student_input(image[None].to(device), cfg))
    return torch.cat(out)


@torch.no_grad()
def teacher_targets(teacher: Teacher, images: Tensor, cfg: APMConfig, options: APMOptions) -> Targets:
    """One batched teacher forward for the whole batch (a second one for the dense grid when it is weighted)."""
    feature = teacher.encode(images).float()
    dense = None
    if options.dense_weight > 0:
        grid = teacher.encode_dense(images)
        if grid is None:
            raise UserError(f"dense_weight needs a teacher with a patch grid (dino:...); {teacher.name} has none")
        if grid.shape[1] != cfg.feature_dim:
            raise UserError(f"the dense grid of {teacher.name} is {grid.shape[1]} wide, its feature {cfg.feature_dim}")
        grid = F.interpolate(grid.float(), size=(cfg.grid, cfg.grid), mode="bilinear", align_corners=False)
        dense = grid.flatten(2).transpose(1, 2)
    rgb = None
    if options.rgb_weight > 0:
        small = F.adaptive_avg_pool2d(F.interpolate(images.float(), size=(cfg.image_size,) * 2, mode="bilinear",
                                                    antialias=True, align_corners=False), cfg.grid)
        rgb = small.flatten(2).transpose(1, 2)
    return Targets(feature, dense, rgb)


def sample_losses(out: APMOutput, targets: Targets, options: APMOptions) -> Tensor:
    """Per-sample objective, one value per entry of the leading dimension (a sample, or a stacked student)."""
    def mse(a: Tensor, b: Tensor) -> Tensor:
        return (a.float() - b).pow(2).flatten(1).mean(1)

    loss = mse(out.feature, targets.feature)
    if targets.dense is not None:
        loss = loss + options.dense_weight * mse(out.grid, targets.dense)
    if targets.rgb is not None:
        loss = loss + options.rgb_weight * mse(out.rgb, targets.rgb)
    return loss


def _schedule(optimizer: torch.optim.Optimizer, options: APMOptions) -> torch.optim.lr_scheduler.LRScheduler:
    if options.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, options.step_size, options.gamma)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def fit(forward: Callable[..., APMOutput], parameters: list[Tensor], x: Tensor, targets: Targets,
        options: APMOptions, step: Step = STEP) -> Iterator[tuple[int, APMOutput, Tensor]]:
    """Train from the parameters' current values; yields (k, output, per-sample loss) for the student after k updates,
    k = 0..steps. Each forward serves both the report at k and the update k -> k+1; the last one runs without grad.
    `step` chooses the update and whether a CUDA graph replays the step (methods/apm_step.py)."""
    optimizer = build_optimizer(parameters, options.lr, step)
    optimizer.zero_grad(set_to_none=True)  # nothing left over from an earlier sample (an interrupted one included)
    schedule = _schedule(optimizer, options)
    keep_grid = options.dense_weight > 0

    def objective() -> tuple[APMOutput, Tensor]:
        out = forward(x, options.chunk_size or None, keep_grid=keep_grid)
        return out, sample_losses(out, targets, options)

    try:
        for k, (out, loss) in enumerate(training_steps(objective, optimizer, schedule, options.steps, step, x.device)):
            yield k, out, loss
        with torch.no_grad():
            out, loss = objective()
        yield options.steps, out, loss
    finally:
        release(optimizer)


@dataclass
class _Trace:
    """What one sample (or a stack of them) produced: final logits and loss, failures, the recorded steps."""

    logits: Tensor
    loss: Tensor
    failed: Tensor
    steps: dict[int, tuple[Tensor, Tensor]]  # step -> (pred index, loss)


class APM(Method):
    per_sample = True
    precision = "bf16"  # the official code trains under mixed precision
    prompts = "apm"  # "a photo of a {c}", as the official code writes them
    options_class = APMOptions
    raw_images = True  # the student sees the whole picture (student_inputs)

    @classmethod
    def parse_options(cls, given: dict[str, Any]) -> APMOptions:
        name = given.get("preset", "cpu")
        if name not in PRESET_OPTIONS:
            raise UserError(f"apm has no preset {name!r}; choose one of auto, {', '.join(PRESET_OPTIONS)}")
        return super().parse_options({**dataclasses.asdict(PRESET_OPTIONS[name]), **given})

    @classmethod
    def build_options(cls, given: dict[str, Any], teacher: str, device: torch.device) -> APMOptions:
        """``preset=auto`` (the default): the paper's network where it is meant to run (a CLIP or DINO teacher on
        CUDA), the cpu preset elsewhere; summaries name the preset that ran. ``parallel=auto``: on CUDA."""
        if given.get("preset", "auto") == "auto":
            given = {**given, "preset": auto_preset(teacher, device)}
        options = cls.parse_options(given)
        return dataclasses.replace(options, parallel=device.type == "cuda" if options.parallel == "auto"
                                   else options.parallel)

    def __init__(self, teacher: Teacher, options: APMOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        self.cfg = student_config(options, teacher.feature_dim)
        self.student = APMStudent(self.cfg, seed=None).to(device)  # re-initialised from each sample's seed
        self.stacked: StackedAPMStudent | None = None
        self.group: int | None = None  # samples trained together (None: the whole batch); halved on out-of-memory
        self._last_group = 1
        self.teacher_flops: int | None = None
        self.flops_per_sample = self._student_flops()
        self._compiled: dict[int, Callable[..., APMOutput]] = {}
        self._init_device = "cpu" if options.init_device == "cpu" else None  # None: the student's own device

    def _student_flops(self) -> int:
        """Training steps plus the final forward; the teacher's forward is added once measured."""
        return analytic_flops_per_step(self.cfg) * self.options.steps + 2 * analytic_macs_per_image(self.cfg)

    def predict(self, batch: Batch) -> Output:
        x = student_inputs(batch, self.cfg)
        targets = self._targets(batch.images)
        teacher_pred = self.teacher.head(targets.feature).argmax(1)
        record = sorted({s for s in batch.record_steps if 0 <= s <= self.options.steps})
        n, size = len(x), (self.group or len(x)) if self.options.parallel else 1
        self._last_group = size
        traces = [self._train(x[i:i + size], targets.take(lambda t, i=i: t[i:i + size]), batch.seeds[i:i + size], record)
                  for i in range(0, n, size)]
        logits = torch.cat([t.logits for t in traces])
        failed = torch.cat([t.failed for t in traces]) | ~logits.isfinite().all(1)
        logits = torch.where(failed[:, None], torch.zeros_like(logits), logits)
        extras = self._extras(traces, teacher_pred, failed, record)
        forwards = n * (2 if targets.dense is not None else 1)
        return Output(logits, extras, adaptation_steps=n * self.options.steps, teacher_forwards=forwards)

    def on_out_of_memory(self) -> bool:
        """Train fewer samples together; one at a time is the floor."""
        if self._last_group == 1:
            return False
        self.group = self._last_group // 2
        self.stacked = None  # its parameters are sized for the larger group: rebuilt at the new size
        self._compiled.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return True

    def _targets(self, images: Tensor) -> Targets:
        if self.teacher_flops is not None:
            return teacher_targets(self.teacher, images, self.cfg, self.options)
        with FlopCounterMode(display=False) as counter:  # measured once, on the first batch
            targets = teacher_targets(self.teacher, images, self.cfg, self.options)
        self.teacher_flops = counter.get_total_flops() // len(images)
        self.flops_per_sample = self._student_flops() + self.teacher_flops
        return targets

    def _train(self, x: Tensor, targets: Targets, seeds: list[int], record: list[int]) -> _Trace:
        if self.options.parallel:
            if self.stacked is None:
                self.stacked = StackedAPMStudent(self.cfg, seeds, self.device, self._init_device)
            else:
                self.stacked.reset_(seeds)
            student, x, targets = self.stacked, x[:, None], targets.take(lambda t: t[:, None])
        else:
            student = init_student_(self.student, seeds[0], self._init_device)
        failed = torch.zeros(len(seeds), dtype=torch.bool, device=x.device)
        steps: dict[int, tuple[Tensor, Tensor]] = {}
        for k, out, loss in fit(self._forward(student), list(student.parameters()), x, targets, self.options):
            failed |= ~loss.isfinite()
            if k in record:
                steps[k] = (self._head(out).argmax(1), loss)
        return _Trace(self._head(out), loss, failed, steps)

    def _head(self, out: APMOutput) -> Tensor:
        return self.teacher.head(out.feature.detach().reshape(-1, self.cfg.feature_dim))

    def _forward(self, student: torch.nn.Module) -> Callable[..., APMOutput]:
        if not self.options.compile:
            return student
        if id(student) not in self._compiled:
            self._compiled[id(student)] = torch.compile(student)
        return self._compiled[id(student)]

    def _extras(self, traces: list[_Trace], teacher_pred: Tensor, failed: Tensor, record: list[int]) -> list[dict]:
        """Everything moved to the host in one transfer per field (no per-step synchronisation)."""
        classes = self.teacher.classes  # records speak of label-space classes, not logit columns
        teacher = [classes[p] for p in teacher_pred.tolist()]
        losses = torch.cat([t.loss for t in traces]).tolist()
        extras = [{"teacher_pred": p, "loss": _finite(loss)} for p, loss in zip(teacher, losses)]
        for i in failed.nonzero().flatten().tolist():
            extras[i]["status"] = "failed"
        for k in record:
            preds = [classes[p] for p in torch.cat([t.steps[k][0] for t in traces]).tolist()]
            step_losses = torch.cat([t.steps[k][1] for t in traces]).tolist()
            for e, p, loss, tp in zip(extras, preds, step_losses, teacher):
                e.setdefault("steps", {})[str(k)] = {"pred": p, "loss": _finite(loss), "agree": p == tp}
        return extras


def auto_preset(teacher: str, device: torch.device) -> str:
    """The paper's network for a foundation teacher (its name: clip:..., dino:...) on CUDA, else the cpu preset."""
    foundation = teacher.partition(":")[0] in ("clip", "dino")
    return "paper" if foundation and device.type == "cuda" else "cpu"


def _finite(value: float) -> float | None:
    """JSON has no NaN: a diverged loss is recorded as null (the sample's status says failed)."""
    return value if math.isfinite(value) else None
