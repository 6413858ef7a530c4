"""The statistics are right by simulation: pairs of methods with a known difference on synthetic correctness vectors
(fixed seeds). 95% intervals cover the truth in 93-97% of 1,000 repetitions, McNemar's exact p is uniform under the
null (up to the test's discreteness), and the block bootstrap widens the interval on a correlated stream."""
from __future__ import annotations

import numpy as np
import pytest

from tta_bench.report.intervals import Stratum, bootstrap, excludes_zero, mcnemar, wilson

REPETITIONS = 1000


def _pair(rng: np.random.Generator, n: int, accuracy: float, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of methods A and B on the same n samples: they agree on most samples (a shared difficulty), A is
    right with probability accuracy + delta and B with accuracy, exactly."""
    difficulty = rng.random(n)
    a, b = difficulty < accuracy + delta, difficulty < accuracy
    redraw = rng.random(n) < 0.2  # a fifth of the samples decided independently: discordance both ways
    a = np.where(redraw, rng.random(n) < accuracy + delta, a)
    b = np.where(redraw, rng.random(n) < accuracy, b)
    return a, b


@pytest.mark.parametrize("delta", [0.0, 0.03])
def test_paired_bootstrap_intervals_cover_the_true_difference(delta):
    rng = np.random.default_rng(1)
    covered = 0
    for repetition in range(REPETITIONS):
        a, b = _pair(rng, 1000, 0.6, delta)
        low, high = bootstrap([Stratum.of(a.astype(float) - b)], resamples=1000, seed=repetition)
        covered += low <= delta <= high
    assert 0.93 <= covered / REPETITIONS <= 0.97


def test_the_mean_over_splits_interval_covers_the_true_mean_difference():
    rng = np.random.default_rng(3)
    deltas, covered = (0.0, 0.05, 0.02), 0
    for repetition in range(REPETITIONS):
        strata = [Stratum.of(np.subtract(*_pair(rng, 500, accuracy, delta), dtype=float))
                  for accuracy, delta in zip((0.3, 0.5, 0.8), deltas)]
        low, high = bootstrap(strata, resamples=1000, seed=repetition)
        covered += low <= np.mean(deltas) <= high
    assert 0.93 <= covered / REPETITIONS <= 0.97


def test_wilson_intervals_cover_the_true_accuracy():
    rng = np.random.default_rng(4)
    hits = rng.binomial(1000, 0.6, REPETITIONS)
    covered = sum(low <= 60.0 <= high for low, high in (wilson(k, 1000) for k in hits))
    assert 0.93 <= covered / REPETITIONS <= 0.97


def test_mcnemar_p_is_uniform_under_the_null():
    rng = np.random.default_rng(5)
    ps = []
    for _ in range(REPETITIONS):
        a, b = _pair(rng, 4000, 0.6, 0.0)  # about 380 discordant samples
        ps.append(mcnemar(int((a & ~b).sum()), int((b & ~a).sum())))
    ps = np.array(ps)
    levels = np.linspace(0.01, 0.99, 99)
    cdf = np.array([np.mean(ps <= level) for level in levels])
    # An exact test's p takes discrete values (a binomial's tail sums; 1 at balanced discordance): uniform up to
    # that grain and the simulation's noise, never clearly more rejections than the level.
    assert np.max(np.abs(cdf - levels)) < 0.08 and np.all(cdf <= levels + 0.035)
    assert all(abs(np.mean(ps <= level) - level) <= 0.025 for level in (0.01, 0.05, 0.1))


def test_mcnemar_rejects_a_real_difference():
    rng = np.random.default_rng(6)
    a, b = _pair(rng, 2000, 0.5, 0.05)
    assert mcnemar(int((a & ~b).sum()), int((b & ~a).sum())) < 0.01
    assert mcnemar(0, 0) == 1.0


def test_the_block_bootstrap_widens_the_interval_on_a_correlated_stream():
    """Batches whose accuracy varies around 60% (an online method's state drifting): resampling samples as if they
    were independent gives intervals far too narrow; resampling whole batches covers the mean."""
    rng = np.random.default_rng(7)
    blocks = np.repeat(np.arange(40), 50)
    truth = np.clip(0.6 + rng.normal(0, 0.15, 1_000_000), 0, 1).mean()
    widths, covered = {"samples": [], "batches": []}, {"samples": 0, "batches": 0}
    for repetition in range(300):
        correct = (rng.random(2000) < np.clip(0.6 + rng.normal(0, 0.15, 40), 0, 1)[blocks]).astype(float)
        for kind, stratum in (("samples", Stratum.of(correct)), ("batches", Stratum.of(correct, blocks))):
            low, high = bootstrap([stratum], resamples=1000, seed=repetition)
            widths[kind].append(high - low)
            covered[kind] += low <= truth <= high
    assert np.mean(widths["batches"]) > 1.8 * np.mean(widths["samples"])
    assert covered["batches"] / 300 >= 0.9 and covered["samples"] / 300 < 0.7


def test_a_mean_over_many_splits_of_two_batches_each_is_covered():
    """15 splits of 2 batches (--limit 400 at batch 200): each split alone is too few units for an interval, their
    mean is not; drawing n - 1 of each split's n batches keeps its variance unbiased, so the interval covers."""
    rng = np.random.default_rng(9)
    accuracies, blocks = np.linspace(0.2, 0.8, 15), np.repeat([0, 1], 200)
    covered = 0
    for repetition in range(300):
        strata = []
        for accuracy in accuracies:
            correct = rng.random(400) < np.clip(accuracy + rng.normal(0, 0.05, 2), 0, 1)[blocks]
            strata.append(Stratum.of(correct.astype(float), blocks))
        interval = bootstrap(strata, resamples=1000, seed=repetition)
        covered += interval[0] <= accuracies.mean() <= interval[1]
        assert bootstrap(strata[:1]) is None and bootstrap(strata[:9]) is not None  # 9 degrees: 9 splits of 2
    assert 0.9 <= covered / 300 <= 0.98


def test_merging_equal_units_is_the_same_bootstrap_as_resampling_every_unit():
    rng = np.random.default_rng(8)
    values = (rng.random(300) < 0.7).astype(float)
    naive = [values[rng.integers(0, 300, 299)].mean() for _ in range(20000)]  # n - 1 draws of n
    low, high = bootstrap([Stratum.of(values)], resamples=20000)
    assert np.percentile(naive, 2.5) == pytest.approx(low, abs=0.01)
    assert np.percentile(naive, 97.5) == pytest.approx(high, abs=0.01)


def test_blocks_sum_their_samples_and_identical_runs_give_a_zero_width_difference():
    stratum = Stratum.of(np.array([1, 0, 1, 1, 0.0]), np.array([3, 3, 7, 7, 9]))
    assert stratum.sums.tolist() == [1, 2, 0] and stratum.counts.tolist() == [2, 2, 1] and stratum.mean == 0.6
    assert bootstrap([Stratum.of(np.zeros(50))]) == (0.0, 0.0)
    assert excludes_zero((0.5, 2.0)) and excludes_zero((-3.0, -0.1)) and not excludes_zero((0.0, 1.0))
