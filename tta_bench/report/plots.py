"""Figures from run summaries (PNG + SVG each), drawn with the Agg canvas and no pyplot global state.

Each function draws what the runs can show and skips the rest; it raises only when nothing fits."""
from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .runs import RunGroup, group_runs, load_summary, run_label
from ..vocabulary import CORRUPTIONS
from .splits import is_aggregate, parse_corruption, split_value
from .tables import replicate_values
from ..errors import ReportError

FORMATS = ("png", "svg")
METRIC = "top1"
_COLORS = matplotlib.colormaps["tab10"].colors


def _stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _save(figure: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write the figure in every format; fixed SVG ids and no dates, so reruns give the same files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "tta_bench"}):
        for ext in FORMATS:
            path = out / f"{_stem(stem)}.{ext}"
            figure.savefig(path, format=ext, metadata={"Date": None} if ext == "svg" else None)
            paths.append(path)
    return paths


def _by_table(groups: list[RunGroup]) -> dict[str, list[RunGroup]]:
    tables: dict[str, list[RunGroup]] = {}
    for group in groups:
        tables.setdefault(group.table, []).append(group)
    return tables


def _mean_values(group: RunGroup) -> dict[str, float]:
    """Split -> top-1 averaged over the group's seeds."""
    collected: dict[str, list[float]] = {}
    for replicate in replicate_values(group, METRIC):
        for split, value in replicate.items():
            collected.setdefault(split, []).append(value)
    return {split: statistics.fmean(values) for split, values in collected.items()}


def _by_corruption(values: dict[str, float]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for split, value in values.items():
        if (parsed := parse_corruption(split)) is not None:
            out.setdefault(parsed[0], {})[parsed[1]] = value
    return out


def _corruption_order(names: set[str]) -> list[str]:
    return sorted(names, key=lambda name: (CORRUPTIONS.index(name) if name in CORRUPTIONS else len(CORRUPTIONS),
                                           name))


def _colors(labels: list[str]) -> dict[str, tuple]:
    return {label: _COLORS[i % len(_COLORS)] for i, label in enumerate(sorted(labels))}


def _severity_figure(table: str, curves: dict[str, dict[str, dict[int, float]]]) -> Figure:
    corruptions = _corruption_order(set(curves))
    ncols = min(5, len(corruptions))
    nrows = math.ceil(len(corruptions) / ncols)
    figure = Figure(figsize=(3.2 * ncols, 2.8 * nrows + 0.8), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    colors = _colors(sorted({label for lines in curves.values() for label in lines}))
    for ax, corruption in zip(axes, corruptions):
        for label, by_severity in sorted(curves[corruption].items()):
            severities = sorted(by_severity)
            ax.plot(severities, [by_severity[s] for s in severities], marker="o", color=colors[label], label=label)
        ax.set_title(corruption)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("severity")
        ax.set_ylabel("top-1 (%)")
    for ax in axes[len(corruptions):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=color, marker="o", label=label) for label, color in colors.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize="small")
    figure.suptitle(f"{table}: top-1 vs severity")
    return figure


def plot_severity(summaries: list[dict], out_dir: str | Path) -> list[Path]:
    """Top-1 vs severity, one subplot per corruption, one line per row; one figure per suite."""
    paths: list[Path] = []
    for table, groups in _by_table(group_runs(summaries)).items():
        curves: dict[str, dict[str, dict[int, float]]] = {}
        for group in groups:
            for corruption, by_severity in _by_corruption(_mean_values(group)).items():
                if len(by_severity) > 1:
                    curves.setdefault(corruption, {})[group.label] = by_severity
        if curves:
            paths += _save(_severity_figure(table, curves), out_dir, f"severity_{table}")
    if not paths:
        raise ReportError("no run has more than one severity")
    return paths


def _bars_figure(table: str, severity: int, bars: dict[str, dict[str, float]]) -> Figure:
    corruptions = _corruption_order({name for values in bars.values() for name in values})
    labels = sorted(bars)
    width = 0.8 / len(labels)
    figure = Figure(figsize=(max(6.0, 0.4 * len(corruptions) * len(labels) + 2), 4.5), layout="constrained")
    ax = figure.subplots()
    colors = _colors(labels)
    for i, label in enumerate(labels):
        xs = [c + (i - (len(labels) - 1) / 2) * width for c, name in enumerate(corruptions) if name in bars[label]]
        ax.bar(xs, [bars[label][name] for name in corruptions if name in bars[label]], width, color=colors[label],
               label=label)
    ax.set_xticks(range(len(corruptions)), corruptions, rotation=45, ha="right")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"{table}: top-1 per corruption, severity {severity}")
    ax.legend(fontsize="small")
    return figure


def plot_corruption_bars(summaries: list[dict], out_dir: str | Path, severity: int = 5) -> list[Path]:
    """Grouped bars: top-1 per corruption at one severity, one bar per row; one figure per suite."""
    paths: list[Path] = []
    for table, groups in _by_table(group_runs(summaries)).items():
        bars = {group.label: {corruption: by_severity[severity]
                              for corruption, by_severity in _by_corruption(_mean_values(group)).items()
                              if severity in by_severity}
                for group in groups}
        bars = {label: values for label, values in bars.items() if values}
        if bars:
            paths += _save(_bars_figure(table, severity, bars), out_dir, f"corruptions_sev{severity}_{table}")
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


def _cost_figure(table: str, points: list[tuple[str, float, float]], device: str | None) -> Figure:
    longest = max(len(p[0]) for p in points)
    ncols = 2 if len(points) >= 4 and longest <= 40 else 1  # long labels (data markers) get a column of their own
    rows = math.ceil(len(points) / ncols)
    width = max(7.5, 0.075 * longest * ncols + 1.0)  # the legend below must fit the figure's width
    figure = Figure(figsize=(width, 4.5 + 0.25 * rows), layout="constrained")
    ax = figure.subplots()
    for k, (label, seconds, accuracy) in enumerate(sorted(points)):
        ax.scatter([seconds], [accuracy], color=_COLORS[k % len(_COLORS)], marker=_MARKERS[k % len(_MARKERS)],
                   s=60, label=label, zorder=3)
    ax.set_xscale("log")
    ax.set_xlim(*_log_limits([p[1] for p in points]))
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    accuracies = [p[2] for p in points]
    pad = max(5.0, 0.15 * (max(accuracies) - min(accuracies)))
    ax.set_ylim(max(0.0, min(accuracies) - pad), min(100.0, max(accuracies) + pad))
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("seconds per sample" + (f" on {device}" if device else " (device per run in the legend)")
                  + ", log scale")
    ax.set_ylabel("mean top-1 (%)")
    ax.set_title(f"{table}: accuracy vs cost")
    figure.legend(loc="outside lower center", ncols=ncols, fontsize="small")
    return figure


def plot_cost(summaries: list[dict], out_dir: str | Path) -> list[Path]:
    """Mean top-1 vs seconds per sample (log x), one point per run with its label in the legend and the device in
    the axis label (in the legend when runs come from several); one figure per suite."""
    paths: list[Path] = []
    for table, groups in _by_table(group_runs(summaries)).items():
        placed = [(group.label, summary, point) for group in groups for summary in group.runs
                  if (point := _cost_point(summary)) is not None]
        if not placed:
            continue
        devices = {device_name(summary) for _, summary, _ in placed}
        points = []
        for label, summary, point in placed:
            seed = summary.get("seed")
            seeds = sum(1 for other, _, _ in placed if other == label) > 1
            label += f" seed {seed}" if seeds and seed is not None else ""
            label += f" [{device_name(summary)}]" if len(devices) > 1 else ""
            points.append((label, *point))
        figure = _cost_figure(table, points, next(iter(devices)) if len(devices) == 1 else None)
        paths += _save(figure, out_dir, f"cost_{table}")
    if not paths:
        raise ReportError("no run has cost.seconds_per_sample")
    return paths


def plot_steps(run_dirs: list[Path], out_dir: str | Path) -> list[Path]:
    """Accuracy and teacher agreement against recorded TTT steps, seconds per sample on a second axis (linear in
    the steps of the run, from its measured cost)."""
    from .steps import curve

    paths = []
    for run_dir in run_dirs:
        try:
            steps, acc, agree = curve(run_dir)
        except Exception:  # runs without per-step records have nothing to show here
            continue
        summary = load_summary(run_dir)
        figure = Figure(figsize=(6.4, 4.4), layout="constrained")
        ax = figure.add_subplot()
        ax.plot(steps, acc, "o-", color=_COLORS[0], label="top-1")
        ax.plot(steps, agree, "s--", color=_COLORS[1], label="agreement with teacher")
        ax.set_xlabel("test-time training steps")
        ax.set_ylabel("% (mean over splits)")
        ax.legend(loc="lower right")
        total = (summary.get("method_options") or {}).get("steps") or max(steps)
        per_sample = (summary.get("cost") or {}).get("seconds_per_sample")
        if per_sample:
            top = ax.secondary_xaxis("top", functions=(lambda s, k=per_sample / total: s * k, lambda t, k=total / per_sample: t * k))
            top.set_xlabel("≈ seconds per sample")
        ax.set_title(run_label(summary), fontsize=9)
        paths += _save(figure, out_dir, f"steps_{Path(run_dir).name}")
    if not paths:
        raise ReportError("no run has per-step records (--record-steps)")
    return paths
