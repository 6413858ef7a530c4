"""Metrics after the fact, no model run: top-1, top-5 and per-class accuracy from the predictions every run keeps,
ECE, NLL and Brier from the float16 logits a run saved (``--save-logits``).

Results go to ``metrics.json`` in the run folder, which ``load_summary`` merges into the splits, so ``table
--metric ece`` shows them. Accuracies count a failed sample as wrong, as summary.json does.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ReportError
from ..metrics import ECE_BINS, LOGIT_METRICS, accuracy, topk_accuracy
from ..files import atomic_write_text
from ..vocabulary import LOGITS, METRICS as METRICS_FILE, PREDICTIONS
from .outcomes import SCORED, read_predictions
from .runs import RunFolderError, load_summary

PREDICTION_METRICS = ("top1", "top5", "per-class")


def metric_names() -> tuple[str, ...]:
    """Top-1, top-5, every metric registered in ``metrics.LOGIT_METRICS`` (``@logit_metric``), per-class accuracy."""
    return ("top1", "top5", *LOGIT_METRICS, "per-class")


METRICS = metric_names()  # the command line's list (a metric registered later is known to recompute too)


def has_logits(run_dir: Path) -> bool:
    return (run_dir / LOGITS).is_dir() and any((run_dir / LOGITS).glob("*.npz"))


def split_arrays(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits float32 (N, C), label positions within the evaluated classes (N,), classes (C,))."""
    path = run_dir / LOGITS / f"{split}.npz"
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: no saved logits for split {split} (run it with --save-logits)")
    with np.load(path, allow_pickle=False) as z:
        logits, ids, classes = z["logits"].astype(np.float32), z["ids"], z["classes"]
    labels = {r["id"]: r["label"] for r in read_predictions(run_dir / PREDICTIONS) if r["split"] == split}
    position = {int(c): k for k, c in enumerate(classes)}
    return logits, np.array([position.get(labels[i], -1) for i in ids]), classes


def logit_metrics(logits: np.ndarray, targets: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """The calibration metrics among `names` of one split's logits (targets: positions among the classes)."""
    return {name: LOGIT_METRICS[name](logits, targets) for name in names if name in LOGIT_METRICS}


def prediction_metrics(records: list[dict], names: tuple[str, ...]) -> dict[str, object]:
    """Top-1, top-5 and per-class accuracy (percent) among `names` of one split's prediction records."""
    scored = [r for r in records if r.get("status") in SCORED]
    labels = [r["label"] for r in scored]
    preds = [r["pred"] if r["status"] == "ok" else -1 for r in scored]  # a failed sample is wrong
    out: dict[str, object] = {}
    if "top1" in names:
        out["top1"] = accuracy(labels, preds)
    if "top5" in names:
        out["top5"] = topk_accuracy(labels, [r.get("top5") or [r["pred"]] if r["status"] == "ok" else []
                                             for r in scored])
    if "per-class" in names:
        out["per-class"] = {int(c): accuracy([y for y in labels if y == c], [p for y, p in zip(labels, preds) if y == c])
                            for c in sorted(set(labels))}
    return out


def _names(run_dir: Path, names: tuple[str, ...] | None) -> tuple[str, ...]:
    """The metrics to compute: those asked for (each one known, logit metrics only with saved logits), else all
    the run can give."""
    if names is None:
        return metric_names() if has_logits(run_dir) else PREDICTION_METRICS
    unknown = [n for n in names if n not in metric_names()]
    if unknown:
        raise ReportError(f"unknown metric(s) {', '.join(unknown)}; expected some of: {', '.join(metric_names())}")
    need = [n for n in names if n in LOGIT_METRICS]
    if need and not has_logits(run_dir):
        raise ReportError(f"{run_dir}: {', '.join(need)} need saved logits (rerun with --save-logits, which adds "
                          f"them to the finished run); {', '.join(PREDICTION_METRICS)} come from its predictions")
    return tuple(dict.fromkeys(names))


def recompute(run_dir: str | Path, names: tuple[str, ...] | None = None) -> dict[str, dict[str, object]]:
    """Split -> metric -> value of one run (names None: every metric the run can give)."""
    run_dir = Path(run_dir)
    summary = load_summary(run_dir)
    names = _names(run_dir, names)
    if not (run_dir / PREDICTIONS).is_file():
        raise RunFolderError(f"{run_dir}: no {PREDICTIONS} to recompute metrics from")
    by_split: dict[str, list[dict]] = {}
    for record in read_predictions(run_dir / PREDICTIONS):
        by_split.setdefault(record["split"], []).append(record)
    out = {}
    for split in summary["splits"]:
        values = prediction_metrics(by_split.get(split, []), names)
        if any(name in LOGIT_METRICS for name in names):
            logits, targets, _ = split_arrays(run_dir, split)
            values |= logit_metrics(logits, targets, names)
        out[split] = {name: values[name] for name in names}
    return out


def metrics_command(run_dirs: list[str], names: tuple[str, ...] | None = None) -> str:
    """Recompute, write metrics.json into each run folder, and print one table per run (per-class: file only)."""
    lines = []
    for run_dir in run_dirs:
        values = recompute(run_dir, names)
        atomic_write_text(Path(run_dir) / METRICS_FILE,
                          json.dumps({"ece_bins": ECE_BINS, "splits": values}, indent=2, sort_keys=True) + "\n")
        scalar = [n for n in next(iter(values.values()), {}) if n != "per-class"]
        lines += [f"\n{run_dir}", "| split | " + " | ".join(scalar) + " |", "|---|" + "---:|" * len(scalar)]
        lines += [f"| {split} | " + " | ".join(f"{v[n]:.4f}" if n in ("nll", "brier") else f"{v[n]:.2f}"
                                               for n in scalar) + " |" for split, v in values.items()]
        if not has_logits(Path(run_dir)):
            lines.append(f"({', '.join(LOGIT_METRICS)} need saved logits: rerun with --save-logits)")
    head = f"top-1, top-5 in percent; ECE: {ECE_BINS} equal-width confidence bins, percent; NLL in nats; Brier " \
           "summed over classes; per-class accuracy in metrics.json"
    return "\n".join([head, *lines])
