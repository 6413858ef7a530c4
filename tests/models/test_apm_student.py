"""The APM student: sizes and costs of the paper configuration, asynchronous (chunked) perception, parallel students,
seeding, and that it can fit a target."""

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from tta_bench.models.apm_student import (
    PRESETS,
    APMConfig,
    APMStudent,
    StackedAPMStudent,
    analytic_flops_per_step,
    analytic_macs_per_image,
    analytic_macs_per_query,
    count_parameters,
    init_student_,
    preset,
    sincos_2d,
)

PAPER = PRESETS["paper"]
PAPER_MACS_PER_QUERY = 19_660_800


def small(**changes) -> APMConfig:
    return dataclasses.replace(preset("cpu", 64), **changes)


def meta_student(cfg: APMConfig) -> APMStudent:
    with torch.device("meta"):
        return APMStudent(cfg, seed=None)


def image(cfg: APMConfig, *lead: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, 3, cfg.image_size, cfg.image_size, generator=generator)


def test_paper_parameter_counts() -> None:
    mean = meta_student(dataclasses.replace(PAPER, readout="mean"))
    attention = meta_student(PAPER)
    with_rgb = meta_student(dataclasses.replace(PAPER, rgb_head=True))
    assert count_parameters(attention.column) == 3 * 14 * 14 + 1 == 589
    assert count_parameters(attention.mlp) + count_parameters(attention.head) == 19_668_736
    assert count_parameters(attention.readout) == 2_363_136
    assert count_parameters(with_rgb.rgb) == (2816 * 256 + 256) + (256 * 256 + 256) + (256 * 3 + 3) == 787_715
    assert count_parameters(mean) == 19_669_325
    assert count_parameters(attention) == 22_032_461
    assert count_parameters(with_rgb) == 22_032_461 + 787_715


def test_paper_query_flops() -> None:
    assert analytic_macs_per_query(PAPER) == PAPER_MACS_PER_QUERY
    student = meta_student(PAPER)
    queries = torch.empty(1, 5, PAPER.query_dim, device="meta")
    with FlopCounterMode(display=False) as counter:
        student.head(student.mlp(queries))
    assert counter.get_total_flops() == 5 * 2 * PAPER_MACS_PER_QUERY


@pytest.mark.parametrize("readout", ["mean", "attention"])
@pytest.mark.parametrize("rgb_head", [False, True])
def test_analytic_costs_match_flop_counter(readout: str, rgb_head: bool) -> None:
    cfg = dataclasses.replace(PAPER, readout=readout, rgb_head=rgb_head)
    student = meta_student(cfg)
    x = torch.empty(2, 3, cfg.image_size, cfg.image_size, device="meta")
    with FlopCounterMode(display=False) as forward:
        student(x)
    assert forward.get_total_flops() == 2 * 2 * analytic_macs_per_image(cfg)
    with FlopCounterMode(display=False) as step:
        out = student(x)
        (out.feature.sum() + (out.rgb.sum() if rgb_head else 0)).backward()
    # the only gap: the column filter needs no gradient with respect to the image
    assert step.get_total_flops() == pytest.approx(analytic_flops_per_step(cfg, batch=2), rel=1e-4)


@pytest.mark.parametrize("grid", [8, 32])
def test_query_positional_encoding_is_unique_per_location(grid: int) -> None:
    posenc = APMStudent(small(grid=grid), seed=None).query_posenc
    n = grid * grid
    assert posenc.shape == (n, n)
    assert torch.unique(posenc, dim=0).shape[0] == n
    # the first half of the channels encodes x (the column): equal for locations in one column
    columns = posenc[:, : n // 2].view(grid, grid, n // 2)
    assert torch.equal(columns[0], columns[-1])
    assert not torch.equal(columns[:, 0], columns[:, -1])
    assert sincos_2d(grid, 768).shape == (n, 768)


@pytest.mark.parametrize("readout", ["mean", "attention"])
def test_chunked_random_order_equals_full_pass(readout: str) -> None:
    cfg = small(readout=readout, rgb_head=True)
    student = APMStudent(cfg, seed=3)
    x = image(cfg, 2)
    full = student(x, keep_grid=True)
    assert full.feature.shape == (2, 64) and full.grid.shape == (2, 64, 64) and full.rgb.shape == (2, 64, 3)
    assert student(x).grid is None
    for chunk_size, seed in [(1, 0), (7, 1), (64, 2)]:
        order = torch.randperm(cfg.locations, generator=torch.Generator().manual_seed(seed))
        chunked = student(x, chunk_size=chunk_size, order=order, keep_grid=True)
        for got, want in zip(chunked, full):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(student.feature_grid(x, chunk_size=5), full.grid)


def test_paper_preset_chunked_equals_full_pass() -> None:
    student = APMStudent(PAPER, seed=0)
    x = image(PAPER, 1)
    with torch.no_grad():
        full = student(x).feature
        order = torch.randperm(PAPER.locations, generator=torch.Generator().manual_seed(0))
        chunked = student(x, chunk_size=256, order=order).feature
    assert full.shape == (1, 768)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-7)


class _LargestAllocation(TorchDispatchMode):
    """Records the element count of the largest new tensor any operation allocates (views are not allocations)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.numel())
        return out


def test_mean_readout_memory_grows_with_chunk_not_grid() -> None:
    cfg = small(readout="mean", feature_dim=48)
    student = APMStudent(cfg, seed=0)
    x = image(cfg, 2)

    def largest(chunk_size: int) -> int:
        with torch.no_grad(), _LargestAllocation() as mode:
            student(x, chunk_size=chunk_size)
        return mode.largest

    widest = max(cfg.query_dim, *cfg.hidden, cfg.feature_dim)
    sizes = {k: largest(k) for k in (2, 4, 16, 64)}
    assert sizes == {k: 2 * k * widest for k in sizes}
    assert sizes[2] < 2 * cfg.locations * cfg.feature_dim  # the (B, g², D) grid never exists


@pytest.mark.parametrize("bias_in_product", [False, True])
def test_stacked_equals_separate_students_forward_and_training(bias_in_product: bool) -> None:
    """Either bias form (a pass of its own, or read by the batched product: torch.baddbmm)."""
    cfg = small(readout="attention", rgb_head=True)
    seeds = [5, 11, 2]
    stacked = StackedAPMStudent(cfg, seeds, bias_in_product=bias_in_product)
    separate = [APMStudent(cfg, seed=s) for s in seeds]
    x = image(cfg, 3, 2)
    target = torch.randn(3, 2, cfg.feature_dim, generator=torch.Generator().manual_seed(1))
    order = torch.randperm(cfg.locations, generator=torch.Generator().manual_seed(4))

    out = stacked(x, chunk_size=10, order=order)
    assert out.feature.shape == (3, 2, 64) and out.rgb.shape == (3, 2, 64, 3) and out.grid is None
    for s, student in enumerate(separate):
        for got, want in zip(out, student(x[s])):
            if want is not None:
                torch.testing.assert_close(got[s], want)
    assert stacked.feature_grid(x).shape == (3, 2, 64, 64)

    stacked_opt = torch.optim.Adam(stacked.parameters(), lr=1e-3)
    separate_opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in separate]
    for _ in range(3):
        loss = ((stacked(x, chunk_size=10, order=order).feature - target) ** 2).mean(dim=(1, 2)).sum()
        stacked_opt.zero_grad()
        loss.backward()
        stacked_opt.step()
        for s, (student, opt) in enumerate(zip(separate, separate_opts)):
            loss = ((student(x[s]).feature - target[s]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        after = stacked(x).feature
        for s, student in enumerate(separate):
            torch.testing.assert_close(after[s], student(x[s]).feature, rtol=1e-4, atol=1e-6)
            stacked_params = stacked.student_parameters(s)
            for name, param in student.named_parameters():
                torch.testing.assert_close(stacked_params[name], param, rtol=1e-4, atol=1e-6)


def test_stacked_reset_and_shape_checks() -> None:
    cfg = small()
    stacked = StackedAPMStudent(cfg, [1, 2])
    stacked.reset_([7, 8, 9])
    assert stacked.num_students == 3
    fresh = APMStudent(cfg, seed=8)
    assert all(torch.equal(p, dict(fresh.named_parameters())[n]) for n, p in stacked.student_parameters(1).items())
    with pytest.raises(ValueError, match="inputs on dim 0"):
        stacked(image(cfg, 2, 1))


def test_seeded_init_is_deterministic_and_per_seed() -> None:
    cfg = small(readout="attention", rgb_head=True)
    a, b, c = APMStudent(cfg, seed=1), APMStudent(cfg, seed=1), APMStudent(cfg, seed=2)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
    # every parameter, biases included, from N(0, 0.01), as the official code re-initialises its student
    for param in (a.mlp[0].weight, torch.cat([p.flatten() for n, p in a.named_parameters() if n.endswith("bias")])):
        assert param.std().item() == pytest.approx(cfg.init_std, rel=0.05)
        assert abs(param.mean().item()) < 0.1 * cfg.init_std
    init_student_(c, seed=1)  # re-initialising returns the same start whatever happened before
    assert all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_learns_a_random_target() -> None:
    cfg = preset("cpu", 512)
    student = APMStudent(cfg, seed=0)
    x = image(cfg, 1)
    target = torch.randn(1, 512, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(student(x).feature, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 100


def test_rejects_bad_inputs() -> None:
    cfg = small()
    student = APMStudent(cfg)
    with pytest.raises(ValueError, match="expected input"):
        student(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="permutation"):
        student(image(cfg, 1), order=torch.arange(10))
    with pytest.raises(ValueError, match="readout"):
        APMConfig(readout="max")
    with pytest.raises(ValueError, match="divisible"):
        APMConfig(feature_dim=100, heads=8)
