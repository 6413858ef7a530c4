"""Running a sweep's runs in order: finished ones are read back, failures recorded while the rest run."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..registry import UnknownNameError
from .grid import SweepRun
from .status import DONE, status


@dataclass
class SweepResult:
    summaries: list[dict[str, Any]]  # finished runs (reused or just run), in grid order
    failures: list[tuple[SweepRun, str]]  # user-level errors (missing data, unknown method): the rest still ran
    ran: int = 0
    reused: int = 0


def run_sweep(runs: list[SweepRun], progress: bool = True, log: Callable[[str], None] = print) -> SweepResult:
    """Run every unfinished run in order; a finished one is read back without calling the engine.

    A run that fails with a user error (no data, unknown method) is recorded and the sweep goes on, so that one
    bad cell does not waste a job array."""
    from .. import engine
    from ..preflight import preflight
    from ..vocabulary import SUMMARY

    result = SweepResult([], [])
    for k, run in enumerate(runs, 1):
        name = Path(run.cfg.out).name
        if status(run) == DONE:
            result.summaries.append(json.loads((Path(run.cfg.out) / SUMMARY).read_text()))
            result.reused += 1
            log(f"[{k}/{len(runs)}] {name}: finished, skipped")
            continue
        log(f"[{k}/{len(runs)}] {name}: running")
        try:
            preflight(run.cfg, names="fields")
            summary = engine.run(run.cfg, progress=progress, log=log)
        except (UserError, UnknownNameError) as exc:
            result.failures.append((run, str(exc)))
            log(f"[{k}/{len(runs)}] {name}: failed: {exc}")
            continue
        result.ran += 1
        if summary:  # a non-zero torchrun rank returns {}
            result.summaries.append(summary)
    return result


def failures_text(result: SweepResult) -> str:
    lines = [f"{len(result.failures)} run(s) failed:"]
    lines += [f"  #{run.index} {Path(run.cfg.out).name}: {message.splitlines()[0]}" for run, message in result.failures]
    return "\n".join(lines)
