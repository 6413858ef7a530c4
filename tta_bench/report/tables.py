"""Result tables from run summaries: one per suite, rows = configurations, columns = splits in canonical order.

Every measured row shows the samples behind it (``n``, per seed), and where a row's mean covers fewer domains than
the suite has, or other splits than the rows around it, the ``mean over`` column says so ("4 of 15",
"3 of 15 (other splits)"): a 4-corruption mean never passes for a 15-corruption one.
Pure functions of their inputs: the same runs in any order give byte-identical output."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate

from ..choices import TABLE_FORMATS
from ..errors import ReportError
from ..vocabulary import SHORT_NAMES
from .runs import RunGroup, group_runs
from ..vocabulary import CORRUPTIONS
from .splits import (IMAGENET_FAMILY, MEAN, OOD_SPLITS, is_aggregate, parse_corruption, severity_mean, split_key,
                     split_value, table_of)

OOD_MEAN = "OOD mean"
N_COLUMN, COVER_COLUMN = "n", "mean over"  # samples behind a row; which domains its mean covers
INDEX_NAME = "method"
# Rows shown beneath an APM-like row, when its splits carry the key ({metric} is the table's metric).
SUB_ROWS = (("  teacher (ceiling)", "teacher_{metric}"), ("  agreement", "agreement"))
FORMATS = TABLE_FORMATS
METRIC_NAMES = {"top1": "top-1 accuracy", "top5": "top-5 accuracy", "error": "top-1 error"}
_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


@dataclass
class _Row:
    label: str
    replicates: list[dict[str, float]]  # one per seed: split -> value (published rows may give "mean")
    n: str = ""  # samples behind the row, per seed ("" for sub-rows and published rows)
    published: bool = False


def metric_of(summary: dict, split: str, metric: str) -> float | None:
    """`metric` of one split of a run (top1, top5, ece, ...; error from top1), None when absent."""
    return split_value(summary["splits"].get(split, {}), metric)


def replicate_values(group: RunGroup, key: str) -> list[dict[str, float]]:
    """Per seed, split -> value of `key`; seeds without any value are left out."""
    replicates = [{split: value for split, values in replicate.items()
                   if (value := split_value(values, key)) is not None} for replicate in group.replicates]
    return [replicate for replicate in replicates if replicate]


def _measured_rows(groups: list[RunGroup], metric: str) -> dict[str, list[_Row]]:
    rows: dict[str, list[_Row]] = {}
    for group in groups:
        main = replicate_values(group, metric)
        if not main:
            continue
        subs = [_Row(label, values) for label, key in SUB_ROWS
                if (values := replicate_values(group, key.format(metric=metric)))]
        label = group.label + (f" (n={len(main)} seeds)" if len(main) > 1 else "")
        rows.setdefault(group.table, []).extend([_Row(label, main, _samples(group)), *subs])
    return rows


def _samples(group: RunGroup) -> str:
    """Samples behind a row per seed (a range where seeds differ)."""
    counts = sorted({sum(int(values.get("n") or 0) for split, values in replicate.items() if not is_aggregate(split))
                     for replicate in group.replicates})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


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
    """Add the row's mean, its mean per severity, and the OOD mean when all four OOD splits are there."""
    out = dict(values)
    splits = sorted((split for split in values if not is_aggregate(split)), key=split_key)
    if MEAN not in out and splits:
        out[MEAN] = statistics.fmean(values[split] for split in splits)
    by_severity: dict[str, list[float]] = {}
    for split in splits:
        if (corruption := parse_corruption(split)) is not None:
            by_severity.setdefault(severity_mean(corruption[1]), []).append(values[split])
    out |= {column: statistics.fmean(group) for column, group in by_severity.items()}
    if all(split in values for split in OOD_SPLITS):
        out[OOD_MEAN] = statistics.fmean(values[split] for split in OOD_SPLITS)
    return out


def _number(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _cell(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return _number(values[0])
    return f"{_number(statistics.fmean(values))} ± {_number(statistics.stdev(values))}"


def _frame(rows: list[_Row]) -> pd.DataFrame:
    full = [[_with_means(replicate) for replicate in row.replicates] for row in rows]
    present = {split for replicates in full for replicate in replicates for split in replicate}
    severities = {corruption[1] for split in present if (corruption := parse_corruption(split)) is not None}
    if len(severities) < 2:  # per-severity means only say something when the table mixes severities
        present -= {severity_mean(severity) for severity in severities}
    columns = sorted((split for split in present if split not in (MEAN, OOD_MEAN)), key=split_key)
    columns += [column for column in (MEAN, OOD_MEAN) if column in present]
    cells = [[_cell([replicate[column] for replicate in replicates if column in replicate]) for column in columns]
             for replicates in full]
    coverage = _coverage(rows)
    if any(cell for row, cell in zip(rows, coverage) if row.n):
        columns.append(COVER_COLUMN)
        cells = [row_cells + [cover] for row_cells, cover in zip(cells, coverage)]
    columns.append(N_COLUMN)
    cells = [row_cells + [row.n] for row_cells, row in zip(cells, rows)]
    return pd.DataFrame(cells, index=pd.Index([row.label for row in rows], name=INDEX_NAME),
                        columns=columns, dtype="str")


def build_tables(summaries: list[dict], metric: str = "top1",
                 published: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """One table per suite (ImageNet-family suites share one), measured rows first, then published rows."""
    rows = _measured_rows(group_runs(summaries), metric)
    if published is not None:
        for table, extra in _published_rows(published, metric).items():
            if table in rows:
                rows[table].extend(extra)
    return {table: _frame(rows[table]) for table in sorted(rows)}


def _latex_text(text: str) -> str:
    body = text.lstrip(" ")
    indent = r"\quad " if len(body) < len(text) else ""
    return indent + "".join(_LATEX_ESCAPES.get(char, char) for char in body).replace("±", r"$\pm$")


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


def render_tables(tables: dict[str, pd.DataFrame], fmt: str, metric: str,
                  table_captions: dict[str, str] | None = None) -> str:
    """All tables in one text: headed sections (md, latex) or one CSV with a leading 'table' column; LaTeX tables
    get their caption (``captions``) and a label tab:<table>-<metric>."""
    if fmt == "csv":
        frames = [table.assign(table=name)[["table", *table.columns]] for name, table in sorted(tables.items())]
        return render(pd.concat(frames), fmt)
    heading = "## {name} ({metric})\n\n" if fmt == "md" else "% {name} ({metric})\n"
    table_captions = table_captions or {}
    return "\n".join(heading.format(name=name, metric=metric)
                     + render(table, fmt, table_captions.get(name), f"tab:{name}-{metric}" if name in table_captions
                              else None)
                     for name, table in sorted(tables.items()))
