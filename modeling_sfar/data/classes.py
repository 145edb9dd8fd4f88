"""The label set a generator writes texts for: read from a video dataset or from a list of class names."""

from __future__ import annotations

import os
from collections import Counter

from modeling_sfar import class_name_to_text

__all__ = ["read_classes"]


def read_classes(source: str) -> dict[str, str]:
    """
    Label -> class name for the prompts, from a video dataset (a folder written by `build_dataset.py` or a Hub id) or
    a text file with one label per line. Class names are the labels made readable (`ApplyEyeMakeup` -> "Apply Eye
    Makeup", `brush_hair` -> "brush hair").

    Raises:
        ValueError: an empty file, a label listed twice, a dataset without class labels (each naming `source`).
    """

    if os.path.isfile(source):
        with open(source) as f:
            labels = [line.strip() for line in f if line.strip()]
        if not labels:
            raise ValueError(f"{source}: no class names (expected one per line)")
    else:
        from .datasets import dataset_labels, load_video_dataset

        dataset = load_video_dataset(source)
        first = dataset[next(iter(dataset))] if hasattr(dataset, "keys") else dataset
        labels, _ = dataset_labels(first)
    duplicates = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicates:
        raise ValueError(f"{source}: class {duplicates[0]!r} is listed twice")
    return {label: class_name_to_text(label) for label in labels}
