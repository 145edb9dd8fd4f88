"""Sub-text sets as Hugging Face datasets: two configurations, `subtexts` (the selected set per class) and
`candidates` (every candidate with its TPP), written as parquet with a README whose metadata declares both, so
`load_dataset(path_or_repo_id, "subtexts")` reads them locally and from the Hub alike. The readers are the shipped
`label_set_texts.py`'s (re-exported here).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

# The readers live with the shipped code, which the zero-shot pipeline reads sub-texts with where this package is
# not installed.
from ..remote_code.label_set_texts import SUBTEXT_CONFIGS, load_config_from, load_subtexts

logger = logging.getLogger(__name__)

__all__ = [
    "save_subtext_dataset",
    "load_subtexts",
    "load_subtext_config",
    "load_config_from",
    "push_subtext_dataset",
    "subtexts_for_labels",
    "stage_dataset_repo",
    "SUBTEXT_CONFIGS",
]


def _features():
    from datasets import Features, Sequence, Value

    common = {
        "label": Value("string"),
        "subtexts": Sequence(Value("string")),
        "tpp": Value("float64"),
        "generator": Value("string"),
        "prompt": Value("string"),
    }
    return {
        "subtexts": Features(common),
        "candidates": Features({**common, "selected": Value("bool"), "answer": Value("string")}),
    }


def save_subtext_dataset(
    folder: str | os.PathLike,
    selected: list[dict[str, Any]],
    candidates: list[dict[str, Any]],
    card: Any = None,
) -> Path:
    """
    Write `folder/subtexts/*.parquet`, `folder/candidates/*.parquet` and `folder/README.md`.

    Args:
        selected: one row per class: `label`, `subtexts`, `tpp`, `generator`, `prompt`.
        candidates: one row per candidate: the same fields plus `selected` and the raw `answer`.
        card: a `huggingface_hub.DatasetCard` to write as README.md; by default a minimal card that declares the
            two configurations.
    """
    from datasets import Dataset
    from huggingface_hub import DatasetCard, DatasetCardData

    folder = Path(folder)
    features = _features()
    for name, rows in (("subtexts", selected), ("candidates", candidates)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        columns = {key: [row[key] for row in rows] for key in features[name]}
        Dataset.from_dict(columns, features=features[name]).to_parquet(folder / name / "train-00000-of-00001.parquet")
    if card is None:
        data = DatasetCardData(configs=config_metadata(), tags=["sfar", "sub-texts"])
        card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n# Sub-texts\n\n{len(selected)} classes.\n")
    card.save(folder / "README.md")
    return folder


def config_metadata() -> list[dict[str, Any]]:
    """The `configs` entry of the card metadata that maps each configuration to its parquet files."""
    return [
        {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/*.parquet"}], "default": i == 0}
        for i, name in enumerate(SUBTEXT_CONFIGS)
    ]


def load_subtext_config(source: str | os.PathLike, config: str = "subtexts", revision: str | None = None):
    """One configuration of a sub-text dataset as a `Dataset`, from a local folder or a Hub id."""
    return load_config_from(source, config, SUBTEXT_CONFIGS, "a sub-text dataset", revision)


def subtexts_for_labels(
    labels: list[str], source: str | os.PathLike | None, needed: bool, what: str, flag: str = "--subtexts"
) -> dict[str, list[str]] | None:
    """
    The sub-texts of `source` (see `load_subtexts`) for exactly `labels`, in their order; None without a `source`.
    Classes of `source` outside `labels` are dropped (logged). `what` names the label set in messages ("classes of
    data/ucf101"), `flag` the argument that gives the sub-texts.

    Raises:
        ValueError: `needed` and no `source` (the variant uses sub-texts), or a class of `labels` without sub-texts in
            `source` (the message counts and names them).
    """
    if source is None:
        if needed:
            raise ValueError(f"this variant needs sub-texts for the {what}: pass {flag}")
        return None
    subtexts = load_subtexts(source)
    missing = [label for label in labels if label not in subtexts]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ValueError(
            f"the sub-texts {source} do not match the {what}: {len(missing)} of {len(labels)} classes have none "
            f"({shown})"
        )
    extra = sorted(set(subtexts) - set(labels))
    if extra:
        logger.info("the sub-texts %s have %d classes outside the %s; they are not used", source, len(extra), what)
    return {label: subtexts[label] for label in labels}


def stage_dataset_repo(folder: str | os.PathLike, staging: str | os.PathLike) -> list[str]:
    """
    Write a sub-text set (parquet configurations, card, TPP histogram, answer log) to `staging`, a separate folder
    emptied only of what an earlier staging wrote (see `modeling_sfar.hub.staging.prepare_staging`). Returns the
    staged files, sorted.
    """
    from modeling_sfar.hub.staging import prepare_staging, record_staging

    folder = Path(folder)
    if not (folder / "README.md").is_file() or not list(folder.glob("subtexts/*.parquet")):
        raise FileNotFoundError(f"{folder}: not a sub-text dataset (README.md and subtexts/*.parquet expected)")
    ignore = shutil.ignore_patterns(".cache", "*.lock")
    staging = prepare_staging(folder, staging)
    planned = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    record_staging(staging, [f for f in planned if not f.startswith(".cache/") and not f.endswith(".lock")])
    shutil.copytree(folder, staging, ignore=ignore, dirs_exist_ok=True)
    return record_staging(staging)


def push_subtext_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    api: Any = None,
    staging: str | os.PathLike | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Stage a sub-text set (see `stage_dataset_repo`, and `staging_folder` for where) and, unless `dry_run`, push
    it as a dataset repo in one commit; returns the repo's files (`hub.staging.push_staged`)."""
    from ..hub.staging import push_staged

    return push_staged(folder, stage_dataset_repo, repo_id, "dataset", "Upload SFAR sub-texts", dry_run, api, staging,
                       private)  # fmt: skip
