"""methods/common: the second weight set of mean-teacher methods, CoTTA's augmentation, the optimiser choice."""
import pytest
import torch

from tests.methods.conftest import changed, images, state, teacher
from tta_bench.errors import UserError
from tta_bench.methods.common import (OptimizerOptions, WeightSet, adapt_all_weights, batch_norm_layers,
                                      build_optimizer, cotta_augment, seeded, small_batch_note, soft_cross_entropy)


def test_a_weight_set_runs_through_the_same_module_and_gives_it_back_bitwise():
    t = teacher("tiny")
    params = list(t.parameters())
    other = WeightSet(params)
    for v in other.values:
        v.mul_(0.5)
    before, x = state(t), images(4, 32)
    own = t(x)
    with other.active():
        halved = t(x)
        assert all(torch.equal(p * 2, v) for p, v in zip(params, other.values))  # the module's own, parked
    assert changed(before, t) == set()
    assert torch.equal(t(x), own) and not torch.allclose(halved, own)


def test_in_place_updates_inside_land_in_the_set_and_ema_moves_it():
    layer = torch.nn.BatchNorm1d(3)
    buffers = WeightSet([layer.running_mean])
    with buffers.active():
        layer.running_mean.add_(1.0)
    assert torch.equal(layer.running_mean, torch.zeros(3)) and torch.equal(buffers.values[0], torch.ones(3))
    buffers.ema_update([torch.full((3,), 3.0)], keep=0.75)
    torch.testing.assert_close(buffers.values[0], torch.full((3,), 0.75 * 1 + 0.25 * 3))
    saved = {k: v.clone() for k, v in buffers.state_dict().items()}
    buffers.values[0].zero_()
    buffers.load_state_dict(saved)
    assert torch.equal(buffers.values[0], torch.full((3,), 1.5))


def test_cotta_augmentation_is_one_seeded_draw_for_the_whole_batch():
    one = images(1, 32, seed=3)
    x = torch.cat([one, one, images(1, 32, seed=4)])
    with seeded(7):
        a = cotta_augment(x)
    with seeded(7):
        b = cotta_augment(x)
    with seeded(8):
        c = cotta_augment(x)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the same transform for both copies: they differ by the per-pixel noise (std 0.005) only
    assert (a[0] - a[1]).abs().max() < 0.05 < (a[0] - x[0]).abs().max()


def test_soft_cross_entropy_against_its_definition():
    student, target = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    expected = -(target.softmax(1) * student.log_softmax(1)).sum(1)
    torch.testing.assert_close(soft_cross_entropy(student, target), expected)


def test_all_weights_but_a_frozen_head_train_and_bn_uses_batch_statistics():
    t = teacher("tiny")
    params = adapt_all_weights(t, frozen=t.classifier)
    assert {id(p) for p in params} == {id(p) for n, p in t.named_parameters() if "classifier" not in n}
    assert all(m.training and not m.track_running_stats for m in t.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_optimisers_are_built_one_way_from_the_options():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert build_optimizer("adam", p, 0.1).defaults["betas"] == (0.9, 0.999)
    assert build_optimizer("adamw", p, 0.1, weight_decay=0.01).defaults["weight_decay"] == 0.01
    sgd = build_optimizer("sgd", p, 0.1, momentum=0.9, nesterov=True, weight_decay=0.01).defaults
    assert (sgd["momentum"], sgd["nesterov"], sgd["weight_decay"]) == (0.9, True, 0.01)
    options = OptimizerOptions.parse({"optimizer": "sgd", "lr": "0.5", "momentum": "0.8"}, "m")
    built = options.build_optimizer(p).defaults
    assert (type(options.build_optimizer(p)), built["lr"], built["momentum"]) == (torch.optim.SGD, 0.5, 0.8)
    with pytest.raises(UserError, match="m option optimizer must be one of adam, adamw, sgd, got 'rmsprop'"):
        OptimizerOptions.parse({"optimizer": "rmsprop"}, "m")
    with pytest.raises(UserError, match="nesterov needs momentum > 0"):
        OptimizerOptions.parse({"optimizer": "sgd", "nesterov": True, "momentum": 0.0}, "m")


def _uses_batch_statistics(name: str) -> bool:
    """Whether method ``name``, built on a BatchNorm teacher, leaves BN layers normalising with batch statistics."""
    from tta_bench.methods import build_method

    t = teacher("tiny")
    build_method(name, t, {}, torch.device("cpu"))
    return any(m.training and not m.track_running_stats for m in batch_norm_layers(t))


def test_the_methods_flagged_for_batch_statistics_are_those_that_use_them():
    from tta_bench.methods import METHODS

    clip_only = {e.name for e in METHODS if e.accepts.startswith("CLIP only")}
    flagged = {e.name for e in METHODS if e.builder.batch_statistics}
    assert flagged == {name for name in METHODS.names() if name not in clip_only and _uses_batch_statistics(name)}
    assert flagged == {"bn_adapt", "tent", "eata", "sar", "cotta", "shot_im"}


def test_a_batch_statistics_method_below_batch_16_warns(capsys):
    from tta_bench.cli import main
    from tta_bench.methods import METHODS

    assert "a batch of 2 is too small" in small_batch_note(METHODS.get("bn_adapt"), 2)
    assert small_batch_note(METHODS.get("bn_adapt"), 16) is None
    assert small_batch_note(METHODS.get("source"), 2) is None
    assert main(["--method", "bn_adapt", "--batch-size", "2", "--corruptions", "fog", "--dry-run"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "use --batch-size 16 or more" in warnings[0]
