# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""The texts of a label set, read from the datasets they are published as: a sub-text dataset (SFAR's sub-texts, one
row per class in its `subtexts` configuration) and an entity corpus (ALT's entities, one row per entity in its
`entities` configuration), from a local folder or a Hub id alike; sub-texts also from a JSON file.

The library writes these datasets (`modeling_sfar.data.subtexts`, `modeling_sfar.data.entities`) and reads them
through this file; the zero-shot pipeline reads them through it where the library is not installed.

This file is shipped to the Hub as remote code: it imports only the standard library at module level; `datasets`
(and its `pyarrow`) when a dataset is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["SUBTEXT_CONFIGS", "ENTITY_CONFIGS", "load_config_from", "load_subtexts", "entity_texts"]

# The configurations of a sub-text dataset (the selected set per class; every candidate with its TPP) and of an entity
# corpus (the entities; every candidate description; every answer about a class's units).
SUBTEXT_CONFIGS = ("subtexts", "candidates")
ENTITY_CONFIGS = ("entities", "descriptions", "units")


def _import_datasets(kind: str):
    """The `datasets` and `pyarrow` modules, or `ImportError` saying what needs them and how to do without."""
    try:
        import datasets
        import pyarrow
        import pyarrow.parquet  # noqa: F401 (binds pyarrow.parquet)
    except ImportError as error:
        raise ImportError(
            f"reading {kind} needs the `datasets` package (`pip install datasets`); or give the texts themselves "
            "(sub-texts as a dict label -> list of texts, entities as a list of texts)"
        ) from error
    return datasets, pyarrow


def load_config_from(
    source: str | os.PathLike, config: str, configs: tuple[str, ...], kind: str, revision: str | None = None
):
    """
    One configuration `config` (one of `configs`) of a dataset of this project (`kind`: "a sub-text dataset", "an
    entity corpus", for the messages) as a `datasets.Dataset`, from a local folder or a Hub id.

    A local folder is read straight from its parquet files: `load_dataset` caches local folders under their base name
    and configuration (datasets 5.2), so two folders both called `subtexts` could return each other's rows.

    Raises:
        ValueError: an unknown configuration, or a folder without its parquet files (named).
        ImportError: `datasets` is not installed.
    """
    if config not in configs:
        raise ValueError(f"unknown configuration {config!r}; {kind} has {list(configs)}")
    datasets, pyarrow = _import_datasets(kind)
    path = Path(source)
    if path.is_dir():
        files = sorted((path / config).glob("*.parquet"))
        if not files:
            raise ValueError(f"{path}: no {config}/*.parquet files; is this {kind}?")
        return datasets.Dataset(pyarrow.concat_tables([pyarrow.parquet.read_table(f) for f in files]))
    return datasets.load_dataset(os.fspath(source), config, split="train", revision=revision)


def load_subtexts(source: str | os.PathLike, revision: str | None = None) -> dict[str, list[str]]:
    """
    The selected sub-texts per class, from a sub-text dataset (local folder or Hub id, configuration `subtexts`) or
    a JSON file mapping each label to its list of sub-texts.

    Raises:
        ValueError: a file that is neither, or a label listed twice.
    """
    path = Path(source)
    if path.suffix == ".json" and path.is_file():
        with open(path) as f:
            mapping = json.load(f)
        if not isinstance(mapping, dict) or not all(isinstance(v, list) for v in mapping.values()):
            raise ValueError(f"{path}: expected a JSON object mapping each label to a list of sub-texts")
        return {str(k): [str(t) for t in v] for k, v in mapping.items()}

    rows = load_config_from(source, "subtexts", SUBTEXT_CONFIGS, "a sub-text dataset", revision)
    out: dict[str, list[str]] = {}
    for row in rows:
        if row["label"] in out:
            raise ValueError(f"{source}: label {row['label']!r} appears twice in the sub-texts")
        out[row["label"]] = list(row["subtexts"])
    return out


def entity_texts(source: Any, kinds: list[str] | None = None, revision: str | None = None) -> list[str]:
    """
    The texts an ALT model encodes, one per entity, in the corpus's order (sorted by unit): "unit: description".

    Args:
        source: an entity corpus (local folder or Hub id) or its `entities` configuration as a `Dataset`.
        kinds: keep only entities of these kinds ("object", "body part", "scene", "role", "motion", "label"), as
            ALT's Table C3 ablates the corpus by kind; None keeps all.

    Raises:
        ValueError: a corpus without entities (of these kinds), or a unit listed twice.
    """
    if hasattr(source, "column_names"):
        rows = source
    else:
        rows = load_config_from(source, "entities", ENTITY_CONFIGS, "an entity corpus", revision)
    missing = {"unit", "text", "kinds"} - set(rows.column_names)
    if missing:
        raise ValueError(f"{source}: not the entities of an entity corpus (no column {sorted(missing)[0]!r})")
    texts, seen = [], set()
    for unit, text, row_kinds in zip(rows["unit"], rows["text"], rows["kinds"], strict=True):
        if unit in seen:
            raise ValueError(f"{source}: unit {unit!r} appears twice in the corpus")
        seen.add(unit)
        if kinds is None or set(kinds) & set(row_kinds):
            texts.append(text)
    if not texts:
        raise ValueError(f"{source}: no entities" + (f" of the kinds {kinds}" if kinds else ""))
    return texts
