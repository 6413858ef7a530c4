"""Report layer: tables, plots and checks built from run folders only (never runs a model, needs no torch).

The three *_command functions are what the CLI subcommands `table`, `plot` and `check` call."""
from __future__ import annotations

from pathlib import Path

from .check import DEFAULT_TOLERANCE, CheckResult, check, format_check, load_reference, write_reference
from .published import load_published
from .runs import RunFolderError, Warn, group_runs, load_run_folders, load_runs, load_summary
from .tables import build_tables, captions, metric_of, render, render_tables
from ..errors import ReportError


def table_command(run_dirs: list[str], fmt: str, published: bool, metric: str, at_step: int | None = None,
                  warn: Warn | None = None) -> str:
    """All tables of the runs under `run_dirs`, rendered as md, csv or latex; ``at_step``: as the runs stood
    after that many test-time steps (from --record-steps); ``warn``: skip entries that are not finished runs."""
    from .steps import summary_at_step

    folders = load_run_folders(run_dirs, warn)
    summaries = [summary_at_step(d, at_step) if at_step is not None else s for d, s in folders]
    tables = build_tables(summaries, metric, load_published() if published else None)
    if not tables:
        raise ReportError(f"no run has metric {metric!r}")
    return render_tables(tables, fmt, metric, captions(summaries, metric))


def plot_command(run_dirs: list[str], out_dir: str | Path, warn: Warn | None = None) -> list[Path]:
    """Every plot the runs can show; a ValueError only when none can be drawn."""
    from .plots import plot_corruption_bars, plot_cost, plot_severity, plot_steps  # matplotlib only here

    folders = load_run_folders(run_dirs, warn)
    summaries = [summary for _, summary in folders]
    paths: list[Path] = []
    reasons = []
    for plot in (plot_severity, plot_corruption_bars, plot_cost):
        try:
            paths += plot(summaries, out_dir)
        except ValueError as error:
            reasons.append(str(error))
    try:
        paths += plot_steps([folder for folder, _ in folders], out_dir)
    except ValueError as error:
        reasons.append(str(error))
    if not paths:
        raise ReportError("nothing to plot: " + "; ".join(reasons))
    return paths


def check_command(run_dir: str | Path, reference_path: str | Path, tolerance: float | None) -> tuple[bool, str]:
    """(passed, readable report) of one run against a reference file; tolerance None = the file's."""
    summary = load_summary(run_dir)
    reference = load_reference(reference_path, summary)
    if tolerance is None:
        tolerance = float(reference.get("tolerance", DEFAULT_TOLERANCE))
    result = check(summary, reference, tolerance)
    return result.ok, format_check(result)


__all__ = [
    "CheckResult", "RunFolderError", "build_tables", "captions", "load_run_folders", "check", "check_command", "format_check", "group_runs",
    "load_published", "load_reference", "load_runs", "load_summary", "metric_of", "plot_command", "render",
    "render_tables", "table_command", "write_reference",
]
