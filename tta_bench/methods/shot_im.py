"""shot_im: SHOT's information maximisation (Liang et al., ICML 2020), online, as a test-time method.

Follows tim-learn/SHOT object/image_target.py (train_target: the IM loss with ent and gent, epsilon 1e-5; the
classifier head netC frozen, the feature extractor trained; SGD momentum 0.9, Nesterov, weight decay 1e-3, backbone
lr 0.01 x lr_decay1 0.1 = 0.001, batch 64) and object/loss.py (Entropy); the loss as the LAME repository's online
version fiveai/LAME src/adaptation/shot.py computes it.

Loss per batch: mean entropy of the predictions minus the entropy of their mean (confident yet diverse
predictions), one step on every parameter of the teacher except its head; BN layers normalise with test-batch
statistics, as SHOT trains with its feature extractor in training mode. The returned prediction is the forward that
computed the loss (as TENT).

Named variant, online SHOT-IM: the official code adapts offline, 15 epochs over the whole target set with a
decaying learning rate (and the pseudo-label term, cls_par 0.3, that makes full SHOT); here each test batch is seen
once, at the constant backbone learning rate, without pseudo-labels and without SHOT's bottleneck layer (these
teachers have none). Dropout stays off (only BN layers switch to training mode).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..choices import ResetMode
from ..teachers.base import Teacher
from .base import Batch, Method, Output, optimizer_step
from .options import option
from .common import OptimizerKind, OptimizerOptions, adapt_all_weights


@dataclass
class ShotImOptions(OptimizerOptions):
    steps: int = option(1, ge=1)
    lr: float = option(0.001, gt=0)  # image_target.py: lr 0.01 x lr_decay1 0.1 for the backbone
    reset: ResetMode = "online"
    optimizer: OptimizerKind = "sgd"  # lr_scheduler: momentum 0.9, nesterov True, weight_decay 1e-3
    nesterov: bool = True
    weight_decay: float = 0.001
    epsilon: float = option(1e-5, ge=0)  # inside the logarithms of both entropies


def information_maximisation(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Mean per-sample entropy minus the entropy of the mean prediction (SHOT's ent - gent)."""
    p = logits.float().softmax(1)
    mean = p.mean(0)
    return (-p * torch.log(p + epsilon)).sum(1).mean() - (-mean * torch.log(mean + epsilon)).sum()


class ShotIm(Method):
    batch_statistics = True
    options_class = ShotImOptions
    restored = ("teacher", "optimizer")

    def __init__(self, teacher: Teacher, options: ShotImOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        params = adapt_all_weights(teacher, frozen=getattr(teacher, "classifier", None))
        self.optimizer = options.build_optimizer(params)

    def predict(self, batch: Batch) -> Output:
        with torch.enable_grad():
            for _ in range(self.options.steps):
                logits = self.teacher(batch.images)
                loss = information_maximisation(logits, self.options.epsilon)
                loss.backward()
                optimizer_step(self.optimizer)
        n, steps = len(batch.images), self.options.steps
        return Output(logits.detach(), adaptation_steps=steps, teacher_forwards=n * steps,
                      loss=loss.item() if steps else None)
