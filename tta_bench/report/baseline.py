"""`table --ci` and `table --baseline METHOD`: a table's intervals and, per table, every row's paired difference to
the baseline method's row, from the per-sample outcomes of the run folders (statistics: significance.py).

Each row is paired with the baseline row that holds the same samples (of several baseline rows, e.g. a --limit
400 and a full-length one, the one pairing most columns); a row pairing with none says why instead of a number."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import ReportError
from .outcomes import METRICS, RunOutcomes, load_outcomes
from .runs import RunGroup, Warn, group_runs
from .significance import (INTERVAL_NOTE, P_NOTE, Difference, RowStats, difference, mark_note, p_text, row_stats,
                           sample_differences, seeds_of)
from .splits import column_members
from .tables import (INDEX_NAME, N_COLUMN, RESAMPLED_COLUMN, Section, build_tables, captions, difference_text,
                     ordered_columns, row_label, sections, usable)

NOTE_COLUMN, BASELINE_COLUMN = "note", "baseline"


@dataclass
class _Comparison:
    """One row against its baseline row: per column a Difference, or why the row is not paired."""
    baseline: str  # the baseline row's label
    cells: dict[str, Difference] = field(default_factory=dict)
    unpaired: dict[str, str] = field(default_factory=dict)  # column -> reason
    resampled: set[str] = field(default_factory=set)


def _columns(group: RunGroup) -> dict[str, list[str]]:
    return column_members({split for replicate in group.replicates for split in replicate})


def _compare(row: RunGroup, base: RunGroup, outcomes: dict[int, RunOutcomes], metric: str,
             resampling: str) -> _Comparison:
    a, b = seeds_of(row, outcomes), seeds_of(base, outcomes)
    comparison = _Comparison(row_label(base, metric))
    if differ := sample_differences(row.runs[0], base.runs[0]):  # another protocol or clean set: other samples
        comparison.unpaired = {column: "; ".join(differ) for column in _columns(row)}
        return comparison
    for column, members in _columns(row).items():
        result, text = difference(a, b, members, metric, resampling)
        if result is None:
            comparison.unpaired[column] = text
        else:
            comparison.cells[column] = result
            comparison.resampled.add(text)
    return comparison


def _against(row: RunGroup, bases: list[RunGroup], outcomes: dict[int, RunOutcomes], metric: str,
             resampling: str) -> _Comparison:
    """The row against the baseline row pairing most of its columns (the first of equals)."""
    candidates = [_compare(row, base, outcomes, metric, resampling) for base in bases]
    return max(candidates, key=lambda c: len(c.cells))


def _note(row: RunGroup, comparison: _Comparison, base: RunGroup) -> str:
    if not comparison.unpaired:
        return ""
    if not comparison.cells:
        what = sample_differences(row.runs[0], base.runs[0])
        return "not paired: " + ("; ".join(what) if what else next(iter(comparison.unpaired.values())))
    return "not paired: " + "; ".join(f"{column}: {reason}" for column, reason in comparison.unpaired.items())


def _difference_cell(d: Difference) -> str:
    return f"{difference_text(d.delta, d.interval, d.significant)} {p_text(d.p)}"


@dataclass
class Analysis:
    """Per row (table, label): its RowStats; per table: the difference frame (None without a baseline row)."""
    stats: dict[tuple[str, str], RowStats]
    differences: dict[str, pd.DataFrame | None]


def analyse(groups: list[RunGroup], outcomes: dict[int, RunOutcomes], metric: str, ci: bool, baseline: str | None,
            resampling: str) -> Analysis:
    stats, differences = {}, {}
    by_table: dict[str, list[RunGroup]] = {}
    for group in groups:
        by_table.setdefault(group.table, []).append(group)
    for table, members in by_table.items():
        bases = [g for g in members if baseline is not None and g.runs[0].get("method") == baseline]
        rows, marks = {}, {}
        for group in members:
            label = row_label(group, metric)
            if bases and not any(group is base for base in bases):
                comparison = _against(group, bases, outcomes, metric, resampling)
                base = next(b for b in bases if row_label(b, metric) == comparison.baseline)
                rows[label] = (comparison, _note(group, comparison, base))
                marks[label] = frozenset(c for c, d in comparison.cells.items() if d.significant)
            computed = row_stats(group, outcomes, _columns(group), metric, resampling) if ci else None
            stats[(table, label)] = RowStats(computed.intervals if computed else {},
                                            computed.resampled if computed else "", marks.get(label, frozenset()))
        differences[table] = _difference_frame(rows) if bases else None
    return Analysis(stats, differences)


def _difference_frame(rows: dict[str, tuple[_Comparison, str]]) -> pd.DataFrame:
    columns = ordered_columns({column for comparison, _ in rows.values() for column in comparison.cells})
    bases = {comparison.baseline for comparison, _ in rows.values()}
    records = []
    for label in sorted(rows):
        comparison, note = rows[label]
        cells = [_difference_cell(comparison.cells[c]) if c in comparison.cells else "" for c in columns]
        n = max((d.n for d in comparison.cells.values()), default=0)
        extra = [comparison.baseline] if len(bases) > 1 else []
        records.append([*cells, *extra, str(n) if n else "", " / ".join(sorted(comparison.resampled)), note])
    names = [*columns, *([BASELINE_COLUMN] if len(bases) > 1 else []), N_COLUMN, RESAMPLED_COLUMN, NOTE_COLUMN]
    frame = pd.DataFrame(records, index=pd.Index(sorted(rows), name=INDEX_NAME), columns=names, dtype="str")
    return frame.loc[:, [c for c in frame.columns if c != NOTE_COLUMN or frame[c].str.len().any()]]


def ci_sections(folders: list[tuple[Path, dict]], metric: str, ci: bool, baseline: str | None, resampling: str,
                published: pd.DataFrame | None, warn: Warn | None) -> list[Section]:
    """The sections `table --ci / --baseline` prints: per table, its accuracies (with intervals, † where a row
    differs from the baseline) and the differences to the baseline."""
    if metric not in METRICS:
        raise ReportError(f"intervals and paired differences are computed for {', '.join(METRICS)} (from the "
                          f"per-sample predictions), not {metric!r}")
    kept = usable([summary for _, summary in folders], metric, warn)
    ids = {id(summary) for summary in kept}
    outcomes = {id(summary): load_outcomes(folder, summary) for folder, summary in folders if id(summary) in ids}
    groups = group_runs(kept)
    if baseline is not None and not any(g.runs[0].get("method") == baseline for g in groups):
        methods = sorted({g.runs[0].get("method") for g in groups})
        raise ReportError(f"--baseline {baseline}: no row of that method; methods here: {', '.join(methods)}")
    analysis = analyse(groups, outcomes, metric, ci, baseline, resampling)
    tables = build_tables(kept, metric, published, lambda group, _: analysis.stats.get(
        (group.table, row_label(group, metric))))
    notes = tuple(note for note, shown in ((INTERVAL_NOTE, ci), (baseline and mark_note(baseline), baseline))
                  if shown)
    out = []
    for section in sections(tables, metric, captions(kept, metric), notes):
        out.append(section)
        frame = analysis.differences.get(section.name)
        if baseline is None:
            continue
        if frame is None:
            out[-1] = Section(section.name, section.title, section.table, section.caption, section.label,
                              (*section.notes, f"No {baseline} row in this table: no differences."))
            continue
        out.append(Section(f"{section.name}: difference to {baseline}",
                           f"{section.name}: difference to {baseline} ({metric}, points)", frame,
                           f"{section.name}: difference to {baseline} in {metric} points (row - {baseline}), with "
                           "its 95% paired bootstrap interval and McNemar's exact p; n: paired samples.",
                           f"tab:{section.name}-{metric}-vs-{baseline}", (mark_note(baseline), P_NOTE)))
    return out
