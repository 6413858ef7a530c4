"""Gather what benchmarks/gpu_check.sh measured into one JSON ($OUT/gpu_check.json) and print it as short tables:
test outcomes (from pytest's JUnit XML) with the deviations the tests measured, the APM speed figures against the
targets, and the end-to-end runs against results/ci/reference.json.

    python benchmarks/gpu_check_report.py OUT_DIR --runs RUNS_DIR --junit tests.xml --commit SHA
"""
from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEP_SHARE_TARGET = 0.5  # of the step's own bf16 GEMM rate, with >= 32 samples together
RATIO_TARGET = 50.0  # samples/s against the official demo protocol at 1000 classes


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
                     "seconds": float(case.get("time") or 0)})
    return rows


def speed_targets(speed: dict[str, Any]) -> dict[str, Any]:
    rows = speed.get("rows", [])
    gemm = {r["samples"]: r["gemm_tflops"] for r in rows if "gemm_tflops" in r}
    shares = [(r["samples"], r["compiled"], r["tflops"] / gemm[r["samples"]]) for r in rows
              if "tflops" in r and r["samples"] in gemm and r["samples"] >= 32]
    best = max(shares, key=lambda s: s[2], default=None)
    ratio = speed.get("official", {}).get("ratio")
    return {"step_share_of_gemm": best and {"samples": best[0], "compiled": best[1], "share": best[2],
                                            "met": best[2] >= STEP_SHARE_TARGET},
            "ratio_vs_official": ratio and {"ratio": ratio, "met": ratio >= RATIO_TARGET}}


def end_to_end(runs: Path) -> list[dict[str, Any]]:
    reference = json.loads((ROOT / "results" / "ci" / "reference.json").read_text())["references"]
    rows = []
    for path in sorted(runs.glob("*/summary.json")):
        s = json.loads(path.read_text())
        ref = next((r for r in reference if r["method"] == s["method"] and r["teacher"] == s["teacher"]), None)
        splits = {k: v["top1"] for k, v in s["splits"].items()}
        rows.append({"run": path.parent.name, "method": s["method"], "device": s["device"],
                     "precision": s.get("precision"), "splits": splits, "mean_top1": s["mean_top1"],
                     "reference": ref and ref["splits"],
                     "max_abs_diff": ref and max(abs(splits[k] - ref["splits"][k]) for k in ref["splits"]),
                     "tolerance": ref and ref["tolerance"],
                     "seconds_per_sample": s["cost"]["seconds_per_sample"],
                     "peak_memory_mb": s["cost"]["peak_memory_mb"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--runs", type=Path, default=Path("/nonexistent"), help="folder of the end-to-end run folders")
    p.add_argument("--junit", type=Path, default=Path("/nonexistent"))
    p.add_argument("--commit", default="unknown")
    a = p.parse_args()
    measured = [json.loads(line) for line in (a.out / "cuda_tests.jsonl").read_text().splitlines()] \
        if (a.out / "cuda_tests.jsonl").is_file() else []
    speed = json.loads((a.out / "apm_speed.json").read_text()) if (a.out / "apm_speed.json").is_file() else {}
    report = {"commit": a.commit, "device": speed.get("device"), "torch": speed.get("torch"),
              "tests": tests(a.junit), "test_figures": measured, "speed": speed, "targets": speed_targets(speed),
              "end_to_end": end_to_end(a.runs)}
    (a.out / "gpu_check.json").write_text(json.dumps(report, indent=1))

    print(f"commit {a.commit}, device {report['device']}, torch {report['torch']}")
    counts: dict[str, int] = {}
    for t in report["tests"]:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        if t["outcome"] in ("failure", "error"):
            print(f"  {t['outcome']}: {t['test']}: {t['message']}")
    print(f"tests: {counts}")
    for m in measured:
        print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))
    print(f"targets: {json.dumps(report['targets'])}")
    for r in report["end_to_end"]:
        print(f"e2e {r['run']} ({r['device']}, {r['precision']}): {r['splits']} mean {r['mean_top1']:.1f}; "
              f"max |diff| vs reference {r['max_abs_diff']} (tolerance {r['tolerance']}); "
              f"{r['seconds_per_sample']:.4f} s/sample")


if __name__ == "__main__":
    main()
