"""Test-time views as MEMO's and TPT's official code makes them: a random crop of the full image, then AugMix.

Follows zhangmarvin/memo imagenet-exps/utils/third_party.py (operations, level sampling, ``_augmix_aug``, the
RandomResizedCrop + flip pre-augmentation), cifar-10-exps/utils/third_party.py (its CIFAR pre-augmentation: pad-4
random crop + flip) and azshue/TPT data/augmix_ops.py + data/datautils.py (``augmix``, ``AugMixAugmenter``,
``get_preaugment``); TDA (kdiAAA/TDA datasets/augmix_ops.py) and ZERO (FarinaMatteo/zero data/augs.py) use the same.

- Operations: autocontrast, equalize, posterize, rotate, solarize, shear x/y, translate x/y. The four that overlap
  ImageNet-C (colour, contrast, brightness, sharpness) are left out, as in both references.
- Levels: each operation draws ``level ~ U(0.1, severity)`` (severity 1 in both) and scales its maximum by
  ``level / 10``: rotate by int(3 level) degrees (0-2 at severity 1), solarize above 256 - int(25.6 level), shear by
  0.03 level, translate by int(level x size / 30) pixels, posterize to 4 - int(0.4 level) bits (always 4 at
  severity 1); a random sign for the geometric ones. torchvision's ``AugMix(severity=1)`` (used here before)
  samples only its magnitude bin 0, at which every one of these is the identity.
- Mixture: 3 chains of 1-3 random operations each, chain weights ~ Dirichlet(1, 1, 1), and the result blended
  with the un-augmented crop by m ~ Beta(1, 1). The references mix normalised tensors; here the mix is taken in
  [0, 1] pixel space and the teacher normalises afterwards, which is the same image (normalisation is affine and
  the weights sum to 1).
- Fill of the geometric operations: MEMO passes ``fillcolor=128``, which PIL reads, for an RGB image, as the pixel
  (128, 0, 0) (dark red); reproduced as is. TPT passes none (black).

Randomness: the crop and flip draw from torch's CPU generator (torchvision's transforms, as in the references) and
the AugMix choices from a numpy generator seeded from it, so ``views`` is reproducible under ``common.seeded``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision import transforms as T

from ..errors import UserError

PARAMETER_MAX = 10  # levels are scaled by level / PARAMETER_MAX, as in both references
WIDTH = 3  # chains per mixture
DEPTH = (1, 3)  # operations per chain, inclusive
MEMO_FILL = 128  # MEMO's fillcolor; None (black) in TPT


def sample_level(rng: np.random.Generator, severity: float) -> float:
    return float(rng.uniform(0.1, severity))


def int_parameter(level: float, maxval: float) -> int:
    return int(level * maxval / PARAMETER_MAX)


def float_parameter(level: float, maxval: float) -> float:
    return float(level) * maxval / PARAMETER_MAX


def _signed(rng: np.random.Generator, value: float) -> float:
    return -value if rng.uniform() > 0.5 else value


def _affine(image: Image.Image, coefficients: tuple[float, ...], fill: int | None) -> Image.Image:
    return image.transform(image.size, Image.AFFINE, coefficients, resample=Image.BILINEAR, fillcolor=fill)


@dataclass(frozen=True)
class Op:
    """One AugMix operation: ``draw`` samples its magnitude from (generator, severity, image side) as the reference
    does; ``apply`` applies a given magnitude with the geometric fill."""

    name: str
    draw: Callable[[np.random.Generator, float, int], float]
    apply: Callable[[Image.Image, float, int | None], Image.Image]


OPS: tuple[Op, ...] = (
    Op("autocontrast", lambda rng, severity, size: 0, lambda im, _, fill: ImageOps.autocontrast(im)),
    Op("equalize", lambda rng, severity, size: 0, lambda im, _, fill: ImageOps.equalize(im)),
    Op("posterize", lambda rng, severity, size: 4 - int_parameter(sample_level(rng, severity), 4),
       lambda im, bits, fill: ImageOps.posterize(im, int(bits))),
    Op("rotate", lambda rng, severity, size: _signed(rng, int_parameter(sample_level(rng, severity), 30)),
       lambda im, degrees, fill: im.rotate(degrees, resample=Image.BILINEAR, fillcolor=fill)),
    Op("solarize", lambda rng, severity, size: 256 - int_parameter(sample_level(rng, severity), 256),
       lambda im, threshold, fill: ImageOps.solarize(im, int(threshold))),
    Op("shear_x", lambda rng, severity, size: _signed(rng, float_parameter(sample_level(rng, severity), 0.3)),
       lambda im, s, fill: _affine(im, (1, s, 0, 0, 1, 0), fill)),
    Op("shear_y", lambda rng, severity, size: _signed(rng, float_parameter(sample_level(rng, severity), 0.3)),
       lambda im, s, fill: _affine(im, (1, 0, 0, s, 1, 0), fill)),
    Op("translate_x", lambda rng, severity, size: _signed(rng, int_parameter(sample_level(rng, severity), size / 3)),
       lambda im, t, fill: _affine(im, (1, 0, t, 0, 1, 0), fill)),
    Op("translate_y", lambda rng, severity, size: _signed(rng, int_parameter(sample_level(rng, severity), size / 3)),
       lambda im, t, fill: _affine(im, (1, 0, 0, 0, 1, t), fill)),
)


def to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) image, uint8 or float in [0, 1], as an RGB PIL image."""
    if image.dtype != torch.uint8:
        image = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(image.cpu().permute(1, 2, 0).numpy(), "RGB")


def augmix(image: Image.Image, rng: np.random.Generator, severity: float = 1, fill: int | None = None) -> np.ndarray:
    """The AugMix mixture of one (pre-augmented) image: (H, W, 3) float32 pixel values in [0, 255]."""
    weights = rng.dirichlet([1.0] * WIDTH).astype(np.float32)
    m = np.float32(rng.beta(1.0, 1.0))
    mix = np.zeros((image.size[1], image.size[0], 3), dtype=np.float32)
    for w in weights:
        chain = image
        for _ in range(rng.integers(DEPTH[0], DEPTH[1] + 1)):
            op = OPS[rng.integers(len(OPS))]
            chain = op.apply(chain, op.draw(rng, severity, image.size[0]), fill)
        mix += w * np.asarray(chain, dtype=np.float32)
    return m * np.asarray(image, dtype=np.float32) + (1 - m) * mix


Crop = Literal["resized", "pad"]  # the pre-augmentations below
CROPS: dict[str, Callable[[int], Callable[[Image.Image], Image.Image]]] = {
    # MEMO ImageNet, TPT, TDA, ZERO: RandomResizedCrop (scale 0.08-1, bilinear) of the full image + flip
    "resized": lambda size: T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip()]),
    # MEMO CIFAR-10: random 32 x 32 crop of the image padded by 4 black pixels + flip
    "pad": lambda size: T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip()]),
}


def views(image: torch.Tensor, n: int, size: int, crop: str = "resized", mix: bool = True, severity: float = 1,
          fill: int | None = None) -> torch.Tensor:
    """``n`` random views (n, 3, size, size) in [0, 1] of one full image (3, H, W; uint8, or float in [0, 1]): a
    ``crop`` of it, then the AugMix mixture where ``mix``. Draws from torch's CPU generator: call inside
    ``common.seeded`` for reproducible views."""
    if crop not in CROPS:
        raise UserError(f"view crop must be one of {', '.join(CROPS)}, got {crop!r}")
    pil = to_pil(image)
    rng = np.random.default_rng(int(torch.randint(2**62, ()).item()))
    preaugment = CROPS[crop](size)
    out = np.zeros((n, size, size, 3), dtype=np.float32)
    for k in range(n):
        x = preaugment(pil)
        out[k] = augmix(x, rng, severity, fill) if mix else np.asarray(x, dtype=np.float32)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous() / 255
