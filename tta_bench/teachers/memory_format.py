"""channels_last memory format for convolutional teachers on the CPU, where it measured faster.

oneDNN's convolutions run on NHWC data; a model in PyTorch's default NCHW layout pays a reorder around every
convolution. EfficientNet-Lite0 on 64 images on this project's 2-core CPU: forward 2.35 s NCHW vs 1.22 s
channels_last (issue 16; benchmarks/channels_last.py measures it on the README's runs). On CUDA the engine leaves
the layout alone (cuDNN picks its own), and so it does for transformers (a ViT has one convolution, the patch
embedding). The format changes the order of floating-point sums inside a convolution, not what is computed:
predictions agree with NCHW up to float rounding, and the summary records which one ran.
"""
from __future__ import annotations

import torch
from torch import nn

CHANNELS_LAST, CONTIGUOUS = "channels_last", "contiguous"
FORMATS = {CHANNELS_LAST: torch.channels_last, CONTIGUOUS: torch.contiguous_format}
override: str | None = None  # benchmarks set CONTIGUOUS or CHANNELS_LAST to compare the two on the same run


def is_convolutional(model: nn.Module) -> bool:
    """More than one 2-D convolution: a CNN, not a transformer with a convolutional patch embedding."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def choose(model: nn.Module, device: torch.device) -> str:
    if override is not None:
        return override
    return CHANNELS_LAST if device.type == "cpu" and is_convolutional(model) else CONTIGUOUS


def apply(model: nn.Module, device: torch.device) -> str:
    """Put the model's 4-D weights in the chosen layout; returns its name (batches follow with ``batch``)."""
    name = choose(model, device)
    if name == CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
    return name


def batch(images: torch.Tensor, name: str) -> torch.Tensor:
    return images.contiguous(memory_format=FORMATS[name]) if images.dim() == 4 else images
