"""rotta: robust test-time adaptation for practical, class-correlated streams (Yuan et al., CVPR 2023).

Follows BIT-DA/RoTTA core/adapter/rotta.py, core/utils/bn_layers.py (RobustBN2d), core/utils/memory.py (CSTU) and
configs/adapter/rotta.yaml, checked against mariodoebler/test-time-adaptation classification/methods/rotta.py.

- Robust BN (RBN) replaces every BatchNorm layer: it keeps global statistics, starting from the trained running
  statistics; in training mode it moves them towards each batch's by ``alpha`` (0.05) and normalises with the
  result, in eval mode it normalises with them. Its scale and shift are the only trained parameters. RBN needs
  BatchNorm layers to replace: RoTTA runs on BN classifiers only.
- A category-balanced memory bank (CSTU) of ``memory_size`` test images, filed under the teacher's pseudo-label:
  a new sample enters when its class is below its share (capacity / C) and the bank has room, else it replaces the
  item of a majority class (or, when its own class is full, of its own class) with the highest heuristic score
  lambda_t / (1 + exp(-age / capacity)) + lambda_u x entropy / ln C, if that score exceeds the new sample's; every
  item ages by one per sample added.
- A mean teacher (EMA, ``nu`` 0.001) predicts each batch in eval mode (the returned prediction) and labels the
  memory. Every ``update_every`` samples, the student takes one Adam step on the memory: the cross-entropy of its
  prediction on a strongly augmented copy (CoTTA's transform) against the teacher's on the original, each item
  weighted by its timeliness exp(-a) / (1 + exp(-a)), a = age / capacity; then the teacher takes its EMA step.

Deliberate differences: only the RBN layers switch to training mode for an update (the official ``model.train()``
switches the whole network, which on its ResNets changes nothing else, but would turn on dropout elsewhere);
randomness (the augmentation) is seeded by the batch's first sample seed. A reset restores student, teacher,
optimiser and empties the memory, as the unified benchmark's reset (the official code never resets).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..choices import ResetMode
from ..errors import UserError
from ..teachers.base import Teacher
from .base import Batch, Method, Output, optimizer_step
from .options import option
from .common import OptimizerOptions, WeightSet, batch_norm_layers, cotta_augment, seeded, soft_cross_entropy

UNCERTAINTY_EPS = 1e-6  # forward_and_adapt: entropy as sum(-p log(p + 1e-6))


@dataclass
class RottaOptions(OptimizerOptions):
    steps: int = option(1, ge=1)
    lr: float = option(1e-3, gt=0)  # configs/adapter/rotta.yaml: Adam lr 1e-3, beta 0.9, batch 64
    reset: ResetMode = "online"
    memory_size: int = option(64, ge=1)
    update_every: int = option(64, ge=1)  # UPDATE_FREQUENCY: one update per this many samples
    nu: float = option(0.001, ge=0, le=1)  # teacher EMA: (1 - nu) x teacher + nu x student
    alpha: float = option(0.05, ge=0, le=1)  # RBN momentum
    lambda_t: float = 1.0  # weight of age in the memory's heuristic score
    lambda_u: float = 1.0  # weight of uncertainty


class RobustBN(nn.Module):
    """RBN (bn_layers.py RobustBN1d/2d) in place of one BatchNorm layer; a timm BatchNormAct2d keeps its activation."""

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm, alpha: float) -> None:
        super().__init__()
        self.alpha, self.eps = alpha, layer.eps
        self.weight = nn.Parameter(layer.weight.detach().clone()) if layer.weight is not None else None
        self.bias = nn.Parameter(layer.bias.detach().clone()) if layer.bias is not None else None
        self.register_buffer("source_mean", layer.running_mean.detach().clone())
        self.register_buffer("source_var", layer.running_var.detach().clone())
        self.after = nn.Sequential(getattr(layer, "drop", nn.Identity()), getattr(layer, "act", nn.Identity()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # the global statistics as constants: BatchNorm's own eval-mode kernel
            y = F.batch_norm(x, self.source_mean, self.source_var, self.weight, self.bias, False, 0.0, self.eps)
            return self.after(y)
        dims, shape = [0, *range(2, x.dim())], (1, -1, *([1] * (x.dim() - 2)))
        batch_var, batch_mean = torch.var_mean(x.float(), dim=dims, unbiased=False)
        mean = (1 - self.alpha) * self.source_mean + self.alpha * batch_mean  # gradients flow through the batch part
        var = (1 - self.alpha) * self.source_var + self.alpha * batch_var
        with torch.no_grad():  # in place, so that a WeightSet in use receives the update
            self.source_mean.copy_(mean)
            self.source_var.copy_(var)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale + (self.bias if self.bias is not None else 0)
        return self.after((x.float() * scale.view(shape) + shift.view(shape)).to(x.dtype))


@dataclass
class MemoryItem:
    image: torch.Tensor
    uncertainty: float
    age: int = 0


class MemoryBank:
    """CSTU: category-balanced sampling with timeliness and uncertainty (memory.py), item for item."""

    def __init__(self, capacity: int, num_classes: int, lambda_t: float, lambda_u: float) -> None:
        self.capacity, self.num_classes = capacity, num_classes
        self.per_class = capacity / num_classes
        self.lambda_t, self.lambda_u = lambda_t, lambda_u
        self.slots: list[list[MemoryItem]] = [[] for _ in range(num_classes)]

    def __len__(self) -> int:
        return sum(len(items) for items in self.slots)

    def score(self, age: int, uncertainty: float) -> float:
        return (self.lambda_t / (1 + math.exp(-age / self.capacity))
                + self.lambda_u * uncertainty / math.log(self.num_classes))

    def add(self, image: torch.Tensor, label: int, uncertainty: float) -> None:
        if self._make_room(label, self.score(0, uncertainty)):
            self.slots[label].append(MemoryItem(image, uncertainty))
        for items in self.slots:
            for item in items:
                item.age += 1

    def _make_room(self, label: int, score: float) -> bool:
        if len(self.slots[label]) < self.per_class:
            if len(self) < self.capacity:
                return True
            counts = [len(items) for items in self.slots]
            return self._evict([c for c, n in enumerate(counts) if n == max(counts)], score)
        return self._evict([label], score)

    def _evict(self, classes: list[int], score: float) -> bool:
        """Drop the highest-scoring item of ``classes`` (the last of equals) if it scores above the newcomer."""
        worst: tuple[float, int, int] | None = None
        for c in classes:
            for i, item in enumerate(self.slots[c]):
                s = self.score(item.age, item.uncertainty)
                if worst is None or s >= worst[0]:
                    worst = (s, c, i)
        if worst is None:
            return True
        if worst[0] > score:
            self.slots[worst[1]].pop(worst[2])
            return True
        return False

    def contents(self) -> tuple[list[torch.Tensor], list[float]]:
        """The images class by class, and their ages over the capacity."""
        items = [item for items in self.slots for item in items]
        return [item.image for item in items], [item.age / self.capacity for item in items]


def timeliness(ages: torch.Tensor) -> torch.Tensor:
    return torch.exp(-ages) / (1 + torch.exp(-ages))


class Rotta(Method):
    options_class = RottaOptions
    restored = ("teacher", "optimizer", "mean_teacher", "memory", "seen", "updates")

    def __init__(self, teacher: Teacher, options: RottaOptions, device: torch.device) -> None:
        super().__init__(teacher, options, device)
        layers = [m for m in batch_norm_layers(teacher) if m.running_mean is not None]
        if not layers:
            raise UserError(f"rotta replaces BatchNorm layers with robust BN, and teacher {teacher.name} has none "
                            "with running statistics (use a CNN teacher such as effnet-lite0 or cifar-resnet20)")
        teacher.requires_grad_(False)
        self.rbn = [self._replace(teacher, layer, options.alpha) for layer in layers]
        params = [p for layer in self.rbn for p in (layer.weight, layer.bias) if p is not None]
        self.optimizer = options.build_optimizer(params)
        self.all_params = list(teacher.parameters())
        buffers = [b for layer in self.rbn for b in (layer.source_mean, layer.source_var)]
        self.mean_teacher = WeightSet(self.all_params + buffers)  # the official EMA covers parameters only
        self.num_classes = len(teacher.classes)
        self.memory = MemoryBank(options.memory_size, self.num_classes, options.lambda_t, options.lambda_u)
        self.seen = 0
        self.updates = 0  # since the last reset

    @staticmethod
    def _replace(teacher: Teacher, layer: nn.Module, alpha: float) -> RobustBN:
        name = next(n for n, m in teacher.named_modules() if m is layer)
        parent_name, _, child = name.rpartition(".")
        robust = RobustBN(layer, alpha).to(layer.running_mean.device)
        robust.eval()
        setattr(teacher.get_submodule(parent_name) if parent_name else teacher, child, robust)
        return robust

    def predict(self, batch: Batch) -> Output:
        x = batch.images
        forwards, updates_before = 0, self.updates
        with seeded(batch.seeds[0]):
            for _ in range(self.options.steps):
                with torch.no_grad(), self.mean_teacher.active():
                    logits = self.teacher(x).float()
                probs = logits.softmax(1)
                labels = probs.argmax(1).tolist()
                uncertainty = (-probs * torch.log(probs + UNCERTAINTY_EPS)).sum(1).tolist()
                forwards += len(x)
                for image, label, u in zip(x, labels, uncertainty):
                    self.memory.add(image.detach().clone(), label, u)
                    self.seen += 1
                    if self.seen % self.options.update_every == 0:
                        forwards += self._update()
        return Output(logits, adaptation_steps=self.updates - updates_before, teacher_forwards=forwards)

    def _update(self) -> int:
        """One student step on the memory bank, then the teacher's EMA step; returns the teacher forwards spent."""
        images, ages = self.memory.contents()
        data = torch.stack(images)
        strong = cotta_augment(data)
        self._train_rbn(True)
        try:
            with torch.no_grad(), self.mean_teacher.active():
                target = self.teacher(data)  # training mode: the teacher's RBN statistics move too
            with torch.enable_grad():
                weights = timeliness(torch.tensor(ages, device=data.device))
                (soft_cross_entropy(self.teacher(strong), target) * weights).mean().backward()
            optimizer_step(self.optimizer)
        finally:
            self._train_rbn(False)
        self.mean_teacher.ema_update(self.all_params, 1 - self.options.nu)
        self.updates += 1
        return 2 * len(data)

    def _train_rbn(self, on: bool) -> None:
        for layer in self.rbn:
            layer.train(on)
