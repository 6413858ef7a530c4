"""Metric functions against values computed by hand on a small fixture."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tta_bench.metrics import accuracy, brier_score, expected_calibration_error, negative_log_likelihood, topk_accuracy

# two classes; softmax of (log 3, 0) = (0.75, 0.25), of (0, 0) = (0.5, 0.5)
LOGITS = np.array([[math.log(3), 0.0], [math.log(3), 0.0], [0.0, 0.0], [0.0, math.log(9)]])
LABELS = np.array([0, 1, 0, 1])


def test_nll_by_hand():
    expected = -(math.log(0.75) + math.log(0.25) + math.log(0.5) + math.log(0.9)) / 4
    assert negative_log_likelihood(LOGITS, LABELS) == pytest.approx(expected)


def test_brier_by_hand():
    per = [0.25 ** 2 * 2, 0.75 ** 2 * 2, 0.5 ** 2 * 2, 0.1 ** 2 * 2]
    assert brier_score(LOGITS, LABELS) == pytest.approx(np.mean(per))


def test_ece_by_hand():
    # confidences 0.75 (right), 0.75 (wrong), 0.5 (argmax 0: right), 0.9 (right); 15 bins of width 1/15
    # bins: 0.5 -> (0.4667, 0.5333]; 0.75 -> (0.7333, 0.8]; 0.9 -> (0.8667, 0.9333]
    expected = (1 / 4) * abs(1 - 0.5) + (2 / 4) * abs(0.5 - 0.75) + (1 / 4) * abs(1 - 0.9)
    assert expected_calibration_error(LOGITS, LABELS) == pytest.approx(100 * expected)


def test_accuracies():
    assert accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 50.0
    assert topk_accuracy([1, 2], [[0, 1, 5], [3, 4, 5]], k=2) == 50.0
