"""shot_im: SHOT's information maximisation (Liang et al., ICML 2020) as an online test-time method, as the LAME
benchmark runs it.

Follows fiveai/LAME src/adaptation/shot.py (run_optim_step: the IM loss, epsilon 1e-10), src/adaptation/adaptive.py
(run_episode, collect_params, configure_model, inference_context) and configs/method/best/Shot/overall_best.yaml with
src/config/defaults.py (SGD lr 1e-3, momentum 0, weight decay 1e-4, no Nesterov; BN affine parameters only
(``all-BN``); BN momentum 0; batch 16; one pass over the stream).

Per batch: a forward with BatchNorm layers in training mode (test-batch statistics; BN momentum 0, so the running
statistics stay the source's), the loss mean entropy minus the entropy of the mean prediction (confident yet diverse
predictions), ``steps`` SGD steps on the scale and shift of the normalisation layers (BN; LayerNorm and GroupNorm where
a teacher has no BN); then the batch is predicted by a second forward, without gradients and with the whole network
in eval mode, as inference_context does: the updated scale and shift over the source running statistics.

Not tim-learn/SHOT's offline recipe (15 epochs over the whole target set, every backbone weight, SGD momentum 0.9 with
Nesterov, weight decay 1e-3, pseudo-labels): that is a different method, and this benchmark has no offline protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..choices import ResetMode
from ..teachers.base import Teacher
from .base import Batch, Method, Output, optimizer_step
from .common import OptimizerKind, OptimizerOptions, adapt_norm_affine, batch_norm_layers
from .options import option


@dataclass
class ShotImOptions(OptimizerOptions):
    steps: int = option(1, ge=1)
    lr: float = option(0.001, gt=0)  # configs/method/best/Shot/overall_best.yaml
    reset: ResetMode = "online"
    optimizer: OptimizerKind = "sgd"
    momentum: float = option(0.0, ge=0)  # overall_best.yaml OPTIM_MOMENTUM 0 (so defaults.py's NESTEROV does not apply)
    weight_decay: float = option(0.0001, ge=0)  # defaults.py ADAPTATION.WEIGHT_DECAY
    epsilon: float = option(1e-10, ge=0)  # shot.py: inside the logarithms of both entropies


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
        params = adapt_norm_affine(teacher, self.name)
        self.norms = batch_norm_layers(teacher)  # train mode for the loss, eval mode for the prediction
        self.optimizer = options.build_optimizer(params)

    def predict(self, batch: Batch) -> Output:
        with torch.enable_grad():
            for _ in range(self.options.steps):
                loss = information_maximisation(self.teacher(batch.images), self.options.epsilon)
                loss.backward()
                optimizer_step(self.optimizer)
        for layer in self.norms:
            layer.eval()
        try:
            with torch.no_grad():
                logits = self.teacher(batch.images)
        finally:
            for layer in self.norms:
                layer.train()
        n, steps = len(batch.images), self.options.steps
        return Output(logits, adaptation_steps=steps, teacher_forwards=n * (steps + 1),
                      loss=loss.item() if steps else None)
