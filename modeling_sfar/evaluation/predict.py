"""Predicting and scoring a split with the Trainer: one clip per video, or several views whose probabilities are
averaged (`predict_views`, what the model's loss treats as probabilities), also on the subsets that group columns
define, leaving out videos that failed."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer

from ..data.bad_videos import BadVideoLog
from ..data.datasets import with_row_index
from ..data.transform import VideoTransform
from ..remote_code.modeling_clip_video import average_over_views
from .metrics import EVAL_PREFIX, classification_metrics, metric_key

logger = logging.getLogger(__name__)

__all__ = ["predict_views", "VideoEvaluationTrainer", "compute_metrics", "evaluate_split"]


def predict_views(
    model: torch.nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    Multi-view testing: the model on `(B, V, T, 3, H, W)` pixel values (V views of each video folded into one batch of
    B * V clips), the views' logits averaged by `average_over_views` (softmax probabilities, or sigmoid ones for a
    multi-label model), and the model's loss on the averaged logits when `labels` are given.

    Returns:
        The `(B, C)` averaged logits (float32) and the loss (or None).
    """
    if pixel_values.ndim != 6:
        raise ValueError(f"expected (B, V, T, 3, H, W) views, got pixel_values of shape {tuple(pixel_values.shape)}")
    batch_size, num_views = pixel_values.shape[:2]
    config = getattr(model, "config", None) or model.module.config  # a wrapped (DDP) model keeps it on `.module`
    logits = model(pixel_values=pixel_values.flatten(0, 1), **kwargs).logits  # (B * V, C)
    multi_label = config.problem_type == "multi_label_classification"
    logits = average_over_views(logits.view(batch_size, num_views, -1), multi_label)  # (B, C)
    loss = None
    if labels is not None:
        loss = (model.module if hasattr(model, "module") else model).loss(logits, labels)
    return logits, loss


class VideoEvaluationTrainer(Trainer):
    """
    The Trainer, predicting batches of several views per video with `predict_views` (one clip per video: the
    Trainer's own prediction step). Its labels are `labels` unless `args.label_names` says otherwise: the Trainer would
    take every forward argument whose name holds "label" for one, the encoded `label_set` among them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.label_names is None:
            self.label_names = ["labels"]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        pixel_values = inputs.get("pixel_values")
        if pixel_values is None or pixel_values.ndim != 6:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.no_grad():
            logits, loss = predict_views(model, inputs["pixel_values"], labels)
        loss = None if loss is None else loss.detach()
        if prediction_loss_only:
            return loss, None, None
        return loss, logits.detach(), labels


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Trainer hook: top-1/top-5 (single-label) or mAP (multi-label) from the logits."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return classification_metrics(logits, prediction.label_ids)


def evaluate_split(
    trainer: Trainer,
    dataset,
    split: str,
    video_processor: Any,
    num_classes: int,
    multi_label: bool,
    num_clips: int = 1,
    num_crops: int = 1,
    group_columns: tuple[str, ...] = (),
    prefix: str = EVAL_PREFIX,
    log: BadVideoLog | None = None,
    strict: bool = False,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """
    Predict `dataset` with `trainer` (multi-view with `num_clips` x `num_crops`) and score it, also on the subsets
    that `group_columns` define (a boolean column gives the subset where it is true, any other column one subset per
    value), as in the paper's ambiguous / non-uniform tables. Returns the metrics, the logits and the labels.

    A video that fails while it is predicted (see `VideoTransform`) is recorded in `log` and left out of every
    metric; `{prefix}_bad_videos` counts them. With `strict` it stops the evaluation instead.
    """
    if "_index" not in dataset.column_names:
        dataset = with_row_index(dataset)
    groups = {column: np.asarray(dataset[column]) for column in group_columns}
    rows = np.asarray(dataset["_index"])
    scope = f"{prefix}:{split}"
    transform = VideoTransform(
        video_processor,
        num_classes,
        multi_label,
        num_clips=num_clips,
        num_crops=num_crops,
        scope=scope,
        log=log,
        strict=strict,
    )
    transform.bind(dataset)
    dataset.set_transform(transform)
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    label_ids = output.label_ids
    metrics = dict(output.metrics)
    bad = log.read(scope) if log is not None else {}
    keep = ~np.isin(rows, list(bad))  # (len(dataset),)
    if bad:
        # Re-score without the replaced rows: their pixels came from another video.
        for key, value in classification_metrics(logits[keep], label_ids[keep]).items():
            metrics[metric_key(prefix, key)] = value
        logger.warning(
            "%d of %d videos of split %r failed during evaluation and are left out of its metrics: %s",
            len(bad),
            len(rows),
            split,
            ", ".join(video for video, _ in bad.values()),
        )
    metrics[f"{prefix}_bad_videos"] = len(bad)
    for column, values in groups.items():
        subsets = (
            {column: values} if values.dtype == bool else {f"{column}={v}": values == v for v in np.unique(values)}
        )
        for name, mask in subsets.items():
            mask = mask & keep
            if mask.any():
                for key, value in classification_metrics(logits[mask], label_ids[mask]).items():
                    metrics[metric_key(prefix, key, name)] = value
    return metrics, logits, label_ids


