"""Video datasets as a run reads them: loading a saved index or a Hub dataset, its label set, checks that name the
split and the video, few-shot subsets, and the row index that seeds every video's random draws."""

from __future__ import annotations

import logging
import os

import numpy as np

from ..hub.sources import looks_local

logger = logging.getLogger(__name__)

__all__ = [
    "EVALUATION_SPLITS",
    "load_video_dataset",
    "evaluation_split",
    "dataset_labels",
    "check_dataset",
    "few_shot_subset",
    "with_row_index",
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
    elif looks_local(source):
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


def with_row_index(dataset):
    """
    `dataset` with an `_index` column (the row number) for `VideoTransform`'s per-video seeds. Added before rows are
    dropped or selected, it keeps every row's seed whatever happens to the others.
    """
    return dataset.add_column("_index", list(range(len(dataset))))




# The splits a benchmark evaluates on, in the order they are looked for when none is named: UCF-101, HMDB-51 and
# Charades have `test`; Kinetics-400 has `validation`.
EVALUATION_SPLITS = ("test", "validation")


def evaluation_split(dataset, split: str | None, source: str, flag: str, required: bool = True) -> str | None:
    """
    The split to evaluate `dataset` (a `DatasetDict` loaded from `source`) on: `split` when named (an empty string:
    none), else the first of `EVALUATION_SPLITS` the dataset has.

    Raises:
        ValueError: a named split the dataset lacks, or (when `required`) a dataset with none of `EVALUATION_SPLITS`;
            the message names `flag`, the source and its splits.
    """
    if split == "":
        return None
    if split is not None:
        if split not in dataset:
            raise ValueError(f"{flag} {split}: {source} has no such split; it has {sorted(dataset)}")
        return split
    for name in EVALUATION_SPLITS:
        if name in dataset:
            return name
    if required:
        names = " or ".join(EVALUATION_SPLITS)
        raise ValueError(f"{source} has no {names} split ({sorted(dataset)}): name one with {flag}")
    logger.warning("%s has no %s split (%s): no evaluation", source, " or ".join(EVALUATION_SPLITS), sorted(dataset))
    return None
