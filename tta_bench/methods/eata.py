"""eata: efficient anti-forgetting test-time adaptation (Niu et al., ICML 2022).

Follows mr-eggplant/EATA eata.py (forward_and_adapt_eata, update_model_probs) and main.py (the Fisher information
and the optimiser), checked against mariodoebler/test-time-adaptation classification/methods/eata.py.

Per batch, as TENT (test-batch BN statistics; the scale and shift of BN, LayerNorm and GroupNorm layers train,
as the unified benchmark extends the official BN-only code), but the entropy loss keeps only

- reliable samples: prediction entropy below E_0 = ``e_margin`` x ln C (C: the evaluated classes), and of those
- non-redundant samples: |cosine similarity| between the sample's softmax and the moving average of the kept
  samples' mean softmax (momentum 0.9, updated with the samples kept here) below ``d_margin``;

each weighted by 1 / exp(entropy - E_0), averaged, plus the anti-forgetting term ``fisher_alpha`` x sum F (theta -
theta_0)^2. F is the squared gradient of the cross-entropy against the model's own predictions, averaged over the
batches of ``fisher_samples`` clean source images, computed before the stream through the engine's source-data
hook (``source_samples``/``prepare_source``); the images come in random order (mixed-class batches), as main.py's
shuffled loader of clean validation images serves them (data/build.py load_source_data). No update when no sample survives the filters. The returned
prediction is the forward that computed the loss (as TENT). ``fisher_alpha=0`` is ETA (no source data needed).
A reset restores model and optimiser but not the moving-average prediction, as the official EATA.reset (the unified
benchmark also clears it).

Optimiser: SGD momentum 0.9 without Nesterov, as main.py builds it (the unified benchmark's SGD adds Nesterov); Adam
(beta 0.9) for the CIFAR settings of the unified benchmark's cfgs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch.nn import functional as F

from ..choices import ResetMode
from ..errors import UserError
from ..teachers.base import Teacher
from .base import Batch, Method, Output, optimizer_step
from .options import option
from .common import OptimizerKind, OptimizerOptions, adapt_norm_affine, entropy


@dataclass
class EataOptions(OptimizerOptions):
    steps: int = option(1, ge=1)
    lr: float = option(0.00025, gt=0)  # main.py: SGD lr 0.00025, momentum 0.9, batch 64 (ImageNet)
    reset: ResetMode = "online"
    optimizer: OptimizerKind = "sgd"  # sgd | adam
    e_margin: float = 0.4  # E_0 = e_margin x ln C (main.py: math.log(1000) * 0.40)
    d_margin: float = 0.05  # redundancy threshold epsilon on the cosine similarity
    fisher_alpha: float = option(2000.0, ge=0)  # weight beta of the Fisher regulariser; 0: ETA
    fisher_samples: int = option(2000, ge=0)  # clean source images for the Fisher information (main.py: fisher_size)
    probs_momentum: float = option(0.9, ge=0, le=1)  # update_model_probs: 0.9 x old + 0.1 x new kept samples' mean


class Eata(Method):
    batch_statistics = True
    options_class = EataOptions
    # The moving-average prediction of the redundancy filter is not restored, as the official EATA.reset keeps it
    # (the unified benchmark clears it too).
    restored = ("teacher", "optimizer", "reliable", "kept")

    def __init__(self, teacher: Teacher, options: EataOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        self.params = adapt_norm_affine(teacher, self.name)
        self.optimizer = options.build_optimizer(self.params)
        self.e_margin = options.e_margin * math.log(len(teacher.classes))
        self.fisher: list[torch.Tensor] | None = None  # per trainable parameter, from prepare_source
        self.anchor: list[torch.Tensor] = []  # the parameters the Fisher was measured at
        self.probs: torch.Tensor | None = None  # moving average of the kept samples' softmax
        self.reliable = self.kept = 0  # samples through the first / both filters since the last reset

    def source_samples(self) -> int:
        return self.options.fisher_samples if self.options.fisher_alpha > 0 else 0

    def prepare_source(self, batches: Iterator[torch.Tensor]) -> None:
        """F = mean over source batches of the squared gradient of CE(logits, argmax logits), as main.py."""
        sums, n = [torch.zeros_like(p) for p in self.params], 0
        with torch.enable_grad():
            for images in batches:
                logits = self.teacher(images)
                F.cross_entropy(logits.float(), logits.argmax(1)).backward()
                for total, p in zip(sums, self.params):
                    if p.grad is not None:
                        total += p.grad.detach() ** 2
                    p.grad = None
                n += 1
        if n == 0:
            raise UserError("eata: the source data gave no images for the Fisher information")
        self.fisher = [total / n for total in sums]
        self.anchor = [p.detach().clone() for p in self.params]

    def predict(self, batch: Batch) -> Output:
        if self.options.fisher_alpha > 0 and self.fisher is None:
            raise UserError("eata needs its Fisher information before the stream: call prepare_source with clean "
                            "source images (the engine does), or set fisher_alpha=0 (ETA)")
        updates = 0
        with torch.enable_grad():
            for _ in range(self.options.steps):
                logits = self.teacher(batch.images)
                loss, n_kept = self._loss(logits)
                if n_kept:
                    loss.backward()
                    optimizer_step(self.optimizer)
                    updates += 1
                self.optimizer.zero_grad(set_to_none=True)
        n = len(batch.images)
        return Output(logits.detach(), adaptation_steps=updates, teacher_forwards=n * self.options.steps)

    def _loss(self, logits: torch.Tensor) -> tuple[torch.Tensor, int]:
        ent = entropy(logits)
        reliable = ent < self.e_margin
        ent, probs = ent[reliable], logits[reliable].float().softmax(1)
        if self.probs is not None:
            cosine = F.cosine_similarity(self.probs[None], probs, dim=1)
            fresh = cosine.abs() < self.options.d_margin
            ent, probs = ent[fresh], probs[fresh]
        self.probs = _moving_average(self.probs, probs.detach(), self.options.probs_momentum)
        self.reliable += int(reliable.sum())
        self.kept += len(ent)
        loss = (ent * torch.exp(self.e_margin - ent.detach())).mean()  # 1 / exp(H - E_0) weights
        if self.fisher is not None:
            loss = loss + self.options.fisher_alpha * sum(
                (f * (p - p0) ** 2).sum() for f, p, p0 in zip(self.fisher, self.params, self.anchor))
        return loss, len(ent)


def _moving_average(current: torch.Tensor | None, new: torch.Tensor, momentum: float) -> torch.Tensor | None:
    """update_model_probs: unchanged when no sample was kept; the first kept batch's mean starts it."""
    if len(new) == 0:
        return current
    if current is None:
        return new.mean(0)
    return momentum * current + (1 - momentum) * new.mean(0)
