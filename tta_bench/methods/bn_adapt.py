"""bn_adapt: BatchNorm adaptation (Schneider et al. 2020, Nado et al. 2020): normalise with the statistics of
the test batch instead of the training-set running statistics; no gradient, no parameter changes.

Its prediction for a sample depends on the other samples of its batch, so it is a batch method (not episodic),
yet it keeps no state from batch to batch: the running statistics stay bitwise untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..teachers.base import Teacher
from .base import Batch, Method, Options, Output


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer (timm's BatchNormAct2d included: it subclasses BatchNorm2d)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def use_batch_statistics(teacher: Teacher, method: str) -> list[nn.modules.batchnorm._BatchNorm]:
    """Switch the teacher's BN layers to test-batch statistics and return them.

    Train mode makes a BN layer normalise with the batch's own mean and variance (and back-propagate through
    them, as TENT needs); ``track_running_stats = False`` stops it from updating the running buffers, so they
    stay bitwise as trained. Every other layer stays in eval mode (no dropout)."""
    layers = batch_norm_layers(teacher)
    if not layers:
        raise UserError(f"{method} adapts BatchNorm layers, and teacher {teacher.name} has none "
                        "(use a CNN teacher such as effnet-lite0, timm:resnet50 or cifar-resnet20)")
    for layer in layers:
        layer.train()
        layer.track_running_stats = False
    return layers


@dataclass
class BNAdaptOptions(Options):
    steps: int = 0  # no optimisation: statistics only
    lr: float = 0.0
    reset: str = "online"  # nothing to reset: the running statistics are never written


class BNAdapt(Method):
    name = "bn_adapt"
    options_class = BNAdaptOptions

    def __init__(self, teacher: Teacher, options: Options, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        use_batch_statistics(teacher, self.name)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Output:
        return Output(self.teacher(batch.images), teacher_forwards=len(batch.images))
