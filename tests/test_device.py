"""Device and precision policy: the device a run gets, the arithmetic it runs in, and the region around a batch."""
from __future__ import annotations

import pytest
import torch

from tta_bench.device import autocast, pick_device, planned_device, resolve_precision
from tta_bench.errors import UserError


@pytest.mark.parametrize("device, precision", [("cpu", "fp32"), ("cpu", "bf16"), ("cuda", "fp32")])
def test_the_precision_region_can_be_entered_once_per_batch(device, precision):
    """The engine builds the region once and enters it for every batch (a one-shot context manager broke the
    float32 CUDA runs); float32 on CUDA turns TF32 off inside and restores it after."""
    region = autocast(torch.device(device), precision)
    before = torch.backends.cudnn.allow_tf32
    for _ in range(3):
        with region:
            assert torch.is_autocast_enabled(device) == (precision == "bf16")
            if device == "cuda":
                assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32 == before


def test_devices_and_the_precision_auto_picks():
    assert pick_device("cpu") == torch.device("cpu") and planned_device("cpu").type == "cpu"
    with pytest.raises(UserError, match="--device must be one of auto, cpu, cuda, got 'gpu'"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu" and planned_device("cuda").type == "cuda"
        with pytest.raises(UserError, match="torch sees no CUDA device"):
            pick_device("cuda")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_precision("auto", "bf16", cuda) == "bf16" and resolve_precision("auto", "bf16", cpu) == "fp32"
    assert resolve_precision("fp32", "bf16", cuda) == "fp32"
