"""sar: sharpness-aware and reliable entropy minimisation (Niu et al., ICLR 2023).

Follows mr-eggplant/SAR sar.py (forward_and_adapt_sar, collect_params, configure_model), sam.py (SAM, rho 0.05)
and main.py (SGD momentum 0.9, lr 0.00025 at batch 64 for ResNets), checked against mariodoebler/test-time-adaptation
classification/methods/sar.py.

Per batch and step: forward (BN layers with test-batch statistics; SAR was designed for GroupNorm/LayerNorm models
too, whose affine parameters it trains the same way); reliable samples have entropy below E_0 = ``e_margin`` x ln C;
their mean entropy is back-propagated and SAM's first step moves the weights to theta + rho g / ||g||; a second
forward there keeps the first forward's reliable samples whose entropy is still below E_0; the gradient of their
mean entropy, taken at the perturbed point, updates the original weights with SGD. Model recovery: a moving
average (0.9) of that second loss, and when it falls below ``reset_constant`` (0.2) the model and optimiser are
restored to their initial state (a collapse to one confident class drives it there). The returned prediction is
the first forward's.

After a recovery the two references differ, and ``recovery_ema`` names which behaviour runs: ``keep`` (the default,
as mr-eggplant/SAR sar.py, whose SAR.forward stores the step's low moving average after reset() cleared it, so the
model is restored again after every following step until the average climbs back over the threshold) or ``clear``
(as mariodoebler/test-time-adaptation classification/methods/sar.py, whose reset() inside forward_and_adapt clears
it: the average starts afresh). The CIFAR defaults are the unified benchmark's (``clear``). A reset by the engine
(stream start, domain start) clears it in both.

Trained parameters: the scale and shift of every BN, LayerNorm and GroupNorm layer except, as the official
collect_params, those of the top layers (``layer4`` of ResNets, blocks 9-11 and the final ``norm`` of ViT-B);
``skip_top=false`` trains them all. For ViT-Base the official main.py uses lr 0.001 (``--lr 0.001``).
"""
from __future__ import annotations

import math
from typing import Literal
from dataclasses import dataclass

import torch
from torch import nn

from ..choices import ResetMode
from ..errors import UserError
from ..teachers.base import Teacher
from .base import Batch, Method, Output, optimizer_step
from .options import option
from .common import OptimizerKind, OptimizerOptions, adapt_norm_affine, entropy, norm_layers

SAM_EPS = 1e-12
RecoveryEma = Literal["keep", "clear"]  # after a recovery: SAR's moving average kept, or cleared
TOP_LAYERS = ("layer4", "blocks.9", "blocks.10", "blocks.11", "norm.")  # collect_params' substrings to skip


@dataclass
class SarOptions(OptimizerOptions):
    steps: int = option(1, ge=1)
    lr: float = option(0.00025, gt=0)  # main.py: SGD momentum 0.9 at batch 64 for ResNet-50 (ViT-B: 0.001)
    reset: ResetMode = "online"
    optimizer: OptimizerKind = "sgd"
    e_margin: float = 0.4  # E_0 = e_margin x ln C (main.py: math.log(1000) * 0.40)
    reset_constant: float = 0.2  # recovery threshold e_m on the moving average of the second loss
    ema_momentum: float = option(0.9, ge=0, le=1)  # update_ema: 0.9 x old + 0.1 x new
    rho: float = option(0.05, ge=0)  # SAM's neighbourhood size
    skip_top: bool = True
    recovery_ema: RecoveryEma = "keep"  # after a recovery: keep the low moving average (SAR) | clear it (unified benchmark)


def is_top_layer(name: str) -> bool:
    """The official collect_params' rule, on module names relative to the network."""
    return any(part in name for part in TOP_LAYERS) or name == "norm"


class Sar(Method):
    batch_statistics = True
    options_class = SarOptions
    restored = ("teacher", "optimizer", "ema")

    def __init__(self, teacher: Teacher, options: SarOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        adapt_norm_affine(teacher, self.name)
        if options.skip_top:
            network = getattr(teacher, "model", teacher)
            norms = {id(layer) for layer in norm_layers(network)}
            for name, layer in network.named_modules():
                if id(layer) in norms and is_top_layer(name):
                    layer.requires_grad_(False)
        self.params = [p for p in teacher.parameters() if p.requires_grad]
        if not self.params:
            raise UserError(f"sar: teacher {teacher.name} has no normalisation layer below its top layers "
                            "(--opt skip_top=false adapts those too)")
        self.optimizer = options.build_optimizer(self.params)
        self.e_margin = options.e_margin * math.log(len(teacher.classes))
        self.ema: float | None = None
        self.recoveries = 0  # model recoveries since the method was built (not cleared by a reset)

    def predict(self, batch: Batch) -> Output:
        x = batch.images
        with torch.enable_grad():
            for _ in range(self.options.steps):
                logits = self.teacher(x)
                first = entropy(logits)
                reliable = first < self.e_margin
                first[reliable].mean().backward()  # nan with no reliable sample: zero gradients, as the official
                saved = self._ascend()
                second = entropy(self.teacher(x))[reliable]
                loss = second[second < self.e_margin].mean()
                if not math.isnan(loss.item()):
                    keep = self.options.ema_momentum
                    self.ema = loss.item() if self.ema is None else keep * self.ema + (1 - keep) * loss.item()
                loss.backward()
                self._descend(saved)
                if self.ema is not None and self.ema < self.options.reset_constant:
                    low = self.ema
                    self.reset()
                    self.recoveries += 1
                    if self.options.recovery_ema == "keep":
                        self.ema = low
        n = len(x)
        steps = self.options.steps
        return Output(logits.detach(), adaptation_steps=steps, teacher_forwards=2 * n * steps)

    @torch.no_grad()
    def _ascend(self) -> dict[nn.Parameter, torch.Tensor]:
        """SAM's first step: theta + rho g / (||g|| + 1e-12); returns the weights to come back to."""
        grads = [p for p in self.params if p.grad is not None]
        saved: dict[nn.Parameter, torch.Tensor] = {}
        if not grads:
            return saved
        norm = torch.norm(torch.stack([p.grad.norm(2) for p in grads]), 2)
        for p in grads:
            saved[p] = p.detach().clone()
            p.add_(p.grad * (self.options.rho / (norm + SAM_EPS)).to(p))
            p.grad = None
        torch.clear_autocast_cache()  # the second forward must see the perturbed weights
        return saved

    def _descend(self, saved: dict[nn.Parameter, torch.Tensor]) -> None:
        """SAM's second step: back to theta, then the base optimiser's step with the perturbed point's gradient."""
        with torch.no_grad():
            for p, theta in saved.items():
                p.copy_(theta)
        optimizer_step(self.optimizer)
