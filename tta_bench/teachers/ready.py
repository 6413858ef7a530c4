"""A teacher made ready to classify, the one way: built from its name, fingerprinted where asked, frozen (eval mode,
no gradients), moved to the device, in the memory layout that suits it there, its head set for the evaluated classes.

The engine, CCC's calibration, the islands command and the tests all get their teachers here, so that they classify
with the same model in the same state.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..config import RunConfig
from ..data.ccc.calibration import Calibrator
from ..data.labels import LabelSpace, label_space
from ..data.labels.prompts import class_prompts
from ..data.suites import SUITES
from ..device import pick_device
from ..provenance import weights_sha256
from . import build_teacher, memory_format
from .base import Teacher


def ready_teacher(spec: str, device: torch.device, space: LabelSpace | None = None,
                  classes: Sequence[int] | None = None, prompts: Sequence | None = None, weights: str | None = None,
                  head: str | None = None, *, layout: bool = False, fingerprint: bool = False) -> Teacher:
    """The teacher ``spec`` on ``device``, frozen. ``space``: its head classifies ``classes`` of that label space (all
    of them by default; ``prompts`` for a CLIP head); without it the head is left unset (feature-only use).
    ``layout``: channels_last where it measured faster (the engine's runs; ``teacher.memory_format`` says which).
    ``fingerprint``: ``teacher.weights_sha256`` hashes the weights as built, before anything can change them."""
    teacher = build_teacher(spec, weights, head, len(space) if space is not None else 1000)
    if fingerprint:
        teacher.weights_sha256 = weights_sha256(teacher)
    teacher = teacher.to(device).eval().requires_grad_(False)
    if layout:
        teacher.memory_format = memory_format.apply(teacher, device)
    if space is not None:
        chosen = list(range(len(space))) if classes is None else classes
        if prompts is None:
            teacher.set_classes(space, chosen)
        else:
            teacher.set_classes(space, chosen, prompts)
    return teacher


def image_classifier(teacher: Teacher, device: torch.device) -> Callable[[list[np.ndarray]], list[int]]:
    """uint8 HWC images -> the teacher's top-1 (indices into its evaluated classes), preprocessed as the teacher
    preprocesses; what CCC calibrates its walks on."""

    def classify(images: list[np.ndarray]) -> list[int]:
        x = torch.stack([teacher.transform(Image.fromarray(image)) for image in images]).to(device)
        with torch.no_grad():
            return teacher(x).argmax(1).tolist()

    return classify


def ccc_calibrator(cfg: RunConfig, prompts: str) -> Calibrator:
    """The run's teacher (its weights, head and prompts ``prompts``), as the model a CCC stream is calibrated on; it
    is built only when a cell of the accuracy matrix has to be measured."""

    def classifier() -> Callable[[list[np.ndarray]], list[int]]:
        space = label_space(SUITES.get(cfg.suite).labels)
        classes = range(len(space))
        device = pick_device(cfg.device)
        teacher = ready_teacher(cfg.teacher, device, space, classes, class_prompts(prompts, space, classes),
                                cfg.weights, cfg.head)
        return image_classifier(teacher, device)

    return Calibrator(prompts, classifier)
