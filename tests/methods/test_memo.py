"""memo: marginal entropy, seeded views, every weight adapts but each sample starts from the teacher again."""
import copy
import math

import pytest
import torch

from tests.methods.conftest import CPU, changed, encoded_inputs, images, red_sided, state, teacher
from tta_bench import engine
from tta_bench.device import autocast
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods import augmix
from tta_bench.methods.common import entropy, marginal_entropy, seeded
from tta_bench.methods.memo import SourcePrior

FAST = {"n_views": 8}


def test_marginal_entropy_is_the_entropy_of_the_mean_softmax():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    mean = logits.softmax(-1).mean(0)
    torch.testing.assert_close(marginal_entropy(logits), -(mean * mean.log()).sum())
    torch.testing.assert_close(marginal_entropy(logits[:1].repeat(4, 1)), entropy(logits[:1])[0])
    assert math.isfinite(marginal_entropy(torch.tensor([[1e4, -1e4], [1e4, -1e4]])).item())


def test_views_are_memos_augmix_of_the_full_image_with_its_fill():
    """64 views per step drawn from Batch.raw (RandomResizedCrop of the whole picture, then AugMix with MEMO's
    fillcolor=128, which PIL paints (128, 0, 0)); the prediction itself is on the teacher's image."""
    t = teacher("tiny")
    method = build_method("memo", t, {"n_views": 64, "bn_prior": -1}, CPU)
    picture = red_sided(32)
    with encoded_inputs(t) as seen:
        method.predict(Batch(picture[None, :, :, 32:64] / 255, [0], raw=[picture]))
    views, image = seen[0], seen[-1]
    red = ((views[:, 0] > 0.9) & (views[:, 1] < 0.1)).flatten(1).any(1)
    assert len(views) == 64 and red.float().mean() > 0.3 and torch.equal(image, picture[None, :, :, 32:64] / 255)
    with seeded(0):
        plain = augmix.views(picture, 64, 32, mix=False)
    with seeded(0):
        mixed = augmix.views(picture, 64, 32, fill=augmix.MEMO_FILL)
    assert not torch.equal(plain, mixed)


def test_marginal_entropy_falls_and_every_weight_adapts_but_no_buffer():
    t = teacher("tiny")
    before = state(t.model)
    method = build_method("memo", t, {"lr": 0.5, "bn_prior": -1}, CPU)  # the random teacher is near uniform
    with seeded(0):
        views = augmix.views(images(1, 32)[0], 16, 32)
    losses = []
    for _ in range(4):
        with torch.no_grad():
            losses.append(marginal_entropy(t(views)).item())
        method.adapt([views])
    assert all(b < a for a, b in zip(losses, losses[1:]))
    params = {name for name, _ in t.model.named_parameters()}
    assert changed(before, t.model) == params  # all weights (MEMO adapts everything), no running statistic


def test_each_sample_is_adapted_alone_and_the_teacher_is_restored_bitwise():
    t = teacher("tiny")
    before = state(t.model)
    method = build_method("memo", t, FAST, CPU)
    x = images(3, 32)
    together = method.predict(Batch(x, [10, 11, 12])).logits
    assert changed(before, t.model) == set() and not method.optimizer.state
    alone = method.predict(Batch(x[1:2], [11])).logits
    torch.testing.assert_close(alone[0], together[1])
    source = build_method("source", teacher("tiny"), {}, CPU).predict(Batch(x, [0, 1, 2])).logits
    assert not torch.allclose(together, source, atol=1e-5)


def test_source_prior_mixes_statistics_and_puts_the_buffers_back():
    t = teacher("tiny")
    x = images(4, 32)
    before = state(t.model)
    with torch.no_grad():
        plain = t(x)
        with SourcePrior(t, 1.0):
            torch.testing.assert_close(t(x), plain)
        with SourcePrior(t, 16 / 17):
            mixed = t(x)
        reference = copy.deepcopy(t)
        with SourcePrior(reference, 0.0):  # pure batch statistics: what train mode does, up to n/(n-1) in var
            from_batch = reference(x)
        assert not torch.allclose(mixed, plain, atol=1e-5) and not torch.allclose(mixed, from_batch, atol=1e-5)
        torch.testing.assert_close(from_batch, copy.deepcopy(t).train()(x), atol=0.05, rtol=0.05)
    assert changed(before, t.model) == set()
    assert all(not m.training for m in t.modules())


def test_defaults_and_errors():
    """Without options a prediction is MEMO's ImageNet recipe: one SGD step (lr 0.00025, no momentum) on a batch of
    64 views, then the prediction on the image itself."""
    t = teacher("tiny")
    method = build_method("memo", t, {}, CPU)
    with encoded_inputs(t) as seen:
        out = method.predict(Batch(images(1, 32), [0]))
    assert [len(x) for x in seen] == [64, 1] and out.adaptation_steps == 1
    assert [(g["lr"], g["momentum"]) for g in method.optimizer.param_groups] == [(0.00025, 0)]
    assert (method.options.bn_prior, method.options.crop) == (16, "resized")
    with pytest.raises(UserError, match="online"):
        build_method("memo", teacher("tiny"), {"reset": "online"}, CPU)
    with pytest.raises(UserError, match="crop"):
        build_method("memo", teacher("tiny"), {"crop": "centre"}, CPU)


def test_memo_end_to_end_with_its_cifar_setting(cifar_run):
    summary = engine.run(cifar_run(method="memo", method_options=FAST), progress=False, log=lambda *_: None)
    o = summary["method_options"]
    assert (o["n_views"], o["lr"], o["crop"], o["bn_prior"]) == (8, 0.005, "pad", -1)  # MEMO's CIFAR-10 script
    assert summary["defaults"]["overridden"] == {"n_views": {"table": 32, "used": 8}}
    assert summary["cost"]["teacher_forwards"] == 8 * (8 + 1)


def test_adapted_prediction_inside_one_autocast_region():
    """Under the engine's autocast region (one per batch) the prediction after the update must use the updated
    weights, not the bf16 copies cached while adapting, and the next sample must start from the restored ones."""
    x = images(2, 32)
    options = {**FAST, "lr": 5.0}
    unadapted = build_method("memo", teacher("tiny"), {**options, "lr": 1e-12}, CPU).predict(Batch(x, [0, 1])).logits
    adapted = build_method("memo", teacher("tiny"), options, CPU).predict(Batch(x, [0, 1])).logits
    with autocast(CPU, "bf16"):
        mixed = build_method("memo", teacher("tiny"), options, CPU).predict(Batch(x, [0, 1])).logits.float()
    assert (adapted - unadapted).norm() > 0.1 * unadapted.norm()  # the step moves the prediction a lot
    assert (mixed - adapted).norm() < 0.2 * (adapted - unadapted).norm()
