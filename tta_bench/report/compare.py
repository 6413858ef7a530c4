"""`compare RUN_A RUN_B`: two runs on the same samples, split by split and over all splits: each one's accuracy
with its interval, the paired difference with its interval, McNemar's p, and how many samples each got right that
the other did not (statistics: significance.py). Runs on other samples are refused, naming what differs."""
from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from ..errors import ReportError
from .intervals import LEVEL
from .outcomes import METRICS, RunOutcomes, load_outcomes
from .runs import load_summary, run_label
from .significance import INTERVAL_NOTE, P_NOTE, SeedRuns, difference, mark_note, p_text, row_interval, sample_differences
from .splits import MEAN, split_key
from .tables import difference_text, interval_text, number


def _seeds(run: RunOutcomes) -> list[SeedRuns]:
    return [SeedRuns("run", {split: (values, run) for split, values in run.splits.items()})]


def _same_samples(a: RunOutcomes, b: RunOutcomes, names: tuple[str, str]) -> None:
    """Refuse runs that do not hold the same samples, in one line naming what differs."""
    differ = sample_differences(a.summary, b.summary)
    if set(a.splits) != set(b.splits):
        only_a, only_b = sorted(set(a.splits) - set(b.splits)), sorted(set(b.splits) - set(a.splits))
        differ.append("splits " + "; ".join(filter(None, [only_a and f"only in A: {', '.join(only_a)}",
                                                          only_b and f"only in B: {', '.join(only_b)}"])))
    elif not differ:
        differ += [f"other sample ids in {split}" for split in sorted(a.splits, key=split_key)
                   if set(a.splits[split].keys) != set(b.splits[split].keys)][:1]
    if differ:
        raise ReportError(f"{names[0]} and {names[1]} are not on the same samples ({'; '.join(differ)}): a paired "
                          "comparison needs runs of the same samples")


def compare_command(run_a: str | Path, run_b: str | Path, metric: str = "top1", resampling: str = "auto") -> str:
    if metric not in METRICS:
        raise ReportError(f"compare computes {', '.join(METRICS)} from the per-sample predictions, not {metric!r}")
    a, b = (load_outcomes(path, load_summary(path)) for path in (run_a, run_b))
    _same_samples(a, b, (str(run_a), str(run_b)))
    splits = sorted(a.splits, key=split_key)
    rows, resampled = [], set()
    for name, members in [(split, [split]) for split in splits] + ([(MEAN, splits)] if len(splits) > 1 else []):
        d, text = difference(_seeds(a), _seeds(b), members, metric, resampling)
        if d is None:
            raise ReportError(f"{run_a} and {run_b}: {text}")
        resampled.add(text)
        intervals = [row_interval(_seeds(run), members, metric, resampling) for run in (a, b)]
        rows.append([name, f"{number(d.a)} {interval_text(intervals[0])}", f"{number(d.b)} {interval_text(intervals[1])}",
                     difference_text(d.delta, d.interval, d.significant), p_text(d.p), str(d.only_a), str(d.only_b), str(d.n)])
    lines = [f"A: {run_a} ({run_label(a.summary)})", f"B: {run_b} ({run_label(b.summary)})",
             f"{metric}, percent; {LEVEL:.0%} intervals; paired on the same samples; resampled: "
             f"{' / '.join(sorted(resampled))}", "",
             tabulate(rows, headers=["split", "A", "B", "A - B", "McNemar", "only A right", "only B right", "n"],
                      disable_numparse=True, tablefmt="pipe",
                      colalign=("left", "right", "right", "right", "right", "right", "right", "right")),
             "", INTERVAL_NOTE, mark_note("B"), P_NOTE]
    return "\n".join(lines) + "\n"
