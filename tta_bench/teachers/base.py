"""The teacher interface: preprocessing, a global (and optionally dense) image feature, and a head.

A teacher is the frozen model every method starts from: ``source`` predicts with it, TENT adapts its BN
layers, APM distils its feature into a student and classifies with its head. Images reach it as float
tensors in [0, 1] at its input size; normalisation happens inside, so methods can augment in pixel space.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from PIL import Image
from torch import nn

from ..data.labels import LabelSpace
from ..errors import UserError
from .transforms import PixelTransform, StoredCrop


def pixel_transform(size: int, resize: int | None = None, interpolation: str = "bicubic") -> PixelTransform:
    """Resize (short side) + centre crop + [0, 1] tensor, the geometric part of a teacher's preprocessing."""
    return PixelTransform(size, resize, interpolation)


class Teacher(nn.Module):
    """Subclasses implement ``encode`` (B, D) and ``_build_head``; ``head`` maps features to logits over
    the suite's evaluated classes (all of the label space, or the official 200 of ImageNet-R/-A)."""

    keeps_own_preprocessing = False  # CLIP: its own resize + crop even on stored crops, as TPT and the unified benchmark

    uses_prompts = False  # whether the head is built from text prompts (--prompts applies)
    memory_format = "contiguous"  # its weights' layout, batches follow (set by teachers.ready: channels_last)
    weights_sha256: str | None = None  # its weights as built, before any adaptation (set by teachers.ready)

    def __init__(self, name: str, transform: Callable, mean: Sequence[float], std: Sequence[float],
                 feature_dim: int) -> None:
        super().__init__()
        self.name = name
        self.transform = transform
        self.feature_dim = feature_dim
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.classes: list[int] = []
        self.class_names: list[str] = []  # names of the evaluated classes, for methods that build prompts (TPT)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def transform_for(self, stored: int | None) -> Callable[[Image.Image], torch.Tensor]:
        """The preprocessing for a suite whose images are stored as ``stored`` x ``stored`` centre crops (None: any
        size): the teacher's own recipe, or ToTensor on stored crops (teachers/transforms.py says why)."""
        if stored is None or self.keeps_own_preprocessing or not isinstance(self.transform, PixelTransform):
            return self.transform
        return StoredCrop(stored, self.transform.size, self.transform.interpolation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_dense(self, x: torch.Tensor) -> torch.Tensor | None:
        """(B, D', h, w) patch features where the backbone has a grid; None otherwise."""
        return None

    def head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def set_classes(self, space: LabelSpace, classes: Sequence[int],
                    prompts: Sequence[str] | Sequence[Sequence[str]] = ("a photo of a {}.",)) -> None:
        """Prepare the head for the evaluated classes (indices into ``space``); called once per run.
        ``prompts``: templates with one ``{}`` for every class, or per class the texts a CLIP head averages."""
        self.classes = list(classes)
        self.class_names = [space.names[c] for c in self.classes]
        if all(isinstance(p, str) for p in prompts):
            prompts = [[t.format(space.names[c]) for t in prompts] for c in self.classes]
        self._build_head(space, self.classes, prompts)

    def _build_head(self, space: LabelSpace, classes: list[int], prompts: Sequence[Sequence[str]]) -> None:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))


class LinearHeadTeacher(Teacher):
    """A classifier backbone with its own linear head (timm models, EfficientNet-Lite0, CIFAR ResNets)."""

    def __init__(self, name: str, backbone: Callable[[torch.Tensor], torch.Tensor], classifier: nn.Linear | None,
                 transform: Callable, mean: Sequence[float], std: Sequence[float], feature_dim: int,
                 label_space: str | None, modules: nn.Module) -> None:
        super().__init__(name, transform, mean, std, feature_dim)
        self.model = modules  # registered so .to(), .train() and parameters() reach every layer
        self._backbone = backbone
        self.classifier = classifier
        self.label_space = label_space
        self.register_buffer("_rows", torch.zeros(0, dtype=torch.long), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._backbone(self.normalize(x))

    def _build_head(self, space: LabelSpace, classes: list[int], prompts: Sequence[Sequence[str]]) -> None:
        if self.classifier is None:
            raise UserError(f"teacher {self.name} has no classification head: give one with --head FILE "
                            f"(a linear layer {self.feature_dim} -> {len(space)} as safetensors or a weights-only "
                            "torch file with 'weight' and 'bias')")
        if self.label_space is not None and self.label_space != space.name:
            raise UserError(f"teacher {self.name} classifies {self.label_space} classes, but the suite uses the "
                            f"{space.name} label space; pick a teacher trained on {space.name}")
        if self.classifier.out_features != len(space):
            raise UserError(f"teacher {self.name} has {self.classifier.out_features} outputs, the {space.name} "
                            f"label space has {len(space)} classes")
        self._rows = torch.tensor(classes, dtype=torch.long, device=self.classifier.weight.device)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        w, b = self.classifier.weight[self._rows], self.classifier.bias
        return nn.functional.linear(features, w, None if b is None else b[self._rows])
