"""Gather what benchmarks/gpu_check.sh measured into one JSON ($OUT/gpu_check.json), print it as short tables, and
end with one verdict line and the matching exit status.

FAIL (exit 1) when a test failed or errored, an end-to-end run at its default precision failed its accuracy check,
a run at the other precision agreed with it on fewer than 85% of the samples (the bf16 bound of the `cuda` tests),
or a stage asked for crashed, ran out of time or did not run; otherwise PASS (exit 0). The speed goals (APM >= 50x the official protocol
at 1000 classes; the step <= 1.25x its floor at 32 and 64 students; the harness >= 0.9 of a bare loop) are reported
as met or not beside the verdict: they are measurements, not correctness. A CPU rehearsal (--rehearsal) judges
nothing about speed.

    python benchmarks/gpu_check_report.py OUT_DIR --commit SHA --stages 1,2,3,4,5 [--rehearsal]
"""
from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

RATIO_GOAL = 50.0  # samples/s against the official demo protocol at 1000 classes
FLOOR_GOAL = 1.25  # ms/step against the step's floor, at FLOOR_SIZES students
FLOOR_SIZES = (32, 64)
HARNESS_GOAL = 0.9  # images/s against the bare loop
AGREEMENT_MIN = 0.85  # a run at the other precision against the default one: share of equal predictions


def read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def tests(junit: Path) -> list[dict[str, Any]]:
    if not junit.is_file():
        return []
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome, message = tag, (node.get("message") or "")[:300]
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "message": message,
                     "seconds": round(float(case.get("time") or 0), 2)})
    return rows


def predictions(path: Path) -> dict[tuple[str, str], int]:
    return {(r["split"], r["id"]): r["pred"] for r in read_lines(path) if r.get("status") == "ok"}


def agreements(accuracy: Path) -> list[dict[str, Any]]:
    """Each method's run at the other precision against its default run (`<method>-auto`): equal predictions."""
    out = []
    for path in sorted(accuracy.glob("*.predictions.jsonl")):
        name = path.name.removesuffix(".predictions.jsonl")
        method, _, precision = name.rpartition("-")
        base = accuracy / f"{method}-auto.predictions.jsonl"
        if precision == "auto" or not base.is_file():
            continue
        a, b = predictions(base), predictions(path)
        shared = a.keys() & b.keys()
        share = sum(a[k] == b[k] for k in shared) / len(shared) if shared else 0.0
        out.append({"method": method, "precision": precision, "samples": len(shared), "agreement": share,
                    "ok": bool(shared) and share >= AGREEMENT_MIN})
    return out


def goals(ratio: dict | None, floor: dict | None, harness: dict | None) -> list[dict[str, Any]]:
    """Each goal with its measured figure (None: not measured) and whether it is met."""
    out = []
    value = ratio and ratio.get("ratio")
    out.append({"goal": f"APM >= {RATIO_GOAL:g}x the official protocol", "value": value, "unit": "x",
                "met": value is not None and value >= RATIO_GOAL})
    for s in FLOOR_SIZES:
        rows = [r for r in (floor or {}).get("rows", []) if r["samples"] == s and "times_floor" in r]
        best = min(rows, key=lambda r: r["times_floor"], default=None)
        value = best and best["times_floor"]
        how = best and f"{best['levers']}, {'compiled' if best['compiled'] else 'eager'}"
        out.append({"goal": f"step at S={s} <= {FLOOR_GOAL:g}x its floor", "value": value, "unit": "x the floor",
                    "best": how, "met": value is not None and value <= FLOOR_GOAL})
    for method in ("source", "tent"):
        value = ((harness or {}).get("methods", {}).get(method) or {}).get("ratio")
        out.append({"goal": f"harness {method} >= {HARNESS_GOAL:g} of the bare loop", "value": value,
                    "unit": "x the bare loop", "met": value is not None and value >= HARNESS_GOAL})
    return out


def failures(stages: list[dict[str, Any]], asked: list[str], test_rows: list[dict[str, Any]],
             agreed: list[dict[str, Any]]) -> list[str]:
    """What makes the check FAIL, one phrase each."""
    failed_tests = [f"{t['outcome']} {t['test'].rsplit('::', 1)[-1]}" for t in test_rows
                    if t["outcome"] in ("failure", "error")]
    found = list(failed_tests)
    for s in stages:
        if s.get("skipped"):
            found.append(f"stage {s['stage']} not run ({s['skipped']})")
        elif s["exit"] == 124:
            found.append(f"stage {s['stage']} ran out of time")
        elif s["exit"] != 0 and s["stage"].startswith("5 check"):
            found.append(f"accuracy check {s['stage'].split()[-1]} failed (exit {s['exit']})")
        elif s["exit"] != 0 and not (s["stage"] == "1 tests" and failed_tests):  # those are named already
            found.append(f"stage {s['stage']} exit {s['exit']}")
    found += [f"{g['method']} {g['precision']} agrees with its default run on {100 * g['agreement']:.1f}% "
              f"(< {100 * AGREEMENT_MIN:g}%)" for g in agreed if not g["ok"]]
    ran = {s["stage"].split()[0] for s in stages}
    found += [f"stage {k} did not run" for k in asked if k not in ran]
    return found


def fmt(value: float | None, digits: int = 3) -> str:
    return "not measured" if value is None else f"{value:.{digits}g}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--commit", default="unknown")
    p.add_argument("--stages", default="1,2,3,4,5", help="the stages the check was asked to run")
    p.add_argument("--rehearsal", action="store_true", help="a CPU rehearsal: speed goals are not judged")
    a = p.parse_args()
    ratio, floor, harness = (read_json(a.out / f"{k}.json") for k in ("ratio", "floor", "harness"))
    stages = read_lines(a.out / "stages.jsonl")
    test_rows = tests(a.out / "tests.xml")
    accuracy = {path.name.removesuffix(".summary.json"): read_json(path)
                for path in sorted((a.out / "accuracy").glob("*.summary.json"))}
    asked = [k for k in a.stages.split(",") if k in "12345"]
    report = {"commit": a.commit, "device": (ratio or floor or {}).get("device") or (harness or {}).get("device"),
              "stages": stages, "tests": test_rows, "test_figures": read_lines(a.out / "cuda_tests.jsonl"),
              "ratio": ratio, "floor": floor, "harness": harness,
              "accuracy": {k: {"splits": v["splits"], "mean_top1": v["mean_top1"], "device": v["device"],
                               "precision": v.get("precision"), "seconds_per_sample": v["cost"]["seconds_per_sample"]}
                           for k, v in accuracy.items() if v},
              "agreement": agreements(a.out / "accuracy"), "goals": goals(ratio, floor, harness)}
    report["failures"] = failures(stages, asked, test_rows, report["agreement"])
    report["verdict"] = "FAIL" if report["failures"] else "PASS"
    (a.out / "gpu_check.json").write_text(json.dumps(report, indent=1))

    print(f"commit {a.commit}, device {report['device']}")
    counts: dict[str, int] = {}
    for t in test_rows:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    if test_rows:
        print("tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for m in report["test_figures"]:
        print("  " + ", ".join(f"{k}={fmt(v)}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
    for name, r in report["accuracy"].items():
        splits = ", ".join(f"{k} {split['top1']:.1f}" for k, split in r["splits"].items())
        print(f"accuracy {name} ({r['device']}, {r['precision']}): {splits}; mean {r['mean_top1']:.2f}; "
              f"{r['seconds_per_sample']:.4f} s/sample")
    for g in report["agreement"]:
        print(f"agreement {g['method']} {g['precision']} with its default run: {100 * g['agreement']:.1f}% of "
              f"{g['samples']} samples (>= {100 * AGREEMENT_MIN:g}%: {'ok' if g['ok'] else 'FAIL'})")
    judged = not a.rehearsal
    for g in report["goals"]:
        state = ("met" if g["met"] else "not met") if judged and g["value"] is not None else "not judged"
        best = f" ({g['best']})" if g.get("best") else ""
        print(f"goal: {g['goal']}: {fmt(g['value'])}{'' if g['value'] is None else g['unit']}{best}, {state}")
    met = sum(g["met"] for g in report["goals"])
    speed = f"speed goals met: {met} of {len(report['goals'])}" if judged else "speed goals not judged (rehearsal)"
    reasons = "; ".join(report["failures"])
    print(f"gpu_check: {report['verdict']}{f' ({reasons})' if reasons else ''}; {speed}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
