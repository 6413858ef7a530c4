"""Device and arithmetic policy: which device a run uses, in which precision, and the region every ``predict`` runs in.

Low level (torch and the closed sets of choices only), so that the engine, CCC's calibration, the islands command,
benchmarks and tests pick devices and precisions the same way.
"""
from __future__ import annotations

import resource
from contextlib import nullcontext
from typing import ContextManager

import torch

from .choices import DEVICES, Device, Precision
from .errors import UserError


def pick_device(name: Device | str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA where torch sees it (the process's own GPU under torchrun), else the CPU."""
    if name not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device (use --device cpu or auto)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def resolve_precision(asked: Precision | str, method_precision: str, device: torch.device) -> str:
    """``auto``: the method's own precision (its reference code's) on CUDA, float32 on the CPU (bf16 is slow there)."""
    if asked != "auto":
        return asked
    return method_precision if device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str = "bf16") -> ContextManager:
    """The region every ``predict`` runs in: bf16 autocast, or float32 (on CUDA without TF32, which cuDNN uses for
    convolutions by default: its 10-bit mantissa would make "fp32" a third precision)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return ExactFloat32() if device.type == "cuda" else nullcontext()


class ExactFloat32:
    """TF32 off for matrix products and convolutions inside the block (re-enterable: the engine enters it per batch)."""

    def __enter__(self) -> None:
        self.flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.flags


def peak_memory_mb(device: torch.device) -> float:
    """The most memory this process held: allocated GPU memory on CUDA, resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def planned_device(name: Device | str) -> torch.device:
    """The device type a run of ``--device name`` will use, without checking that it is there (a dry run of a CUDA
    configuration on a laptop plans it as CUDA)."""
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
