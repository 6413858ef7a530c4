"""CIFAR-10-C / CIFAR-100-C corruptions, generated on the fly.

The published CIFAR-C arrays were made at 32 x 32 with their own, weaker constants (Hendrycks & Dietterich,
make_cifar_c.py); `imagecorruptions` only knows ImageNet-C's, which are far harsher at this size. The algorithms are
the ImageNet-C ones (some helpers of `imagecorruptions` are reused); constants and the 32-pixel geometry are CIFAR-C's.
Geometry that the original tied to IMSIZE = 32 follows the image's own size, so a 32 x 32 image reproduces it.
"""

from __future__ import annotations

import functools
import importlib.resources
from io import BytesIO
from typing import Callable

import cv2
import numpy as np
import skimage as sk
from imagecorruptions.corruptions import (
    _motion_blur,
    _shuffle_pixels_njit_glass_blur,
    clipped_zoom,
    disk,
    next_power_of_2,
    plasma_fractal,
)
from PIL import Image
from scipy.ndimage import map_coordinates

# One row per corruption, one entry per severity 1..5. Units are the original's (pixel values in [0, 1]).
CIFAR_C_CONSTANTS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # sigma
    "shot_noise": (500, 250, 100, 75, 50),  # Poisson rate scale
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # salt & pepper amount
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # (radius, alias_blur)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # (sigma, max_delta, iters)
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # (radius, sigma)
    # np.arange(start, stop, step), as the original (its float end point is kept as is)
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)),
    # (mean, std, zoom, threshold, blur radius, blur sigma, blend)
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # (image weight, frost weight)
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # (strength, wibble decay)
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor on the distance to the channel mean
    # (alpha, sigma, affine) as fractions of the image size (IMSIZE = 32 in the original)
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # box-resize factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
}

FROST_SCALE = 0.2  # the frost pictures are shrunk to CIFAR scale before a random crop
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # RGB -> luma, as OpenCV's RGB2GRAY


def gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(scale=c, size=x.shape)


def shot_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(x * c) / c


def impulse_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return sk.util.random_noise(x, mode="s&p", rng=rng, amount=c)


def defocus_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    kernel = disk(radius=c[0], alias_blur=c[1], dtype=np.float64)
    return cv2.filter2D(x, -1, kernel)


def glass_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """Blur, swap each pixel with a random neighbour within max_delta, blur again (the swaps work on uint8)."""
    sigma = c[0]
    blurred = np.uint8(sk.filters.gaussian(x, sigma=sigma, channel_axis=-1) * 255)
    seed = int(rng.integers(2**31))
    swapped = _shuffle_pixels_njit_glass_blur(x.shape[0], x.shape[1], blurred, c, seed)
    return sk.filters.gaussian(swapped / 255.0, sigma=sigma, channel_axis=-1)


def motion_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    return _motion_blur(x, radius=c[0], sigma=c[1], angle=rng.uniform(-45, 45))


def zoom_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    zooms = np.arange(*c)
    out = x.copy()
    for zoom in zooms:
        out += clipped_zoom(x, zoom)[:h, :w]
    return out / (len(zooms) + 1)


def snow(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    mean, std, zoom, threshold, radius, sigma, blend = c
    h, w = x.shape[:2]
    flakes = rng.normal(loc=mean, scale=std, size=(h, w, 1))
    flakes = clipped_zoom(flakes, zoom)[:h, :w, 0]
    flakes[flakes < threshold] = 0
    flakes = _motion_blur(np.clip(flakes, 0, 1), radius=radius, sigma=sigma, angle=rng.uniform(-135, -45))
    flakes = flakes[..., np.newaxis]
    whitened = np.maximum(x, (x @ GRAY_WEIGHTS)[..., np.newaxis] * 1.5 + 0.5)
    return blend * x + (1 - blend) * whitened + flakes + np.rot90(flakes, k=2)


@functools.lru_cache(maxsize=None)
def _frost_pictures(scale: float = FROST_SCALE) -> tuple[np.ndarray, ...]:
    """The frost photographs shipped with `imagecorruptions`, RGB in [0, 1], resized by `scale` (CIFAR-C: 0.2;
    ImageNet-C uses them at full size)."""
    folder = importlib.resources.files("imagecorruptions") / "frost"
    pictures = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        with importlib.resources.as_file(entry) as path:
            bgr = cv2.imread(str(path))
        small = bgr if scale == 1 else cv2.resize(bgr, (0, 0), fx=scale, fy=scale)
        pictures.append(small[..., ::-1] / 255.0)
    return tuple(pictures)


def frost(x: np.ndarray, c: tuple, rng: np.random.Generator, scale: float = FROST_SCALE) -> np.ndarray:
    pictures = _frost_pictures(scale)
    picture = pictures[rng.integers(len(pictures))]
    h, w = x.shape[:2]
    grow = max(1.0, h / picture.shape[0], w / picture.shape[1])  # only images larger than CIFAR's need it
    if grow > 1.0:
        size = (int(np.ceil(picture.shape[1] * grow)), int(np.ceil(picture.shape[0] * grow)))
        picture = cv2.resize(picture, size)
    top = rng.integers(picture.shape[0] - h + 1)
    left = rng.integers(picture.shape[1] - w + 1)
    return c[0] * x + c[1] * picture[top : top + h, left : left + w]


def fog(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """Plasma fractal haze. `plasma_fractal` draws from numpy's global RNG: the caller seeds it."""
    strength, decay = c
    h, w = x.shape[:2]
    haze = plasma_fractal(mapsize=next_power_of_2(max(h, w)), wibbledecay=decay)[:h, :w, np.newaxis]
    peak = x.max()
    return (x + strength * haze) * peak / (peak + strength)


def brightness(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    hsv = sk.color.rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return sk.color.hsv2rgb(hsv)


def contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


def elastic_transform(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """A random affine warp (three control points jittered by up to `affine` pixels), then a smooth random
    displacement field (uniform noise blurred with `sigma`, scaled by `alpha`)."""
    h, w = x.shape[:2]
    alpha, sigma, affine = (v * min(h, w) for v in c)
    centre = np.float32([w, h]) // 2
    reach = min(h, w) // 3
    src = np.float32([centre + reach, centre + [reach, -reach], centre - reach])
    dst = (src + rng.uniform(-affine, affine, size=src.shape)).astype(np.float32)
    warped = cv2.warpAffine(x, cv2.getAffineTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT_101)

    def displacement() -> np.ndarray:
        noise = rng.uniform(-1, 1, size=(h, w))
        return sk.filters.gaussian(noise, sigma=sigma, mode="reflect", truncate=3) * alpha

    dy, dx = displacement(), displacement()
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([rows + dy, cols + dx])
    channels = [map_coordinates(warped[..., k], coords, order=1, mode="reflect") for k in range(x.shape[2])]
    return np.stack(channels, axis=-1)


def _to_pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.uint8(np.round(x * 255)))


def pixelate(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    small = _to_pil(x).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX)) / 255.0


def jpeg_compression(x: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    buffer = BytesIO()
    _to_pil(x).save(buffer, "JPEG", quality=c)
    return np.asarray(Image.open(buffer)) / 255.0


_FUNCTIONS: dict[str, Callable[[np.ndarray, object, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}


def corrupt_cifar(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 HWC RGB -> uint8 HWC RGB with CIFAR-C's constants; name and severity must already be valid.
    Values are clipped to [0, 1] and truncated by np.uint8 after x255, as the published arrays were."""
    x = image / 255.0
    out = _FUNCTIONS[name](x, CIFAR_C_CONSTANTS[name][severity - 1], rng)
    return np.uint8(np.clip(out, 0, 1) * 255)
