"""lame: Laplacian adjusted maximum-likelihood estimation (Boudiaf et al., CVPR 2022), training-free.

Follows fiveai/LAME src/adaptation/lame.py (rbf_affinity, kNN_affinity, linear_affinity, laplacian_optimization,
entropy_energy) and src/config/defaults.py (rbf, knn 5, no forced symmetry), checked against
mariodoebler/test-time-adaptation classification/methods/lame.py.

The frozen teacher (eval mode, nothing trained) gives each sample of the batch its class probabilities p and its
global feature; LAME finds assignments Y close to p that neighbours in feature space share, by the bound
optimisation of the reference: Y <- softmax(log(p + 1e-10) + W Y), from Y = p, until the energy
sum(-log(p) Y - (W Y) Y + Y log Y) changes by at most 1e-8 of itself (at most ``max_steps`` rounds). The affinity W
is built on L2-normalised features: ``rbf`` exp(-d^2 / 2 s^2) with s the mean distance to the ``knn``-th nearest
sample (the sample itself counted, as the reference), ``kNN`` 1 for the ``knn`` nearest others, ``linear`` the dot
products. The output logits are log Y (so top-1 and softmax are LAME's). A prediction depends on its batch only:
no state is carried from batch to batch.

On i.i.d. batches the dense RBF affinity (every pair of a batch of 200 weighted) pulls the batch's assignments
towards a few classes: LAME then does worse than the frozen model it adjusts, as it does in its reference code (the
unified benchmark's CIFAR10-C tables, benchmark.md: 64.3% error continual and 75.2% mixed domains against 43.5%
for the source model, while on class-sorted batches it wins, 11.3% against 32.7%). Its own paper's setting avoids
the collapse on i.i.d. streams: ``affinity=kNN`` (5 neighbours) at batch 16 (fiveai/LAME src/config/defaults.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

from ..choices import ResetMode
from .base import Batch, Method, Output
from .options import Options, option

Affinity = Literal["rbf", "kNN", "linear"]
UNARY_EPS = 1e-10
CONVERGED = 1e-8


@dataclass
class LameOptions(Options):
    steps: int = 0  # nothing is trained
    lr: float = 0.0
    reset: ResetMode = "online"  # nothing to reset
    affinity: Affinity = "rbf"
    knn: int = option(5, ge=1)
    force_symmetry: bool = False
    max_steps: int = option(100, ge=0)


def affinity(features: torch.Tensor, kind: str, knn: int) -> torch.Tensor:
    """(N, N) affinity of L2-normalised features, as the reference's three AffinityMatrix classes."""
    dist = torch.cdist(features, features, compute_mode="donot_use_mm_for_euclid_dist")  # exact: self at 0
    n = len(features)
    if kind == "rbf":
        sigma = dist.topk(min(knn, n), dim=-1, largest=False).values[:, -1].mean()
        return torch.exp(-dist ** 2 / (2 * sigma ** 2))
    if kind == "kNN":
        nearest = dist.topk(min(knn + 1, n), dim=-1, largest=False).indices[:, 1:]
        return torch.zeros(n, n, device=features.device).scatter_(-1, nearest, 1.0)
    return features @ features.T


def laplacian_optimization(unary: torch.Tensor, kernel: torch.Tensor, max_steps: int) -> torch.Tensor:
    """The reference's bound optimisation; returns log Y (the last exponent's log-softmax)."""
    exponent = -unary
    y = exponent.softmax(-1)
    old = float("inf")
    for i in range(max_steps):
        pairwise = kernel @ y
        exponent = -unary + pairwise
        y = exponent.softmax(-1)
        energy = (unary * y - pairwise * y + y * torch.log(y.clamp_min(1e-20))).sum().item()
        if i > 1 and abs(energy - old) <= CONVERGED * abs(old):
            break
        old = energy
    return exponent.log_softmax(-1)


class Lame(Method):
    options_class = LameOptions

    @torch.no_grad()
    def predict(self, batch: Batch) -> Output:
        features = self.teacher.encode(batch.images)
        logits = self.teacher.head(features).float()
        unary = -torch.log(logits.softmax(1) + UNARY_EPS)
        kernel = affinity(F.normalize(features.float(), dim=-1), self.options.affinity, self.options.knn)
        if self.options.force_symmetry:
            kernel = (kernel + kernel.T) / 2
        adjusted = laplacian_optimization(unary, kernel, self.options.max_steps)
        return Output(adjusted, teacher_forwards=len(batch.images))
