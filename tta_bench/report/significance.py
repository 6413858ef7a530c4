"""Which differences are real: a 95% interval on every accuracy of a table row and the paired difference of a row
to a baseline row, from the per-sample outcomes of the run folders (outcomes.py, statistics in intervals.py).

- One split of one run: the Wilson score interval, when its samples are independent.
- A mean over splits, or over seeds: a bootstrap, samples resampled within each (seed, split), the statistic
  recomputed as the table computes it (the mean over seeds of the mean over splits).
- An online method (``reset: online`` in its options: its predictions depend on the samples before them in the
  batch and the stream): a block bootstrap whose blocks are the stream's batches, cut at reset points, used by
  default (``auto``); ``samples`` and ``batches`` force one or the other.
- A difference to the baseline row: paired on the samples both rows hold (the same sample ids per split, whatever
  their stream order); per sample, each row's correctness averaged over its seeds; a bootstrap as above over the
  per-sample differences (blocks where either row resamples batches), and McNemar's exact test on the samples
  only one of the two got right (pooled over the splits of a mean, over the seeds both rows ran). A difference is
  significant when its interval excludes 0. Rows on other samples (another --limit, subset, suite, setting or
  clean set) are not paired: the reason is given instead of a number.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .intervals import LEVEL, MIN_DEGREES, RESAMPLES, Stratum, bootstrap, excludes_zero, mcnemar, wilson
from .outcomes import RunOutcomes, SplitOutcomes
from .runs import RunGroup
from ..errors import ReportError

AUTO, SAMPLES, BATCHES = "auto", "samples", "batches"
RESAMPLINGS = (AUTO, SAMPLES, BATCHES)
MARK = "†"  # a difference to the baseline whose interval excludes 0
NO_INTERVAL = "[–]"


@dataclass(frozen=True)
class RowStats:
    """What a table row shows beside its accuracies: their intervals, which differ from the baseline, and how the
    intervals were resampled."""
    intervals: dict[str, tuple[float, float] | None]  # None: too few units to resample
    resampled: str
    marks: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Difference:
    """A paired difference A - B in points, its interval, McNemar's p and the discordant counts."""
    a: float
    b: float
    delta: float
    interval: tuple[float, float] | None  # None: too few units (batches) to resample
    p: float
    only_a: int  # samples A got right and B did not
    only_b: int
    n: int

    @property
    def significant(self) -> bool:
        return self.interval is not None and excludes_zero(self.interval)


@dataclass
class SeedRuns:
    """One seed of a row: split -> (outcomes of the split, the run they come from)."""
    seed: str
    splits: dict[str, tuple[SplitOutcomes, RunOutcomes]] = field(default_factory=dict)


def seeds_of(group: RunGroup, outcomes: dict[int, RunOutcomes]) -> list[SeedRuns]:
    """The row's runs by seed (``outcomes`` is keyed by id() of each summary), in the table's seed order."""
    by_seed: dict[str, SeedRuns] = {}
    for summary in group.runs:
        run = outcomes[id(summary)]
        key = json.dumps(summary.get("seed"))
        for split, values in run.splits.items():
            by_seed.setdefault(key, SeedRuns(key)).splits[split] = (values, run)
    return [by_seed[key] for key in sorted(by_seed)]


def uses_batches(run: RunOutcomes, resampling: str) -> bool:
    if resampling not in RESAMPLINGS:
        raise ReportError(f"unknown resampling {resampling!r}; expected one of {', '.join(RESAMPLINGS)}")
    return resampling == BATCHES or (resampling == AUTO and run.online)


def resampled_text(runs: list[RunOutcomes], resampling: str) -> str:
    """'samples', or 'batches of 200' (the batch sizes of the runs resampled by batches)."""
    sizes = sorted({run.batch_size for run in runs if uses_batches(run, resampling)})
    return f"batches of {', '.join(map(str, sizes))}" if sizes else SAMPLES


def _stratum(values: np.ndarray, split: SplitOutcomes, run: RunOutcomes, resampling: str) -> Stratum:
    return Stratum.of(values, split.batches if uses_batches(run, resampling) else None)


def row_interval(seeds: list[SeedRuns], members: list[str], metric: str,
                 resampling: str) -> tuple[float, float] | None:
    """95% interval (percent) of the row's value of a column averaging `members` over the row's seeds; None where
    too few units (batches) to resample."""
    strata = [(seed.splits[split], split) for seed in seeds for split in members if split in seed.splits]
    if len(strata) == 1:
        (values, run), _ = strata[0]
        if not uses_batches(run, resampling):
            correct = values.correct(metric)
            return wilson(int(correct.sum()), len(correct))
    return percent(bootstrap([_stratum(values.correct(metric).astype(float), values, run, resampling)
                              for (values, run), _ in strata]))


def percent(interval: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if interval is None else (100.0 * interval[0], 100.0 * interval[1])


def row_stats(group: RunGroup, outcomes: dict[int, RunOutcomes], columns: dict[str, list[str]], metric: str,
              resampling: str) -> RowStats:
    seeds = seeds_of(group, outcomes)
    intervals = {column: row_interval(seeds, members, metric, resampling) for column, members in columns.items()}
    return RowStats(intervals, resampled_text([outcomes[id(s)] for s in group.runs], resampling))


# -- pairing ---------------------------------------------------------------------------------------------------

def sample_differences(a: dict, b: dict) -> list[str]:
    """What makes two runs hold other samples, in words ('subset limit-400 vs full'); [] when nothing recorded
    differs."""
    def fields(summary: dict) -> dict[str, object]:
        data = summary.get("data") or {}
        made_from = (data.get("generated_from") or {}).get("images")
        return {"suite": summary.get("suite"), "subset": data.get("subset") or "full",
                "setting": (summary.get("setting") or {}).get("name"), "source": summary.get("source"),
                "clean set": f"{made_from} images" if made_from else None}
    fa, fb = fields(a), fields(b)
    return [f"{key} {fa[key]} vs {fb[key]}" for key in fa if fa[key] != fb[key]]


def _keys(seeds: list[SeedRuns], split: str) -> tuple | None:
    """The split's sample keys when every seed holding the split holds the same ones (in the first seed's order)."""
    present = [seed.splits[split][0].keys for seed in seeds if split in seed.splits]
    if not present or any(set(keys) != set(present[0]) for keys in present[1:]):
        return None
    return present[0]


def _aligned(seeds: list[SeedRuns], split: str, order: dict, metric: str) -> list[tuple[str, np.ndarray]]:
    """(seed, correctness with samples in `order`) of each seed holding the split."""
    out = []
    for seed in seeds:
        if split in seed.splits:
            values = seed.splits[split][0]
            row = np.empty(len(order))
            row[[order[key] for key in values.keys]] = values.correct(metric)
            out.append((seed.seed, row))
    return out


def _blocks(a: list[SeedRuns], b: list[SeedRuns], split: str, order: dict,
            resampling: str) -> tuple[np.ndarray | None, str]:
    """Block ids per sample (in `order`) for a paired bootstrap, and the resampling in words: the batches of the
    first run of a row that resamples by batches (of both rows', the larger batches; the row's where equal)."""
    firsts = [next(seed.splits[split] for seed in seeds if split in seed.splits) for seeds in (a, b)]
    batched = [(values, run) for values, run in firsts if uses_batches(run, resampling)]
    if not batched:
        return None, SAMPLES
    values, run = max(batched, key=lambda pair: pair[1].batch_size)
    blocks = np.empty(len(order), dtype=int)
    blocks[[order[key] for key in values.keys]] = values.batches
    return blocks, f"batches of {run.batch_size}"


def _discordant(rows_a: list[tuple[str, np.ndarray]], rows_b: list[tuple[str, np.ndarray]]) -> tuple[int, int]:
    """Samples right only in A and only in B, over the seeds both rows ran (else the first run of each)."""
    seeds_b = dict(rows_b)
    pairs = [(row, seeds_b[seed]) for seed, row in rows_a if seed in seeds_b] or [(rows_a[0][1], rows_b[0][1])]
    return (sum(int(((ra == 1) & (rb == 0)).sum()) for ra, rb in pairs),
            sum(int(((ra == 0) & (rb == 1)).sum()) for ra, rb in pairs))


def difference(a: list[SeedRuns], b: list[SeedRuns], members: list[str], metric: str,
               resampling: str) -> tuple[Difference | None, str]:
    """Paired difference of row `a` to row `b` over the splits `members`, and the resampling in words; (None,
    reason) when the two do not hold the same samples."""
    strata, means_a, means_b, only_a, only_b, n, resampled = [], [], [], 0, 0, 0, set()
    for split in members:
        keys_a, keys_b = _keys(a, split), _keys(b, split)
        if keys_a is None or keys_b is None:
            who = "the row" if keys_a is None else "the baseline"
            return None, f"{who} has no {split} (or its seeds hold other samples there)"
        if set(keys_a) != set(keys_b):
            return None, f"other samples in {split}"
        order = {key: i for i, key in enumerate(keys_a)}
        rows_a, rows_b = _aligned(a, split, order, metric), _aligned(b, split, order, metric)
        va, vb = np.mean([row for _, row in rows_a], 0), np.mean([row for _, row in rows_b], 0)
        blocks, text = _blocks(a, b, split, order, resampling)
        resampled.add(text)
        strata.append(Stratum.of(va - vb, blocks))
        means_a.append(va.mean())
        means_b.append(vb.mean())
        split_a, split_b = _discordant(rows_a, rows_b)
        only_a, only_b, n = only_a + split_a, only_b + split_b, n + len(order)
    delta = 100.0 * float(np.mean([stratum.mean for stratum in strata]))
    return (Difference(100.0 * float(np.mean(means_a)), 100.0 * float(np.mean(means_b)), delta,
                       percent(bootstrap(strata)), mcnemar(only_a, only_b), only_a, only_b, n),
            " / ".join(sorted(resampled)))


INTERVAL_NOTE = (f"[low, high]: {LEVEL:.0%} interval: Wilson score (one split of independent samples) or bootstrap, "
                 f"{RESAMPLES:,} resamples within each split (means, seeds, and online methods, whose predictions "
                 "depend on the stream: whole batches resampled, see 'resampled'). ±: standard deviation over seeds; "
                 f"the interval is that of the seeds' mean. {NO_INTERVAL}: too few batches to resample (an interval "
                 f"needs {MIN_DEGREES + 1} beyond one per split).")
P_NOTE = ("p: McNemar's exact test, two-sided, on the samples only one of the two got right (it assumes independent "
          "samples; for online methods the interval decides).")


def mark_note(baseline: str) -> str:
    return (f"{MARK}: differs from {baseline} (the {LEVEL:.0%} paired bootstrap interval of the difference excludes "
            "0).")


def p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"
