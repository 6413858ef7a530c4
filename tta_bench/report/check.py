"""Regression check of a run against a reference (per-split top-1 floors), e.g. for CI.

Only drops fail: a run better than its reference by more than the tolerance passes, flagged 'better'."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from .splits import MEAN, split_key, split_value
from ..errors import ReportError

DEFAULT_TOLERANCE = 1.0
IDENTITY = ("suite", "method", "teacher")
PASSING = ("ok", "better")


@dataclass
class CheckResult:
    ok: bool
    rows: list[tuple[str, float, float | None, float | None, str]]  # split, reference, measured, delta, status
    tolerance: float
    mismatches: list[str] = field(default_factory=list)  # identity fields that differ (suite, method, teacher)


def _row(split: str, reference: float, measured: float | None, tolerance: float) -> tuple:
    if measured is None:
        return (split, reference, None, None, "missing")
    delta = measured - reference
    status = "FAIL" if delta < -tolerance else "better" if delta > tolerance else "ok"
    return (split, reference, measured, delta, status)


def check(summary: dict, reference: dict, tolerance: float) -> CheckResult:
    """Fails when a reference split is missing, any top-1 (or the mean) is below reference - tolerance,
    or the run is not of the reference's suite / method / teacher."""
    mismatches = [f"{key}: reference {reference[key]!r}, run {summary.get(key)!r}"
                  for key in IDENTITY if key in reference and reference[key] != summary.get(key)]
    splits = sorted(reference.get("splits", {}).items(), key=lambda item: split_key(item[0]))
    rows = [_row(split, float(value), split_value(summary["splits"].get(split, {}), "top1"), tolerance)
            for split, value in splits]
    if reference.get("mean_top1") is not None:
        measured = summary.get("mean_top1")
        rows.append(_row(MEAN, float(reference["mean_top1"]),
                         float(measured) if isinstance(measured, (int, float)) else None, tolerance))
    if not rows:
        raise ReportError("the reference has neither splits nor mean_top1: it checks nothing")
    ok = not mismatches and all(row[4] in PASSING for row in rows)
    return CheckResult(ok, rows, tolerance, mismatches)


def _number(value: float | None, sign: bool = False) -> str:
    return "" if value is None else f"{value:+.2f}" if sign else f"{value:.2f}"


def format_check(result: CheckResult) -> str:
    """A readable verdict and diff table (one line per split, mean last)."""
    failing = [row for row in result.rows if row[4] not in PASSING]
    verdict = "PASS" if result.ok else "FAIL"
    lines = [f"check: {verdict} (tolerance {result.tolerance:g}; {len(failing)} of {len(result.rows)} rows failing)"]
    lines += [f"mismatch: {text}" for text in result.mismatches]
    table = [(split, _number(ref), _number(measured), _number(delta, sign=True), status)
             for split, ref, measured, delta, status in result.rows]
    lines.append(tabulate(table, headers=["split", "reference", "measured", "delta", "status"],
                          disable_numparse=True, colalign=("left", "right", "right", "right", "left")))
    return "\n".join(lines) + "\n"


def write_reference(summary: dict, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """A reference that the given run passes: its per-split top-1 and mean, with a tolerance."""
    splits = {split: value for split in sorted(summary["splits"], key=split_key)
              if (value := split_value(summary["splits"][split], "top1")) is not None}
    return {
        "suite": summary["suite"], "method": summary["method"], "teacher": summary.get("teacher"),
        "tolerance": tolerance, "splits": splits, "mean_top1": summary.get("mean_top1"),
        "run_name": summary.get("run_name"),
    }


def load_reference(path: str | Path, summary: dict | None = None) -> dict:
    """A reference JSON file, checked for the shape `check` needs. A file may hold several references
    (``{"references": [...]}``, as results/ci/reference.json does): the one of the run's suite, method and
    teacher is used."""
    try:
        reference = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: cannot read reference ({error})") from error
    if isinstance(reference, dict) and isinstance(reference.get("references"), list):
        candidates = reference["references"]
        if summary is not None:
            candidates = [r for r in candidates if all(r.get(k) == summary.get(k) for k in IDENTITY)]
        if len(candidates) != 1:
            who = "/".join(str(summary.get(k)) for k in IDENTITY) if summary else "?"
            raise ReportError(f"{path}: {len(candidates)} references match run {who}; expected exactly one")
        reference = candidates[0]
    splits = reference.get("splits", {}) if isinstance(reference, dict) else None
    if not isinstance(splits, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in splits.values()):
        raise ReportError(f"{path}: a reference is a JSON object whose 'splits' maps split names to numbers")
    tolerance = reference.get("tolerance", DEFAULT_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ReportError(f"{path}: 'tolerance' must be a non-negative number")
    return reference
