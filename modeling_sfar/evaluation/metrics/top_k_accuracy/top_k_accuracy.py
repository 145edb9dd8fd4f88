"""Top-k accuracy of class scores, as an `evaluate` metric module (loaded from this folder, no network)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Share of examples whose true class is among the k highest-scoring classes, for every k asked. A class that ties
with the true class's score counts as ranked above it, so constant scores never count as correct.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class scores (logits or probabilities), shape (N, C).
    references (`list` of `int`): the true class of each example, shape (N,).
    k (`int` or `tuple` of `int`, defaults to `(1, 5)`): the k values; k above C counts every example as correct.
Returns:
    `top{k}` for every k: the accuracy in [0, 1].
Examples:
    >>> metric = evaluate.load("modeling_sfar/metrics/top_k_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[1, 1], k=(1, 2))
    {'top1': 0.5, 'top2': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        scores = np.asarray(predictions, dtype=np.float64)  # (N, C)
        labels = np.asarray(references, dtype=np.int64)  # (N,)
        if len(scores) == 0:
            raise ValueError("no predictions to score")
        if scores.ndim != 2:
            raise ValueError(f"predictions must hold the same number of class scores per example, got {scores.shape}")
        if labels.min() < 0 or labels.max() >= scores.shape[1]:
            raise ValueError(f"references must lie in [0, {scores.shape[1]}), got {np.unique(labels).tolist()}")
        label_scores = scores[np.arange(len(scores)), labels]  # (N,)
        # rank of the true class: classes scored above it, plus the other classes that tie with it
        rank = (scores > label_scores[:, None]).sum(1) + (scores == label_scores[:, None]).sum(1) - 1  # (N,)
        ks = (k,) if isinstance(k, int) else tuple(k)
        return {f"top{int(value)}": float((rank < value).mean()) for value in ks}
