"""Staged pushes of model, dataset and Space repos (what `scripts/push_to_hub.py` and the training run share).

A repo is first written to a staging folder holding exactly what the repo will hold: for a model, the config (with
`auto_map`), safetensors weights, processor and tokenizer files, the remote-code files, our card (the Trainer's drops
`pipeline_tag`), the results and the widget videos under `examples/` with the model's predictions for them;
checkpoints, optimizer states and pickled files (`*.bin`, `*.pt`, `*.pth`, `*.pkl`) never. One commit then adds
every staged file.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from ..data.subtexts import push_subtext_dataset
from ..families import family_of
from .cards import widget_files
from .staging import prepare_staging, push_staged, record_staging

logger = logging.getLogger(__name__)

__all__ = [
    "IGNORE",
    "SPACE_LIBRARY_FILES",
    "files_to_upload",
    "stage_model_repo",
    "push_model",
    "push_dataset",
    "stage_space_repo",
    "push_space",
]


IGNORE = [
    "checkpoint-*",
    "checkpoint-*/**",
    "runs/**",
    "eval-*/**",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "*.ckpt",
    "trainer_state.json",
    "bad_videos.jsonl",  # local paths of the training machine
    "sfar_recipe.json",  # the demo's record of its recipe, with local paths
]


def files_to_upload(folder: str | os.PathLike) -> list[str]:
    """The relative paths under a trained `folder` that a model repo gets (everything but `IGNORE`)."""
    folder = Path(folder)
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if not any(fnmatch.fnmatch(relative, pattern) for pattern in IGNORE):
            out.append(relative)
    return out


def _check_weights(files: list[str], folder: str | os.PathLike) -> None:
    if "model.safetensors" not in files and not any(f.endswith(".safetensors") for f in files):
        raise FileNotFoundError(f"{folder}: no safetensors weights to push")
    pickled = [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    if pickled:
        raise ValueError(f"{folder}: refusing to push pickled files {pickled}; only safetensors weights are shipped")


def stage_model_repo(
    folder: str | os.PathLike,
    staging: str | os.PathLike,
    card: ModelCard | None = None,
    widget_videos: list[str] = (),
) -> list[str]:
    """
    Write exactly what the model repo will hold to `staging` (see `prepare_staging`: a separate folder, emptied
    only of what an earlier staging wrote), the widget videos under the names of `widget_files`. Returns the repo's
    files, sorted.
    """
    folder = Path(folder)
    files = files_to_upload(folder)
    _check_weights(files, folder)
    for video in widget_videos:
        if not Path(video).is_file():
            raise FileNotFoundError(f"widget video {video} does not exist")
    staging = prepare_staging(folder, staging)
    examples = widget_files(list(widget_videos))
    record_staging(staging, [*files, *examples, *(["README.md"] if card is not None else [])])
    for relative in files:
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / relative, staging / relative)
    for video, relative in zip(widget_videos, examples, strict=True):
        (staging / "examples").mkdir(parents=True, exist_ok=True)
        shutil.copy2(video, staging / relative)
    if card is not None:
        card.save(staging / "README.md")
    return record_staging(staging)


def push_model(
    folder: str | os.PathLike,
    repo_id: str,
    card: ModelCard | None = None,
    dry_run: bool = False,
    api: Any = None,
    widget_videos: list[str] = (),
    staging: str | os.PathLike | None = None,
    private: bool = False,
) -> list[str]:
    """
    Stage (see `stage_model_repo`, and `staging_folder` for where) and, unless `dry_run`, upload a trained folder;
    returns the repo's files. Without `card`, the folder's README.md (our card, written by train.py) is used.

    Raises:
        ValueError: `repo_id` is not a Hub repo id (checked in a dry run too), named as `--repo_id`.
    """

    def commit_message() -> str:
        return f"Upload {family_of(json.loads((Path(folder) / 'config.json').read_text())).title} model"

    return push_staged(
        folder, lambda source, where: stage_model_repo(source, where, card, widget_videos), repo_id, "model",
        commit_message, dry_run, api, staging, private,
    )  # fmt: skip


def push_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    dry_run: bool = False,
    api: Any = None,
    staging: str | os.PathLike | None = None,
    private: bool = False,
) -> list[str]:
    """Stage (see `stage_dataset_repo`, and `staging_folder` for where) and, unless `dry_run`, upload a sub-text set
    as a dataset repo; returns the repo's files. A `repo_id` that is not a Hub repo id is refused, as by `push_model`.
    """
    return push_subtext_dataset(folder, repo_id, private, api, staging, dry_run)


# What a Space repo holds besides its own folder's files: library modules it imports, copied beside `app.py` (each is
# self-contained, so the Space runs without this package installed).
# (paths inside the package; each is staged beside `app.py` under its own name)
SPACE_LIBRARY_FILES = ("demo/plots.py",)


def stage_space_repo(space: str | os.PathLike, staging: str | os.PathLike) -> list[str]:
    """
    Write exactly what the Space repo will hold to `staging`: the files of the `space` folder (`app.py`, its
    `requirements.txt` and card, `examples/`), and a copy of each of the library's `SPACE_LIBRARY_FILES`, which
    `app.py` imports from its own folder on the Hub. Returns the repo's files, sorted.

    Raises:
        FileNotFoundError: `space` has no `app.py`.
    """
    space = Path(space)
    if not (space / "app.py").is_file():
        raise FileNotFoundError(f"--folder {space}: not a Space folder (no app.py)")
    files = sorted(
        str(path.relative_to(space))
        for path in space.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    staging = prepare_staging(space, staging)
    record_staging(staging, [*files, *(Path(name).name for name in SPACE_LIBRARY_FILES)])
    for relative in files:
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(space / relative, staging / relative)
    package = Path(__file__).resolve().parents[1]
    for name in SPACE_LIBRARY_FILES:
        shutil.copy2(package / name, staging / Path(name).name)
    return record_staging(staging)


def push_space(
    space: str | os.PathLike,
    repo_id: str,
    dry_run: bool = False,
    api: Any = None,
    staging: str | os.PathLike | None = None,
    private: bool = False,
) -> list[str]:
    """Stage (see `stage_space_repo`, and `staging_folder` for where) and, unless `dry_run`, upload the Space (Gradio
    SDK); returns its files. A `repo_id` that is not a Hub repo id is refused, as by `push_model`."""
    return push_staged(space, stage_space_repo, repo_id, "space", "Upload the SFAR Space", dry_run, api, staging,
                       private, space_sdk="gradio")  # fmt: skip
