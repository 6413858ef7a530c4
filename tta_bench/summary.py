"""summary.json from prediction records: per-split accuracies, means, provenance and cost.

A pure function of the records and the run's metadata, so a resumed or merged run summarises exactly like
an uninterrupted one.
"""
from __future__ import annotations

import platform
import subprocess
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import accuracy, agreement, topk_accuracy

VERSIONED = ("torch", "torchvision", "timm", "open_clip_torch", "numpy", "datasets", "imagecorruptions-imaug",
             "tta-bench")


def split_metrics(records: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in records if r["status"] in ("ok", "failed")]
    labels = [r["label"] for r in scored]
    out: dict[str, Any] = {
        "n": len(scored),
        "top1": accuracy(labels, [r["pred"] for r in scored]),
        "top5": topk_accuracy(labels, [r["top5"] for r in scored]),
        "failed": sum(r["status"] == "failed" for r in records),
        "skipped": sum(r["status"] == "error" for r in records),  # unreadable images under --on-error skip
    }
    with_teacher = [r for r in scored if "teacher_pred" in r]
    if with_teacher:
        out["teacher_top1"] = accuracy([r["label"] for r in with_teacher], [r["teacher_pred"] for r in with_teacher])
        out["agreement"] = agreement([r["pred"] for r in with_teacher], [r["teacher_pred"] for r in with_teacher])
    return out


def summarize(records: list[dict[str, Any]], split_order: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    by_split: dict[str, list] = defaultdict(list)
    for r in records:
        by_split[r["split"]].append(r)
    splits = {name: split_metrics(by_split[name]) for name in split_order if by_split.get(name)}
    summary = {**meta, "splits": splits}
    summary["mean_top1"] = _mean(s["top1"] for s in splits.values())
    summary["mean_top5"] = _mean(s["top5"] for s in splits.values())
    severities = {name.rpartition("-")[2] for name in splits if name.rpartition("-")[2].isdigit()}
    if len(severities) > 1:  # e.g. gradual: published tables average severity 5 only
        summary["mean_top1_by_severity"] = {
            sev: _mean(v["top1"] for name, v in splits.items() if name.rpartition("-")[2] == sev)
            for sev in sorted(severities)}
    if splits and all("teacher_top1" in s for s in splits.values()):
        summary["teacher_mean_top1"] = _mean(s["teacher_top1"] for s in splits.values())
        summary["mean_agreement"] = _mean(s["agreement"] for s in splits.values())
    return summary


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        commit = done.stdout.strip() or None
        return f"{commit}-dirty" if commit and dirty.stdout.strip() else commit
    except (OSError, subprocess.SubprocessError):
        return None
