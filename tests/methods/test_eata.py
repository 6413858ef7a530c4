"""eata: the two sample filters and their weights, the Fisher regulariser from clean source images, what trains,
bitwise reset, and that it learns where BN statistics matter."""
import math

import pytest
import torch
from torch.nn import functional as F

from tests.conftest import WNIDS, needs_shared, write_images
from tests.methods.conftest import CPU, changed, images, real_cifar_c, state, teacher
from tta_bench import engine
from tta_bench.data.build import load_source_data
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.common import entropy

BN_AFFINE = {"body.1.weight", "body.1.bias", "body.4.weight", "body.4.bias"}
OPEN = {"e_margin": 1.0, "d_margin": 1.0, "fisher_alpha": 0.0, "optimizer": "adam", "lr": 0.01}  # all samples pass


def eata(t=None, **options):
    return build_method("eata", t or teacher("tiny"), options, CPU)


def predict(method, x: torch.Tensor):
    return method.predict(Batch(x, list(range(len(x)))))


def test_the_entropy_filter_keeps_samples_below_e_margin_times_ln_c():
    method = eata(fisher_alpha=0.0)
    assert method.e_margin == pytest.approx(0.4 * math.log(10))
    sure, unsure = torch.tensor([[9.0] + [0.0] * 9]), torch.zeros(1, 10)  # entropy ~0.01 / ln 10
    loss, kept = method._loss(torch.cat([sure, unsure, sure]))
    assert (method.reliable, kept) == (2, 2)
    h = entropy(sure)[0]
    torch.testing.assert_close(loss, h * torch.exp(method.e_margin - h))  # weight 1 / exp(H - E_0)


def test_the_redundancy_filter_drops_samples_like_the_moving_average_and_updates_it():
    method = eata(fisher_alpha=0.0, d_margin=0.5)
    a, b = torch.tensor([[8.0, 0.0] + [-8.0] * 8]), torch.tensor([[0.0, 8.0] + [-8.0] * 8])
    method._loss(a)  # the first kept batch starts the moving average
    torch.testing.assert_close(method.probs, a.softmax(1)[0])
    _, kept = method._loss(torch.cat([a, b, a]))  # a: cosine ~1 with the average (redundant); b: ~0
    assert kept == 1 and method.reliable == 4
    torch.testing.assert_close(method.probs, 0.9 * a.softmax(1)[0] + 0.1 * b.softmax(1)[0])
    _, kept = method._loss(torch.zeros(2, 10))  # nothing reliable: the average stays
    assert kept == 0
    torch.testing.assert_close(method.probs, 0.9 * a.softmax(1)[0] + 0.1 * b.softmax(1)[0])


def test_no_update_when_every_sample_is_filtered():
    t = teacher("tiny")
    method = eata(t, fisher_alpha=0.0, e_margin=0.01)  # the random teacher is never that sure
    before = state(t)
    out = predict(method, images(8, 32))
    assert out.adaptation_steps == 0 and changed(before, t) == set() and not method.optimizer.state


def test_fisher_is_the_mean_squared_gradient_of_the_self_labelled_cross_entropy():
    t = teacher("tiny")
    method = eata(t)
    assert method.source_samples() == 2000 and eata(fisher_alpha=0.0).source_samples() == 0
    batches = [images(8, 32, 1), images(8, 32, 2)]
    method.prepare_source(iter(batches))
    expected = [torch.zeros_like(p) for p in method.params]
    for x in batches:
        logits = t(x)
        grads = torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1)), method.params)
        expected = [e + g ** 2 / 2 for e, g in zip(expected, grads)]
    for f, e in zip(method.fisher, expected):
        torch.testing.assert_close(f, e)
    assert all(p.grad is None for p in method.params)


def test_the_fisher_term_holds_the_weights_near_the_source():
    x = images(16, 32)

    def drift(alpha: float) -> float:
        t = teacher("tiny")
        method = eata(t, **{**OPEN, "fisher_alpha": alpha})
        method.prepare_source(iter([images(16, 32, 9)]))
        start = [p.detach().clone() for p in method.params]
        for _ in range(10):
            predict(method, x)
        return sum(float((p.detach() - s).norm()) for p, s in zip(method.params, start))

    assert drift(1e4) < 0.5 * drift(0.0)


def test_entropy_falls_and_only_norm_scale_and_shift_train():
    t = teacher("tiny")
    before = state(t.model)
    method = eata(t, **OPEN)
    assert {n for n, p in t.model.named_parameters() if p.requires_grad} == BN_AFFINE
    x = images(16, 32)
    losses = [entropy(predict(method, x).logits).mean().item() for _ in range(6)]
    assert losses[-1] < losses[0] - 1e-3
    assert changed(before, t.model) == BN_AFFINE  # running statistics, convolutions, head: bitwise


def test_on_a_vision_transformer_eata_trains_layernorm_scale_and_shift():
    t = teacher("tiny-clip")
    layernorms = {n for n, m in t.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    method = eata(t, **OPEN)
    assert {n.rsplit(".", 1)[0] for n, p in t.named_parameters() if p.requires_grad} == layernorms
    before = state(t)
    predict(method, images(8, 64))
    predict(method, images(8, 64))
    moved = {k.rsplit(".", 1)[0] for k in changed(before, t)}
    assert moved and moved <= layernorms


def test_reset_restores_model_and_optimizer_bitwise_and_keeps_the_average_as_the_official():
    t = teacher("tiny")
    method = eata(t, **OPEN)
    before, x = state(t), images(8, 32)
    first, second = predict(method, x).logits, predict(method, x).logits
    assert not torch.equal(first, second)
    probs = method.probs.clone()
    method.reset()
    assert changed(before, t) == set() and not method.optimizer.state
    assert torch.equal(method.probs, probs)  # mr-eggplant/EATA: EATA.reset leaves current_model_probs
    assert torch.equal(predict(method, x).logits, first)


def test_the_fisher_batches_mix_classes_as_the_official_shuffled_loader(tmp_path, tiny_config):
    """mr-eggplant/EATA main.py computes the Fisher over a shuffled loader (prepare_test_data, if_shuffle True): the
    clean images come in random order, not class by class as a folder layout stores them."""
    write_images(tmp_path / "val", {w: 4 for w in WNIDS})  # on disk: class after class
    cfg = tiny_config(suite="imagenet", data_root=str(tmp_path / "val"), source_data=str(tmp_path / "val"),
                      allow_partial=True, seed=1)
    drawn = load_source_data(cfg, 12).source
    labels = drawn.labels
    assert sorted(labels) == [c for c in sorted(set(labels)) for _ in range(4)]  # every image once
    assert labels != sorted(labels) and len(set(labels[:4])) > 1  # shuffled: the first batch of 4 mixes classes
    assert load_source_data(cfg, 12).source.ids == drawn.ids  # the same order on a resume


def test_it_refuses_to_adapt_without_its_fisher_information():
    with pytest.raises(UserError, match="prepare_source"):
        predict(eata(), images(4, 32))


def test_end_to_end_the_engine_hands_it_clean_source_images(cifar_run):
    summary = engine.run(cifar_run(method="eata", method_options={"fisher_samples": 6}), progress=False,
                         log=lambda *_: None)
    assert summary["source_data"]["n"] == 6 and "uncorrupted" in summary["source_data"]["origin"]
    assert summary["method_options"]["fisher_alpha"] == 1.0  # the cifar10 family's defaults applied
    assert summary["defaults"]["applied"]["optimizer"] == "adam"


@needs_shared
def test_it_learns_where_batch_statistics_matter(tmp_path, real_source_top1):
    """ResNet-20 on CIFAR-10-C gaussian noise 5 (200 images, batch 50, the CIFAR defaults, a Fisher from 200 clean
    images): far above the source model (on all 2,000: source 18.7, EATA 51.3)."""
    adapted = real_cifar_c(tmp_path, "eata", {"fisher_samples": 200})
    assert adapted["mean_top1"] > real_source_top1 + 20
    assert adapted["cost"]["adaptation_steps"] >= 3  # the filters let samples through on real data
