"""Figures from run summaries (PNG + SVG each), drawn with the Agg canvas and no pyplot global state.

Each function draws what the runs can show and skips the rest; it raises only when nothing fits."""
from __future__ import annotations

import math
import os
import re
import statistics
import zlib
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from ..errors import ReportError
from ..vocabulary import CORRUPTIONS
from .runs import RunGroup, group_runs, legend_labels
from .splits import MEAN, is_aggregate, parse_corruption, split_value
from .tables import Stats, replicate_values

FORMATS = ("png", "svg")
METRIC = "top1"
_COLORS = matplotlib.colormaps["tab10"].colors
_MORE_COLORS = matplotlib.colormaps["tab20"].colors[1::2]  # the light halves, for methods not named below
# One colour per method in every figure; rows of one method that differ otherwise get other line styles / hatches.
METHOD_COLORS = {
    "source": "#4d4d4d", "bn_adapt": _COLORS[0], "tent": _COLORS[1], "eata": _COLORS[2], "sar": _COLORS[3],
    "cotta": _COLORS[4], "rotta": _COLORS[5], "lame": _COLORS[6], "shot_im": _COLORS[8], "memo": _COLORS[9],
    "apm": "#000080", "tpt": "#b8860b", "tda": "#2e8b57", "zero": "#8b008b",
}
_LINESTYLES = ("-", "--", ":", "-.")
_HATCHES = ("", "//", "..", "xx")
MISSING = "n/a"  # drawn where a row has no result, so that it is not mistaken for 0%


def method_color(method: str) -> tuple | str:
    """The method's colour, the same in every figure (a stable pick from a palette for methods not listed)."""
    return METHOD_COLORS.get(method) or _MORE_COLORS[zlib.crc32(method.encode()) % len(_MORE_COLORS)]


def _stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


class FigureWriteError(ReportError):
    """A figure cannot be written (read-only folder, full disk): no other figure can be either, so it stops."""


def check_out_dir(out_dir: str | Path) -> Path:
    """A folder figures can be written to (made if missing); a ReportError in one line otherwise."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: is a file, not a folder for the figures")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"--out {out}: cannot make the folder ({error.strerror or error})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ReportError(f"--out {out}: the folder is not writable")
    return out


def _save(figure: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write the figure in every format; fixed SVG ids and no dates, so reruns give the same files."""
    out = check_out_dir(out_dir)
    FigureCanvasAgg(figure)
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "tta_bench"}):
        for ext in FORMATS:
            path = out / f"{_stem(stem)}.{ext}"
            try:
                figure.savefig(path, format=ext, metadata={"Date": None} if ext == "svg" else None)
            except OSError as error:
                raise FigureWriteError(f"cannot write {path}: {error.strerror or error}") from None
            paths.append(path)
    return paths


@dataclass(frozen=True)
class _Row:
    """One table row as a figure shows it: legend label, colour, style index among rows of its method, values
    (split -> top-1, mean over seeds) and error bars (split -> (below, above) the value), and what they are."""
    label: str
    color: tuple | str
    variant: int
    values: dict[str, float]
    errors: dict[str, tuple[float, float]]
    error_kind: str  # "95% interval", "± std over seeds" or ""
    withheld: bool = False  # some values have no interval: too few batches to resample


def _row(group: RunGroup, label: str, variant: int, stats: Stats | None) -> _Row:
    """Values averaged over seeds; error bars from the row's intervals where its runs have per-sample predictions,
    else the standard deviation over seeds where it has several."""
    collected: dict[str, list[float]] = {}
    for replicate in replicate_values(group, METRIC):
        for split, value in replicate.items():
            collected.setdefault(split, []).append(value)
    values = {split: statistics.fmean(v) for split, v in collected.items()}
    row_stats = stats(group, {split: [split] for split in values}) if stats else None
    if row_stats and any(row_stats.intervals.values()):
        errors = {split: (values[split] - low, high - values[split])
                  for split, interval in row_stats.intervals.items() if interval for low, high in [interval]}
        return _Row(label, method_color(group.runs[0]["method"]), variant, values, errors, "95% interval",
                    any(split not in errors for split in values))
    spread = {split: statistics.stdev(v) for split, v in collected.items() if len(v) > 1}
    return _Row(label, method_color(group.runs[0]["method"]), variant, values,
                {split: (sd, sd) for split, sd in spread.items()}, "± std over seeds" if spread else "")


def _rows(groups: list[RunGroup], stats: Stats | None) -> tuple[list[_Row], list[str]]:
    """The figure's rows (legend labels of method names and what tells rows apart) and what they all share."""
    labels, shared = legend_labels(groups)
    seen: dict[str, int] = {}
    rows = []
    for group, label in sorted(zip(groups, labels), key=lambda pair: pair[1]):
        method = group.runs[0]["method"]
        seen[method] = seen.get(method, -1) + 1
        rows.append(_row(group, label, seen[method], stats))
    return rows, shared


def _by_table(groups: list[RunGroup]) -> dict[str, list[RunGroup]]:
    tables: dict[str, list[RunGroup]] = {}
    for group in groups:
        tables.setdefault(group.table, []).append(group)
    return tables


def _by_corruption(values: dict[str, float]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for split, value in values.items():
        if (parsed := parse_corruption(split)) is not None:
            out.setdefault(parsed[0], {})[parsed[1]] = value
    return out


def _corruption_order(names: set[str]) -> list[str]:
    return sorted(names, key=lambda name: (CORRUPTIONS.index(name) if name in CORRUPTIONS else len(CORRUPTIONS),
                                           name))


def _title(text: str, shared: list[str]) -> str:
    return text + (f"\n{', '.join(shared)}" if shared else "")


def _error_note(rows: list[_Row]) -> str:
    kinds = sorted({row.error_kind for row in rows if row.error_kind and row.errors})
    if any(row.withheld for row in rows):
        kinds.append("none where too few batches to resample")
    return f"error bars: {'; '.join(kinds)}" if kinds else ""


def _severity_figure(table: str, rows: list[_Row], shared: list[str]) -> Figure:
    curves = {corruption: {} for row in rows for corruption, by in _by_corruption(row.values).items() if len(by) > 1}
    corruptions = _corruption_order(set(curves))
    ncols = min(5, len(corruptions))
    nrows = math.ceil(len(corruptions) / ncols)
    figure = Figure(figsize=(3.2 * ncols, 2.8 * nrows + 1.2), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    shown = []
    for ax, corruption in zip(axes, corruptions):
        for row in rows:
            by_severity = _by_corruption(row.values).get(corruption, {})
            if len(by_severity) < 2:
                continue
            severities = sorted(by_severity)
            splits = [f"{corruption}-{s}" for s in severities]
            errors = [row.errors.get(split, (0.0, 0.0)) for split in splits]
            drawn = ax.errorbar(severities, [by_severity[s] for s in severities],
                                yerr=[[e[0] for e in errors], [e[1] for e in errors]] if row.errors else None,
                                marker="o", color=row.color, linestyle=_LINESTYLES[row.variant % len(_LINESTYLES)],
                                capsize=3, label=row.label, clip_on=False)
            drawn.lines[0].set_clip_on(False)  # a marker at 0% stays whole
            shown.append(row)
        ax.set_title(corruption)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 100)
        ax.set_xlabel("severity")
        ax.set_ylabel("top-1 (%)")
    for ax in axes[len(corruptions):]:
        ax.set_visible(False)
    legend_rows = list({row.label: row for row in shown}.values())
    handles = [Line2D([], [], color=row.color, marker="o", linestyle=_LINESTYLES[row.variant % len(_LINESTYLES)],
                      label=row.label) for row in legend_rows]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize="small",
                  title=_error_note(legend_rows) or None, title_fontsize="small")
    figure.suptitle(_title(f"{table}: top-1 vs severity", shared))
    return figure


def plot_severity(summaries: list[dict], out_dir: str | Path, stats: Stats | None = None) -> list[Path]:
    """Top-1 vs severity, one subplot per corruption, one line per row (error bars where known); one figure per
    suite."""
    paths: list[Path] = []
    for table, groups in _by_table(group_runs(summaries)).items():
        rows, shared = _rows(groups, stats)
        if any(len(by) > 1 for row in rows for by in _by_corruption(row.values).values()):
            paths += _save(_severity_figure(table, rows, shared), out_dir, f"severity_{table}")
    if not paths:
        raise ReportError("no run has more than one severity")
    return paths


def _bars_figure(table: str, severity: int, rows: list[_Row], shared: list[str]) -> Figure:
    split_of = {name: f"{name}-{severity}" for row in rows for name in _by_corruption(row.values)}
    corruptions = _corruption_order({name for name in split_of
                                     if any(split_of[name] in row.values for row in rows)})
    width = 0.8 / len(rows)
    figure = Figure(figsize=(min(20.0, max(7.0, 0.1 * len(corruptions) * len(rows) + 4.0)), 5.0),
                    layout="constrained")
    ax = figure.subplots()
    for i, row in enumerate(rows):
        xs = [c + (i - (len(rows) - 1) / 2) * width for c in range(len(corruptions))]
        present = [(x, split_of[name]) for x, name in zip(xs, corruptions) if split_of[name] in row.values]
        heights = [row.values[split] for _, split in present]
        errors = [row.errors.get(split, (0.0, 0.0)) for _, split in present]
        ax.bar([x for x, _ in present], heights, width, color=row.color, label=row.label,
               hatch=_HATCHES[row.variant % len(_HATCHES)], edgecolor="white" if row.variant else None,
               yerr=[[e[0] for e in errors], [e[1] for e in errors]] if row.errors else None,
               error_kw={"capsize": 2, "elinewidth": 0.8})
        for (x, _split), height in zip(present, heights):
            if height == 0:  # a bar of 0% has no height: a line at 0 and its value say it is there
                ax.plot([x - width / 2, x + width / 2], [0, 0], color=row.color, linewidth=3, clip_on=False)
                ax.text(x, 1, "0", ha="center", va="bottom", fontsize=7, color=row.color)
        for x, name in zip(xs, corruptions):
            if split_of[name] not in row.values:
                ax.text(x, 1, MISSING, ha="center", va="bottom", fontsize=7, rotation=90, color="0.4")
    ax.set_xticks(range(len(corruptions)), corruptions, rotation=45, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(_title(f"{table}: top-1 per corruption, severity {severity}", shared))
    ax.legend(fontsize="small", title=_error_note(rows) or None, title_fontsize="small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def plot_corruption_bars(summaries: list[dict], out_dir: str | Path, severity: int = 5,
                         stats: Stats | None = None) -> list[Path]:
    """Grouped bars: top-1 per corruption at one severity, one bar per row (error bars where known; 0% and a
    missing result drawn apart); one figure per suite."""
    paths: list[Path] = []
    for table, groups in _by_table(group_runs(summaries)).items():
        rows, shared = _rows(groups, stats)
        rows = [row for row in rows if any(by.get(severity) is not None for by in _by_corruption(row.values).values())]
        if rows:
            paths += _save(_bars_figure(table, severity, rows, shared), out_dir, f"corruptions_sev{severity}_{table}")
    if not paths:
        raise ReportError(f"no run has a corruption split at severity {severity}")
    return paths


def _cost_point(summary: dict) -> tuple[float, float] | None:
    """(seconds per sample, mean top-1 over the run's splits), or None when the run cannot be placed."""
    seconds = (summary.get("cost") or {}).get("seconds_per_sample")
    values = [value for split, values in summary["splits"].items()
              if not is_aggregate(split) and (value := split_value(values, METRIC)) is not None]
    if not isinstance(seconds, (int, float)) or seconds <= 0 or not values:
        return None
    return float(seconds), statistics.fmean(values)


def device_name(summary: dict) -> str:
    """What a run's seconds were measured on: the GPU model, or the CPU model and its threads."""
    host = (summary.get("provenance") or {}).get("host") or {}
    if host.get("gpu"):
        return str(host["gpu"])
    if host.get("cpu"):
        return f"{host['cpu']}, {host.get('threads')} thread{'s' if host.get('threads') != 1 else ''}"
    return str(summary.get("device") or "unknown device")


_MARKERS = "osD^vP*Xhp"


def _log_limits(values: list[float]) -> tuple[float, float]:
    """At least a factor of 10 around the points (one run included), so the axis reads as a scale."""
    low, high = min(values), max(values)
    centre = math.sqrt(low * high)
    span = max(math.sqrt(high / low) * 1.5, math.sqrt(10.0))
    return centre / span, centre * span


@dataclass(frozen=True)
class CostPoint:
    """One row of the cost plot: seconds per sample and mean top-1 (means over its seeds), the spread of the top-1
    (below, above), its colour and marker."""
    label: str
    seconds: float
    accuracy: float
    color: tuple | str = _COLORS[0]
    marker: str = "o"
    error: tuple[float, float] | None = None


def _cost_figure(table: str, points: list[CostPoint], device: str | None, shared: list[str] | None = None,
                 error_note: str = "") -> Figure:
    longest = max(len(p.label) for p in points)
    ncols = 2 if len(points) >= 4 and longest <= 40 else 1  # long labels (data markers) get a column of their own
    rows = math.ceil(len(points) / ncols)
    width = max(7.5, 0.075 * longest * ncols + 1.0)  # the legend below must fit the figure's width
    figure = Figure(figsize=(width, 4.7 + 0.25 * rows), layout="constrained")
    ax = figure.subplots()
    for point in sorted(points, key=lambda p: p.label):
        ax.errorbar([point.seconds], [point.accuracy], yerr=None if point.error is None else [[point.error[0]],
                                                                                                [point.error[1]]],
                    color=point.color, marker=point.marker, markersize=8, capsize=3, linestyle="none",
                    label=point.label, zorder=3)
    ax.set_xscale("log")
    ax.set_xlim(*_log_limits([p.seconds for p in points]))
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    accuracies = [p.accuracy for p in points]
    pad = max(5.0, 0.15 * (max(accuracies) - min(accuracies)))
    ax.set_ylim(max(0.0, min(accuracies) - pad) if min(accuracies) - pad > 0 else -2.0,
                min(100.0, max(accuracies) + pad))
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("seconds per sample" + (f" on {device}" if device else " (device per run in the legend)")
                  + ", log scale")
    ax.set_ylabel("mean top-1 (%)")
    ax.set_title(_title(f"{table}: accuracy vs cost", shared or []))
    figure.legend(loc="outside lower center", ncols=ncols, fontsize="small", title=error_note or None,
                  title_fontsize="small")
    return figure


def plot_cost(summaries: list[dict], out_dir: str | Path, stats: Stats | None = None) -> list[Path]:
    """Mean top-1 vs seconds per sample (log x), one point per row (seeds averaged, error bars: the interval of
    the mean where known, else the std over seeds), the device in the axis label (in the legend when runs come
    from several); one figure per suite."""
    paths: list[Path] = []
    for table, groups in _by_table(group_runs(summaries)).items():
        placed = [(group, [(summary, point) for summary in group.runs if (point := _cost_point(summary))])
                  for group in groups]
        placed = [(group, runs) for group, runs in placed if runs]
        if not placed:
            continue
        devices = {device_name(summary) for _, runs in placed for summary, _ in runs}
        labels, shared = legend_labels([group for group, _ in placed])
        seen: dict[str, int] = {}
        points, kinds = [], set()
        for (group, runs), label in zip(placed, labels):
            method = group.runs[0]["method"]
            seen[method] = seen.get(method, -1) + 1
            seconds = statistics.fmean(point[0] for _, point in runs)
            accuracy = statistics.fmean(point[1] for _, point in runs)
            error, kind = _cost_error(group, runs, accuracy, stats)
            kinds.add(kind)
            if len(devices) > 1:
                label += f" [{', '.join(sorted({device_name(summary) for summary, _ in runs}))}]"
            points.append(CostPoint(label, seconds, accuracy, method_color(method),
                                    _MARKERS[seen[method] % len(_MARKERS)], error))
        kinds.discard("")
        figure = _cost_figure(table, points, next(iter(devices)) if len(devices) == 1 else None, shared,
                              f"error bars: {'; '.join(sorted(kinds))}" if kinds else "")
        paths += _save(figure, out_dir, f"cost_{table}")
    if not paths:
        raise ReportError("no run has cost.seconds_per_sample")
    return paths


def _cost_error(group: RunGroup, runs: list, accuracy: float,
                stats: Stats | None) -> tuple[tuple[float, float] | None, str]:
    splits = sorted({split for summary, _ in runs for split in summary["splits"] if not is_aggregate(split)})
    row_stats = stats(group, {MEAN: splits}) if stats else None
    if row_stats and row_stats.intervals.get(MEAN):
        low, high = row_stats.intervals[MEAN]
        return (accuracy - low, high - accuracy), "95% interval"
    if len(runs) > 1:
        sd = statistics.stdev(point[1] for _, point in runs)
        return (sd, sd), "± std over seeds"
    return None, ""
