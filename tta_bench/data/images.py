"""Decoding image files into RGB PIL images, with errors that name the file.

As torchvision's ImageFolder loader (``datasets.folder.pil_loader``: PIL open, ``convert("RGB")``), which the
reference codes use (TPT, MEMO, the unified benchmark), except 16/32-bit greyscale, which PIL's convert clips.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from ..errors import DataError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey pixels
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class CorruptImageError(DataError):
    """An image file that cannot be decoded; the engine stops or skips it (``--on-error``)."""


def open_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except FileNotFoundError:
        raise CorruptImageError(f"image file {path} disappeared while the run was reading it") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"corrupt or truncated image {path}: {exc}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB with 8 bits per channel. PIL converts 16- and 32-bit greyscale ("I;16", "I") to RGB by clipping at 255,
    which turns a 16-bit photograph almost white: scale those to 8 bits first."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        bits = 16 if im.mode.startswith("I;16") else 32
        values = np.asarray(im, dtype=np.float64) / (2**bits - 1) * 255
        im = Image.fromarray(values.round().clip(0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
