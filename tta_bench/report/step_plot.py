"""The figure of accuracy and teacher agreement against test-time training steps, from ``--record-steps`` runs."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ..errors import ReportError
from .plots import _COLORS, _save
from .runs import load_summary, run_label
from .steps import curve


def plot_steps(run_dirs: list[Path], out_dir: str | Path) -> list[Path]:
    """Accuracy and teacher agreement against recorded TTT steps, seconds per sample on a second axis (linear in
    the steps of the run, from its measured cost)."""
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
