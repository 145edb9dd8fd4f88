"""The ALT entity corpus as a Hugging Face dataset: three configurations written as parquet with a README whose
metadata declares them, so `load_dataset(path_or_repo_id, "entities")` reads them locally and from the Hub alike.

- `entities` (the default): one row per entity, the corpus ALT encodes;
- `descriptions`: every candidate description of every unit, with its sense-selection scores;
- `units`: every accepted answer to a unit question (a label and a kind), with the units parsed from it.

`entity_texts` turns the corpus into the texts an ALT model encodes, one per entity: the training run reads a corpus
with it (`--entities`), and so does the zero-shot pipeline, whose shipped `label_set_texts.py` holds it (re-exported
here); the generator (`datasets_scripts/entity_corpus.py`) writes one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..remote_code.label_set_texts import ENTITY_CONFIGS, entity_texts, load_config_from

__all__ = [
    "ENTITY_CONFIGS",
    "save_entity_dataset",
    "load_entity_config",
    "entity_texts",
    "entity_text",
    "stage_entity_dataset",
    "push_entity_dataset",
]

def entity_text(unit: str, description: str) -> str:
    """The text ALT encodes for one entity, `{unit, description}` of the paper as one string: "unit: description"."""
    return f"{unit}: {description}"


def _features():
    from datasets import Features, Sequence, Value

    scores = {"lesk": Value("int64"), "similarity": Value("float64")}
    return {
        "entities": Features(
            {
                "unit": Value("string"),
                "description": Value("string"),
                "text": Value("string"),
                "kinds": Sequence(Value("string")),
                "labels": Sequence(Value("string")),
                "default": Value("bool"),
                "generator": Value("string"),
                "prompt": Value("string"),
                **scores,
            }
        ),
        "descriptions": Features(
            {
                "unit": Value("string"),
                "description": Value("string"),
                "generator": Value("string"),
                "prompt": Value("string"),
                **scores,
                "selected": Value("bool"),
                "answer": Value("string"),
            }
        ),
        "units": Features(
            {
                "label": Value("string"),
                "class_name": Value("string"),
                "kind": Value("string"),
                "units": Sequence(Value("string")),
                "generator": Value("string"),
                "answer": Value("string"),
            }
        ),
    }


def config_metadata() -> list[dict[str, Any]]:
    """The `configs` entry of the card metadata that maps each configuration to its parquet files."""
    return [
        {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/*.parquet"}], "default": i == 0}
        for i, name in enumerate(ENTITY_CONFIGS)
    ]


def save_entity_dataset(
    folder: str | os.PathLike,
    entities: list[dict[str, Any]],
    descriptions: list[dict[str, Any]],
    units: list[dict[str, Any]],
    card: Any = None,
) -> Path:
    """
    Write `folder/{entities,descriptions,units}/*.parquet` and `folder/README.md`, replacing an earlier version's.

    Args:
        entities, descriptions, units: the rows of each configuration, with the columns of `_features()`.
        card: a `huggingface_hub.DatasetCard` to write as README.md; by default a minimal card that declares the
            configurations.
    """
    from datasets import Dataset
    from huggingface_hub import DatasetCard, DatasetCardData

    folder = Path(folder)
    features = _features()
    for name, rows in (("entities", entities), ("descriptions", descriptions), ("units", units)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        columns = {key: [row[key] for row in rows] for key in features[name]}
        Dataset.from_dict(columns, features=features[name]).to_parquet(folder / name / "train-00000-of-00001.parquet")
    if card is None:
        data = DatasetCardData(configs=config_metadata(), tags=["alt", "entity-corpus"])
        card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n# Entity corpus\n\n{len(entities)} entities.\n")
    card.save(folder / "README.md")
    return folder


def load_entity_config(source: str | os.PathLike, config: str = "entities", revision: str | None = None):
    """One configuration of an entity corpus as a `Dataset`, from a local folder or a Hub id (read as sub-text sets
    are: `label_set_texts.load_config_from`)."""
    return load_config_from(source, config, ENTITY_CONFIGS, "an entity corpus", revision)


def stage_entity_dataset(folder: str | os.PathLike, staging: str | os.PathLike) -> list[str]:
    """
    Write an entity corpus (parquet configurations, card, answer log) to `staging`, a separate folder emptied only of
    what an earlier staging wrote (`modeling_sfar.hub.staging.prepare_staging`). Returns the staged files, sorted.
    """
    from ..hub.staging import prepare_staging, record_staging

    folder = Path(folder)
    if not (folder / "README.md").is_file() or not list(folder.glob("entities/*.parquet")):
        raise FileNotFoundError(f"{folder}: not an entity corpus (README.md and entities/*.parquet expected)")
    staging = prepare_staging(folder, staging)
    keep = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    keep = [f for f in keep if not f.startswith(".cache/") and not f.endswith(".lock")]  # datasets' own files
    record_staging(staging, keep)
    for relative in keep:
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / relative, staging / relative)
    return record_staging(staging)


def push_entity_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    api: Any = None,
    staging: str | os.PathLike | None = None,
) -> list[str]:
    """Stage an entity corpus (`stage_entity_dataset`, default staging folder `<folder>-hub`) and push it as a dataset
    repo in one commit; returns the repo's files."""
    from ..hub.staging import push_staged

    return push_staged(folder, stage_entity_dataset, repo_id, "dataset", "Upload ALT entity corpus", api=api,
                       staging=staging, private=private)  # fmt: skip
