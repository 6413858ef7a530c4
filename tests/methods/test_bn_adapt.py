"""bn_adapt: test-batch statistics, no parameter or buffer ever changes, and only BN methods accept it."""
import copy
import json
from pathlib import Path

import pytest
import torch

from tests.methods.conftest import CPU, changed, images, state, teacher
from tta_bench import engine
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.common import batch_norm_layers
from tta_bench.vocabulary import SUMMARY


def predict(method, x: torch.Tensor) -> torch.Tensor:
    return method.predict(Batch(x, list(range(len(x))))).logits


def test_a_sample_prediction_depends_on_its_batch_under_bn_adapt_but_not_under_source():
    x, others = images(4, 32), images(3, 32, seed=1)
    mixed = torch.cat([x[:1], others])
    adapted = build_method("bn_adapt", teacher("tiny"), {}, CPU)
    source = build_method("source", teacher("tiny"), {}, CPU)
    assert not torch.allclose(predict(adapted, x)[0], predict(adapted, mixed)[0], atol=1e-4)
    assert torch.equal(predict(source, x)[0], predict(source, mixed)[0])


def test_bn_adapt_normalises_with_batch_statistics_and_keeps_every_tensor_bitwise():
    t = teacher("tiny")
    reference = copy.deepcopy(t).train()  # plain train mode: batch statistics (and updates its own buffers)
    before = state(t)
    method = build_method("bn_adapt", t, {}, CPU)
    x = images(8, 32)
    for _ in range(3):
        out = predict(method, x)
    torch.testing.assert_close(out, reference(x))
    assert changed(before, t) == set()  # running means/variances and batch counters untouched
    assert all(layer.training for layer in batch_norm_layers(t))
    assert not t.model["classifier"].training


def test_bn_adapt_refuses_teachers_without_batch_norm():
    with pytest.raises(UserError, match="BatchNorm"):
        build_method("bn_adapt", teacher("tiny-clip"), {}, CPU)


def test_bn_adapt_end_to_end_records_its_options(cifar_run):
    summary = engine.run(cifar_run(method="bn_adapt"), progress=False, log=lambda *_: None)
    assert summary["method_options"] == {"steps": 0, "lr": 0.0, "reset": "online"}
    assert summary["data"]["n_samples"] == 8
    saved = json.loads((Path(cifar_run().out) / SUMMARY).read_text())
    assert saved["method"] == "bn_adapt"
