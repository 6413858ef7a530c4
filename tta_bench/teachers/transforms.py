"""Image -> [0, 1] tensor at a teacher's input size: the geometric part of its preprocessing (normalisation happens
inside the teacher, so methods can augment in pixel space).

Two cases, by what the suite says its images are:
- photographs of any size (ImageNet val, -R, -A, ...): the teacher's own recipe, resize (short side) + centre crop;
- images stored as square centre crops (published ImageNet-C: 224 x 224, cut by resize 256 + crop 224 before
  corrupting): ToTensor only, as RobustBench (``load_imagenetc``: ``PREPROCESSINGS['none']``) and the unified TTA
  benchmark (mariodoebler/test-time-adaptation, classification/datasets/data_loading.py ``get_transform``:
  "already resized and centre cropped") feed them. Running the recipe again would zoom by 256/224 and drop 16
  pixels a side. Deliberate difference (``StoredCrop``): a classifier whose input size is not the stored size gets
  the crop resized to its input size (the reference code feeds 224 whatever the model, which a fixed-size ViT refuses).
CLIP teachers keep their own preprocessing everywhere, as TPT (tpt_classification.py: resize 224 bicubic + centre
crop 224) and the unified benchmark (CLIP's ``preprocess``) do; on 224 x 224 images it changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image
from torchvision.transforms import v2 as T

from ..errors import DataError


def _compose(*steps: Callable) -> T.Compose:
    return T.Compose([T.ToImage(), *steps, T.ToDtype(torch.float32, scale=True)])


@dataclass
class PixelTransform:
    """A teacher's recipe: resize the short side to ``resize`` (None: no resize), centre crop ``size``."""

    size: int
    resize: int | None = None
    interpolation: str = "bicubic"
    _steps: T.Compose | None = field(default=None, init=False, repr=False, compare=False)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self._steps is None:
            mode = T.InterpolationMode(self.interpolation)
            resize = [T.Resize(self.resize, interpolation=mode, antialias=True)] if self.resize else []
            self._steps = _compose(*resize, T.CenterCrop(self.size))
        return self._steps(image)


@dataclass
class StoredCrop:
    """Images stored as ``stored`` x ``stored`` centre crops: ToTensor; resized to ``size`` only where the teacher's
    input differs. An image of another size is not what the suite says it is: a clear error, not a collate failure."""

    stored: int
    size: int
    interpolation: str = "bicubic"
    _steps: T.Compose | None = field(default=None, init=False, repr=False, compare=False)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.size != (self.stored, self.stored):
            raise DataError(f"an image of {image.size[0]} x {image.size[1]} pixels in a suite stored as "
                            f"{self.stored} x {self.stored} centre crops (e.g. published ImageNet-C): wrong --suite or "
                            "--data-root?")
        if self._steps is None:
            resize = T.Resize([self.size, self.size], interpolation=T.InterpolationMode(self.interpolation),
                              antialias=True)
            self._steps = _compose(*([resize] if self.size != self.stored else []))
        return self._steps(image)
