"""Result tables from run summaries: one per suite, rows = configurations, columns = splits in canonical order.

Every measured row shows the samples behind it (``n``, per seed), and where a row's mean covers fewer domains than
the suite has, or other splits than the rows around it, the ``mean over`` column says so ("4 of 15",
"3 of 15 (other splits)"): a 4-corruption mean never passes for a 15-corruption one.
Pure functions of their inputs: the same runs in any order give byte-identical output."""
from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
from tabulate import tabulate

from ..choices import TABLE_FORMATS
from ..errors import ReportError
from ..vocabulary import CORRUPTIONS, SHORT_NAMES
from .runs import RunGroup, Warn, group_runs, summary_problems
from .significance import MARK, NO_INTERVAL, RowStats
from .splits import (IMAGENET_FAMILY, MEAN, OOD_MEAN, column_members, is_aggregate, parse_corruption, severity_mean,
                     split_key, split_value, table_of)

# samples behind a row; which domains its mean covers; failed samples (scored as wrong); how intervals resampled
N_COLUMN, COVER_COLUMN, FAILED_COLUMN, RESAMPLED_COLUMN = "n", "mean over", "failed", "resampled"
# A row's intervals, given the row and each column it shows with the splits that column averages.
Stats = Callable[[RunGroup, dict[str, list[str]]], "RowStats | None"]
INDEX_NAME = "method"
# Rows shown beneath an APM-like row, when its splits carry the key ({metric} is the table's metric).
SUB_ROWS = (("  teacher (ceiling)", "teacher_{metric}"), ("  agreement", "agreement"))
FORMATS = TABLE_FORMATS
METRIC_NAMES = {"top1": "top-1 accuracy", "top5": "top-5 accuracy", "error": "top-1 error"}
_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {"±": r"$\pm$", MARK: r"$^\dagger$", "<": "$<$", ">": "$>$"}


@dataclass
class _Row:
    label: str
    replicates: list[dict[str, float]]  # one per seed: split -> value (published rows may give "mean")
    n: str = ""  # samples behind the row, per seed ("" for sub-rows and published rows)
    published: bool = False
    failed: str = ""  # failed samples per seed, where any failed
    stats: RowStats | None = field(default=None)


def metric_of(summary: dict, split: str, metric: str) -> float | None:
    """`metric` of one split of a run (top1, top5, ece, ...; error from top1), None when absent."""
    return split_value(summary["splits"].get(split, {}), metric)


def replicate_values(group: RunGroup, key: str) -> list[dict[str, float]]:
    """Per seed, split -> value of `key`; seeds without any value are left out."""
    replicates = [{split: value for split, values in replicate.items()
                   if (value := split_value(values, key)) is not None} for replicate in group.replicates]
    return [replicate for replicate in replicates if replicate]


def _measured_rows(groups: list[RunGroup], metric: str, stats: Stats | None) -> dict[str, list[_Row]]:
    rows: dict[str, list[_Row]] = {}
    for group in groups:
        main = replicate_values(group, metric)
        if not main:
            continue
        subs = [_Row(label, values) for label, key in SUB_ROWS
                if (values := replicate_values(group, key.format(metric=metric)))]
        label = row_label(group, metric)
        row_stats = stats(group, column_members({split for r in main for split in r})) if stats else None
        row = _Row(label, main, _samples(group), failed=_failed(group), stats=row_stats)
        rows.setdefault(group.table, []).extend([row, *subs])
    return rows


def _span_of(counts: set[int]) -> str:
    ordered = sorted(counts)
    return str(ordered[0]) if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}"


def _samples(group: RunGroup) -> str:
    """Samples behind a row per seed (a range where seeds differ)."""
    return _span_of({sum(int(values.get("n") or 0) for split, values in replicate.items() if not is_aggregate(split))
                     for replicate in group.replicates})


def _failed(group: RunGroup) -> str:
    """Failed samples (a diverged update: scored as wrong) per seed, "" where none failed."""
    counts = {sum(int(values.get("failed") or 0) for split, values in replicate.items() if not is_aggregate(split))
              for replicate in group.replicates}
    return _span_of(counts) if any(counts) else ""


def _domains(splits: set[str]) -> int:
    """How many domains a row of these splits could cover: 15 corruptions per severity, the five ImageNet-family
    sets, else the splits themselves."""
    severities = {corruption[1] for split in splits if (corruption := parse_corruption(split)) is not None}
    if severities:
        return len(CORRUPTIONS) * len(severities)
    if splits and splits <= set(IMAGENET_FAMILY):
        return len(IMAGENET_FAMILY)
    return len(splits)


def _coverage(rows: list[_Row]) -> list[str]:
    """Per row, what its mean covers when it is not all domains or not the splits of the other rows; "" otherwise."""
    covers = [frozenset(split for replicate in row.replicates for split in replicate if not is_aggregate(split))
              for row in rows]
    measured = [cover for row, cover in zip(rows, covers) if row.n]
    common = max(measured, key=measured.count) if measured else frozenset()  # first of the most frequent
    cells = []
    for row, cover in zip(rows, covers):
        if not row.n:
            cells.append("published" if row.published and not cover else "")
            continue
        other = cover != common
        cells.append("" if len(cover) == _domains(set(cover)) and not other else
                     f"{len(cover)} of {_domains(set(cover))}" + (" (other splits)" if other else ""))
    return cells


def _published_label(record) -> str:
    flag = "published" if record.verified else "published, unverified"
    return f"{record.method} ({record.backbone}) [{flag}: {record.source}]"


def _published_rows(published: pd.DataFrame, metric: str) -> dict[str, list[_Row]]:
    """Published numbers as rows of their own, one per (method, backbone, source) in a table."""
    values: dict[str, dict[str, dict[str, float]]] = {}
    for record in published.sort_values(list(published.columns)).itertuples(index=False):
        value = split_value({record.metric: record.value}, metric)
        if value is not None:
            table = table_of(record.suite, [record.split])
            values.setdefault(table, {}).setdefault(_published_label(record), {})[record.split] = value
    return {table: [_Row(label, [rows[label]], published=True) for label in sorted(rows)]
            for table, rows in values.items()}


def _with_means(values: dict[str, float]) -> dict[str, float]:
    """Add the row's mean, its mean per severity, and the OOD mean when all four OOD splits are there (a mean the
    row gives itself, as a published one, stays)."""
    return values | {column: statistics.fmean(values[split] for split in members)
                     for column, members in column_members(values).items() if column not in values}


def number(value: float, digits: int = 1) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def interval_text(interval: tuple[float, float] | None, digits: int = 1) -> str:
    return NO_INTERVAL if interval is None else f"[{number(interval[0], digits)}, {number(interval[1], digits)}]"


def difference_text(delta: float, interval: tuple[float, float] | None, significant: bool) -> str:
    """'+0.42† [0.13, 0.95]': a paired difference in points to two decimals (differences of a few tenths are the
    ones in question), a † where significant."""
    sign = "+" if float(number(delta, 2)) > 0 else ""
    return f"{sign}{number(delta, 2)}{MARK if significant else ''} {interval_text(interval, 2)}"


def _cell(values: list[float], stats: RowStats | None = None, column: str = "") -> str:
    """'41.0', '41.0 ± 1.4' over seeds; a † where it differs from the baseline; its interval after it."""
    if not values:
        return ""
    text = number(values[0]) if len(values) == 1 else (f"{number(statistics.fmean(values))} ± "
                                                       f"{number(statistics.stdev(values))}")
    if stats is None:
        return text
    return (text + (MARK if column in stats.marks else "")
            + (f" {interval_text(stats.intervals[column])}" if column in stats.intervals else ""))


def ordered_columns(present: set[str]) -> list[str]:
    """A table's value columns in canonical order: splits, per-severity means (only where the table mixes
    severities), the mean and the OOD mean."""
    severities = {corruption[1] for split in present if (corruption := parse_corruption(split)) is not None}
    if len(severities) < 2:  # per-severity means only say something when the table mixes severities
        present = present - {severity_mean(severity) for severity in severities}
    columns = sorted((split for split in present if split not in (MEAN, OOD_MEAN)), key=split_key)
    return columns + [column for column in (MEAN, OOD_MEAN) if column in present]


def row_label(group: RunGroup, metric: str) -> str:
    """A measured row's label: the group's, with the number of seeds whose `metric` it shows."""
    seeds = len(replicate_values(group, metric))
    return group.label + (f" (n={seeds} seeds)" if seeds > 1 else "")


def _frame(rows: list[_Row]) -> pd.DataFrame:
    full = [[_with_means(replicate) for replicate in row.replicates] for row in rows]
    columns = ordered_columns({split for replicates in full for replicate in replicates for split in replicate})
    cells = [[_cell([replicate[column] for replicate in replicates if column in replicate], row.stats, column)
              for column in columns] for row, replicates in zip(rows, full)]
    coverage = _coverage(rows)
    extra = [(COVER_COLUMN, coverage) if any(cell for row, cell in zip(rows, coverage) if row.n) else None,
             (N_COLUMN, [row.n for row in rows]),
             (FAILED_COLUMN, [row.failed for row in rows]) if any(row.failed for row in rows) else None,
             (RESAMPLED_COLUMN, [row.stats.resampled if row.stats else "" for row in rows])
             if any(row.stats and row.stats.resampled for row in rows) else None]
    for name, values in filter(None, extra):
        columns.append(name)
        cells = [row_cells + [value] for row_cells, value in zip(cells, values)]
    return pd.DataFrame(cells, index=pd.Index([row.label for row in rows], name=INDEX_NAME),
                        columns=columns, dtype="str")


def _unreadable(summary: dict, metric: str) -> str | None:
    """Why a run's metric cannot be shown (recorded, but not a finite number in some split), else None."""
    keys = (metric, *(metric[: -len(a)] + b for a, b in (("error", "top1"), ("top1", "error")) if metric.endswith(a)))
    for split, values in sorted(summary["splits"].items()):
        recorded = [values[key] for key in keys if key in values]
        if recorded and split_value(values, metric) is None:
            return f"{metric} of {split} is {recorded[0]!r}, not a number"
    return None


def usable(summaries: list[dict], metric: str, warn: Warn | None = None) -> list[dict]:
    """The summaries a table of `metric` can show: each one checked for the keys a table needs (a ReportError
    naming the first that lacks them), and those whose metric is not a number in some split left out, one warning
    line each (``warn``; a Python warning by default), so that 'n=K seeds' counts the runs shown."""
    for i, summary in enumerate(summaries):
        if problems := summary_problems(summary):
            raise ReportError(f"summary {i + 1} of {len(summaries)} is not a run summary: {'; '.join(problems)}")
    kept = []
    for summary in summaries:
        if (reason := _unreadable(summary, metric)) is None:
            kept.append(summary)
        else:
            (warn or _python_warning)(f"left out run {summary.get('run_name')}: {reason}")
    return kept


def _python_warning(line: str) -> None:
    warnings.warn(line, stacklevel=3)


def build_tables(summaries: list[dict], metric: str = "top1", published: pd.DataFrame | None = None,
                 stats: Stats | None = None, warn: Warn | None = None) -> dict[str, pd.DataFrame]:
    """One table per suite (ImageNet-family suites share one), measured rows first, then published rows;
    ``stats`` gives a row's intervals (and marks); ``warn`` receives the runs left out (``usable``)."""
    rows = _measured_rows(group_runs(usable(summaries, metric, warn)), metric, stats)
    if published is not None:
        for table, extra in _published_rows(published, metric).items():
            if table in rows:
                rows[table].extend(extra)
    return {table: _frame(rows[table]) for table in sorted(rows)}


def _latex_text(text: str) -> str:
    body = text.lstrip(" ")
    indent = r"\quad " if len(body) < len(text) else ""
    return indent + "".join(_LATEX_SYMBOLS.get(char) or _LATEX_ESCAPES.get(char, char) for char in body)


def short_headers(columns: list[str]) -> list[str]:
    """Corruption columns as papers print them (gauss, shot, impul, ...); with the severity where a table mixes
    severities (gauss-3, gauss-5)."""
    parsed = [parse_corruption(column) for column in columns]
    mixed = len({p[1] for p in parsed if p}) > 1
    return [column if p is None else SHORT_NAMES.get(p[0], p[0]) + (f"-{p[1]}" if mixed else "")
            for column, p in zip(columns, parsed)]


def _latex(table: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); with a caption, inside a table float."""
    def line(cells: list[str]) -> str:
        return " & ".join(_latex_text(str(cell)) for cell in cells) + r" \\"
    body = [line(list(row)) for row in table.itertuples(name=None)]
    tabular = [
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule",
        line([table.index.name or "", *short_headers(list(table.columns))]), r"\midrule", *body, r"\bottomrule",
        r"\end{tabular}",
    ]
    if caption is None:
        return "\n".join(tabular) + "\n"
    head = [r"\begin{table}[t]", r"\centering", r"\small", r"\caption{" + _latex_text(caption) + "}"]
    head += [r"\label{" + label + "}"] if label else []
    return "\n".join([*head, *tabular, r"\end{table}"]) + "\n"


def _span(values: list) -> str:
    values = sorted(set(values), key=str)
    return ", ".join(map(str, values)) if values else "unknown"


def captions(summaries: list[dict], metric: str) -> dict[str, str]:
    """Per table, what a reader of the LaTeX table needs beside it: the suite(s), the teacher(s), the protocol
    (stream setting), n (samples per split) and, where it is one, the severity."""
    runs: dict[str, list[dict]] = {}
    for summary in summaries:
        runs.setdefault(table_of(summary["suite"], summary["splits"]), []).append(summary)
    out = {}
    for table, group in runs.items():
        ns = [split["n"] for s in group for split in s["splits"].values() if isinstance(split.get("n"), int)]
        n = "unknown" if not ns else str(min(ns)) if min(ns) == max(ns) else f"{min(ns)}-{max(ns)}"
        severities = {p[1] for s in group for split in s["splits"] if (p := parse_corruption(split))}
        settings = [(s.get("setting") or {}).get("name") or "unknown" for s in group]
        teachers = sorted({str(s.get("teacher") or "unknown") for s in group})
        parts = [f"{_span([s['suite'] for s in group])}: {METRIC_NAMES.get(metric, metric)} (%)"
                 + (f" at severity {next(iter(severities))}" if len(severities) == 1 else ""),
                 f"teacher{'s' if len(teachers) > 1 else ''} {', '.join(teachers)}",
                 f"protocol {_span(settings)}", f"n = {n} samples per split"]
        out[table] = "; ".join(parts) + "."
    return out


def render(table: pd.DataFrame, fmt: str, caption: str | None = None, label: str | None = None) -> str:
    """One table as Markdown (pipe), CSV or a booktabs LaTeX tabular (a table float when given a caption)."""
    if fmt == "md":
        return tabulate(list(table.itertuples(name=None)), headers=[table.index.name or "", *table.columns],
                        tablefmt="pipe", disable_numparse=True, preserve_whitespace=True,
                        colalign=("left", *["right"] * len(table.columns))) + "\n"
    if fmt == "csv":
        return table.to_csv(lineterminator="\n")
    if fmt == "latex":
        return _latex(table, caption, label)
    raise ReportError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class Section:
    """One table of a report: its name (the CSV 'table' column), heading, LaTeX caption and label, and the lines a
    reader needs below it (in LaTeX: appended to the caption)."""
    name: str
    title: str
    table: pd.DataFrame
    caption: str | None = None
    label: str | None = None
    notes: tuple[str, ...] = ()


def render_sections(sections: list[Section], fmt: str) -> str:
    """Tables in one text: headed sections (md, latex) or one CSV with a leading 'table' column."""
    if fmt == "csv":
        return render(pd.concat([s.table.assign(table=s.name)[["table", *s.table.columns]] for s in sections]), fmt)
    if fmt == "md":
        return "\n".join(f"## {s.title}\n\n" + render(s.table, fmt) + "".join(f"\n{note}\n" for note in s.notes)
                         for s in sections)
    parts = []
    for s in sections:
        caption = " ".join(filter(None, [s.caption, *s.notes])) or None
        parts.append(f"% {s.title}\n" + render(s.table, fmt, caption, s.label if caption else None))
    return "\n".join(parts)


def sections(tables: dict[str, pd.DataFrame], metric: str, table_captions: dict[str, str] | None = None,
             notes: tuple[str, ...] = ()) -> list[Section]:
    """One section per table, in name order; LaTeX tables get their caption (``captions``) and a label
    tab:<table>-<metric>."""
    table_captions = table_captions or {}
    return [Section(name, f"{name} ({metric})", table, table_captions.get(name),
                    f"tab:{name}-{metric}" if name in table_captions else None, notes)
            for name, table in sorted(tables.items())]


def render_tables(tables: dict[str, pd.DataFrame], fmt: str, metric: str,
                  table_captions: dict[str, str] | None = None) -> str:
    """All tables in one text: headed sections (md, latex) or one CSV with a leading 'table' column; LaTeX tables
    get their caption (``captions``) and a label tab:<table>-<metric>."""
    return render_sections(sections(tables, metric, table_captions), fmt)
