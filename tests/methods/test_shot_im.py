"""shot_im as fiveai/LAME runs it online: the information-maximisation loss, only BN affine parameters train, the
loss falls, the prediction after the update with the source statistics, bitwise reset, the LAME optimiser."""
import math

import torch

from tests.methods.conftest import CPU, changed, images, state, teacher
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.defaults import resolve
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


def test_only_the_bn_affine_parameters_train_and_the_running_statistics_stay_the_sources():
    """fiveai/LAME configs/method/best/Shot: PARAMS2ADAPT all-BN, BN momentum 0 (not SHOT's every-weight recipe)."""
    t = teacher("tiny")
    with torch.no_grad():
        t.classifier.weight.mul_(20)  # the random head's logits are nearly flat: spread them so the loss has a slope
    before = state(t.model)
    method = shot(t, lr=0.05)
    trained = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert trained == {f"body.{i}.{k}" for i in (1, 4) for k in ("weight", "bias")}
    x = images(16, 32)
    for _ in range(3):
        predict(method, x)
    moved = changed(before, t.model)
    assert {"body.1.weight", "body.4.bias"} <= moved and not moved & (HEAD | RUNNING_STATS | {"body.0.weight"})


def test_the_loss_falls_over_repeated_updates():
    t = teacher("tiny")
    with torch.no_grad():
        t.classifier.weight.mul_(20)
    method, x = shot(t, lr=0.2), images(16, 32)
    losses = []
    for _ in range(5):
        with torch.no_grad():  # the loss the update minimises: BN layers on the batch's statistics
            losses.append(information_maximisation(t(x), 1e-10).item())
        predict(method, x)
    assert losses[-1] < losses[0] - 0.08 and all(b < a for a, b in zip(losses, losses[1:]))


def test_the_batch_is_predicted_after_the_update_with_the_source_statistics():
    """inference_context: the prediction is a second forward in eval mode (running statistics, the source's under
    BN momentum 0), after the batch's update; not the training-mode forward that computed the loss."""
    t = teacher("tiny")
    method, x = shot(t, lr=0.05), images(8, 32)
    logits = predict(method, x).logits
    assert all(layer.training for layer in method.norms)  # back in training mode for the next update
    t.eval()
    with torch.no_grad():
        expected = t(x)
    assert torch.equal(logits, expected)


def test_reset_restores_model_and_optimizer_bitwise():
    t = teacher("tiny")
    method = shot(t, lr=0.05)
    before, x = state(t), images(8, 32)
    first, second = predict(method, x).logits, predict(method, x).logits
    assert not torch.equal(first, second)
    method.reset()
    assert changed(before, t) == set()
    assert torch.equal(predict(method, x).logits, first)
    assert torch.equal(predict(method, x).logits, second)


def test_the_lame_benchmarks_optimiser_and_batch_size():
    o = shot().optimizer.defaults
    assert (o["lr"], o["momentum"], o["nesterov"], o["weight_decay"]) == (0.001, 0.0, False, 0.0001)
    assert shot().options.epsilon == 1e-10
    for family in ("cifar10", "imagenet", "fine-grained"):
        assert resolve("shot_im", family, None, {}).batch_size == 16
