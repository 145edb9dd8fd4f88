"""What training and evaluation share: loading and checking video datasets, few-shot subsets, the on-the-fly video
transform, SFAR's two learning rates, and the Trainer subclass that uses them. Not shipped to the Hub.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainerCallback

from .metrics import classification_metrics

logger = logging.getLogger(__name__)

__all__ = [
    "load_video_dataset",
    "dataset_labels",
    "check_dataset",
    "check_videos",
    "few_shot_subset",
    "VideoTransform",
    "EpochCallback",
    "with_row_index",
    "sfar_parameter_groups",
    "SfarTrainer",
    "compute_metrics",
]


def load_video_dataset(source: str, split: str | None = None):
    """A `DatasetDict` (or one split) from a folder written by `save_to_disk`, or a Hub dataset id."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    if os.path.isdir(source) and (
        os.path.isfile(os.path.join(source, "dataset_dict.json"))
        or os.path.isfile(os.path.join(source, "dataset_info.json"))
    ):
        dataset = load_from_disk(source)
    else:
        dataset = load_dataset(source)
    if split is None:
        return dataset
    if not isinstance(dataset, DatasetDict):
        raise ValueError(f"{source} holds a single split; it has no split {split!r}")
    if split not in dataset:
        raise ValueError(f"{source} has no split {split!r}; it has {sorted(dataset)}")
    return dataset[split]


def dataset_labels(dataset) -> tuple[list[str], bool]:
    """Class names of a video dataset and whether it is multi-label (a `labels` list column) or not (`label`)."""
    from datasets import ClassLabel

    features = dataset.features
    if "label" in features and isinstance(features["label"], ClassLabel):
        return list(features["label"].names), False
    if "labels" in features:
        inner = getattr(features["labels"], "feature", None)
        if isinstance(inner, ClassLabel):
            return list(inner.names), True
        if isinstance(features["labels"], list) and isinstance(features["labels"][0], ClassLabel):
            return list(features["labels"][0].names), True
    raise ValueError(
        "a video dataset needs a `label` ClassLabel column (single-label) or a `labels` list of ClassLabel "
        f"(multi-label); this one has {dict(features)}"
    )


def check_dataset(dataset, split: str, num_classes: int, multi_label: bool) -> None:
    """Refuse an empty split or label values outside the label set, naming the split and the video."""
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} is empty")
    column = "labels" if multi_label else "label"
    values = dataset[column]
    for index, value in enumerate(values):
        bad = [v for v in (value if multi_label else [value]) if not 0 <= v < num_classes]
        if bad:
            video = dataset[index]["video"]
            raise ValueError(
                f"split {split!r}, video {video}: label {bad[0]} is outside the label set of {num_classes} classes"
            )


def _probe(path: str) -> str:
    """'' if `path` opens as a video with at least one decodable frame, else the reason."""
    import av

    if not os.path.isfile(path):
        return "file not found"
    if os.path.getsize(path) == 0:
        return "empty file"
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return "no video stream"
            for _frame in container.decode(video=0):
                return ""
            return "no decodable frame"
    except (av.error.FFmpegError, OSError, ValueError) as error:
        return f"cannot be decoded ({error.__class__.__name__}: {error})"


def check_videos(dataset, split: str, strict: bool = False, num_proc: int | None = None):
    """
    Open every video of `dataset` (PyAV) and drop those that are missing or do not decode, logging each path and
    reason and the count. With `strict`, raise instead, listing them.
    """
    problems = dataset.map(
        lambda row: {"_problem": _probe(row["video"])}, num_proc=num_proc, desc=f"checking {split} videos"
    )["_problem"]
    bad = [(dataset[i]["video"], reason) for i, reason in enumerate(problems) if reason]
    if not bad:
        return dataset
    listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
    if strict:
        raise ValueError(f"{len(bad)} of {len(dataset)} videos of split {split!r} cannot be used:\n{listing}")
    for path, reason in bad:
        logger.warning("skipping %s: %s", path, reason)
    logger.warning("skipped %d of %d videos of split %r", len(bad), len(dataset), split)
    keep = [i for i, reason in enumerate(problems) if not reason]
    return dataset.select(keep)


def few_shot_subset(dataset, shots: int, seed: int, num_classes: int):
    """K = `shots` videos of every class, drawn with `seed`; a class with fewer videos is an error naming it."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset["label"])
    names = dataset.features["label"].names
    picked = []
    for c in range(num_classes):
        indices = np.flatnonzero(labels == c)
        if len(indices) < shots:
            raise ValueError(f"class {names[c]!r} has {len(indices)} training videos, fewer than {shots} shots")
        picked.extend(rng.choice(indices, size=shots, replace=False).tolist())
    return dataset.select(sorted(picked))


class VideoTransform:
    """
    A `Dataset.set_transform` function: a batch of rows (video path, label[s]) -> `pixel_values`, `labels`.

    In training every video's random choices (frames, crop, flip) are drawn from a generator seeded by
    (`seed`, `epoch`, row index), not from the global random state: a run resumed from a checkpoint then sees exactly
    the clips of an uninterrupted run, although data loaders fetch batches ahead of the step being trained. The
    `_index` column carries the row index; `EpochCallback` keeps `epoch` current.
    """

    def __init__(
        self,
        video_processor: Any,
        training: bool,
        num_classes: int,
        multi_label: bool,
        num_clips: int = 1,
        num_crops: int = 1,
        seed: int = 0,
    ):
        self.video_processor, self.training = video_processor, training
        self.num_classes, self.multi_label = num_classes, multi_label
        self.num_clips, self.num_crops, self.seed, self.epoch = num_clips, num_crops, seed, 0

    def _pixels(self, videos: list[str]) -> torch.Tensor:
        return self.video_processor(
            videos=videos,
            training=self.training,
            num_clips=self.num_clips,
            num_crops=self.num_crops,
            return_tensors="pt",
        )["pixel_values"]

    def __call__(self, batch: dict) -> dict:
        videos = list(batch["video"])
        if self.training and "_index" in batch:
            clips = []
            for video, index in zip(videos, batch["_index"], strict=True):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(hash((self.seed, self.epoch, int(index))) % 2**63)
                    clips.append(self._pixels([video])[0])
            pixel_values = torch.stack(clips)
        else:
            pixel_values = self._pixels(videos)
        if self.multi_label:
            labels = torch.zeros(len(videos), self.num_classes)
            for row, positives in enumerate(batch["labels"]):
                labels[row, list(positives)] = 1.0
        else:
            labels = torch.as_tensor(batch["label"], dtype=torch.long)
        return {"pixel_values": list(pixel_values), "labels": list(labels)}


class EpochCallback(TrainerCallback):
    """Tells a training `VideoTransform` the epoch that starts, so that its draws depend on it."""

    def __init__(self, transform: VideoTransform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.transform.epoch = int(state.epoch or 0)


def with_row_index(dataset):
    """`dataset` with an `_index` column (the row number) for `VideoTransform`'s per-video seeds."""
    return dataset.add_column("_index", list(range(len(dataset))))


VISION_PREFIXES = ("vision_model.", "visual_projection.")
NO_DECAY = ("logit_scale", "logit_bias", "position_embedding")


def sfar_parameter_groups(
    model: torch.nn.Module, learning_rate: float, vision_learning_rate: float, weight_decay: float
) -> list[dict]:
    """
    AdamW groups of SPEC.md section 7: the CLIP vision tower at `vision_learning_rate`, the new modules at
    `learning_rate`; no weight decay on biases, norms, embeddings of positions, the logit scale and bias.
    """
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        local = name.removeprefix("module.").removeprefix("sfar.")
        vision = local.startswith(VISION_PREFIXES)
        decay = param.ndim >= 2 and not any(key in local for key in NO_DECAY) and "norm" not in local
        groups.setdefault((vision, decay), []).append(param)
    return [
        {
            "params": params,
            "lr": vision_learning_rate if vision else learning_rate,
            "weight_decay": weight_decay if decay else 0.0,
        }
        for (vision, decay), params in sorted(groups.items())
    ]


class SfarTrainer(Trainer):
    """The Trainer with SFAR's two learning rates (vision tower vs new modules)."""

    def __init__(self, *args, vision_learning_rate: float = 5e-6, **kwargs):
        super().__init__(*args, **kwargs)
        self.vision_learning_rate = vision_learning_rate

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            groups = sfar_parameter_groups(
                self.model if model is None else model,
                self.args.learning_rate,
                self.vision_learning_rate,
                self.args.weight_decay,
            )
            self.optimizer = torch.optim.AdamW(
                groups, betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon
            )
        return self.optimizer


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
    prefix: str = "eval",
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """
    Predict `dataset` with `trainer` (multi-view with `num_clips` x `num_crops`) and score it, also on the subsets
    that `group_columns` define (a boolean column gives the subset where it is true, any other column one subset per
    value), as in the paper's ambiguous / non-uniform tables. Returns the metrics, the logits and the labels.
    """
    groups = {column: np.asarray(dataset[column]) for column in group_columns}
    dataset.set_transform(
        VideoTransform(video_processor, False, num_classes, multi_label, num_clips=num_clips, num_crops=num_crops)
    )
    output = trainer.predict(dataset, metric_key_prefix=prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    metrics = dict(output.metrics)
    for column, values in groups.items():
        subsets = (
            {column: values} if values.dtype == bool else {f"{column}={v}": values == v for v in np.unique(values)}
        )
        for name, mask in subsets.items():
            if mask.any():
                for key, value in classification_metrics(logits[mask], output.label_ids[mask]).items():
                    metrics[f"{prefix}_{name}_{key}"] = value
    return metrics, logits, output.label_ids
