"""The local metrics against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from modeling_sfar.evaluation.metrics import (
    METRICS_DIR,
    classification_metrics,
    load_metric,
    mean_average_precision,
    top_k_accuracy,
)


def test_top_k_accuracy():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    labels = np.array([1, 1, 0, 1])
    assert top_k_accuracy(scores, labels, 1) == 0.25  # row 0 right; row 3 ties with a higher class: counts against
    assert top_k_accuracy(scores, labels, 2) == 0.75  # row 2: class 0 is third
    assert top_k_accuracy(scores, labels, 5) == 1.0
    with pytest.raises(ValueError, match="no predictions"):
        top_k_accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_mean_average_precision():
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.3, 0.6, 0.1], [0.1, 0.2, 0.4]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    # class 0: ranks 1 (hit), 2, 3 (hit) -> (1 + 2/3) / 2; class 1: ranks 1 (hit), 2 (hit) -> 1; class 2: no positive
    assert mean_average_precision(scores, targets) == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    assert classification_metrics(scores, targets) == {"mAP": pytest.approx(100 * ((1 + 2 / 3) / 2 + 1) / 2)}
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(scores, np.zeros_like(targets))


def test_metrics_are_evaluate_modules_loaded_locally():
    """The metrics are `evaluate` modules loaded from our folders; the module checks its inputs, naming the range."""
    import evaluate

    metric = load_metric("top_k_accuracy")
    assert isinstance(metric, evaluate.Metric)
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]]
    assert metric.compute(predictions=scores, references=[1, 1], k=(1, 2)) == {"top1": 0.5, "top2": 1.0}
    with pytest.raises(ValueError, match=r"references must lie in \[0, 3\)"):
        metric.compute(predictions=scores, references=[1, 3])
    fresh = evaluate.load(f"{METRICS_DIR}/mean_average_precision", keep_in_memory=True)  # as a user would load it
    assert fresh.compute(predictions=[[0.9, 0.1], [0.8, 0.7]], references=[[0, 0], [1, 1]]) == {"mAP": 0.75}
    assert classification_metrics(np.array(scores), np.array([1, 1])) == {"top1": 50.0, "top5": 100.0}
