"""cotta: continual test-time adaptation (Wang et al., CVPR 2022).

Follows qinenergy/cotta cifar/cotta.py (CIFAR) and imagenet/cotta.py (ImageNet), checked against
mariodoebler/test-time-adaptation classification/methods/cotta.py.

Three sets of weights on one network: the student (trained), a mean teacher (EMA of the student, momentum
``ema``) and the source anchor (the initial weights). Per batch: the anchor's mean top-1 probability on the batch
decides the pseudo-label: below ``threshold`` (AP), the teacher's logits averaged over ``n_augmentations``
augmented copies of the batch (CoTTA's colour/affine/blur/noise transform, one random draw per copy applied to the
whole batch, as the reference applies it to the batch tensor); otherwise the teacher's logits on the batch itself.
The student takes one step on the cross-entropy to that soft label (``loss=symmetric``: the ImageNet code's
symmetric cross-entropy), the teacher moves by EMA, and each element of the student's weights and biases returns
to its source value with probability ``restore`` (stochastic restore). The prediction is the teacher's pseudo-label,
computed before the update. Every parameter trains; BN layers normalise with test-batch statistics in all three.

Deliberate differences: the augmented copies are only computed when the anchor's confidence asks for them (the
CIFAR code computes them always and may discard them; the result is the same, the random draws are not); randomness
is drawn from a generator seeded with the batch's first sample seed, so a run is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..choices import ResetMode
from ..teachers.base import Teacher
from .base import Batch, Method, Output, optimizer_step
from .options import option
from .common import (OptimizerKind, OptimizerOptions, WeightSet, adapt_all_weights, cotta_augment, seeded,
                     soft_cross_entropy)

Loss = Literal["ce", "symmetric"]


@dataclass
class CottaOptions(OptimizerOptions):
    steps: int = option(1, ge=1)
    lr: float = option(1e-3, gt=0)  # cifar/cfgs/cifar10/cotta.yaml: Adam lr 1e-3, batch 200
    reset: ResetMode = "online"
    optimizer: OptimizerKind = "adam"  # adam | sgd (ImageNet: SGD lr 0.01)
    nesterov: bool = True  # the CoTTA repository's conf.py: OPTIM.NESTEROV True (its ImageNet SGD)
    ema: float = option(0.999, ge=0, le=1)  # mean-teacher momentum (OPTIM.MT)
    restore: float = option(0.01, ge=0, le=1)  # stochastic-restore probability (OPTIM.RST; ImageNet 0.001)
    threshold: float = 0.92  # AP: augment when the anchor's mean confidence is below it (CIFAR-100 0.72, ImageNet 0.1)
    n_augmentations: int = option(32, ge=1)
    loss: Loss = "ce"  # ce (cifar/cotta.py) | symmetric (imagenet/cotta.py)


class Cotta(Method):
    batch_statistics = True
    options_class = CottaOptions
    restored = ("teacher", "optimizer", "mean_teacher", "augmented")

    def __init__(self, teacher: Teacher, options: CottaOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        self.params = adapt_all_weights(teacher)
        self.optimizer = options.build_optimizer(self.params)
        self.mean_teacher = WeightSet(self.params)
        self.anchor = WeightSet(self.params)  # the source weights: never updated
        index = {id(p): i for i, p in enumerate(self.params)}  # the reference restores those named weight or bias
        self.restorable = [index[id(p)] for name, p in teacher.named_parameters()
                           if id(p) in index and name.rsplit(".", 1)[-1] in ("weight", "bias")]
        self.augmented = 0  # batches whose pseudo-label was augmentation-averaged, since the last reset

    def predict(self, batch: Batch) -> Output:
        x, o = batch.images, self.options
        forwards = 0
        with seeded(batch.seeds[0]):
            for _ in range(o.steps):
                with torch.no_grad():
                    with self.anchor.active():
                        confidence = self.teacher(x).float().softmax(1).max(1).values.mean()
                    with self.mean_teacher.active():
                        if confidence < o.threshold:
                            target = torch.stack([self.teacher(cotta_augment(x)).float()
                                                  for _ in range(o.n_augmentations)]).mean(0)
                            self.augmented += 1
                            forwards += o.n_augmentations
                        else:
                            target = self.teacher(x).float()
                with torch.enable_grad():
                    logits = self.teacher(x)
                    self._loss(logits, target).mean().backward()
                optimizer_step(self.optimizer)
                self.mean_teacher.ema_update(self.params, o.ema)
                self._restore()
                forwards += 3
        return Output(target, adaptation_steps=o.steps, teacher_forwards=len(x) * forwards)

    def _loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.options.loss == "ce":
            return soft_cross_entropy(student, teacher)
        return 0.5 * soft_cross_entropy(student, teacher) + 0.5 * soft_cross_entropy(teacher, student)

    @torch.no_grad()
    def _restore(self) -> None:
        """Each weight back to its source value with probability ``restore`` (masks from the seeded CPU generator)."""
        if self.options.restore <= 0:
            return
        for i in self.restorable:
            p, source = self.params[i], self.anchor.values[i]
            mask = (torch.rand(p.shape) < self.options.restore).to(p.device)
            p.copy_(torch.where(mask, source, p))
        torch.clear_autocast_cache()
