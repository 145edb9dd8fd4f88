"""Mean average precision over classes (Charades' protocol), as an `evaluate` metric module (no network)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Multi-label mean average precision: for every class with at least one positive example, the mean of the precision
at the rank of each positive when the examples are sorted by decreasing score (ties kept in input order); then the
mean over those classes. Classes without a positive are left out, as in Charades' evaluation.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class scores, shape (N, C).
    references (`list` of `list` of `int`): multi-hot targets, shape (N, C).
Returns:
    `mAP`: in [0, 1].
Examples:
    >>> metric = evaluate.load("modeling_sfar/metrics/mean_average_precision")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.8, 0.7]], references=[[0, 0], [1, 1]])
    {'mAP': 0.75}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanAveragePrecision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(self, predictions, references):
        scores = np.asarray(predictions, dtype=np.float64)  # (N, C)
        targets = np.asarray(references).astype(bool)  # (N, C)
        if scores.ndim != 2 or scores.shape != targets.shape:
            raise ValueError(f"predictions and references must both be (N, C), got {scores.shape} and {targets.shape}")
        precisions = []
        for c in np.flatnonzero(targets.any(0)):
            hits = targets[np.argsort(-scores[:, c], kind="stable"), c]  # (N,), by decreasing score
            precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
            precisions.append(precision[hits].mean())
        if not precisions:
            raise ValueError("no class has a positive example")
        return {"mAP": float(np.mean(precisions))}
