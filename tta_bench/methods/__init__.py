"""Method registry: one file per method, one line here."""
from __future__ import annotations

from typing import Any

import torch

from ..registry import Registry
from ..teachers.base import Teacher
from .base import Method
from .source import Source

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("source", "the frozen teacher, no adaptation (zero-shot CLIP for CLIP teachers)")(Source)


def build_method(name: str, teacher: Teacher, options: dict[str, Any], device: torch.device) -> Method:
    cls = METHODS.get(name)
    return cls(teacher, cls.parse_options(options), device)
