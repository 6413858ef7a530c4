"""memo: marginal entropy minimisation with one test point (Zhang, Levine & Finn, NeurIPS 2022).

Follows zhangmarvin/memo imagenet-exps/test_calls/test_adapt.py and utils/adapt_helpers.py (ImageNet) and
cifar-10-exps/test_calls/test_adapt.py (CIFAR). For each test image alone: make B AugMix views of the full image
(augmix.py: MEMO's operations, levels and mixture after a RandomResizedCrop + flip; a pad-4 random crop + flip with
``crop=pad``, MEMO's CIFAR pre-augmentation), take one SGD step on *all* the teacher's parameters to minimise
the entropy of the mean softmax over the views, predict on the original image, then restore model and
optimizer. Defaults are the paper's ImageNet ResNet-50 setting (official script): B = 64 views, SGD lr 0.00025,
no momentum or weight decay, 1 step, combined with single-point BN adaptation of prior strength N = 16
(Schneider et al. 2020): each BN layer normalises with N/(N+1) of the source statistics plus 1/(N+1) of the
statistics of the current input (the views while adapting, the original image when predicting); the rest of the
teacher stays in eval mode. The CIFAR setting (its model has GroupNorm: no prior) is the cifar10/cifar100 entry
of assets/method_defaults.yaml: lr 0.005, 32 views, pad crop, ``bn_prior=-1`` (source statistics alone).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..choices import ResetMode
from ..teachers.base import Teacher
from .base import Batch, Method, Output, StepRecorder, optimizer_step
from .options import option
from . import augmix
from .augmix import Crop
from .common import OptimizerKind, OptimizerOptions, batch_norm_layers, each_sample, marginal_entropy, seeded


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
class MemoOptions(OptimizerOptions):
    steps: int = option(1, ge=1)
    lr: float = option(0.00025, gt=0)  # SGD: MEMO's ImageNet ResNet-50 value (CIFAR ResNet-26: 0.005)
    reset: ResetMode = "episodic"
    optimizer: OptimizerKind = "sgd"
    momentum: float = 0.0  # test_adapt.py: optim.SGD(model.parameters(), lr), no momentum or weight decay
    n_views: int = option(64, ge=1)  # B augmentations: MEMO's ImageNet value (CIFAR: 32)
    bn_prior: int = option(16, ge=-1)  # prior strength N of single-point BN adaptation; -1: source statistics only
    crop: Crop = "resized"  # pre-augmentation: resized (ImageNet: RandomResizedCrop + flip) | pad (CIFAR: pad-4 crop)


class Memo(Method):
    per_sample = True
    options_class = MemoOptions
    raw_images = True  # views are crops of the full image
    restored = ("teacher", "optimizer")

    def __init__(self, teacher: Teacher, options: MemoOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        teacher.eval().requires_grad_(True)  # MEMO adapts every parameter
        self.optimizer = options.build_optimizer(teacher.parameters())

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
        def one(image: torch.Tensor, seed: int, raw: torch.Tensor) -> tuple[torch.Tensor, dict]:
            o = self.options
            with seeded(seed):  # fresh views for every step, as MEMO draws them
                views = [augmix.views(raw, o.n_views, image.shape[-1], o.crop, fill=augmix.MEMO_FILL).to(image.device)
                         for _ in range(o.steps)]
            recorder = StepRecorder(batch.record_steps, lambda: self.teacher(image[None]), self.teacher.classes)
            with self._prior():
                self.adapt(views, recorder)
                with torch.no_grad():
                    return self.teacher(image[None]), recorder.extras()

        logits, extras = each_sample(batch, one, self.reset)
        n, steps = len(batch.images), self.options.steps
        return Output(logits, extras, adaptation_steps=n * steps,
                      teacher_forwards=n * (steps * self.options.n_views + 1))
