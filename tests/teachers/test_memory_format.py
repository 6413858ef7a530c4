"""channels_last for convolutional teachers on the CPU: chosen for CNNs only, and the same predictions."""
from __future__ import annotations

import torch

from tta_bench.teachers import build_teacher, memory_format

CPU = torch.device("cpu")


def test_cnns_on_the_cpu_get_channels_last_and_transformers_do_not():
    cnn, vit = build_teacher("tiny"), build_teacher("tiny-clip")
    assert memory_format.is_convolutional(cnn) and not memory_format.is_convolutional(vit)
    assert memory_format.choose(cnn, CPU) == "channels_last"
    assert memory_format.choose(vit, CPU) == "contiguous"
    assert memory_format.choose(cnn, torch.device("cuda")) == "contiguous"  # cuDNN picks its own layout


def test_channels_last_predicts_what_nchw_predicts():
    reference = build_teacher("tiny").eval()
    converted = build_teacher("tiny").eval()
    assert memory_format.apply(converted, CPU) == "channels_last"
    conv = next(m for m in converted.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.classifier(reference.encode(images))
        got = converted.classifier(converted.encode(memory_format.batch(images, "channels_last")))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
