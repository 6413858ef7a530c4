"""Accuracy as a function of test-time compute, from the per-step records of ``--record-steps`` runs.

One run of an iterative method (APM, MEMO or TPT with several steps) records each sample's prediction at the
listed steps, so "how many steps does it need" is answered from that run alone, without rerunning.
"""
from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

from ..metrics import accuracy
from ..vocabulary import PREDICTIONS
from .runs import RunFolderError, load_summary


def step_records(run_dir: Path) -> dict[int, dict[str, list[tuple[int, int, bool]]]]:
    """step -> split -> [(label, pred, agrees with the teacher)] over the samples that recorded it."""
    out: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with open(Path(run_dir) / PREDICTIONS) as f:
        for line in f:
            r = json.loads(line)
            for step, v in (r.get("steps") or {}).items():
                out[int(step)][r["split"]].append((r["label"], v["pred"], bool(v.get("agree"))))
    return out


def summary_at_step(run_dir: str | Path, step: int) -> dict:
    """The run's summary with each split's top-1 (and agreement) as they stood after ``step`` steps."""
    run_dir = Path(run_dir)
    summary = copy.deepcopy(load_summary(run_dir))
    records = step_records(run_dir)
    if step not in records:
        recorded = sorted(records) or "none"
        raise RunFolderError(f"{run_dir}: no predictions recorded at step {step} (recorded: {recorded}; "
                             "run with --record-steps)")
    for split, rows in records[step].items():
        values = summary["splits"].setdefault(split, {})
        values["top1"] = accuracy([r[0] for r in rows], [r[1] for r in rows])
        values.pop("top5", None)
        if "agreement" in values:
            values["agreement"] = 100.0 * sum(r[2] for r in rows) / len(rows)
    tops = [v["top1"] for v in summary["splits"].values()]
    summary["mean_top1"] = sum(tops) / len(tops)
    summary["run_name"] = f"{summary['run_name']} @ step {step}"
    summary["method"] = f"{summary['method']}@{step}"
    return summary


def curve(run_dir: str | Path) -> tuple[list[int], list[float], list[float]]:
    """(steps, mean top-1 over splits, mean teacher agreement over splits) of one run."""
    records = step_records(Path(run_dir))
    if not records:
        raise RunFolderError(f"{run_dir}: no per-step records (run with --record-steps)")
    steps = sorted(records)
    acc, agree = [], []
    for s in steps:
        splits = records[s].values()
        acc.append(sum(accuracy([r[0] for r in rows], [r[1] for r in rows]) for rows in splits) / len(splits))
        agree.append(sum(100.0 * sum(r[2] for r in rows) / len(rows) for rows in splits) / len(splits))
    return steps, acc, agree
