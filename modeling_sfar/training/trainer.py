"""What training and evaluation share: loading and checking video datasets, few-shot subsets, the on-the-fly video
transform, Mixup / CutMix and label smoothing (the training collator), SFAR's two learning rates (and ALT's decoder
rate), and the Trainer subclass that uses them. Not shipped to the Hub.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainerCallback

from ..evaluation.metrics import EVAL_PREFIX, classification_metrics, metric_key

logger = logging.getLogger(__name__)

__all__ = [
    "load_video_dataset",
    "check_model_source",
    "dataset_labels",
    "check_dataset",
    "BadVideoError",
    "BadVideoLog",
    "video_errors",
    "check_videos",
    "last_complete_checkpoint",
    "few_shot_subset",
    "VideoTransform",
    "EpochCallback",
    "with_row_index",
    "sfar_parameter_groups",
    "smooth_targets",
    "MixDraw",
    "draw_mix",
    "mix_batch",
    "MixingCollator",
    "SfarTrainer",
    "compute_metrics",
    "evaluate_split",
]


def load_video_dataset(source: str, split: str | None = None):
    """
    A `DatasetDict` (or one split) from a folder written by `save_to_disk`, or a Hub dataset id.

    Raises:
        FileNotFoundError: `source` looks like a local path (absolute, `./`, `~`, or more than one `/`) and does not
            exist.
        ValueError: `source` is a file, or a folder that `save_to_disk` did not write; or it lacks `split`.
    """
    from datasets import DatasetDict, load_dataset, load_from_disk

    if os.path.isdir(source):
        if not (
            os.path.isfile(os.path.join(source, "dataset_dict.json"))
            or os.path.isfile(os.path.join(source, "dataset_info.json"))
        ):
            # `load_dataset` would read the folder's files as a video folder and fail in a decoder far from here.
            raise ValueError(
                f"--dataset {source}: not a dataset saved with `save_to_disk` (no dataset_dict.json or "
                "dataset_info.json); build one with datasets_scripts/build_dataset.py"
            )
        dataset = load_from_disk(source)
    elif os.path.exists(source):
        raise ValueError(f"--dataset {source}: a file, not a dataset folder or a Hub dataset id")
    elif _looks_local(source):
        raise FileNotFoundError(f"--dataset {source}: no such folder")
    else:
        try:
            dataset = load_dataset(source)
        except Exception as error:  # the Hub's errors vary (offline, not found, gated); name what was asked
            raise ValueError(
                f"--dataset {source}: neither a local folder (none exists) nor a loadable Hub dataset "
                f"({error.__class__.__name__}: {error})"
            ) from error
    if split is None:
        return dataset
    if not isinstance(dataset, DatasetDict):
        raise ValueError(f"{source} holds a single split; it has no split {split!r}")
    if split not in dataset:
        raise ValueError(f"{source} has no split {split!r}; it has {sorted(dataset)}")
    return dataset[split]


def _looks_local(source: str) -> bool:
    """Whether `source` can only be a local path: a Hub id is `name` or `owner/name`."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
    )


def check_model_source(source: str, argument: str = "--model") -> None:
    """
    Refuse a model source that cannot be loaded, naming `argument`, before `from_pretrained` reports it as a badly
    formed Hub id: a path that does not exist, a file, or a folder without `config.json`. A Hub id passes.
    """
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise ValueError(f"{argument} {source}: the folder has no config.json; it is not a saved model")
    elif os.path.exists(source):
        raise ValueError(f"{argument} {source}: a file, not a model folder or a Hub id")
    elif _looks_local(source):
        raise FileNotFoundError(f"{argument} {source}: no such folder")


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


class BadVideoError(ValueError):
    """A video that a run met and could not use, with `--strict` (or with no usable replacement)."""


def video_errors() -> tuple[type[BaseException], ...]:
    """
    What the video reader raises for a file it cannot deliver frames from: `VideoDecodingError` (a file that is not a
    video, or whose frames cannot be decoded) and `OSError` (a missing, unreadable or folder path). Any other error,
    a plain `ValueError` for a bad argument among them, is a bug or a wrong setting, not a bad video: it stops the run.
    """
    from ..remote_code.video_decoding import VideoDecodingError

    return (VideoDecodingError, OSError)


def _reason(video: str, error: BaseException) -> str:
    """Why `video` could not be used: the state of the file when that explains it, else the reader's error."""
    if not os.path.exists(video):
        return "file not found"
    if os.path.isdir(video):
        return "a folder, not a file"
    if os.path.getsize(video) == 0:
        return "empty file"
    return f"cannot be decoded ({error.__class__.__name__}: {error})"


class BadVideoLog:
    """
    The videos a run met and could not use, as JSON lines in one file (`{"scope", "index", "video", "reason"}`).

    A file, not an attribute, because the videos are read in DataLoader workers and in every process of a
    data-parallel run: each appends its own lines, and the main process reads them all at the end. A resumed run
    appends to the killed run's file, so a video counts once however often it was met.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def reset(self) -> None:
        """Forget an earlier run's records (this file is the log's own; nothing else is removed)."""
        if os.path.isfile(self.path):
            os.remove(self.path)

    def add(self, scope: str, index: int, video: str, reason: str) -> None:
        line = json.dumps({"scope": scope, "index": int(index), "video": video, "reason": reason}) + "\n"
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        # One write of one short line in append mode: lines of concurrent writers do not interleave.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def read(self, scope: str) -> dict[int, tuple[str, str]]:
        """Row index -> (video, first reason) of every video recorded under `scope`."""
        out: dict[int, tuple[str, str]] = {}
        if not os.path.isfile(self.path):
            return out
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if record.get("scope") == scope:
                    out.setdefault(int(record["index"]), (record["video"], record["reason"]))
        return out


class _CheckRows(torch.utils.data.Dataset):
    """Positions of a split -> '' if the row's video loads as the run will load it, else the reason."""

    def __init__(self, videos: list[str], indices: list[int], positions: list[int], load: Callable):
        self.videos, self.indices, self.positions, self.load = videos, indices, positions, load

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, str]:
        position = self.positions[i]
        video = self.videos[position]
        try:
            self.load(video, self.indices[position])
        except video_errors() as error:
            return position, _reason(video, error)
        return position, ""


def _first(batch: list) -> Any:
    """The collate function of batches of one: the item itself."""
    return batch[0]


def check_videos(
    dataset, split: str, load: Callable[[str, int], Any], strict: bool = False, num_workers: int = 0
) -> tuple[Any, list[tuple[str, str]]]:
    """
    Load every video of `dataset` now, with `load(video, row_index)` (the run's own reader, sampling and
    transform: `VideoTransform.load`), and drop those that fail, logging each path and reason and the count. With
    `strict`, raise `BadVideoError` listing them instead.

    The files are read as they are at this call: nothing is cached between runs. In a data-parallel run every
    process checks its share of the rows and all get the whole list. `num_workers` DataLoader workers read in
    parallel. The row index is the `_index` column where there is one (see `with_row_index`), else the position.

    Returns:
        The usable rows, and the (video, reason) pairs of the dropped ones.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    videos = list(dataset["video"])
    indices = list(dataset["_index"]) if "_index" in dataset.column_names else list(range(len(videos)))
    state = PartialState()
    shard = list(range(state.process_index, len(videos), state.num_processes))
    loader = torch.utils.data.DataLoader(
        _CheckRows(videos, indices, shard, load), batch_size=1, num_workers=num_workers, collate_fn=_first
    )
    found = [(position, reason) for position, reason in loader if reason]
    if state.num_processes > 1:
        found = gather_object(found)
    bad = [(videos[position], reason) for position, reason in sorted(found)]
    if not bad:
        return dataset, []
    listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
    if strict:
        raise BadVideoError(f"{len(bad)} of {len(videos)} videos of split {split!r} cannot be used:\n{listing}")
    for path, reason in bad:
        logger.warning("skipping %s: %s", path, reason)
    logger.warning("skipped %d of %d videos of split %r", len(bad), len(videos), split)
    dropped = {position for position, _ in found}
    return dataset.select([i for i in range(len(videos)) if i not in dropped]), bad


def last_complete_checkpoint(output_dir: str) -> str | None:
    """
    The newest `checkpoint-N` of `output_dir` that a save finished, or None. The Trainer writes
    `trainer_state.json` last, so a checkpoint without it (or with it cut short) was being written when the run was
    killed: it is skipped with a warning that names it and says why.
    """
    if not os.path.isdir(output_dir):
        return None
    found = []
    for name in os.listdir(output_dir):
        match = re.fullmatch(r"checkpoint-(\d+)", name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    for _, folder in sorted(found, reverse=True):
        state = os.path.join(folder, "trainer_state.json")
        if not os.path.isfile(state):
            reason = "it has no trainer_state.json (the run was stopped while saving it)"
        else:
            try:
                with open(state, encoding="utf-8") as f:
                    json.load(f)
                return folder
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                reason = f"its trainer_state.json is cut short ({error})"
        logger.warning("not resuming from %s: %s", folder, reason)
    return None


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
    `_index` column carries the row index (`with_row_index`); `EpochCallback` keeps `epoch` current.

    A video that cannot be loaded (deleted, emptied, undecodable: see `video_errors`) does not stop the run: it is
    logged with its path and reason, recorded in `log` under `scope`, and replaced by the next rows of the bound
    dataset (see `bind`) until one loads, each drawn with a seed of (`seed`, `epoch`, row index, attempt). The
    replacement depends only on the files and those numbers, so a resumed run replaces exactly as the uninterrupted
    one did. In training the replacement brings its own label; in evaluation (`keep_labels`, by default when not
    `training`; train.py's `--augment false` trains with `training=False` and `keep_labels=False`) the row keeps its
    label and `evaluate_split` leaves it out of the metrics. With `strict` the first such video raises
    `BadVideoError`.

    `flip_probability` and `crop_area_min` set the training augmentation (default: the video processor's, BIKE's
    0.5 and 0.08); they are not used in evaluation.
    """

    # Rows tried after a bad one before giving up: more failures in a row mean a broken set-up, not a few bad files.
    max_replacements = 16

    def __init__(
        self,
        video_processor: Any,
        training: bool,
        num_classes: int,
        multi_label: bool,
        num_clips: int = 1,
        num_crops: int = 1,
        seed: int = 0,
        scope: str = "train",
        log: BadVideoLog | None = None,
        strict: bool = False,
        keep_labels: bool | None = None,
        flip_probability: float | None = None,
        crop_area_min: float | None = None,
    ):
        self.video_processor, self.training = video_processor, training
        self.num_classes, self.multi_label = num_classes, multi_label
        self.num_clips, self.num_crops, self.seed, self.epoch = num_clips, num_crops, seed, 0
        self.scope, self.log, self.strict = scope, log, strict
        self.keep_labels = not training if keep_labels is None else keep_labels
        # Training augmentation, passed with every training call (None: the processor's BIKE defaults); kept here, not
        # on the processor, so that the processor saved with the model carries no training settings.
        self.augmentation = {
            key: value
            for key, value in (("flip_probability", flip_probability), ("crop_area_min", crop_area_min))
            if value is not None
        }
        self.videos: list[str] = []  # the bound rows (see `bind`)
        self.targets: list[Any] = []
        self.indices: list[int] = []
        self.positions: dict[int, int] = {}  # row index -> position in the bound rows

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
            `(T, 3, H, W)`, or `(K * S, T, 3, H, W)` with several evaluation views.
        """
        if not self.training:
            return self._pixels([video])[0]
        key = (self.seed, self.epoch, int(index)) if attempt == 0 else (self.seed, self.epoch, int(index), attempt)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash(key) % 2**63)
            return self._pixels([video])[0]

    def _pixels(self, videos: list[str]) -> torch.Tensor:
        return self.video_processor(
            videos=videos,
            training=self.training,
            num_clips=self.num_clips,
            num_crops=self.num_crops,
            return_tensors="pt",
            **(self.augmentation if self.training else {}),
        )["pixel_values"]

    def _replace(self, video: str, index: int, error: BaseException) -> tuple[torch.Tensor, Any]:
        """Record the bad `video` of row `index` and load the next usable row instead: (pixels, its label)."""
        reason = _reason(video, error)
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
                failures.append(f"{self.videos[position]}: {_reason(self.videos[position], other)}")
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


class EpochCallback(TrainerCallback):
    """Tells a training `VideoTransform` the epoch that starts, so that its draws depend on it."""

    def __init__(self, transform: VideoTransform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.transform.epoch = int(state.epoch or 0)


def with_row_index(dataset):
    """
    `dataset` with an `_index` column (the row number) for `VideoTransform`'s per-video seeds. Added before rows are
    dropped or selected, it keeps every row's seed whatever happens to the others.
    """
    return dataset.add_column("_index", list(range(len(dataset))))


VISION_PREFIXES = ("vision_model.", "visual_projection.")
NO_DECAY = ("logit_scale", "logit_bias", "position_embedding")
ALT_DECODER_PREFIX = "alt.decoder."  # ALT's multi-modal video decoder (Eq. 7-9 and its video MLP)


def sfar_parameter_groups(
    model: torch.nn.Module,
    learning_rate: float,
    vision_learning_rate: float,
    weight_decay: float,
    decoder_learning_rate: float | None = None,
) -> list[dict]:
    """
    AdamW groups of docs/method.md section 7: the CLIP vision tower at `vision_learning_rate`, the new modules at
    `learning_rate`; no weight decay on biases, norms, embeddings of positions, the logit scale and bias. With
    `decoder_learning_rate`, ALT's multi-modal video decoder (`alt.decoder.*`) at that rate (ALT's few-shot recipe:
    ten times the new modules'); SFAR has no such module and is unchanged.
    """
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        local = name.removeprefix("module.").removeprefix("sfar.").removeprefix("alt.")
        if local.startswith(VISION_PREFIXES):
            part = "vision"
        elif decoder_learning_rate is not None and name.removeprefix("module.").startswith(ALT_DECODER_PREFIX):
            part = "decoder"
        else:
            part = "new"
        decay = param.ndim >= 2 and not any(key in local for key in NO_DECAY) and "norm" not in local
        groups.setdefault((part, decay), []).append(param)
    rates = {"vision": vision_learning_rate, "new": learning_rate, "decoder": decoder_learning_rate}
    return [
        {"params": params, "lr": rates[part], "weight_decay": weight_decay if decay else 0.0}
        for (part, decay), params in sorted(
            groups.items(), key=lambda item: (item[0][0] == "vision", item[0][0] != "new", item[0][1])
        )
    ]


# -- Mixup, CutMix and label smoothing (X-CLIP's training augmentation, which ALT follows) ----------------------


def smooth_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """
    Soft targets of hard labels with label smoothing: `1 - smoothing + smoothing / C` on the labelled class,
    `smoothing / C` on every other (the convention of X-CLIP's and timm's blending, and of transformers'
    `label_smoothing_factor`: the cross-entropy on these targets is (1 - s) NLL + s * the mean of -log p over the
    classes). labels `(B,)` -> `(B, C)` float32; rows sum to 1.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must lie in [0, 1), got {smoothing}")
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32)
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


@dataclass
class MixDraw:
    """
    One batch's random choices of [`draw_mix`]: `kind` "mixup" or "cutmix", the Beta draw `lam` (for CutMix the
    share of each frame kept, corrected to the box as cut), the partner of every video `permutation` `(B,)`, and for
    CutMix the box `(top, bottom, left, right)` (rows top:bottom, columns left:right), the same in every frame.
    """

    kind: str
    lam: float
    permutation: torch.Tensor
    box: tuple[int, int, int, int] | None = None


def draw_mix(
    batch_size: int,
    height: int,
    width: int,
    mixup_alpha: float,
    cutmix_alpha: float,
    switch_prob: float,
    rng: np.random.Generator,
) -> MixDraw:
    """
    Draw one batch's mixing from `rng`, in this order: CutMix with probability `switch_prob` when both are on (else
    whichever is on), lam ~ Beta(alpha, alpha) of the chosen one, a random permutation of the batch (each video's
    partner), and for CutMix the box's centre, uniform over the pixels. The box (CutMix paper) has sides
    int(H sqrt(1 - lam)) and int(W sqrt(1 - lam)) around its centre, cut at the frame's edges, and lam becomes
    1 - box area / frame area.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        raise ValueError("draw_mix needs mixup_alpha > 0 or cutmix_alpha > 0")
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cut = bool(rng.random() < switch_prob)
    else:
        cut = cutmix_alpha > 0
    alpha = cutmix_alpha if cut else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    permutation = torch.as_tensor(rng.permutation(batch_size), dtype=torch.long)
    if not cut:
        return MixDraw("mixup", lam, permutation)
    ratio = float(np.sqrt(1.0 - lam))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(centre_y - cut_h // 2, 0), min(centre_y + cut_h // 2, height)
    left, right = max(centre_x - cut_w // 2, 0), min(centre_x + cut_w // 2, width)
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return MixDraw("cutmix", lam, permutation, (top, bottom, left, right))


def mix_batch(pixel_values: torch.Tensor, targets: torch.Tensor, draw: MixDraw) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Apply a [`MixDraw`] to a batch: video b with video `permutation[b]`. Mixup: lam x_b + (1 - lam) x_partner, every
    frame. CutMix: the partner's pixels inside the box, in every frame. Targets: lam t_b + (1 - lam) t_partner.
    pixel_values `(B, T, 3, H, W)`, targets `(B, C)` -> the same shapes (new tensors; the inputs are not changed).
    """
    partner = draw.permutation
    if draw.kind == "mixup":
        mixed = draw.lam * pixel_values + (1.0 - draw.lam) * pixel_values[partner]
    else:
        top, bottom, left, right = draw.box
        mixed = pixel_values.clone()
        mixed[..., top:bottom, left:right] = pixel_values[partner][..., top:bottom, left:right]
    return mixed, draw.lam * targets + (1.0 - draw.lam) * targets[partner]


class MixingCollator:
    """
    The training data collator of Mixup / CutMix and label smoothing: stacks the rows of `VideoTransform`
    (`pixel_values` `(T, 3, H, W)`, `labels` a class index), turns the labels into soft targets `(B, C)` with
    `label_smoothing` ([`smooth_targets`]), and mixes the batch ([`draw_mix`], [`mix_batch`]) when `mixup_alpha` or
    `cutmix_alpha` is above 0: X-CLIP's recipe (its `CutmixMixupBlending`) with its values 0.8, 1.0, 0.5 and 0.1.
    The model's loss then runs on the soft targets.

    Every batch's draws come from a numpy generator seeded by one draw of torch's global generator: reproducible
    under `set_seed` (the Trainer's seed; DataLoader workers get their own torch seeds), different in every worker.
    A resumed run continues with the generator's state at the resume, not with the uninterrupted run's batches.
    Single-label data only: the soft targets of a multi-label dataset are not defined here.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
    ):
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0: off), got {value}")
        if not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"mixup_switch_prob must lie in [0, 1], got {switch_prob}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing_factor must lie in [0, 1), got {label_smoothing}")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.switch_prob, self.label_smoothing = switch_prob, label_smoothing

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values = torch.stack([torch.as_tensor(f["pixel_values"]) for f in features])  # (B, T, 3, H, W)
        labels = torch.stack([torch.as_tensor(f["labels"]) for f in features])
        if labels.ndim != 1 or labels.is_floating_point():
            raise ValueError(
                "Mixup, CutMix and label smoothing take single-label rows (one class index each); got labels of "
                f"shape {tuple(labels.shape[1:])} per row"
            )
        targets = smooth_targets(labels, self.num_classes, self.label_smoothing)  # (B, C)
        if self.mixes:
            seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
            draw = draw_mix(
                len(features),
                pixel_values.shape[-2],
                pixel_values.shape[-1],
                self.mixup_alpha,
                self.cutmix_alpha,
                self.switch_prob,
                np.random.default_rng(seed),
            )
            pixel_values, targets = mix_batch(pixel_values, targets, draw)
        return {"pixel_values": pixel_values, "labels": targets}


class SfarTrainer(Trainer):
    """
    The Trainer with SFAR's two learning rates (vision tower vs new modules), ALT's third (its video decoder,
    `decoder_learning_rate`, None: the new modules' rate), and an optional training-only collator (`train_collator`,
    e.g. [`MixingCollator`]; evaluation and prediction keep the default collator). The Trainer's own label smoother
    is never used: it would replace the model's loss (SFAR's Eq. 12-14) by a plain cross-entropy; label smoothing
    goes through `train_collator`'s soft targets instead.
    """

    def __init__(
        self,
        *args,
        vision_learning_rate: float = 5e-6,
        decoder_learning_rate: float | None = None,
        train_collator: Callable | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.vision_learning_rate = vision_learning_rate
        self.decoder_learning_rate = decoder_learning_rate
        self.train_collator = train_collator
        smoothing = self.args.label_smoothing_factor
        if smoothing and getattr(train_collator, "label_smoothing", None) != smoothing:
            raise ValueError(
                f"label_smoothing_factor {smoothing} is applied through soft targets to the model's own loss: pass "
                "MixingCollator(num_classes, label_smoothing=...) with the same value as train_collator "
                "(run_training does)"
            )
        self.label_smoother = None  # the collator's soft targets smooth the labels; the model computes the loss

    def get_train_dataloader(self):
        if self.train_collator is None:
            return super().get_train_dataloader()
        default, self.data_collator = self.data_collator, self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = default

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            groups = sfar_parameter_groups(
                self.model if model is None else model,
                self.args.learning_rate,
                self.vision_learning_rate,
                self.args.weight_decay,
                decoder_learning_rate=self.decoder_learning_rate,
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
        False,
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
