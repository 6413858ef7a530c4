"""Method registry: one file per method, one line here (imported on first use, so listing stays torch-free)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:
    import torch

    from ..teachers.base import Teacher
    from .base import Method

METHODS: Registry[type[Method]] = Registry("method")
METHODS.lazy("source", "tta_bench.methods.source:Source",
             "the frozen teacher, no adaptation (zero-shot CLIP for CLIP teachers)")
METHODS.lazy("bn_adapt", "tta_bench.methods.bn_adapt:BNAdapt",
             "BatchNorm adaptation: normalise with test-batch statistics, no gradient")
METHODS.lazy("tent", "tta_bench.methods.tent:Tent",
             "TENT: entropy minimisation on BatchNorm scale/shift, online, Adam lr 1e-3")
METHODS.lazy("memo", "tta_bench.methods.memo:Memo",
             "MEMO: per sample, marginal entropy over 64 AugMix views, 1 SGD step on all weights")
METHODS.lazy("tpt", "tta_bench.methods.tpt:Tpt",
             "TPT (CLIP only): per sample, tune 4 prompt context tokens on the 10% most confident of 64 views")
METHODS.lazy("apm", "tta_bench.methods.apm:APM",
             "Asynchronous Perception Machine: a fresh student per sample distils the teacher's feature, then "
             "classifies with the teacher's head (--opt preset=cpu|paper)")


def build_method(name: str, teacher: Teacher, options: dict[str, Any], device: torch.device) -> Method:
    cls = METHODS.get(name)
    return cls(teacher, cls.parse_options(options), device)
