"""lame: the affinities, the Laplacian adjustment on a constructed affinity, nothing trained and no state, and
its purpose on real data: gaining on a class-correlated stream where BN adaptation collapses."""
import math

import pytest
import torch

from tests.conftest import needs_shared
from tests.methods.conftest import CPU, changed, images, real_cifar_c, state, teacher
from tta_bench import engine
from tta_bench.errors import UserError
from tta_bench.methods import build_method
from tta_bench.methods.base import Batch
from tta_bench.methods.lame import affinity, laplacian_optimization


def energy(y: torch.Tensor, unary: torch.Tensor, kernel: torch.Tensor) -> float:
    return float((unary * y - (kernel @ y) * y + y * torch.log(y.clamp_min(1e-20))).sum())


def test_the_three_affinities_of_the_reference():
    f = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    dist = torch.cdist(f, f)
    knn = affinity(f, "kNN", 2)
    assert torch.equal(knn.sum(1), torch.full((6,), 2.0)) and knn.diagonal().sum() == 0
    nearest = dist.masked_fill(torch.eye(6, dtype=torch.bool), 9).argmin(1)
    assert all(knn[i, nearest[i]] == 1 for i in range(6))
    sigma = dist.sort(1).values[:, 2].mean()  # the 3rd smallest distance, the sample itself counted
    torch.testing.assert_close(affinity(f, "rbf", 3), torch.exp(-dist ** 2 / (2 * sigma ** 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(affinity(f, "linear", 3), f @ f.T)


def test_neighbours_pull_an_unsure_sample_to_their_class():
    """Two clusters of three samples in feature space; the third sample of cluster A is ambiguous (its own
    probabilities lean slightly to class 1): the affinity to two confident class-0 neighbours flips it to class 0."""
    p = torch.tensor([[0.9, 0.1], [0.85, 0.15], [0.45, 0.55], [0.1, 0.9], [0.2, 0.8], [0.15, 0.85]])
    unary = -torch.log(p + 1e-10)
    kernel = torch.block_diag(torch.ones(3, 3), torch.ones(3, 3)) - torch.eye(6)
    y = laplacian_optimization(unary, kernel, max_steps=100).exp()
    assert p.argmax(1).tolist() == [0, 0, 1, 1, 1, 1]
    assert y.argmax(1).tolist() == [0, 0, 0, 1, 1, 1]
    assert energy(y, unary, kernel) < energy(p, unary, kernel)  # the bound optimisation lowers the energy
    alone = laplacian_optimization(unary, torch.zeros(6, 6), max_steps=100).exp()
    torch.testing.assert_close(alone, p, atol=1e-6, rtol=0)  # no affinity: the teacher's own probabilities


def test_the_iteration_stops_when_the_energy_settles():
    p = torch.tensor([[0.6, 0.4], [0.4, 0.6]])
    unary, kernel = -torch.log(p + 1e-10), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    settled = laplacian_optimization(unary, kernel, max_steps=100)
    torch.testing.assert_close(settled, laplacian_optimization(unary, kernel, max_steps=10_000))
    assert not torch.allclose(laplacian_optimization(unary, kernel, max_steps=1), settled)


def test_nothing_changes_in_the_teacher_and_no_state_is_kept():
    t = teacher("tiny")
    method = build_method("lame", t, {}, CPU)
    before, x = state(t), images(12, 32)
    out = method.predict(Batch(x, list(range(12))))
    assert changed(before, t) == set() and not any(p.requires_grad for p in t.parameters())
    assert torch.equal(out.logits, method.predict(Batch(x, list(range(12)))).logits)
    torch.testing.assert_close(out.logits.exp().sum(1), torch.ones(12))  # log-probabilities
    assert not torch.allclose(out.logits, t(x).log_softmax(1))  # adjusted, not the teacher's own


def test_options_and_errors(cifar_run):
    with pytest.raises(UserError, match="rbf, kNN, linear"):
        build_method("lame", teacher("tiny"), {"affinity": "cosine"}, CPU)
    summary = engine.run(cifar_run(method="lame", batch_size=None), progress=False, log=lambda *_: None)
    assert summary["method_options"]["affinity"] == "rbf" and summary["method_options"]["knn"] == 5
    assert summary["defaults"]["applied"]["batch_size"] == 200
    assert math.isfinite(summary["mean_top1"])


@needs_shared
def test_it_gains_on_a_class_correlated_stream_where_bn_adaptation_collapses(tmp_path):
    """LAME's use case (its paper's non-i.i.d. streams): ResNet-20 on a Dirichlet(0.01) class-correlated stream of
    CIFAR-10-C brightness 5 (200 images, batch 50), where the source model is good. Batch statistics of a few
    classes ruin BN adaptation (measured 55.0 vs source 72.0); LAME keeps the source features and makes a batch's
    predictions agree with their neighbours, which share their class: 79.0. (On an i.i.d. stream it lost a little:
    68.0; on gaussian noise, where the source model is near chance, LAME cannot help.)"""
    run = dict(setting="correlated", dirichlet=0.01, corruption="brightness")
    source = real_cifar_c(tmp_path, "source", **run)["mean_top1"]
    bn = real_cifar_c(tmp_path, "bn_adapt", **run)["mean_top1"]
    lame = real_cifar_c(tmp_path, "lame", **run)["mean_top1"]
    assert lame > source + 3 and lame > bn + 10
