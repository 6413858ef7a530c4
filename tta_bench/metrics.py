"""Pure metric functions over labels, predictions and logits (numpy in, floats out; percent where accuracy).

Used by the engine for summaries and by ``metrics`` to recompute from saved logits, so both agree exactly.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

ECE_BINS = 15
# Metrics recomputed from saved logits (``run_bench.py metrics``): name -> f(logits (N, C), label columns (N,)).
LogitMetric = Callable[[np.ndarray, np.ndarray], float]
LOGIT_METRICS: dict[str, LogitMetric] = {}


def logit_metric(name: str) -> Callable[[LogitMetric], LogitMetric]:
    """Register a metric of saved logits under ``name`` (``metrics --metric NAME``, ``table --metric NAME``)."""
    def register(metric: LogitMetric) -> LogitMetric:
        if name in LOGIT_METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        LOGIT_METRICS[name] = metric
        return metric

    return register


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    labels, preds = np.asarray(labels), np.asarray(preds)
    return float(100.0 * (labels == preds).mean()) if len(labels) else float("nan")


def topk_accuracy(labels: Sequence[int], topk: Sequence[Sequence[int]], k: int = 5) -> float:
    if not len(labels):
        return float("nan")
    return float(100.0 * np.mean([y in row[:k] for y, row in zip(labels, topk)]))


def agreement(a: Sequence[int], b: Sequence[int]) -> float:
    return accuracy(a, b)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@logit_metric("ece")
def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE in percent over ``bins`` equal-width confidence bins (Guo et al. 2017)."""
    probs = softmax(logits)
    conf, pred = probs.max(1), probs.argmax(1)
    correct = pred == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(100.0 * ece)


@logit_metric("nll")
def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    probs = softmax(logits)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


@logit_metric("brier")
def brier_score(logits: np.ndarray, labels: np.ndarray) -> float:
    probs = softmax(logits)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(labels)), labels] = 1.0
    return float(((probs - onehot) ** 2).sum(1).mean())
