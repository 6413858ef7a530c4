"""What a sweep's runs have done and what the rest will cost, without building a model."""
from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..errors import UserError
from ..registry import UnknownNameError
from .grid import SweepRun

DONE, PARTIAL, TODO = "done", "partial", "todo"


def status(run: SweepRun) -> str:
    """done: the folder holds a summary of this very configuration; partial: predictions without a summary."""
    from ..vocabulary import CONFIG, PREDICTIONS, SUMMARY

    folder = Path(run.cfg.out)
    if (folder / SUMMARY).is_file() and (folder / CONFIG).is_file():
        stored = RunConfig.from_dict(json.loads((folder / CONFIG).read_text()))
        if stored.identity() == run.cfg.identity():
            return DONE
    return PARTIAL if (folder / PREDICTIONS).is_file() else TODO


@dataclass(frozen=True)
class Estimate:
    samples: int | None
    steps: int | None  # adaptation steps per sample; None when the method is unknown here
    note: str = ""

    @property
    def cost(self) -> int | None:
        """Sample-steps (a method without steps costs one forward per sample)."""
        if self.samples is None or self.steps is None:
            return None
        return self.samples * max(self.steps, 1)


def estimate(run: SweepRun) -> Estimate:
    """Samples of the stream x adaptation steps, from the data alone: no model is built."""
    from ..engine import prepare
    from ..methods import METHODS

    cfg, note, steps = run.cfg, "", None
    if cfg.method not in METHODS:
        note, cfg = f"unknown method {cfg.method!r} in this checkout", dataclasses.replace(cfg, method="source")
    try:  # the options the engine would build (suite defaults and presets included) are checked there
        p = prepare(cfg)
    except (UserError, UnknownNameError) as exc:
        return Estimate(None, steps, "; ".join(filter(None, [note, str(exc).splitlines()[0]])))
    return Estimate(len(p.stream.items), int(getattr(p.options, "steps", 0)), note)


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


RUNS_FOLDER = Path("results/runs")  # where single runs go by default: finished ones there time a sweep too


def measured_costs(folders: list[Path]) -> dict[tuple[str, str], list[tuple[float, int]]]:
    """(method, teacher) -> [(seconds per sample, adaptation steps)] of the finished runs under `folders`."""
    from ..report.runs import RunFolderError, find_run_dirs, load_summary
    from ..vocabulary import SUMMARY

    costs: dict[tuple[str, str], list[tuple[float, int]]] = {}
    seen: set[Path] = set()
    for folder in folders:
        try:
            found = find_run_dirs(folder) if folder.is_dir() else []
        except RunFolderError:  # a folder without runs: nothing measured there
            continue
        for run_dir in found:
            if run_dir.resolve() in seen or not (run_dir / SUMMARY).is_file():
                continue
            seen.add(run_dir.resolve())
            try:
                summary = load_summary(run_dir)
            except RunFolderError:
                continue
            seconds = (summary.get("cost") or {}).get("seconds_per_sample")
            if isinstance(seconds, (int, float)) and seconds > 0:
                steps = int((summary.get("method_options") or {}).get("steps") or 0)
                costs.setdefault((summary["method"], str(summary.get("teacher"))), []).append((float(seconds), steps))
    return costs


def seconds_per_sample(measured: list[tuple[float, int]], steps: int | None) -> float | None:
    """The median measured cost per sample, scaled to `steps` adaptation steps where runs ran another number."""
    if not measured:
        return None
    scaled = [seconds * (max(steps, 1) / max(ran, 1) if steps is not None else 1.0) for seconds, ran in measured]
    return statistics.median(scaled)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def plan_text(runs: list[SweepRun], total: int) -> str:
    """The --dry-run listing: one line per run with its status and cost (sample-steps, and wall time from the
    measured cost of finished runs of the same method and teacher), then the totals."""
    from tabulate import tabulate

    sweep_folders = sorted({Path(run.cfg.out).parent for run in runs})
    costs = measured_costs([*sweep_folders, RUNS_FOLDER])
    rows, steps_total, seconds_total, untimed = [], [], 0.0, set()
    for run in runs:
        e = estimate(run)
        state = status(run)
        per_sample = seconds_per_sample(costs.get((run.cfg.method, str(run.cfg.teacher)), []), e.steps)
        seconds = None if per_sample is None or e.samples is None else per_sample * e.samples
        if state != DONE:
            steps_total.append(e.cost)
            if seconds is None:
                untimed.add(f"{run.cfg.method}/{run.cfg.teacher}")
            else:
                seconds_total += seconds
        cell = ", ".join(f"{k}={v}" for k, v in run.cell.items())
        rows.append([run.index, state, cell, _count(e.samples), _count(e.steps), _count(e.cost),
                     "?" if seconds is None else f"≈ {duration(seconds)}", Path(run.cfg.out).name, e.note])
    headers = ["#", "status", "cell", "samples", "steps", "sample-steps", "time", "folder", "note"]
    done = sum(row[1] == DONE for row in rows)
    known = [c for c in steps_total if c is not None]
    lines = [tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True),
             f"{len(runs)} of {total} runs in this shard, {done} finished; sample-steps to run: {sum(known):,}"
             + ("" if len(known) == len(steps_total) else f" (+ {len(steps_total) - len(known)} run(s) of unknown "
                                                          "cost)")]
    if steps_total:
        timed = len(steps_total) - sum(1 for row in rows if row[1] != DONE and row[6] == "?")
        missing = f"no finished run of {', '.join(sorted(untimed))} to time {'them' if not timed else 'the rest'} by"
        lines.append(f"wall time to run: unknown: {missing}" if not timed else
                     f"wall time to run: ≈ {duration(seconds_total)} for {timed} run(s), from the seconds per sample "
                     "measured by finished runs of the same method and teacher (median; on the machine they ran on)"
                     + (f"; {missing}" if untimed else ""))
    if runs:
        lines.append(f"sweep folder: {Path(runs[0].cfg.out).parent}")
    return "\n".join(lines)
