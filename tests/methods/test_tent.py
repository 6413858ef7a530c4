"""tent: entropy falls, only norm-layer scale/shift move (BN; LayerNorm on a ViT), reset is bitwise."""
import pytest
import torch

from tests.methods.conftest import CPU, changed, images, state, teacher
from tta_bench import engine
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.common import entropy, norm_layers

BN_AFFINE = {"body.1.weight", "body.1.bias", "body.4.weight", "body.4.bias"}  # the tiny teacher's BN layers


def predict(method, x: torch.Tensor) -> torch.Tensor:
    return method.predict(Batch(x, list(range(len(x))))).logits


def test_entropy_matches_its_definition():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    torch.testing.assert_close(entropy(logits), torch.tensor([torch.log(torch.tensor(2.0)).item(), 0.0]), atol=1e-6, rtol=0)


def test_entropy_falls_on_a_fixed_batch():
    method = build_method("tent", teacher("tiny"), {"lr": 1e-2}, CPU)
    x = images(16, 32)
    losses = [entropy(predict(method, x)).mean().item() for _ in range(6)]
    assert losses[-1] < losses[0] - 1e-3
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))


def test_only_batch_norm_scale_and_shift_change():
    t = teacher("tiny")
    before = state(t.model)
    method = build_method("tent", t, {}, CPU)
    trainable = {name for name, p in t.model.named_parameters() if p.requires_grad}
    assert trainable == BN_AFFINE
    for seed in range(3):
        predict(method, images(8, 32, seed))
    assert changed(before, t.model) == BN_AFFINE  # running stats, convs, head: bitwise


def test_first_prediction_is_the_forward_before_the_update():
    x = images(8, 32)
    tent = predict(build_method("tent", teacher("tiny"), {}, CPU), x)
    torch.testing.assert_close(tent, predict(build_method("bn_adapt", teacher("tiny"), {}, CPU), x))


def test_reset_restores_model_and_optimizer_bitwise():
    t = teacher("tiny")
    method = build_method("tent", t, {}, CPU)
    before, x = state(t), images(8, 32)
    first = predict(method, x)
    second = predict(method, x)
    assert not torch.equal(first, second) and method.optimizer.state
    method.reset()
    assert changed(before, t) == set() and not method.optimizer.state
    assert torch.equal(predict(method, x), first)
    assert torch.equal(predict(method, x), second)  # Adam moments were reset too


def test_defaults_options_and_errors():
    method = build_method("tent", teacher("tiny"), {}, CPU)
    o = method.options
    assert (o.steps, o.lr, o.reset, o.optimizer) == (1, 1e-3, "online", "adam")
    assert method.optimizer.defaults["betas"] == (0.9, 0.999)
    sgd = build_method("tent", teacher("tiny"), {"optimizer": "sgd", "lr": "0.00025"}, CPU)
    assert sgd.optimizer.defaults["momentum"] == 0.9 and sgd.optimizer.defaults["nesterov"]
    assert sgd.options.lr == 0.00025
    with pytest.raises(UserError, match="optimizer must be one of adam, adamw, sgd"):
        build_method("tent", teacher("tiny"), {"optimizer": "lbfgs"}, CPU)
    no_affine = teacher("tiny")
    for layer in norm_layers(no_affine):
        layer.weight = layer.bias = None
    with pytest.raises(UserError, match="normalisation layers"):
        build_method("tent", no_affine, {}, CPU)


def test_on_a_vision_transformer_tent_trains_layernorm_scale_and_shift_only():
    """As the unified benchmark's configure_model: LayerNorm/GroupNorm affine parameters train, nothing else."""
    t = teacher("tiny-clip")
    names = {n for n, m in t.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    method = build_method("tent", t, {"lr": 0.05}, CPU)
    trainable = {n.rsplit(".", 1)[0] for n, p in t.named_parameters() if p.requires_grad}
    assert trainable == names
    before = state(t)
    x = images(8, 64)
    first = entropy(method.predict(Batch(x, list(range(8)))).logits).mean()
    for _ in range(5):
        last = entropy(method.predict(Batch(x, list(range(8)))).logits).mean()
    assert last < first
    moved = {k.rsplit(".", 1)[0] for k in changed(before, t)}
    assert moved and moved <= names


def test_tent_end_to_end(cifar_run):
    summary = engine.run(cifar_run(method="tent"), progress=False, log=lambda *_: None)
    assert summary["method_options"] == {"steps": 1, "lr": 1e-3, "reset": "online", "optimizer": "adam",
                                         "momentum": 0.9, "nesterov": True, "weight_decay": 0.0}
    assert summary["cost"]["adaptation_steps"] == 2  # 8 samples in batches of 4, one step each
