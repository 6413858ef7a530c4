"""ImageNet-C corruptions at any severity in [0, 5], for CCC's continuously changing streams.

Follows oripress/CCC make_imagenet_c.py: each corruption's ImageNet-C constants get a level 0 that leaves the image
as it is, and a fractional severity takes the constants linearly interpolated between the neighbouring levels
(shot noise interpolates 1/c, as there). The algorithms are tta_bench's own (data/corruptions/cifar.py, the
ImageNet-C algorithms whose geometry follows the image size), fed ImageNet-C's constants at 224 x 224.

Deliberate differences, named: motion and snow blur lengths are whole pixels (the numpy motion blur needs an integer
kernel; the reference's ImageMagick accepts fractions), and the frost picture is chosen among all six (the
reference's randint(5) never picks the sixth).
"""
from __future__ import annotations

import numpy as np

from . import cifar as algo

LEVELS = np.arange(6.0)  # severity 0 (identity) .. 5
ELASTIC_SIZE = 244  # ImageNet-C states its elastic constants as multiples of 244 (sic) pixels

# Levels 0..5 per corruption, in the units of the algorithm (pixel values in [0, 1]).
CONSTANTS: dict[str, list] = {
    "gaussian_noise": [0.0, 0.08, 0.12, 0.18, 0.26, 0.38],  # sigma
    "shot_noise": [0.0, 1 / 60, 1 / 25, 1 / 12, 1 / 5, 1 / 3],  # 1 / Poisson rate scale
    "impulse_noise": [0.0, 0.03, 0.06, 0.09, 0.17, 0.27],  # salt & pepper amount
    "defocus_blur": [(0, 0), (3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],  # (radius, alias blur)
    "glass_blur": [(0, 0, 0), (0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],  # (sigma, delta, iters)
    "motion_blur": [(0, 0), (10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],  # (radius, sigma)
    "zoom_blur": [(1, 1, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)],
    # (mean, std, zoom, threshold, blur radius, blur sigma, blend)
    "snow": [(0.1, 0.3, 3, 1.0, 10, 4, 1.0), (0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
             (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
    "frost": [(1, 0), (1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],  # (image weight, frost weight)
    "fog": [(0, 2), (1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],  # (strength, wibble decay)
    "brightness": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # added to HSV value
    "contrast": [1.0, 0.4, 0.3, 0.2, 0.1, 0.05],  # factor on the distance to the channel mean
    # (alpha, sigma, affine) in pixels
    "elastic_transform": [(0, 999, 0), *((ELASTIC_SIZE * a, ELASTIC_SIZE * s, ELASTIC_SIZE * f) for a, s, f in (
        (2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)))],
    "pixelate": [1.0, 0.6, 0.5, 0.4, 0.3, 0.25],  # box-resize factor
    "jpeg_compression": [85, 25, 18, 15, 10, 7],  # JPEG quality
}
NAMES = tuple(CONSTANTS)


def constants_at(name: str, severity: float) -> tuple[float, ...]:
    """The constants of ``name`` at ``severity``, linearly interpolated between the integer levels."""
    table = np.asarray(CONSTANTS[name], dtype=float).reshape(len(LEVELS), -1)
    return tuple(float(np.interp(severity, LEVELS, table[:, k])) for k in range(table.shape[1]))


def _argument(name: str, c: tuple[float, ...], h: int, w: int) -> object:
    """The interpolated constants in the form the algorithm takes."""
    if name == "shot_noise":
        return 1.0 / c[0]
    if name == "glass_blur":
        return c[0], max(1, round(c[1])), round(c[2])
    if name == "motion_blur":
        return round(c[0]), c[1]
    if name == "snow":
        return (*c[:4], round(c[4]), *c[5:])
    if name == "elastic_transform":
        return tuple(v / min(h, w) for v in c)  # the algorithm scales these fractions by the image side
    if name == "jpeg_compression":
        return round(c[0])
    return c[0] if len(c) == 1 else c


def corrupt_at(image: np.ndarray, name: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 HWC RGB -> uint8 HWC RGB; severity 0 returns the image unchanged (the reference skips it). The caller
    checks the arguments and seeds numpy's global RNG (fog's plasma fractal draws from it)."""
    if severity == 0:
        return image
    c = constants_at(name, severity)
    x = image / 255.0
    argument = _argument(name, c, *image.shape[:2])
    if name == "frost":
        out = algo.frost(x, argument, rng, scale=1.0)
    else:
        out = algo._FUNCTIONS[name](x, argument, rng)
    return np.uint8(np.clip(out, 0, 1) * 255)
