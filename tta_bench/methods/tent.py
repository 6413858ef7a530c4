"""tent: test entropy minimisation (Wang et al., ICLR 2021).

BatchNorm layers normalise with test-batch statistics and only their affine scale and shift are trained, to
minimise the mean Shannon entropy of the batch's predictions; every other parameter stays frozen. The model
adapts online over the stream (reset at the engine's reset points); ``--reset episodic`` restores model and
optimizer before every batch instead.

Prediction choice, as in the reference implementation: the logits returned for a batch are those of the forward
that computed the loss, so batch t is predicted with the affine parameters learned on batches before it and the
statistics of batch t itself; the update made on batch t acts from batch t+1 on (with ``steps`` > 1, the
logits of the last forward, after ``steps - 1`` updates on this batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..choices import ResetMode
from ..teachers.base import Teacher
from .base import Batch, Method, Output, optimizer_step
from .options import option
from .common import OptimizerOptions, OptimizerKind, adapt_norm_affine, entropy


@dataclass
class TentOptions(OptimizerOptions):
    steps: int = 1
    lr: float = option(1e-3, gt=0)  # Adam, the paper's CIFAR setting (ImageNet suites: SGD 0.00025, defaults table)
    reset: ResetMode = "online"
    optimizer: OptimizerKind = "adam"
    # TENT's ImageNet optimiser: SGD, momentum 0.9, Nesterov, lr 0.00025, batch 64 (the unified benchmark's conf.py:
    # OPTIM.MOMENTUM 0.9, OPTIM.NESTEROV True; setup_optimizer passes both)
    nesterov: bool = True


class Tent(Method):
    batch_statistics = True
    options_class = TentOptions
    restored = ("teacher", "optimizer")

    def __init__(self, teacher: Teacher, options: TentOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        self.optimizer = options.build_optimizer(adapt_norm_affine(teacher, self.name))

    def predict(self, batch: Batch) -> Output:
        if self.options.steps == 0:
            with torch.no_grad():
                return Output(self.teacher(batch.images), teacher_forwards=len(batch.images))
        with torch.enable_grad():
            for _ in range(self.options.steps):
                logits = self.teacher(batch.images)
                loss = entropy(logits).mean()
                loss.backward()
                optimizer_step(self.optimizer)
        n = len(batch.images)
        return Output(logits.detach(), adaptation_steps=self.options.steps, teacher_forwards=n * self.options.steps,
                      loss=loss.item())
