"""shot_im: the information-maximisation loss, the feature extractor trains while the head stays bitwise, the loss
falls, bitwise reset, and that it learns where BN statistics matter."""
import math

import torch

from tests.conftest import needs_shared
from tests.methods.conftest import CPU, changed, images, real_cifar_c, state, teacher
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.shot_im import information_maximisation

HEAD = {"classifier.weight", "classifier.bias"}
RUNNING_STATS = {f"body.{i}.{k}" for i in (1, 4) for k in ("running_mean", "running_var", "num_batches_tracked")}


def shot(t=None, **options):
    return build_method("shot_im", t or teacher("tiny"), options, CPU)


def predict(method, x: torch.Tensor):
    return method.predict(Batch(x, list(range(len(x)))))


def test_the_loss_is_mean_entropy_minus_the_entropy_of_the_mean():
    confident_same = torch.tensor([[20.0, 0.0], [20.0, 0.0]])  # certain, not diverse: 0 - 0
    confident_diverse = torch.tensor([[20.0, 0.0], [0.0, 20.0]])  # certain and diverse: 0 - ln 2
    unsure = torch.zeros(2, 2)  # ln 2 - ln 2
    assert abs(information_maximisation(confident_same, 1e-5).item()) < 1e-3
    assert abs(information_maximisation(confident_diverse, 1e-5).item() + math.log(2)) < 1e-3
    assert abs(information_maximisation(unsure, 1e-5).item()) < 1e-3


def test_the_feature_extractor_trains_and_the_head_stays_bitwise():
    t = teacher("tiny")
    with torch.no_grad():
        t.classifier.weight.mul_(20)  # the random head's logits are nearly flat: spread them so the loss has a slope
    before = state(t.model)
    method = shot(t, lr=0.01)
    assert {n for n, p in t.model.named_parameters() if p.requires_grad} == set(dict(t.model.named_parameters())) - HEAD
    x = images(16, 32)
    losses = [information_maximisation(predict(method, x).logits, 1e-5).item() for _ in range(5)]
    assert losses[-1] < losses[0] - 0.1 and all(b < a for a, b in zip(losses, losses[1:]))
    moved = changed(before, t.model)
    assert {"body.0.weight", "body.3.weight", "body.1.weight", "body.4.weight"} <= moved
    assert not moved & (HEAD | RUNNING_STATS)


def test_reset_restores_model_and_optimizer_bitwise():
    t = teacher("tiny")
    method = shot(t, lr=0.05)
    before, x = state(t), images(8, 32)
    first, second = predict(method, x).logits, predict(method, x).logits
    assert not torch.equal(first, second) and method.optimizer.state
    method.reset()
    assert changed(before, t) == set() and not method.optimizer.state
    assert torch.equal(predict(method, x).logits, first)
    assert torch.equal(predict(method, x).logits, second)


def test_official_optimiser_settings():
    o = shot().optimizer.defaults
    assert (o["lr"], o["momentum"], o["nesterov"], o["weight_decay"]) == (0.001, 0.9, True, 0.001)


@needs_shared
def test_it_learns_where_batch_statistics_matter(tmp_path, real_source_top1):
    """ResNet-20 on CIFAR-10-C gaussian noise 5 (200 images, batch 50, SHOT's SGD settings)."""
    adapted = real_cifar_c(tmp_path, "shot_im")
    assert adapted["mean_top1"] > real_source_top1 + 20
