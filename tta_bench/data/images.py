"""Decoding image files into RGB PIL images, with errors that name the file."""
from __future__ import annotations

from pathlib import Path

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
            return im.convert("RGB")
    except FileNotFoundError:
        raise CorruptImageError(f"image file {path} disappeared while the run was reading it") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"corrupt or truncated image {path}: {exc}") from None


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES
