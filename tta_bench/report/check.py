"""Regression check of a run against a reference (per-split top-1 floors), e.g. for CI.

A run is checked only against a reference it is comparable with: the same suite, method, teacher, source, clean
set (the number of images corruptions were generated from), splits, subset / limit, stream setting and (APM) preset,
and, where the reference records it, the same stream (its hash). Otherwise the verdict is "not comparable" with
what differs, never a FAIL per split (a 15-corruption reference against a 4-corruption run fails every row for the
wrong reason). Only drops fail: a run better than its reference by more than the tolerance passes, flagged
'better'; a value that is not a number fails. The tolerance is a finite number >= 0."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from .splits import MEAN, split_key, split_value
from ..errors import ReportError

DEFAULT_TOLERANCE = 1.0
IDENTITY = ("suite", "method", "teacher")  # picks a run's reference from a file of several
# what else a run must share with its reference to be compared with it (source: generated vs published; deliberate;
# generated_from: the clean images corruptions were generated from, None for other sources)
COMPARED = (*IDENTITY, "source", "generated_from", "subset", "setting", "preset")
STREAM_HASH = "stream_hash"  # compared where the reference records it: the same samples in the same order
PASSING = ("ok", "better")


@dataclass
class CheckResult:
    ok: bool
    rows: list[tuple[str, float, float | None, float | None, str]]  # split, reference, measured, delta, status
    tolerance: float
    differences: list[str] = field(default_factory=list)  # why the run is not comparable with the reference

    @property
    def comparable(self) -> bool:
        return not self.differences


def comparison(summary: dict) -> dict:
    """What a run must share with a reference: its COMPARED fields and its split names."""
    data, setting = summary.get("data") or {}, summary.get("setting") or {}
    preset = (summary.get("method_options") or {}).get("preset") if summary.get("method") == "apm" else None
    generated = (data.get("generated_from") or {}).get("images") if summary.get("source") == "generated" else None
    return {"suite": summary.get("suite"), "method": summary.get("method"), "teacher": summary.get("teacher"),
            "source": summary.get("source"), "generated_from": generated, "subset": data.get("subset"),
            "setting": setting.get("name"), "preset": preset}


def _differences(summary: dict, reference: dict) -> list[str]:
    run = comparison(summary)
    out = [f"{key}: reference {repr(reference[key]) if key in reference else 'does not say'}, run {run[key]!r}"
           for key in COMPARED if reference.get(key) != run[key]]
    stream = (summary.get("setting") or {}).get(STREAM_HASH)
    if not out and reference.get(STREAM_HASH) and reference[STREAM_HASH] != stream:  # nothing above says why
        out.append(f"stream: the run's samples or their order differ from the reference's ({STREAM_HASH} "
                   f"{str(stream)[:12]} vs {reference[STREAM_HASH][:12]})")
    wanted, have = set(reference.get("splits", {})), set(summary["splits"])
    if wanted != have:
        missing, extra = sorted(wanted - have, key=split_key), sorted(have - wanted, key=split_key)
        out.append(f"splits: reference {len(wanted)}, run {len(have)}"
                   + (f"; not in the run: {', '.join(missing)}" if missing else "")
                   + (f"; not in the reference: {', '.join(extra)}" if extra else ""))
    return out


def _row(split: str, reference: float, measured: float | None, tolerance: float) -> tuple:
    if measured is None:
        return (split, reference, None, None, "missing")
    if not math.isfinite(measured):
        return (split, reference, None, None, "not a number")
    delta = measured - reference
    status = "FAIL" if delta < -tolerance else "better" if delta > tolerance else "ok"
    return (split, reference, measured, delta, status)


def check_tolerance(tolerance: object, where: str = "--tolerance") -> float:
    """The tolerance as a float, or a ReportError: it must be a finite number >= 0 (NaN would pass any drop)."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise ReportError(f"{where} must be a finite number >= 0 (points of top-1), got {tolerance!r}")
    return float(tolerance)


def check(summary: dict, reference: dict, tolerance: float) -> CheckResult:
    """Not comparable when the run and the reference differ in what COMPARED names or in their splits; else fails
    when any top-1 (or the mean) is below reference - tolerance or not a number."""
    tolerance = check_tolerance(tolerance)
    differences = _differences(summary, reference)
    if differences:
        return CheckResult(False, [], tolerance, differences)
    splits = sorted(reference.get("splits", {}).items(), key=lambda item: split_key(item[0]))
    rows = [_row(split, float(value), split_value(summary["splits"].get(split, {}), "top1"), tolerance)
            for split, value in splits]
    if reference.get("mean_top1") is not None:
        measured = summary.get("mean_top1")
        rows.append(_row(MEAN, float(reference["mean_top1"]), float(measured)
                         if isinstance(measured, (int, float)) and not isinstance(measured, bool) else None, tolerance))
    if not rows:
        raise ReportError("the reference has neither splits nor mean_top1: it checks nothing")
    return CheckResult(all(row[4] in PASSING for row in rows), rows, tolerance)


def _number(value: float | None, sign: bool = False) -> str:
    return "" if value is None else f"{value:+.2f}" if sign else f"{value:.2f}"


def format_check(result: CheckResult) -> str:
    """A readable verdict and diff table (one line per split, mean last), or what makes the two not comparable."""
    if not result.comparable:
        return "\n".join(["check: NOT COMPARABLE (the run and the reference differ; nothing was compared)",
                          *(f"  {text}" for text in result.differences)]) + "\n"
    failing = [row for row in result.rows if row[4] not in PASSING]
    verdict = "PASS" if result.ok else "FAIL"
    lines = [f"check: {verdict} (tolerance {result.tolerance:g}; {len(failing)} of {len(result.rows)} rows failing)"]
    table = [(split, _number(ref), _number(measured), _number(delta, sign=True), status)
             for split, ref, measured, delta, status in result.rows]
    lines.append(tabulate(table, headers=["split", "reference", "measured", "delta", "status"],
                          disable_numparse=True, colalign=("left", "right", "right", "right", "left")))
    return "\n".join(lines) + "\n"


def write_reference(summary: dict, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """A reference that the given run passes: its per-split top-1 and mean, with a tolerance."""
    splits = {split: value for split in sorted(summary["splits"], key=split_key)
              if (value := split_value(summary["splits"][split], "top1")) is not None}
    identity = {key: value for key, value in comparison(summary).items()
                if key not in ("preset", "generated_from") or value is not None}
    stream = (summary.get("setting") or {}).get(STREAM_HASH)
    return {**identity, **({STREAM_HASH: stream} if stream else {}), "tolerance": tolerance, "splits": splits,
            "mean_top1": summary.get("mean_top1"), "run_name": summary.get("run_name")}


def load_reference(path: str | Path, summary: dict | None = None) -> dict:
    """A reference JSON file, checked for the shape `check` needs. A file may hold several references
    (``{"references": [...]}``, as results/ci/reference.json does): the one of the run's suite, method and
    teacher is used."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: cannot read reference ({error})") from None
    if _is_published_table(text):
        raise ReportError(f"{path} is a table of published numbers, not a reference: `run_bench.py table RUN "
                          "--published` shows a run beside them (and `reproduce TABLE` a paper table with the "
                          "differences); `check` takes a reference JSON (results/ci/reference.json)")
    try:
        reference = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReportError(f"{path}: not a reference JSON ({error})") from None
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
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in splits.values()):
        raise ReportError(f"{path}: a reference is a JSON object whose 'splits' maps split names to numbers")
    check_tolerance(reference.get("tolerance", DEFAULT_TOLERANCE), f"{path}: 'tolerance'")
    return reference


def _is_published_table(text: str) -> bool:
    """Whether a file is the published-numbers CSV (its header line), which `check` is sometimes pointed at."""
    from .published import COLUMNS

    return text.lstrip("\ufeff").split("\n", 1)[0].strip().split(",") == list(COLUMNS)
