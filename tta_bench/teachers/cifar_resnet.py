"""The CIFAR ResNets of He et al. (2016): ResNet-20/56 with option-A shortcuts, written from the paper's
facts so the real CIFAR-10 checkpoints (akamaster/pytorch_resnet_cifar10's release files, downloaded on first
use, or ``--weights resnet20-12fca82f.th``) load by key name."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..downloads import teacher_weights
from ..errors import UserError
from .base import LinearHeadTeacher, pixel_transform
from .checkpoints import load_state_dict

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if stride != 1 or inplanes != planes else 0

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pad:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))  # option A: no parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes = [16, 32, 64]
        inplanes = 16
        for i, p in enumerate(planes):
            blocks = [BasicBlock(inplanes if j == 0 else p, p, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = p
        self.linear = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def build_cifar_resnet(depth: int, weights: str | None) -> LinearHeadTeacher:
    """Weights from --weights, else the published release file (downloaded once into the cache, hash-checked)."""
    if weights is None:
        weights = str(teacher_weights(f"cifar-resnet{depth}"))
    model = CifarResNet(depth)
    try:
        model.load_state_dict(load_state_dict(weights))
    except RuntimeError as exc:
        raise UserError(f"{weights} does not fit cifar-resnet{depth}: {str(exc).splitlines()[0]}") from None
    return LinearHeadTeacher(f"cifar-resnet{depth}", model.features, model.linear, pixel_transform(32),
                             IMAGENET_MEAN, IMAGENET_STD, 64, "cifar10", model)


def build_resnet20(arg: str = "", weights: str | None = None, **_: object) -> LinearHeadTeacher:
    """cifar-resnet20: ResNet-20, the release weights or a --weights file."""
    return build_cifar_resnet(20, weights)


def build_resnet56(arg: str = "", weights: str | None = None, **_: object) -> LinearHeadTeacher:
    """cifar-resnet56: ResNet-56, the release weights or a --weights file."""
    return build_cifar_resnet(56, weights)
