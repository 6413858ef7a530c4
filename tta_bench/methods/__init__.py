"""Method registry: one file per method, one line here (imported on first use, so listing stays torch-free).

Each method's file names the official code it follows; this registry is tta_bench's own (timm / open_clip style).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:
    import torch

    from ..teachers.base import Teacher
    from .base import Method
    from .options import Options

METHODS: Registry[type[Method]] = Registry("method")
METHODS.lazy("source", "tta_bench.methods.source:Source",
             "the frozen teacher, no adaptation (zero-shot CLIP for CLIP teachers)",
             accepts="any teacher (CLIP: zero-shot)")
METHODS.lazy("bn_adapt", "tta_bench.methods.bn_adapt:BNAdapt",
             "BatchNorm adaptation: normalise with test-batch statistics, no gradient",
             accepts="classifiers with BatchNorm (it needs BN layers: their statistics are what it adapts)")
METHODS.lazy("tent", "tta_bench.methods.tent:Tent",
             "TENT: entropy minimisation on norm-layer scale/shift, online; CIFAR: Adam lr 1e-3, ImageNet: SGD lr "
             "0.00025",
             accepts="classifiers with BatchNorm, LayerNorm or GroupNorm (CNNs, ViTs, CLIP image encoders)")
METHODS.lazy("memo", "tta_bench.methods.memo:Memo",
             "MEMO: per sample, marginal entropy over 64 AugMix views, 1 SGD step on all weights",
             accepts="any classifier (trains every weight; the BN prior where it has BatchNorm)")
METHODS.lazy("tpt", "tta_bench.methods.tpt:Tpt",
             "TPT (CLIP only): per sample, tune 4 prompt context tokens on the 6 most confident of 64 views",
             accepts="CLIP only (it tunes the text prompt)")
METHODS.lazy("tda", "tta_bench.methods.tda:Tda",
             "TDA (CLIP only): training-free positive/negative caches of confident test features, online, no "
             "backpropagation",
             accepts="CLIP only (its caches hold CLIP image features beside the text head)")
METHODS.lazy("zero", "tta_bench.methods.zero:Zero",
             "ZERO (CLIP only): per sample, votes of the 30% most confident of 64 views at a zero temperature "
             "(float16's epsilon, as the official code), no optimisation",
             accepts="CLIP only (it votes over zero-shot predictions)")
METHODS.lazy("apm", "tta_bench.methods.apm:APM",
             "Asynchronous Perception Machine: a fresh student per sample distils the teacher's feature, then "
             "classifies with the teacher's head (--apm-preset auto|cpu|paper)",
             accepts="any classifier (dense terms: a teacher with a patch grid, dino:...)")
METHODS.lazy("eata", "tta_bench.methods.eata:Eata",
             "EATA: TENT on reliable, non-redundant samples, weighted, plus a Fisher anti-forgetting term from "
             "clean source images",
             accepts="classifiers with BatchNorm, LayerNorm or GroupNorm (CNNs, ViTs, CLIP image encoders)")
METHODS.lazy("sar", "tta_bench.methods.sar:Sar",
             "SAR: reliable-entropy minimisation with a sharpness-aware (SAM) step and model recovery",
             accepts="classifiers with BatchNorm, LayerNorm or GroupNorm (CNNs, ViTs, CLIP image encoders)")
METHODS.lazy("cotta", "tta_bench.methods.cotta:Cotta",
             "CoTTA: mean teacher with augmentation-averaged pseudo-labels, all weights, stochastic restore",
             accepts="any classifier (trains every weight; BN layers use test-batch statistics)")
METHODS.lazy("rotta", "tta_bench.methods.rotta:Rotta",
             "RoTTA: robust BN, category-balanced memory bank with timeliness, mean teacher",
             accepts="classifiers with BatchNorm (robust BN replaces those layers)")
METHODS.lazy("lame", "tta_bench.methods.lame:Lame",
             "LAME: training-free Laplacian adjustment of a batch's predictions over a kNN/RBF feature affinity",
             accepts="any classifier (its global feature and head; nothing is trained)")
METHODS.lazy("shot_im", "tta_bench.methods.shot_im:ShotIm",
             "SHOT-IM as the LAME benchmark runs it online: entropy minus diversity on the BN scale and shift, then "
             "the batch predicted with the source statistics",
             accepts="classifiers with BatchNorm, LayerNorm or GroupNorm (their scale and shift train)")


def build_method(name: str, teacher: Teacher, options: Options | dict[str, Any], device: torch.device) -> Method:
    """Method ``name`` on a ready teacher; ``options`` as validated while the run was prepared, or given as a
    mapping (validated here)."""
    cls = METHODS.get(name)
    if not isinstance(options, cls.options_class):
        options = cls.build_options(dict(options), teacher.name, device)
    return cls(teacher, options, device)
