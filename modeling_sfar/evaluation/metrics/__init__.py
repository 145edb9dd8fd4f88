"""
Metrics as `evaluate` modules that load from this package's folders, with no network: top-k accuracy for
single-label data and mean average precision for multi-label data. `train.py`, `evaluate.py` and the model card's
model-index all score through `classification_metrics`.
"""

from __future__ import annotations

import functools
import os

import numpy as np

__all__ = [
    "load_metric",
    "top_k_accuracy",
    "mean_average_precision",
    "classification_metrics",
    "metric_key",
    "METRICS_DIR",
    "TOP1",
    "TOP5",
    "MAP",
    "EVAL_PREFIX",
    "ZERO_SHOT_PREFIX",
]

METRICS_DIR = os.path.dirname(os.path.abspath(__file__))

# The names of the scores (`classification_metrics`) and of the prefixes the training run gives them: the evaluation
# split (`eval`) and the zero-shot label set (`zero_shot`). Scripts and the model card read metrics by these.
TOP1, TOP5, MAP = "top1", "top5", "mAP"
EVAL_PREFIX, ZERO_SHOT_PREFIX = "eval", "zero_shot"


def metric_key(prefix: str, metric: str, subset: str | None = None) -> str:
    """The key of a score in the run's metrics: `eval_top1`, or with a subset `eval_ambiguous_top1`,
    `eval_timing=uniform_top1` (see `modeling_sfar.training.trainer.evaluate_split`)."""
    return f"{prefix}_{subset}_{metric}" if subset else f"{prefix}_{metric}"


@functools.cache
def load_metric(name: str):
    """`evaluate.load` of one of our metric modules (`"top_k_accuracy"`, `"mean_average_precision"`) by its folder."""
    import evaluate

    folder = os.path.join(METRICS_DIR, name)
    if not os.path.isfile(os.path.join(folder, f"{name}.py")):
        raise ValueError(f"unknown metric {name!r}; the metrics are in {METRICS_DIR}")
    # in memory: no cache files, which processes of a distributed evaluation would otherwise share by name
    return evaluate.load(folder, keep_in_memory=True)


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of rows of `scores` (N, C) whose label (N,) is among the k highest scores; ties count against."""
    scores = np.asarray(scores, dtype=np.float64)
    k = min(k, scores.shape[1]) if scores.ndim == 2 else k
    result = load_metric("top_k_accuracy").compute(predictions=scores, references=np.asarray(labels), k=(k,))
    return result[f"top{k}"]


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """mAP over the classes that have at least one positive (Charades' protocol). `scores`, `targets`: (N, C)."""
    return load_metric("mean_average_precision").compute(
        predictions=np.asarray(scores), references=np.asarray(targets)
    )["mAP"]


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """top-1 / top-5 accuracy (in %) for labels of shape (N,), mAP (in %) for multi-hot labels of shape (N, C)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return {MAP: 100 * mean_average_precision(scores, labels)}
    result = load_metric("top_k_accuracy").compute(predictions=np.asarray(scores), references=labels, k=(1, 5))
    return {TOP1: 100 * result["top1"], TOP5: 100 * result["top5"]}
