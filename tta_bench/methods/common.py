"""What several methods share: entropy objectives, the confident-view filter, seeded randomness, normalisation-layer
handling and the per-sample loop of the episodic methods (the views themselves: augmix.py). Methods import from
here, never from each other.

Norm handling follows the unified benchmark (mariodoebler/test-time-adaptation, classification/methods/tent.py:
configure_model and collect_params): BatchNorm normalises with test-batch statistics; the affine scale and shift of
BatchNorm, LayerNorm and GroupNorm layers are what entropy-based methods train. Unlike there, BN layers switch to
train mode with ``track_running_stats`` off instead of dropping their running buffers, so a reset restores them
bitwise; every other layer stays in eval mode, as there.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..teachers.base import Teacher
from .base import Batch

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row's softmax, in float32 whatever the autocast dtype."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def marginal_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean softmax over the rows (views) of ``logits`` (N, C), computed in log space."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    log_mean = torch.logsumexp(log_p, dim=0) - torch.log(torch.tensor(float(len(logits))))
    log_mean = log_mean.clamp(min=torch.finfo(log_mean.dtype).min)  # 0 * -inf would be nan
    return -(log_mean.exp() * log_mean).sum()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block on the CPU generator seeded with ``seed``, leaving the global RNG state as it was, so a
    sample's views depend on its seed only (not on its position in the stream)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def select_confident(logits: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the int(fraction x N) rows of ``logits`` (N, C) with the lowest softmax entropy, most confident
    first: TPT's ``select_confident_samples`` (azshue/TPT tpt_classification.py), also ZERO's ``confidence_filter``
    and TDA's view filter. int() truncates as there (6 of 64 at 0.1, 19 of 64 at 0.3); at least one row is kept,
    where the reference would keep none."""
    keep = max(1, int(len(logits) * fraction))
    return entropy(logits).argsort(stable=True)[:keep]


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


def norm_layers(module: nn.Module) -> list[nn.Module]:
    """Every BatchNorm, LayerNorm and GroupNorm layer (timm's BatchNormAct2d and LayerNorm2d included)."""
    return [m for m in module.modules() if isinstance(m, NORM_LAYERS)]


def adapt_norm_affine(teacher: Teacher, method: str) -> list[nn.Parameter]:
    """Configure the teacher for entropy-based adaptation of its normalisation layers and return the parameters to
    train: BN layers use test-batch statistics; the scale and shift of BN, LayerNorm and GroupNorm layers (so ViTs,
    ConvNeXts and CLIP image encoders qualify) are trainable; everything else is frozen."""
    teacher.requires_grad_(False)
    layers = norm_layers(teacher)
    for layer in layers:
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.train()
            layer.track_running_stats = False
    params = [p for layer in layers for p in (layer.weight, layer.bias) if p is not None]
    if not params:
        raise UserError(f"{method} trains the scale and shift of normalisation layers (BatchNorm, LayerNorm, "
                        f"GroupNorm), and teacher {teacher.name} has none with affine parameters")
    for p in params:
        p.requires_grad_(True)
    return params


def each_sample(batch: Batch, one: Callable[[torch.Tensor, int, torch.Tensor], tuple[torch.Tensor, dict]],
                reset: Callable[[], None]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The episodic loop: ``one(image, seed, raw)`` adapts on one sample (its teacher-input image, its seed, its full
    decoded image ``batch.raw_image(k)``) and returns its logits (1, C) and extras; the method is reset after every
    sample, whatever happens inside."""
    logits, extras = [], []
    for k, (image, seed) in enumerate(zip(batch.images, batch.seeds)):
        try:
            out, extra = one(image, seed, batch.raw_image(k))
        finally:
            reset()
        logits.append(out)
        extras.append(extra)
    return torch.cat(logits), extras
