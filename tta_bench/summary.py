"""summary.json from prediction records: per-split accuracies, means, provenance and cost.

A pure function of the records and the run's metadata, so a resumed or merged run summarises exactly like
an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .config import RunConfig
from .metrics import accuracy, agreement, topk_accuracy
from .vocabulary import parse_split

if TYPE_CHECKING:  # a summary is read without torch or data code (report/)
    from .data.build import SuiteData
    from .stream import Stream

VERSIONED = ("torch", "torchvision", "timm", "open_clip_torch", "numpy", "datasets", "imagecorruptions-imaug",
             "tta-bench")
NO_PREDICTION = -1  # what a failed sample is scored with: no class


def split_accuracy(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One split's accuracies from its records (report.recompute works from saved logits instead). A failed sample (a
    diverged update, NaN logits) is scored wrong in top-1 and top-5 alike: the prediction a record holds for it (the
    argmax of NaN, class 0) is no prediction."""
    scored = [r for r in records if r["status"] in ("ok", "failed")]
    labels = [r["label"] for r in scored]
    ok = [r["status"] == "ok" for r in scored]
    out: dict[str, Any] = {
        "n": len(scored),
        "top1": accuracy(labels, [r["pred"] if good else NO_PREDICTION for r, good in zip(scored, ok)]),
        "top5": topk_accuracy(labels, [r["top5"] if good else [] for r, good in zip(scored, ok)]),
        "failed": sum(r["status"] == "failed" for r in records),
        "skipped": sum(r["status"] == "error" for r in records),  # unreadable images under --on-error skip
    }
    with_teacher = [r for r in scored if "teacher_pred" in r]
    if with_teacher:
        out["teacher_top1"] = accuracy([r["label"] for r in with_teacher], [r["teacher_pred"] for r in with_teacher])
        out["agreement"] = agreement([r["pred"] for r in with_teacher], [r["teacher_pred"] for r in with_teacher])
    return out


@dataclass
class Summary:
    """summary.json: a run's accuracies (per split and means) and its provenance. The engine writes it, the report
    and the test fixtures build it the same way (``Summary.of``); ``to_dict`` is the file's content."""

    run_name: str
    suite: str
    method: str
    teacher: str
    source: str
    data: dict[str, Any]  # subset, generated, partial, n_samples, notes, classes, label_space
    setting: dict[str, Any]  # name, its parameters, stream_hash
    seed: int
    config: dict[str, Any]  # the RunConfig, as config.json holds it
    method_options: dict[str, Any]  # the options the method ran with
    cost: dict[str, Any]  # seconds, samples, samples/s, peak memory, forwards, steps, FLOPs
    defaults: dict[str, Any] = field(default_factory=dict)  # the suite family's method defaults: applied, overridden
    notes: list[str] = field(default_factory=list)  # what makes the number not the standard one (e.g. one-batch)
    source_data: dict[str, Any] | None = None  # clean images a method digested before the stream (EATA)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    mean_top1: float = float("nan")
    mean_top5: float = float("nan")
    failed: int = 0  # samples of every split whose update diverged: scored wrong, and counted here
    prompts: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    world_size: int = 1
    process_group: str | None = None
    # the command line, UTC time, dirty tree, host (CPU/GPU model, threads), teacher weights' hash (provenance.py)
    provenance: dict[str, Any] = field(default_factory=dict)
    # present only where they apply
    mean_top1_by_severity: dict[str, float] | None = None  # several severities (gradual)
    teacher_mean_top1: float | None = None  # methods that report their teacher (APM)
    mean_agreement: float | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = ("mean_top1_by_severity", "teacher_mean_top1", "mean_agreement")

    @classmethod
    def of(cls, splits: dict[str, dict[str, Any]], **fields: Any) -> "Summary":
        """A summary whose means are computed from `splits` (each split's metrics as split_accuracy returns them)."""
        summary = cls(splits=splits, **fields)
        summary.mean_top1 = _mean(s["top1"] for s in splits.values())
        summary.mean_top5 = _mean(s["top5"] for s in splits.values() if "top5" in s)
        summary.failed = sum(int(s.get("failed", 0)) for s in splits.values())
        severity = {name: parsed[1] for name in splits if (parsed := parse_split(name))}
        if len(set(severity.values())) > 1:  # e.g. gradual: published tables average severity 5 only
            summary.mean_top1_by_severity = {
                str(sev): _mean(v["top1"] for name, v in splits.items() if severity.get(name) == sev)
                for sev in sorted(set(severity.values()))}
        if splits and all("teacher_top1" in s for s in splits.values()):
            summary.teacher_mean_top1 = _mean(s["teacher_top1"] for s in splits.values())
            summary.mean_agreement = _mean(s["agreement"] for s in splits.values())
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in self.OPTIONAL}


def summarize(records: list[dict[str, Any]], split_order: list[str], meta: dict[str, Any]) -> Summary:
    by_split: dict[str, list] = defaultdict(list)
    for r in records:
        by_split[r["split"]].append(r)
    return Summary.of({name: split_accuracy(by_split[name]) for name in split_order if by_split.get(name)}, **meta)


def run_meta(cfg: RunConfig, run_name: str, suite: SuiteData, stream: Stream, stream_hash: str, *,
             transform: str, batch_size: int, method_options: dict[str, Any], defaults: dict[str, Any], notes: list[str],
             source_data: dict[str, Any] | None, prompts: dict[str, Any], provenance: dict[str, Any], device: str,
             precision: str, world_size: int, process_group: str | None, cost: dict[str, Any]) -> dict[str, Any]:
    """Everything in summary.json but the accuracies: what ran on which data, how, where, and at what cost."""
    root = os.path.abspath(cfg.data_root) if cfg.data_root and os.path.exists(cfg.data_root) else cfg.data_root
    data = {"subset": suite.subset, "generated": suite.generated, "partial": suite.partial,
            "n_samples": len(stream.items), "notes": suite.notes, "classes": len(suite.classes), "root": root,
            "label_space": suite.space.name, **suite.protocol(), "transform": transform}
    return {"run_name": run_name, "suite": cfg.suite, "method": cfg.method, "teacher": cfg.teacher,
            "source": suite.source, "data": data,
            "setting": {"name": stream.setting, **stream.params, **stream.describe(suite, batch_size),
                        "stream_hash": stream_hash},
            "seed": cfg.seed, "config": cfg.to_dict(), "method_options": method_options, "defaults": defaults,
            "provenance": provenance, "notes": notes, "source_data": source_data, "prompts": prompts,
            "versions": versions(), "git_commit": git_commit(), "device": device, "precision": precision,
            "world_size": world_size, "process_group": process_group, "cost": cost}


def cost_record(spent: dict[str, float], peak_memory_mb: float, flops_per_sample: float | None) -> dict[str, Any]:
    """The compute every session and rank of a run spent (cost/), with its rates; peak memory is this session's."""
    return {**{k: spent[k] for k in ("seconds", "teacher_forwards", "adaptation_steps")},
            "samples": int(spent["samples"]), "peak_memory_mb": peak_memory_mb,
            "samples_per_second": spent["samples"] / spent["seconds"] if spent["seconds"] else None,
            "seconds_per_sample": spent["seconds"] / spent["samples"] if spent["samples"] else None,
            "flops_per_sample": flops_per_sample}


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
