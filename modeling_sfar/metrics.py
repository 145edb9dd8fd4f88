"""Local metrics (no network): top-k accuracy for single-label data, mean average precision for multi-label data."""

from __future__ import annotations

import numpy as np

__all__ = ["top_k_accuracy", "mean_average_precision", "classification_metrics"]


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of rows of `scores` (N, C) whose label (N,) is among the k highest scores; ties count against."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if len(scores) == 0:
        raise ValueError("no predictions to score")
    k = min(k, scores.shape[1])
    label_scores = scores[np.arange(len(scores)), labels]
    # rank = number of classes strictly above the label's score, plus ties other than the label itself
    above = (scores > label_scores[:, None]).sum(1) + (scores == label_scores[:, None]).sum(1) - 1
    return float((above < k).mean())


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class: mean precision at the rank of every positive, by decreasing score."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(targets, dtype=bool)[order]
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP over the classes that have at least one positive (Charades' protocol). `scores`, `targets`: (N, C)."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1]) if targets[:, c].any()]
    if not aps:
        raise ValueError("no class has a positive example")
    return float(np.mean(aps))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """top-1 / top-5 accuracy (in %) for labels of shape (N,), mAP (in %) for multi-hot labels of shape (N, C)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return {"mAP": 100 * mean_average_precision(scores, labels)}
    return {"top1": 100 * top_k_accuracy(scores, labels, 1), "top5": 100 * top_k_accuracy(scores, labels, 5)}
