"""Report layer: tables, plots and checks built from run folders only (never runs a model, needs no torch).

The three *_command functions are what the CLI subcommands `table`, `plot` and `check` call."""
from __future__ import annotations

from pathlib import Path

from .check import (DEFAULT_TOLERANCE, CheckResult, check, check_tolerance, format_check, load_reference,
                    write_reference)
from .published import load_published
from .runs import RunFolderError, RunGroup, Warn, group_runs, load_run_folders, load_runs, load_summary
from .significance import RowStats
from .tables import FORMATS, Stats, build_tables, captions, metric_of, render, render_sections, render_tables, usable
from ..errors import ReportError


def table_command(run_dirs: list[str], fmt: str, published: bool, metric: str, at_step: int | None = None,
                  warn: Warn | None = None, ci: bool = False, baseline: str | None = None,
                  resampling: str = "auto") -> str:
    """All tables of the runs under `run_dirs`, rendered as md, csv or latex; ``at_step``: as the runs stood
    after that many test-time steps (from --record-steps); ``warn``: skip entries that are not finished runs (and
    runs whose metric is not a number); ``ci``: a 95% interval on every value; ``baseline``: each row's paired
    difference to the row of that method; ``resampling``: auto, samples or batches (significance.py)."""
    from .steps import summary_at_step

    if fmt not in FORMATS:
        raise ReportError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")
    folders = load_run_folders(run_dirs, warn)
    if ci or baseline is not None:
        from .baseline import ci_sections

        if at_step is not None:
            raise ReportError("--ci and --baseline read the runs' final predictions; drop --at-step")
        return render_sections(ci_sections(folders, metric, ci, baseline, resampling,
                                           load_published() if published else None, warn), fmt)
    summaries = [summary_at_step(d, at_step) if at_step is not None else s for d, s in folders]
    tables = build_tables(summaries, metric, load_published() if published else None, warn=warn)
    if not tables:
        raise ReportError(f"no run has metric {metric!r}")
    return render_tables(tables, fmt, metric, captions(summaries, metric))


def plot_command(run_dirs: list[str], out_dir: str | Path, warn: Warn | None = None,
                 resampling: str = "auto") -> list[Path]:
    """Every plot the runs can show, with error bars from the runs' per-sample predictions (95% intervals, resampled
    as `table --ci`) where they have them; a ReportError only when none can be drawn or `out_dir` cannot take them."""
    from .plots import FigureWriteError, check_out_dir, plot_corruption_bars, plot_cost, plot_severity  # matplotlib
    from .step_plot import plot_steps

    check_out_dir(out_dir)
    folders = load_run_folders(run_dirs, warn)
    summaries = usable([summary for _, summary in folders], "top1", warn)
    stats = _interval_stats(folders, resampling)
    paths: list[Path] = []
    reasons = []
    for plot in (plot_severity, plot_corruption_bars, plot_cost):
        try:
            paths += plot(summaries, out_dir, stats=stats)
        except FigureWriteError:
            raise
        except ReportError as error:
            reasons.append(str(error))
    try:
        paths += plot_steps([folder for folder, _ in folders], out_dir)
    except FigureWriteError:
        raise
    except ReportError as error:
        reasons.append(str(error))
    if not paths:
        raise ReportError("nothing to plot: " + "; ".join(reasons))
    return paths


def _interval_stats(folders: list[tuple[Path, dict]], resampling: str) -> Stats:
    """A row's 95% intervals from its runs' per-sample predictions; None for a row where a run has none."""
    from .outcomes import load_outcomes
    from .significance import row_stats

    outcomes = {}
    for folder, summary in folders:
        try:
            outcomes[id(summary)] = load_outcomes(folder, summary)
        except RunFolderError:  # no predictions.jsonl: the row gets no interval
            continue

    def stats(group: RunGroup, columns: dict[str, list[str]]) -> RowStats | None:
        if not all(id(summary) in outcomes for summary in group.runs):
            return None
        return row_stats(group, outcomes, columns, "top1", resampling)
    return stats


def check_command(run_dir: str | Path, reference_path: str | Path, tolerance: float | None) -> tuple[bool, str]:
    """(passed, readable report) of one run against a reference file; tolerance None = the file's."""
    if tolerance is not None:
        check_tolerance(tolerance)
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
