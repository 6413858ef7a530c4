"""Common corruptions generated on the fly, for images that have no published corrupted copy.

Two families: "imagenet-c" applies the `imagecorruptions` package (ImageNet-C's constants; feed it 224 x 224 images
made as ImageNet-C was: resize 256, centre crop 224); "cifar-c" applies CIFAR-10-C's own, weaker constants at
32 x 32 (see cifar.py). `corrupt_continuous` applies ImageNet-C's constants at any severity in [0, 5]
(CCC's interpolation, see continuous.py). Randomness is reproducible per call through `seed`.

Reference: hendrycks/robustness ImageNet-C/create_c/make_imagenet_c.py (the geometry: resize 256, centre crop 224,
then corrupt) through bethgelab/imagecorruptions, which packages that file's functions and constants.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from imagecorruptions import corrupt as imagecorruptions_corrupt

from .cifar import corrupt_cifar
from .continuous import NAMES as CONTINUOUS_NAMES, corrupt_at
from ...vocabulary import CORRUPTIONS, SEVERITIES

FAMILIES = ("imagenet-c", "cifar-c")

# imagecorruptions draws these two from a fresh, unseeded generator unless given `seed=`; all others use np.random.
_TAKES_SEED_ARGUMENT = frozenset({"impulse_noise", "glass_blur"})
_IMAGENET_C_MIN_SIDE = 32  # imagecorruptions refuses smaller images


@contextmanager
def _seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed numpy's and Python's global RNGs (imagecorruptions uses them) and restore the caller's states after.
    Not thread-safe, like anything that touches the global RNGs."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def _check_arguments(image: np.ndarray, name: str, severity: int, family: str) -> None:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES or isinstance(severity, bool):
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if family not in FAMILIES:
        raise ValueError(f"unknown corruption family {family!r}; choose one of {', '.join(FAMILIES)}")
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"expected a uint8 HxWx3 RGB array, got {getattr(image, 'dtype', type(image))} "
                         f"{getattr(image, 'shape', '')}")
    if family == "imagenet-c" and min(image.shape[:2]) < _IMAGENET_C_MIN_SIDE:
        raise ValueError(f"imagenet-c corruptions need images of at least {_IMAGENET_C_MIN_SIDE} pixels a side, "
                         f"got {image.shape[:2]}")


def corrupt(image: np.ndarray, name: str, severity: int, family: str, seed: int) -> np.ndarray:
    """uint8 HWC RGB in -> uint8 HWC RGB out (same shape), deterministic for a given seed (0 <= seed < 2**32).
    The caller's global RNG states are left as they were."""
    _check_arguments(image, name, severity, family)
    with _seeded_global_rngs(seed):
        if family == "cifar-c":
            return corrupt_cifar(image, name, severity, np.random.default_rng(seed))
        kwargs = {"seed": seed} if name in _TAKES_SEED_ARGUMENT else {}
        return imagecorruptions_corrupt(image, corruption_name=name, severity=severity, **kwargs)


def corrupt_continuous(image: np.ndarray, name: str, severity: float, seed: int) -> np.ndarray:
    """uint8 HWC RGB in -> out, ImageNet-C's algorithm and constants at a real severity in [0, 5] (0: unchanged),
    deterministic for a given seed; the caller's global RNG states are left as they were."""
    if name not in CONTINUOUS_NAMES:
        raise ValueError(f"unknown corruption {name!r}; choose one of {', '.join(CONTINUOUS_NAMES)}")
    if isinstance(severity, bool) or not 0 <= severity <= 5:
        raise ValueError(f"a continuous severity lies in [0, 5], got {severity!r}")
    _check_arguments(image, name, 1, "imagenet-c")
    with _seeded_global_rngs(seed):
        return corrupt_at(image, name, float(severity), np.random.default_rng(seed))
