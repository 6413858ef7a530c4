"""rotta: robust BN, the category-balanced memory bank with timeliness, the mean teacher's prediction, the update
cadence, bitwise reset, and that it learns where BN statistics matter."""
import math

import pytest
import torch

from tests.conftest import needs_shared
from tests.methods.conftest import CPU, changed, images, real_cifar_c, state, teacher
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.rotta import MemoryBank, RobustBN, timeliness


def rotta(t=None, **options):
    return build_method("rotta", t or teacher("tiny"), options, CPU)


def predict(method, x: torch.Tensor, first_seed: int = 0):
    return method.predict(Batch(x, list(range(first_seed, first_seed + len(x)))))


def item(n: int) -> torch.Tensor:
    return torch.full((1,), float(n))


def test_robust_bn_starts_from_the_trained_statistics_and_moves_by_alpha_in_training():
    layer = torch.nn.BatchNorm2d(3).eval()
    layer.running_mean.fill_(0.5)
    layer.running_var.fill_(2.0)
    layer.weight.data.fill_(1.5)
    robust = RobustBN(layer, alpha=0.05).eval()
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    torch.testing.assert_close(robust(x), layer(x))  # eval: the trained statistics, as the BN layer
    robust.train()
    y = robust(x)
    var, mean = torch.var_mean(x, dim=[0, 2, 3], unbiased=False)
    torch.testing.assert_close(robust.source_mean, 0.95 * 0.5 + 0.05 * mean)
    torch.testing.assert_close(robust.source_var, 0.95 * 2.0 + 0.05 * var)
    expected = (x - robust.source_mean.view(1, 3, 1, 1)) / torch.sqrt(robust.source_var.view(1, 3, 1, 1) + 1e-5)
    torch.testing.assert_close(y, expected * 1.5)


def test_every_bn_layer_is_replaced_and_only_its_scale_and_shift_train():
    t = teacher("tiny")
    method = rotta(t)
    assert not [m for m in t.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(method.rbn) == 2 and all(isinstance(m, RobustBN) for m in (t.model.body[1], t.model.body[4]))
    assert {n for n, p in t.model.named_parameters() if p.requires_grad} == \
        {"body.1.weight", "body.1.bias", "body.4.weight", "body.4.bias"}
    with pytest.raises(UserError, match="BatchNorm"):
        rotta(teacher("tiny-clip"))


def test_the_first_prediction_is_the_source_models_in_eval_mode():
    x = images(8, 32)
    source = teacher("tiny")(x)
    torch.testing.assert_close(predict(rotta(), x).logits, source)


def test_the_memory_keeps_classes_balanced_on_a_stream_of_one_class():
    bank = MemoryBank(capacity=4, num_classes=2, lambda_t=1.0, lambda_u=1.0)
    for n in range(5):
        bank.add(item(n), label=0, uncertainty=0.1)
    assert [len(s) for s in bank.slots] == [2, 0]  # a class never holds more than its share while others may come
    bank.add(item(10), label=1, uncertainty=0.1)
    bank.add(item(11), label=1, uncertainty=0.1)
    assert [len(s) for s in bank.slots] == [2, 2] and len(bank) == 4


def test_a_full_class_replaces_its_oldest_item_and_a_newcomer_class_evicts_from_the_majority():
    bank = MemoryBank(capacity=4, num_classes=3, lambda_t=1.0, lambda_u=1.0)
    for n, label in enumerate([0, 0, 1, 1]):
        bank.add(item(n), label, uncertainty=0.2)
    assert [len(s) for s in bank.slots] == [2, 2, 0]
    bank.add(item(9), label=2, uncertainty=0.2)  # bank full, class 2 below its share: the oldest majority item goes
    assert [[float(i.image) for i in s] for s in bank.slots] == [[1.0], [2.0, 3.0], [9.0]]
    bank.add(item(20), label=1, uncertainty=0.2)  # class 1 at its share (2 > 4/3): its own oldest item goes
    assert [[float(i.image) for i in s] for s in bank.slots] == [[1.0], [3.0, 20.0], [9.0]]


def test_timeliness_ages_and_the_uncertainty_of_a_newcomer():
    bank = MemoryBank(capacity=2, num_classes=2, lambda_t=1.0, lambda_u=1.0)
    bank.add(item(0), label=0, uncertainty=0.0)
    bank.add(item(1), label=1, uncertainty=0.0)
    images_, ages = bank.contents()
    assert [float(i) for i in images_] == [0.0, 1.0] and ages == [2 / 2, 1 / 2]  # every add ages every item
    torch.testing.assert_close(timeliness(torch.tensor(ages)), torch.exp(-torch.tensor(ages)) / (1 + torch.exp(
        -torch.tensor(ages))))
    assert bank.score(0, math.log(2)) == pytest.approx(0.5 + 1.0)
    bank.add(item(2), label=0, uncertainty=math.log(2))  # scores 1.5 > the old item's 1/(1+e^-1.5) = 0.82: rejected
    assert [float(i.image) for i in bank.slots[0]] == [0.0]
    bank.add(item(3), label=0, uncertainty=0.0)  # scores 0.5 < 0.86: replaces it
    assert [float(i.image) for i in bank.slots[0]] == [3.0]


def test_updates_come_every_update_every_samples_and_move_only_the_robust_bn_affine():
    t = teacher("tiny")
    method = rotta(t, update_every=8, memory_size=8, lr=0.05)
    before = state(t.model)
    outs = [predict(method, images(4, 32, s), first_seed=4 * s) for s in range(4)]
    assert [o.adaptation_steps for o in outs] == [0, 1, 0, 1] and method.updates == 2
    assert changed(before, t.model) == {f"body.{i}.{k}" for i in (1, 4)
                                        for k in ("weight", "bias", "source_mean", "source_var")}
    assert 1 <= len(method.memory) <= 8 and all(len(s) <= 1 for s in method.memory.slots)  # share: 8 / 10 classes


def test_reset_restores_student_teacher_optimizer_and_empties_the_memory():
    t = teacher("tiny")
    method = rotta(t, update_every=4, memory_size=8, lr=0.05)
    before = state(t)
    teacher_before = [v.clone() for v in method.mean_teacher.values]
    xs = [images(4, 32, s) for s in range(3)]
    first = [predict(method, x, first_seed=4 * i).logits for i, x in enumerate(xs)]
    assert not torch.equal(first[2], predict(rotta(), xs[2]).logits)  # the teacher has moved
    method.reset()
    assert changed(before, t) == set() and not method.optimizer.state and len(method.memory) == 0
    assert all(torch.equal(a, b) for a, b in zip(method.mean_teacher.values, teacher_before))
    again = [predict(method, x, first_seed=4 * i).logits for i, x in enumerate(xs)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


@needs_shared
def test_it_learns_where_batch_statistics_matter(tmp_path, real_source_top1):
    """ResNet-20 on CIFAR-10-C gaussian noise 5 (200 images in batches of 50): robust BN statistics drift towards
    the target's (5% per forward in training mode), the teacher follows, and accuracy rises well over the source
    model's. An update every 16 samples instead of 64, so that 200 images give it 12 updates (with 64: 3 updates,
    30.0% vs the source's 20.5%; on all 2,000 images with 64 it reaches 45% within the first 830)."""
    adapted = real_cifar_c(tmp_path, "rotta", {"update_every": 16})
    assert adapted["cost"]["adaptation_steps"] == 12
    assert adapted["mean_top1"] > real_source_top1 + 10
