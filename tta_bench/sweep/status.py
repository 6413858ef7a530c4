"""What a sweep's runs have done and what the rest will cost, without building a model."""
from __future__ import annotations

import dataclasses
import json
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


def plan_text(runs: list[SweepRun], total: int) -> str:
    """The --dry-run listing: one line per run with its status and cost, then the totals."""
    from tabulate import tabulate

    rows, costs = [], []
    for run in runs:
        e = estimate(run)
        costs.append(e.cost)
        cell = ", ".join(f"{k}={v}" for k, v in run.cell.items())
        rows.append([run.index, status(run), cell, _count(e.samples), _count(e.steps), _count(e.cost),
                     Path(run.cfg.out).name, e.note])
    headers = ["#", "status", "cell", "samples", "steps", "sample-steps", "folder", "note"]
    done = sum(row[1] == DONE for row in rows)
    known = [c for c in costs if c is not None]
    todo = sum(c for c, row in zip(costs, rows) if c is not None and row[1] != DONE)
    lines = [tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True),
             f"{len(runs)} of {total} runs in this shard, {done} finished; sample-steps to run: {todo:,}"
             + ("" if len(known) == len(costs) else f" (+ {len(costs) - len(known)} run(s) of unknown cost)")]
    if runs:
        lines.append(f"sweep folder: {Path(runs[0].cfg.out).parent}")
    return "\n".join(lines)
