"""bn_adapt: BatchNorm adaptation (Schneider et al. 2020, Nado et al. 2020): normalise with the statistics of
the test batch instead of the training-set running statistics; no gradient, no parameter changes.

Follows DequanWang/tent norm.py (the `norm` baseline: each BN layer normalises with the batch's mean and biased
variance) and the unified TTA benchmark's classification/methods/norm.py (BN-1, its CIFAR default batch 200).

Its prediction for a sample depends on the other samples of its batch, so it is a batch method (not per-sample),
yet it keeps no state from batch to batch: the running statistics stay bitwise untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..choices import ResetMode
from ..teachers.base import Teacher
from .base import Batch, Method, Output
from .options import Options
from .common import use_batch_statistics


@dataclass
class BNAdaptOptions(Options):
    steps: int = 0  # no optimisation: statistics only
    lr: float = 0.0
    reset: ResetMode = "online"  # nothing to reset: the running statistics are never written


class BNAdapt(Method):
    batch_statistics = True
    options_class = BNAdaptOptions

    def __init__(self, teacher: Teacher, options: Options, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        use_batch_statistics(teacher, self.name)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Output:
        return Output(self.teacher(batch.images), teacher_forwards=len(batch.images))
