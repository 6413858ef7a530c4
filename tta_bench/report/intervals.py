"""Uncertainty of accuracies from per-sample correctness: Wilson intervals, stratified (block) bootstrap
intervals and McNemar's exact test. Pure functions of numpy arrays; percent in, percent out where accuracy.

A bootstrap here resamples *units* with replacement within each *stratum* and recomputes the statistic
``mean over strata of (sum of the units' values / sum of the units' sample counts)``:

- a unit is one sample (independent predictions) or one batch of the stream (a block: an online method's
  predictions within a batch, and from batch to batch, are not independent, so a batch is resampled whole);
- a stratum is one split (a mean over splits gives each split its fixed weight), or one (seed, split) run for a
  mean over seeds;
- a value is a sample's correctness (0/1) for an accuracy, or the difference of two runs' correctness on the same
  sample (-1, 0, 1) for a paired difference.

Each stratum of n units is resampled as n - 1 draws (Rao and Wu's rescaled bootstrap, 1988): the bootstrap variance
of a stratum's mean is then the unbiased s^2 / n, not (n - 1) / n of it, which matters where a stratum holds few
units (a split of 2,000 samples in batches of 200 is 10 blocks). That variance is then estimated from only
df = sum(n - 1) over the strata, so the percentile interval is widened about the estimate by t(df) / z, as a
t interval would be (a factor of 1.15 at 10 blocks, 1.00 for samples). An interval needs df >= MIN_DEGREES: a split
of 2 batches alone gets none, a mean over 15 such splits does.

Drawing n - 1 units uniformly with replacement is drawing a multinomial count for each distinct unit, so units with
equal (value, count) are merged first: the same bootstrap, thousands of times faster for samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm, t

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0  # fixed: the same runs give the same interval, in any order
MIN_DEGREES = 9  # sum over strata of (units - 1) below which a bootstrap interval is not given


@dataclass(frozen=True)
class Stratum:
    """Resampling units of one stratum: per unit, the sum of its samples' values and how many samples it holds."""
    sums: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, blocks: np.ndarray | None = None) -> "Stratum":
        """Units from per-sample values: one per sample, or one per block id in ``blocks`` (any integers)."""
        values = np.asarray(values, dtype=float)
        if blocks is None:
            return cls(values, np.ones(len(values)))
        _, inverse = np.unique(np.asarray(blocks), return_inverse=True)
        return cls(np.bincount(inverse, weights=values), np.bincount(inverse).astype(float))

    @property
    def mean(self) -> float:
        return float(self.sums.sum() / self.counts.sum())


def wilson(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of an accuracy (percent) from `correct` of `n` independent samples."""
    interval = binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return 100.0 * interval.low, 100.0 * interval.high


def degrees(strata: list[Stratum]) -> int:
    """What a bootstrap of these strata can estimate a variance from: the sum of (units - 1)."""
    return sum(len(stratum.sums) - 1 for stratum in strata)


def bootstrap(strata: list[Stratum], level: float = LEVEL, resamples: int = RESAMPLES,
              seed: int = SEED) -> tuple[float, float] | None:
    """Percentile interval (in the values' unit) of the mean over strata of each stratum's mean, n - 1 units drawn
    with replacement from each stratum's n; None where a stratum has one unit or the strata too few (MIN_DEGREES)."""
    if any(len(stratum.sums) < 2 for stratum in strata) or degrees(strata) < MIN_DEGREES:
        return None
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for stratum in strata:
        distinct, inverse = np.unique(stratum.sums + 1j * stratum.counts, return_inverse=True)  # (value, count)
        weights = np.bincount(inverse.ravel(), minlength=len(distinct)) / len(inverse)
        draws = rng.multinomial(len(inverse) - 1, weights, size=resamples).astype(float)
        total += (draws @ distinct.real) / (draws @ distinct.imag)
    statistic = total / len(strata)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(statistic, [tail, 100.0 - tail])
    centre = float(np.mean([stratum.mean for stratum in strata]))
    widen = t.ppf(1.0 - tail / 100.0, degrees(strata)) / norm.ppf(1.0 - tail / 100.0)
    return centre - widen * (centre - float(low)), centre + widen * (float(high) - centre)


def mcnemar(only_a: int, only_b: int) -> float:
    """McNemar's exact test (two-sided): p of `only_a` samples right only in A against `only_b` right only in B
    under the null of no difference (binomial, one half); 1 without discordant samples."""
    discordant = int(only_a) + int(only_b)
    return 1.0 if discordant == 0 else float(binomtest(int(only_a), discordant, 0.5).pvalue)


def excludes_zero(interval: tuple[float, float]) -> bool:
    """Whether an interval of a difference excludes 0: the difference is significant at its level."""
    low, high = interval
    return low > 0 or high < 0
