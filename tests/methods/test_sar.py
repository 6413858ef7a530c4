"""sar: the reliable filter and the sharpness-aware step against a hand computation, model recovery, the official
choice of trained layers, bitwise reset, and that it learns where BN statistics matter."""
import math

import pytest
import torch
from torch import nn

from tests.conftest import needs_shared
from tests.methods.conftest import CPU, changed, images, real_cifar_c, state, teacher
from tta_bench.data.labels import label_space
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.common import entropy
from tta_bench.methods.sar import is_top_layer
from tta_bench.teachers.base import LinearHeadTeacher, pixel_transform

BN_AFFINE = {"body.1.weight", "body.1.bias", "body.4.weight", "body.4.bias"}


def sar(t=None, **options):
    return build_method("sar", t or teacher("tiny"), options, CPU)


def predict(method, x: torch.Tensor):
    return method.predict(Batch(x, list(range(len(x)))))


def test_one_step_is_sam_on_the_reliable_samples_computed_by_hand():
    """Half the batch is reliable (margin at the median entropy); the update is SGD with the gradient of the mean
    entropy of the still-reliable samples, taken at theta + rho g / ||g||, g from the first forward's reliable ones."""
    x = images(16, 32)
    reference = teacher("tiny")
    method = sar(teacher("tiny"), lr=0.5, rho=0.5)
    ref = build_method("sar", reference, {}, CPU)  # the same configuration: batch statistics, trainable BN affine
    params = ref.params
    h = entropy(reference(x)).detach()
    method.e_margin = ref.e_margin = float(h.median())  # reliable: strictly below the median entropy
    reliable = h < ref.e_margin
    assert 0 < int(reliable.sum()) < 16
    g = torch.autograd.grad(entropy(reference(x))[reliable].mean(), params)
    norm = torch.norm(torch.stack([gi.norm() for gi in g]))
    theta = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, gi in zip(params, g):
            p.add_(0.5 * gi / (norm + 1e-12))
    second = entropy(reference(x))[reliable]
    g2 = torch.autograd.grad(second[second < ref.e_margin].mean(), params)
    predict(method, x)
    for p, t0, gi in zip(method.params, theta, g2):
        torch.testing.assert_close(p.detach(), t0 - 0.5 * gi)  # SGD's first step: momentum buffer = gradient


def test_without_reliable_samples_nothing_moves_and_no_loss_is_recorded():
    t = teacher("tiny")
    method = sar(t, e_margin=0.001)
    before = state(t)
    predict(method, images(8, 32))
    assert changed(before, t) == set() and method.ema is None


def test_model_recovery_restores_the_source_weights_when_the_loss_average_falls_below_the_threshold():
    t = teacher("tiny")
    before, x = state(t), images(8, 32)
    method = sar(t, e_margin=1.0, reset_constant=100.0, lr=0.1, recovery_ema="clear")  # any loss is "collapsed"
    predict(method, x)
    assert method.recoveries == 1 and method.ema is None
    assert changed(before, t) == set() and not method.optimizer.state
    steady = sar(teacher("tiny"), e_margin=1.0, reset_constant=0.0, lr=0.1)
    predict(steady, x)
    assert steady.recoveries == 0 and steady.ema is not None and steady.ema > 0


def test_after_a_recovery_sar_keeps_the_low_average_and_the_unified_benchmark_clears_it():
    """mr-eggplant/SAR sar.py: SAR.forward stores the step's moving average after reset() cleared it, so the next
    step recovers again; mariodoebler/test-time-adaptation methods/sar.py: reset() inside the step clears it."""
    x = images(8, 32)
    official = sar(e_margin=1.0, reset_constant=100.0, lr=0.1)
    assert official.options.recovery_ema == "keep"
    predict(official, x)
    low = official.ema
    assert official.recoveries == 1 and low is not None and low < 100.0
    predict(official, x)
    assert official.recoveries == 2 and official.ema < 100.0
    unified = sar(e_margin=1.0, reset_constant=100.0, lr=0.1, recovery_ema="clear")
    predict(unified, x)
    assert unified.recoveries == 1 and unified.ema is None
    official.reset()
    assert official.ema is None  # a reset by the engine clears it in both
    from tta_bench.methods.defaults import resolve

    assert resolve("sar", "cifar10", None, {}).options["recovery_ema"] == "clear"
    assert resolve("sar", "imagenet", None, {}).options["recovery_ema"] == "keep"
    with pytest.raises(UserError, match="recovery_ema"):
        sar(recovery_ema="sometimes")


def test_the_recovery_average_is_the_official_moving_average():
    method = sar(e_margin=1.0, reset_constant=0.0, lr=1e-30)  # no movement (below float32 resolution): the same second loss every batch
    x = images(8, 32)
    predict(method, x)
    loss = method.ema
    predict(method, x)
    assert math.isclose(method.ema, 0.9 * loss + 0.1 * loss, rel_tol=1e-6)


def test_trains_norm_scale_and_shift_below_the_top_layers_as_the_official_collect_params():
    assert all(is_top_layer(n) for n in ("layer4.0.bn1", "blocks.9.norm1", "blocks.11.norm2", "norm", "x.norm.y"))
    assert not any(is_top_layer(n) for n in ("layer3.2.bn2", "blocks.1.norm1", "fc_norm", "bn1", "blocks.5.0.bn1"))
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    net = nn.ModuleDict({"layer3": body, "layer4": nn.BatchNorm1d(4), "head": nn.Linear(4, 10)})
    t = LinearHeadTeacher("two-stage", lambda x: net["layer4"](net["layer3"](x)), net["head"], pixel_transform(32),
                          (0.5,) * 3, (0.5,) * 3, 4, None, net).eval().requires_grad_(False)
    t.set_classes(label_space("cifar10"), range(10))
    method = sar(t)
    assert {n for n, p in t.model.named_parameters() if p.requires_grad} == {"layer3.1.weight", "layer3.1.bias"}
    assert len(method.params) == 2
    net.requires_grad_(False)
    assert len(sar(t, skip_top=False).params) == 4


def test_on_a_vision_transformer_sar_trains_layernorm_scale_and_shift():
    t = teacher("tiny-clip")
    layernorms = {n for n, m in t.named_modules() if isinstance(m, nn.LayerNorm)}
    method = sar(t, e_margin=1.0, lr=0.05)
    assert {n.rsplit(".", 1)[0] for n, p in t.named_parameters() if p.requires_grad} == layernorms
    before = state(t)
    predict(method, images(8, 64))
    moved = {k.rsplit(".", 1)[0] for k in changed(before, t)}
    assert moved and moved <= layernorms


def test_only_bn_scale_and_shift_change_and_reset_is_bitwise():
    t = teacher("tiny")
    before, x = state(t.model), images(8, 32)
    method = sar(t, e_margin=1.0, lr=0.05)
    first, second = predict(method, x), predict(method, x)
    assert first.teacher_forwards == 16 and first.adaptation_steps == 1
    assert changed(before, t.model) == BN_AFFINE
    method.reset()
    assert changed(before, t.model) == set() and not method.optimizer.state and method.ema is None
    assert torch.equal(predict(method, x).logits, first.logits)
    assert torch.equal(predict(method, x).logits, second.logits)


@needs_shared
def test_it_learns_where_batch_statistics_matter(tmp_path, real_source_top1):
    """ResNet-20 on CIFAR-10-C gaussian noise 5 (200 images, batch 50, the CIFAR defaults: SAM over SGD lr 1e-3)."""
    adapted = real_cifar_c(tmp_path, "sar")
    assert adapted["mean_top1"] > real_source_top1 + 20
