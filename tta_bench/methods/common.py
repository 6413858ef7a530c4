"""What several methods share: entropy objectives, the confident-view filter, seeded randomness, normalisation-layer
handling and the loop of the per-sample methods (the views themselves: augmix.py). Methods import from
here, never from each other.

Norm handling follows the unified benchmark (mariodoebler/test-time-adaptation, classification/methods/tent.py:
configure_model and collect_params): BatchNorm normalises with test-batch statistics; the affine scale and shift of
BatchNorm, LayerNorm and GroupNorm layers are what entropy-based methods train. Unlike there, BN layers switch to
train mode with ``track_running_stats`` off instead of dropping their running buffers, so a reset restores them
bitwise; every other layer stays in eval mode, as there.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from ..errors import UserError
from ..teachers.base import Teacher
from .base import Batch
from .options import Options, option

NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
ADAM_BETAS = (0.9, 0.999)  # the reference code's Adam: OPTIM.BETA 0.9


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
    _batch_statistics(layers)
    return layers


def _batch_statistics(layers: list[nn.Module]) -> None:
    for layer in layers:
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.train()
            layer.track_running_stats = False


MIN_STATISTICS_BATCH = 16  # below it a batch's mean and variance are noise (the references use 64 to 200)


def small_batch_note(method: type, batch_size: int) -> str | None:
    """A warning for a method that normalises with test-batch statistics run at a batch too small for them (TENT at
    batch 2 scores 0% on a CIFAR-10-C domain where the frozen model scores 40%)."""
    if not getattr(method, "batch_statistics", False) or batch_size >= MIN_STATISTICS_BATCH:
        return None
    return (f"{method.name} normalises BatchNorm layers with the statistics of each test batch, and a batch of "
            f"{batch_size} is too small for them (accuracy can collapse): use --batch-size {MIN_STATISTICS_BATCH} or "
            "more (its papers: 64 to 200)")


def norm_layers(module: nn.Module) -> list[nn.Module]:
    """Every BatchNorm, LayerNorm and GroupNorm layer (timm's BatchNormAct2d and LayerNorm2d included)."""
    return [m for m in module.modules() if isinstance(m, NORM_LAYERS)]


def adapt_norm_affine(teacher: Teacher, method: str) -> list[nn.Parameter]:
    """Configure the teacher for entropy-based adaptation of its normalisation layers and return the parameters to
    train: BN layers use test-batch statistics; the scale and shift of BN, LayerNorm and GroupNorm layers (so ViTs,
    ConvNeXts and CLIP image encoders qualify) are trainable; everything else is frozen."""
    teacher.requires_grad_(False)
    layers = norm_layers(teacher)
    _batch_statistics(layers)
    params = [p for layer in layers for p in (layer.weight, layer.bias) if p is not None]
    if not params:
        raise UserError(f"{method} trains the scale and shift of normalisation layers (BatchNorm, LayerNorm, "
                        f"GroupNorm), and teacher {teacher.name} has none with affine parameters")
    for p in params:
        p.requires_grad_(True)
    return params


def adapt_all_weights(teacher: Teacher, frozen: nn.Module | None = None) -> list[nn.Parameter]:
    """Configure the teacher for methods that train every weight (CoTTA; SHOT-IM with the head ``frozen``): BN layers
    (where there are any) normalise with test-batch statistics, every parameter outside ``frozen`` is trainable."""
    _batch_statistics(batch_norm_layers(teacher))
    teacher.requires_grad_(True)
    if frozen is not None:
        frozen.requires_grad_(False)
    return [p for p in teacher.parameters() if p.requires_grad]


OptimizerKind = Literal["adam", "adamw", "sgd"]


def build_optimizer(kind: OptimizerKind, params: Iterable[nn.Parameter], lr: float, momentum: float = 0.0,
                    nesterov: bool = False, weight_decay: float = 0.0, fused: bool | None = None
                    ) -> torch.optim.Optimizer:
    """The optimisers of the TTA reference code, built one way: Adam and AdamW with betas (0.9, 0.999), SGD with the
    momentum and Nesterov flag its reference uses (they differ between the reference repositories)."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, weight_decay=weight_decay, fused=fused)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=ADAM_BETAS, weight_decay=weight_decay, fused=fused)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                               fused=fused)
    raise ValueError(f"unknown optimizer {kind!r}")


@dataclass
class OptimizerOptions(Options):
    """The options of a method that trains with one of the reference optimisers (``build_optimizer``)."""

    optimizer: OptimizerKind = "adam"
    momentum: float = option(0.9, ge=0)  # SGD's; every reference here uses 0.9 (MEMO: none)
    nesterov: bool = False  # SGD's; the unified benchmark's setup_optimizer passes OPTIM.NESTEROV True
    weight_decay: float = option(0.0, ge=0)

    def build_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer, params, self.lr, self.momentum, self.nesterov, self.weight_decay)

    def problems(self) -> list[str]:
        nesterov = self.nesterov and self.optimizer == "sgd" and self.momentum <= 0
        return ["nesterov needs momentum > 0"] if nesterov else []


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per row: cross-entropy of the student's softmax against the teacher's softmax as soft label (CoTTA, RoTTA)."""
    return -(teacher.float().softmax(-1) * student.float().log_softmax(-1)).sum(-1)


class WeightSet:
    """A second set of values for some of a module's tensors (a mean teacher, the source anchor), run through the
    same module: inside ``with weights.active():`` the module's tensors hold these values (storage exchanged, O(1),
    no copy of the network, so any teacher works) and their own again on exit. Only forwards that are not
    differentiated later may run inside: a graph built there would hold the exchanged storage. In-place updates
    made inside (RoTTA's robust BN statistics) land in this set."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.targets = tensors
        self.values = [t.detach().clone() for t in tensors]

    @contextmanager
    def active(self) -> Iterator[None]:
        self._exchange()
        try:
            yield
        finally:
            self._exchange()

    def _exchange(self) -> None:
        for i, target in enumerate(self.targets):
            held = target.data
            target.data = self.values[i]
            self.values[i] = held
        torch.clear_autocast_cache()  # bf16 copies of the values just exchanged

    @torch.no_grad()
    def ema_update(self, current: list[torch.Tensor], keep: float) -> None:
        """The first ``len(current)`` values become ``keep`` x themselves + (1 - keep) x ``current`` (mean teacher)."""
        for value, now in zip(self.values, current):
            value.mul_(keep).add_(now.detach(), alpha=1 - keep)

    def state_dict(self) -> dict[str, torch.Tensor]:  # for Method.restored: a reset restores these bitwise
        return {str(i): v for i, v in enumerate(self.values)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for i, value in enumerate(self.values):
            value.copy_(state[str(i)])


def cotta_augment(images: torch.Tensor) -> torch.Tensor:
    """CoTTA's test-time augmentation (qinenergy/cotta cifar/cotta.py get_tta_transforms, also RoTTA's
    core/utils/custom_transforms.py): ONE random draw applied to the whole batch, as the reference code applies its
    transform to the batch tensor: colour jitter (brightness 0.6-1.4, contrast 0.7-1.3, saturation 0.5-1.5, hue
    +-0.06, gamma 0.7-1.3, in random order), edge padding by half the size, random affine (+-15 degrees, translate
    1/16, scale 0.9-1.1, bilinear), Gaussian blur (kernel 5, sigma 0.001-0.5), centre crop back, horizontal flip
    (p 0.5), Gaussian noise (std 0.005), clipped to [0, 1]. Draws from the global CPU generator: call inside
    ``seeded``. ``images``: (B, 3, H, W) in [0, 1]. Computed in float32 even inside the engine's bf16 autocast
    region (under CPU bf16 autocast some pixels of the result moved by up to 0.7)."""
    with torch.autocast(images.device.type, enabled=False):
        return _cotta_augment(images.float()).to(images.dtype)


def _cotta_augment(images: torch.Tensor) -> torch.Tensor:
    x = images.clamp(0, 1)
    jitters = {0: (TF.adjust_brightness, 0.6, 1.4), 1: (TF.adjust_contrast, 0.7, 1.3),
               2: (TF.adjust_saturation, 0.5, 1.5), 3: (TF.adjust_hue, -0.06, 0.06), 4: (TF.adjust_gamma, 0.7, 1.3)}
    for k in torch.randperm(5).tolist():
        fn, lo, hi = jitters[k]
        factor = torch.empty(1).uniform_(lo, hi).item()
        x = fn(x.clamp(1e-8, 1.0) if k == 4 else x, factor)  # clamped before gamma, as ColorJitterPro (nan gradients)
    h, w = x.shape[-2:]
    x = TF.pad(x, [h // 2], padding_mode="edge")
    angle = torch.empty(1).uniform_(-15, 15).item()
    max_dx, max_dy = x.shape[-1] / 16, x.shape[-2] / 16
    shift = [int(round(torch.empty(1).uniform_(-max_dx, max_dx).item())),
             int(round(torch.empty(1).uniform_(-max_dy, max_dy).item()))]
    scale = torch.empty(1).uniform_(0.9, 1.1).item()
    x = TF.affine(x, angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0],
                  interpolation=T.InterpolationMode.BILINEAR)
    sigma = torch.empty(1).uniform_(0.001, 0.5).item()
    x = TF.gaussian_blur(x, kernel_size=[5, 5], sigma=[sigma, sigma])
    x = TF.center_crop(x, [h, w])
    if torch.rand(1).item() < 0.5:
        x = TF.horizontal_flip(x)
    x = x + (torch.randn(x.shape) * 0.005).to(x.device)
    return x.clamp(0, 1)


def each_sample(batch: Batch, one: Callable[[torch.Tensor, int, torch.Tensor], tuple[torch.Tensor, dict]],
                reset: Callable[[], None]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """The per-sample loop: ``one(image, seed, raw)`` adapts on one sample (its teacher-input image, its seed, its full
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
