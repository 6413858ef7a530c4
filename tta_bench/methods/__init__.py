"""Method registry: one file per method, one line here."""
from __future__ import annotations

from typing import Any

import torch

from ..registry import Registry
from ..teachers.base import Teacher
from .apm import APM
from .base import Method
from .bn_adapt import BNAdapt
from .cotta import Cotta
from .eata import Eata
from .lame import Lame
from .memo import Memo
from .rotta import Rotta
from .sar import Sar
from .shot_im import ShotIm
from .source import Source
from .tda import Tda
from .tent import Tent
from .tpt import Tpt
from .zero import Zero

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("source", "the frozen teacher, no adaptation (zero-shot CLIP for CLIP teachers)")(Source)
METHODS.register("bn_adapt", "BatchNorm adaptation: normalise with test-batch statistics, no gradient")(BNAdapt)
METHODS.register("tent", "TENT: entropy minimisation on norm-layer scale/shift, online, Adam lr 1e-3")(Tent)
METHODS.register("memo", "MEMO: per sample, marginal entropy over 64 AugMix views, 1 SGD step on all weights")(Memo)
METHODS.register("tpt", "TPT (CLIP only): per sample, tune 4 prompt context tokens on the 6 most confident of 64 "
                 "views")(Tpt)
METHODS.register("tda", "TDA (CLIP only): training-free positive/negative caches of confident test features, online, "
                 "no backpropagation")(Tda)
METHODS.register("zero", "ZERO (CLIP only): per sample, majority vote of the argmax of the 30% most confident of 64 "
                 "views, no optimisation")(Zero)
METHODS.register("apm", "Asynchronous Perception Machine: a fresh student per sample distils the teacher's feature, "
                 "then classifies with the teacher's head (--opt preset=cpu|paper)")(APM)
METHODS.register("eata", "EATA: TENT on reliable, non-redundant samples, weighted, plus a Fisher anti-forgetting "
                 "term from clean source images")(Eata)
METHODS.register("sar", "SAR: reliable-entropy minimisation with a sharpness-aware (SAM) step and model recovery")(Sar)
METHODS.register("cotta", "CoTTA: mean teacher with augmentation-averaged pseudo-labels, all weights, stochastic "
                 "restore")(Cotta)
METHODS.register("rotta", "RoTTA: robust BN, category-balanced memory bank with timeliness, mean teacher")(Rotta)
METHODS.register("lame", "LAME: training-free Laplacian adjustment of a batch's predictions over a kNN/RBF "
                 "feature affinity")(Lame)
METHODS.register("shot_im", "SHOT-IM: entropy minus diversity, online, on the feature extractor (head "
                 "frozen)")(ShotIm)


def build_method(name: str, teacher: Teacher, options: dict[str, Any], device: torch.device) -> Method:
    cls = METHODS.get(name)
    return cls(teacher, cls.build_options(options, teacher, device), device)
