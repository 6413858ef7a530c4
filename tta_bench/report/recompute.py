"""Metrics after the fact: recomputed from the float16 logits a run saved (``--save-logits``), no model run.

Results go to ``metrics.json`` in the run folder, which ``load_summary`` merges into the splits, so ``table
--metric ece`` shows them. Top-1/top-5 use the same tie rule as the engine (stable descending order), so
they equal summary.json exactly.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..metrics import ECE_BINS, LOGIT_METRICS
from ..vocabulary import LOGITS, METRICS as METRICS_FILE, PREDICTIONS
from .runs import RunFolderError, load_summary
from ..errors import ReportError


def metric_names() -> tuple[str, ...]:
    """Top-1 and top-5 (as the engine counts them), every metric of ``metrics.LOGIT_METRICS``, per-class accuracy."""
    return ("top1", "top5", *LOGIT_METRICS, "per-class")


METRICS = metric_names()  # the command line's default


def split_arrays(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits float32 (N, C), label positions within the evaluated classes (N,), classes (C,))."""
    path = run_dir / LOGITS / f"{split}.npz"
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no saved logits for split {split} (run it with --save-logits)")
    with np.load(path, allow_pickle=False) as z:
        logits, ids, classes = z["logits"].astype(np.float32), z["ids"], z["classes"]
    labels = {}
    with open(run_dir / PREDICTIONS) as f:
        for line in f:
            r = json.loads(line)
            if r["split"] == split:
                labels[r["id"]] = r["label"]
    position = {int(c): k for k, c in enumerate(classes)}
    return logits, np.array([position.get(labels[i], -1) for i in ids]), classes


def split_metrics(logits: np.ndarray, targets: np.ndarray, names: tuple[str, ...]) -> dict[str, object]:
    order = np.argsort(-logits, axis=1, kind="stable")[:, :5]
    out: dict[str, object] = {}
    for name in names:
        if name == "top1":
            out[name] = float(100.0 * np.mean(order[:, 0] == targets))
        elif name == "top5":
            out[name] = float(100.0 * np.mean([t in row for t, row in zip(targets, order)]))
        elif name in LOGIT_METRICS:
            out[name] = LOGIT_METRICS[name](logits, targets)
        elif name == "per-class":
            out[name] = {int(c): float(100.0 * np.mean(order[targets == c, 0] == c)) for c in np.unique(targets)}
    return out


def recompute(run_dir: str | Path, names: tuple[str, ...] = METRICS) -> dict[str, dict[str, object]]:
    unknown = [n for n in names if n not in metric_names()]
    if unknown:
        raise ReportError(f"unknown metric(s) {unknown}; expected some of: {', '.join(metric_names())}")
    run_dir = Path(run_dir)
    summary = load_summary(run_dir)
    out = {}
    for split in summary["splits"]:
        logits, targets, classes = split_arrays(run_dir, split)
        values = split_metrics(logits, targets, names)
        if "per-class" in values:  # keyed by class id of the label space, not the position
            values["per-class"] = {int(classes[k]): v for k, v in values["per-class"].items()}
        out[split] = values
    return out


def metrics_command(run_dirs: list[str], names: tuple[str, ...]) -> str:
    lines = [f"ECE: {ECE_BINS} equal-width confidence bins, percent; NLL in nats; Brier summed over classes"]
    for run_dir in run_dirs:
        values = recompute(run_dir, names)
        path = Path(run_dir) / METRICS_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"ece_bins": ECE_BINS, "splits": values}, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        lines.append(f"\n{run_dir}")
        scalar = [n for n in names if n != "per-class"]
        lines.append("| split | " + " | ".join(scalar) + " |")
        lines.append("|---|" + "---:|" * len(scalar))
        for split, v in values.items():
            lines.append(f"| {split} | " + " | ".join(f"{v[n]:.4f}" if n in ("nll", "brier") else f"{v[n]:.2f}"
                                                     for n in scalar) + " |")
    return "\n".join(lines)
