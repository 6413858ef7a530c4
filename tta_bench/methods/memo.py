"""memo: marginal entropy minimisation with one test point (Zhang, Levine & Finn, NeurIPS 2022).

For each test image alone: make B AugMix views, take one SGD step on *all* the teacher's parameters to minimise
the entropy of the mean softmax over the views, predict on the original image, then restore model and
optimizer. Defaults are the paper's ImageNet ResNet-50 setting (official script): B = 64 views, SGD lr 0.00025,
no momentum or weight decay, 1 step, combined with single-point BN adaptation of prior strength N = 16
(Schneider et al. 2020): each BN layer normalises with N/(N+1) of the source statistics plus 1/(N+1) of the
statistics of the current input (the views while adapting, the original image when predicting); the rest of the
teacher stays in eval mode. ``--opt bn_prior=-1`` keeps the source statistics alone (CIFAR setting:
``--lr 0.005 --opt n_views=32``).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torchvision.transforms import v2 as T

from ..errors import UserError
from ..teachers.base import Teacher
from .base import Batch, Method, Options, Output, StateSnapshot, StepRecorder, optimizer_step
from .bn_adapt import batch_norm_layers

AUGMIX_SEVERITY = 1  # MEMO's and TPT's AugMix: severity 1, width 3, depth 1-3, Dirichlet/Beta(1)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block on the CPU generator seeded with ``seed``, leaving the global RNG state as it was, so a
    sample's views depend on its seed only (not on its position in the stream)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def augmented_views(image: torch.Tensor, n: int, augmix: bool) -> torch.Tensor:
    """``n`` random views of one [0, 1] image (3, H, W): random resized crop to the same size and horizontal
    flip, then AugMix where ``augmix`` (torchvision's, on uint8, without the ops that overlap ImageNet-C).
    Drawn from the global CPU generator: call inside ``seeded``. Returns (n, 3, H, W) in [0, 1] on the image's
    device."""
    size = tuple(image.shape[-2:])
    steps = [T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip()]
    if augmix:
        steps.append(T.AugMix(severity=AUGMIX_SEVERITY))
    transform = T.Compose(steps)
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    views = torch.stack([transform(pixels) for _ in range(n)])
    return (views.float() / 255).to(image.device)


def marginal_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean softmax over the rows (views) of ``logits`` (N, C), computed in log space."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    log_mean = torch.logsumexp(log_p, dim=0) - torch.log(torch.tensor(float(len(logits))))
    log_mean = log_mean.clamp(min=torch.finfo(log_mean.dtype).min)  # 0 * -inf would be nan
    return -(log_mean.exp() * log_mean).sum()


class SourcePrior:
    """Single-point BN adaptation as a context: inside it, each BN layer (kept in eval mode) normalises with
    ``weight`` x its running statistics + (1 - weight) x the statistics of its current input. The mix is computed
    without gradient (as in MEMO's code) and the running buffers are put back, bitwise, on exit."""

    def __init__(self, module: nn.Module, weight: float) -> None:
        self.layers = [m for m in batch_norm_layers(module) if m.running_mean is not None]
        self.weight = weight
        self.source: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.handles: list = []

    def __enter__(self) -> "SourcePrior":
        self.source = {m: (m.running_mean, m.running_var) for m in self.layers}
        self.handles = [m.register_forward_pre_hook(self._mix) for m in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        for m, (mean, var) in self.source.items():
            m.running_mean, m.running_var = mean, var

    @torch.no_grad()
    def _mix(self, layer: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().float()
        dims = [0, *range(2, x.dim())]
        mean, var = self.source[layer]
        w = self.weight
        layer.running_mean = w * mean + (1 - w) * x.mean(dims).to(mean.dtype)
        layer.running_var = w * var + (1 - w) * x.var(dims).to(var.dtype)


@dataclass
class MemoOptions(Options):
    steps: int = 1
    lr: float = 0.00025  # SGD: MEMO's ImageNet ResNet-50 value (CIFAR ResNet-26: 0.005)
    reset: str = "episodic"
    n_views: int = 64  # B augmentations: MEMO's ImageNet value (CIFAR: 32)
    bn_prior: int = 16  # prior strength N of single-point BN adaptation; -1: source statistics only


class Memo(Method):
    name = "memo"
    episodic = True
    options_class = MemoOptions

    def __init__(self, teacher: Teacher, options: MemoOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        if options.n_views < 1 or options.steps < 1:
            raise UserError(f"memo needs n_views >= 1 and steps >= 1, got {options.n_views} and {options.steps}")
        teacher.eval().requires_grad_(True)  # MEMO adapts every parameter
        self.optimizer = torch.optim.SGD(teacher.parameters(), lr=options.lr)
        self.snapshot = StateSnapshot(teacher, self.optimizer)

    def reset(self) -> None:
        self.snapshot.restore()

    def _prior(self) -> SourcePrior | nullcontext:
        n = self.options.bn_prior
        return nullcontext() if n < 0 else SourcePrior(self.teacher, n / (n + 1))

    def adapt(self, views: list[torch.Tensor], on_step: Callable[[int], None] = lambda step: None) -> None:
        """One optimizer step per batch of views (the model is not reset here)."""
        with torch.enable_grad():
            for k, step_views in enumerate(views):
                on_step(k)
                marginal_entropy(self.teacher(step_views)).backward()
                optimizer_step(self.optimizer)
        on_step(len(views))

    def predict(self, batch: Batch) -> Output:
        logits, extras = [], []
        for image, seed in zip(batch.images, batch.seeds):
            with seeded(seed):  # fresh views for every step, as MEMO draws them
                views = [augmented_views(image, self.options.n_views, augmix=True) for _ in range(self.options.steps)]
            recorder = StepRecorder(batch.record_steps, lambda: self.teacher(image[None]))
            try:
                with self._prior():
                    self.adapt(views, recorder)
                    with torch.no_grad():
                        logits.append(self.teacher(image[None]))
            finally:
                self.reset()
            extras.append(recorder.extras())
        n, steps = len(batch.images), self.options.steps
        return Output(torch.cat(logits), extras, adaptation_steps=n * steps,
                      teacher_forwards=n * (steps * self.options.n_views + 1))
