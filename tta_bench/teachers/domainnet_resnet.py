"""The DomainNet-126 source models of AdaContrast and the unified TTA benchmark: a ResNet-50 whose last layer is a
256-wide bottleneck with BatchNorm, then a weight-normalised 126-way classifier.

Follows mariodoebler/test-time-adaptation classification/models/model.py ResNetDomainNet126 (bottleneck 256,
BatchNorm1d, weight norm over dim 0; checkpoint keys ``encoder.0.*`` (the ResNet, its ``fc`` the bottleneck),
``encoder.1.*`` (the BatchNorm), ``fc.weight_g`` / ``fc.weight_v`` / ``fc.bias``; "module." prefixes dropped) and
its test transform (datasets/data_loading.py get_transform: resize to 256 x 256, centre crop 224, ImageNet
normalisation inside the model). The weight-normalised classifier is folded into a plain linear layer at load
(w = g v / ||v||), which computes the same logits; the model itself is written here, not copied.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2 as T

from ..errors import UserError
from .base import LinearHeadTeacher
from .checkpoints import load_state_dict

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BOTTLENECK = 256
NUM_CLASSES = 126


def eval_transform() -> T.Compose:
    """Resize to a 256 x 256 square (aspect ratio not kept, as the reference), centre crop 224, [0, 1] floats."""
    return T.Compose([T.ToImage(), T.Resize((256, 256), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                      T.CenterCrop(224), T.ToDtype(torch.float32, scale=True)])


class DomainNetResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        resnet = resnet50(weights=None)
        resnet.fc = nn.Linear(resnet.fc.in_features, BOTTLENECK)
        self.encoder = nn.Sequential(resnet, nn.BatchNorm1d(BOTTLENECK))
        self.fc = nn.Linear(BOTTLENECK, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def fold_weight_norm(state: dict[str, torch.Tensor], prefix: str = "fc.") -> dict[str, torch.Tensor]:
    """``weight_g`` (out, 1) and ``weight_v`` (out, in) of torch's weight_norm(dim=0) -> the plain ``weight``."""
    if prefix + "weight_v" not in state:
        return state
    state = dict(state)
    g, v = state.pop(prefix + "weight_g"), state.pop(prefix + "weight_v")
    state[prefix + "weight"] = g * v / v.norm(dim=1, keepdim=True)
    return state


def build_domainnet_resnet(arg: str = "", weights: str | None = None, **_: object) -> LinearHeadTeacher:
    if weights is None:
        raise UserError("domainnet126-resnet50 needs a source-trained checkpoint: --weights PATH (e.g. AdaContrast's "
                        "best_real_2020.pth, as the unified TTA benchmark's ckpt/domainnet126/)")
    model = DomainNetResNet()
    state = fold_weight_norm(load_state_dict(weights))
    wanted = set(model.state_dict())
    missing = sorted(wanted - set(state))
    if missing:
        raise UserError(f"{weights} does not fit domainnet126-resnet50 (ResNet-50 + 256 bottleneck + BatchNorm + "
                        f"126-way classifier): missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    model.load_state_dict({k: v for k, v in state.items() if k in wanted})  # AdaContrast files carry extra keys
    return LinearHeadTeacher("domainnet126-resnet50", model.features, model.fc, eval_transform(), IMAGENET_MEAN,
                             IMAGENET_STD, BOTTLENECK, "domainnet126", model)
