"""tiny: a small randomly initialised CNN with BatchNorm, for fast tests of every method on any label space."""
from __future__ import annotations

import torch
from torch import nn

from .checkpoints import load_state_dict
from .base import LinearHeadTeacher, pixel_transform

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_tiny(arg: str = "", num_classes: int = 1000, weights: str | None = None, **_: object) -> LinearHeadTeacher:
    """tiny: random 3-layer CNN with BatchNorm (tests only; seeded, so every build is identical; --weights loads a
    state dict of its {body, classifier})."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    body = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    classifier = nn.Linear(32, num_classes)
    torch.random.set_rng_state(generator_state)
    modules = nn.ModuleDict({"body": body, "classifier": classifier})
    if weights:
        modules.load_state_dict(load_state_dict(weights))
    return LinearHeadTeacher("tiny", body, classifier, pixel_transform(32, resize=32), IMAGENET_MEAN, IMAGENET_STD,
                             32, None, modules)
