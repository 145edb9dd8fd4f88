"""The on-the-fly video transform of a run (`Dataset.set_transform`): rows of (video path, label[s]) -> `pixel_values`
and `labels`, with per-video seeds in training and replacement of videos that fail."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from .bad_videos import BadVideoError, BadVideoLog, bad_video_reason, video_errors

logger = logging.getLogger(__name__)

__all__ = ["VideoTransform"]


class VideoTransform:
    """
    A `Dataset.set_transform` function: a batch of rows (video path, label[s]) -> `pixel_values`, `labels`.

    Videos are read by `augmentation` (training: a callable from a video path to its `(T, 3, H, W)` pixel values
    with random draws, `modeling_sfar.training.augmentation.VideoAugmentation`), or else by the video processor
    (evaluation, with `num_clips` x `num_crops` views).

    In training every video's random choices (frames, crop, flip) are drawn from a generator seeded by
    (`seed`, `epoch`, row index), not from the global random state: a run resumed from a checkpoint then sees exactly
    the clips of an uninterrupted run, although data loaders fetch batches ahead of the step being trained. The
    `_index` column carries the row index (`with_row_index`); `EpochCallback` keeps `epoch` current.

    A video that cannot be loaded (deleted, emptied, undecodable: see `video_errors`) does not stop the run: it is
    logged with its path and reason, recorded in `log` under `scope`, and replaced by the next rows of the bound
    dataset (see `bind`) until one loads, each drawn with a seed of (`seed`, `epoch`, row index, attempt). The
    replacement depends only on the files and those numbers, so a resumed run replaces exactly as the uninterrupted
    one did. In training the replacement brings its own label; in evaluation (`keep_labels`, by default without
    `augmentation`; train.py's `--augment false` trains without augmentation and with `keep_labels=False`) the row
    keeps its label and `evaluate_split` leaves it out of the metrics. With `strict` the first such video raises
    `BadVideoError`.
    """

    # Rows tried after a bad one before giving up: more failures in a row mean a broken set-up, not a few bad files.
    max_replacements = 16

    def __init__(
        self,
        video_processor: Any,
        num_classes: int,
        multi_label: bool,
        augmentation: Callable[[str], torch.Tensor] | None = None,
        num_clips: int = 1,
        num_crops: int = 1,
        seed: int = 0,
        scope: str = "train",
        log: BadVideoLog | None = None,
        strict: bool = False,
        keep_labels: bool | None = None,
    ):
        self.video_processor, self.augmentation = video_processor, augmentation
        self.num_classes, self.multi_label = num_classes, multi_label
        self.num_clips, self.num_crops, self.seed, self.epoch = num_clips, num_crops, seed, 0
        self.scope, self.log, self.strict = scope, log, strict
        self.keep_labels = not self.training if keep_labels is None else keep_labels
        self.videos: list[str] = []  # the bound rows (see `bind`)
        self.targets: list[Any] = []
        self.indices: list[int] = []
        self.positions: dict[int, int] = {}  # row index -> position in the bound rows

    @property
    def training(self) -> bool:
        """Whether videos are read with the training augmentation (random draws, seeded per row)."""
        return self.augmentation is not None

    def bind(self, dataset) -> None:
        """Remember the rows of `dataset` (videos, labels, row indices) that replacements are drawn from."""
        self.videos = list(dataset["video"])
        self.targets = list(dataset["labels" if self.multi_label else "label"])
        indices = dataset["_index"] if "_index" in dataset.column_names else range(len(self.videos))
        self.indices = [int(i) for i in indices]
        self.positions = {index: position for position, index in enumerate(self.indices)}

    def load(self, video: str, index: int, attempt: int = 0) -> torch.Tensor:
        """
        One video's `pixel_values` as this transform loads it for row `index` (in training with the row's seed).

        Returns:
            `(T, 3, H, W)`, or `(V, T, 3, H, W)` with several evaluation views.
        """
        if not self.training:
            return self._pixels([video])[0]
        key = (self.seed, self.epoch, int(index)) if attempt == 0 else (self.seed, self.epoch, int(index), attempt)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash(key) % 2**63)
            return self._pixels([video])[0]

    def _pixels(self, videos: list[str]) -> torch.Tensor:
        if self.training:
            return torch.stack([self.augmentation(video) for video in videos])
        return self.video_processor(
            videos=videos, num_clips=self.num_clips, num_crops=self.num_crops, return_tensors="pt"
        )["pixel_values"]

    def _replace(self, video: str, index: int, error: BaseException) -> tuple[torch.Tensor, Any]:
        """Record the bad `video` of row `index` and load the next usable row instead: (pixels, its label)."""
        reason = bad_video_reason(video, error)
        what = "evaluation" if self.keep_labels else "training"
        if self.strict:
            raise BadVideoError(f"video {video} (row {index} of {self.scope!r}) failed in {what}: {reason}") from error
        logger.warning("video %s (row %d of %r) failed in %s, replaced: %s", video, index, self.scope, what, reason)
        if self.log is not None:
            self.log.add(self.scope, index, video, reason)
        if index not in self.positions:
            raise BadVideoError(f"video {video} (row {index}) failed ({reason}) and no rows are bound to replace it")
        start, count = self.positions[index], len(self.videos)
        failures = [f"{video}: {reason}"]
        for attempt in range(1, min(count, self.max_replacements + 1)):
            position = (start + attempt) % count
            try:
                return self.load(self.videos[position], index, attempt), self.targets[position]
            except video_errors() as other:
                failures.append(f"{self.videos[position]}: {bad_video_reason(self.videos[position], other)}")
        raise BadVideoError(
            f"row {index} of {self.scope!r} and the {len(failures) - 1} rows after it cannot be loaded; the set-up, "
            "not single files, looks broken:\n  " + "\n  ".join(failures)
        ) from error

    def __call__(self, batch: dict) -> dict:
        videos = list(batch["video"])
        column = "labels" if self.multi_label else "label"
        targets = list(batch[column])
        indices = [int(i) for i in batch["_index"]] if "_index" in batch else None
        if indices is None and not self.training:
            pixel_values = self._pixels(videos)  # no row indices: one call, errors propagate
        else:
            indices = indices if indices is not None else list(range(len(videos)))
            clips = []
            for row, (video, index) in enumerate(zip(videos, indices, strict=True)):
                try:
                    clips.append(self.load(video, index))
                except video_errors() as error:
                    pixels, target = self._replace(video, index, error)
                    clips.append(pixels)
                    if not self.keep_labels:  # evaluation keeps the row's label and leaves it out of the metrics
                        targets[row] = target
            pixel_values = torch.stack(clips)
        if self.multi_label:
            labels = torch.zeros(len(videos), self.num_classes)
            for row, positives in enumerate(targets):
                labels[row, list(positives)] = 1.0
        else:
            labels = torch.as_tensor(targets, dtype=torch.long)
        return {"pixel_values": list(pixel_values), "labels": list(labels)}


