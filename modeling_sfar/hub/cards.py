"""Model cards and staged pushes of model and sub-text dataset repos, and of the Space (what `scripts/push_to_hub.py`
and the training run share).

A repo is first written to a staging folder holding exactly what the repo will hold: for a model, the config (with
`auto_map`), safetensors weights, processor and tokenizer files, the remote-code files, our card
(`hub_cards/model_card.md`; the Trainer's drops `pipeline_tag`), the results and the widget videos under `examples/`
with the model's predictions for them; checkpoints, optimizer states and pickled files (`*.bin`, `*.pt`, `*.pth`,
`*.pkl`) never. One commit then adds every staged file.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hub_cards import ALT_MODEL_CARD, MODEL_CARD, template_path

from ..data.subtexts import stage_dataset_repo
from ..evaluation.metrics import EVAL_PREFIX, MAP, TOP1, TOP5, ZERO_SHOT_PREFIX
from .staging import prepare_staging, record_staging, upload_staged

logger = logging.getLogger(__name__)
TEMPLATE = template_path(MODEL_CARD)
ALT_TEMPLATE = template_path(ALT_MODEL_CARD)
# `model_type` of an ALT folder's config.json (AltConfig's, read here without loading the model)
ALT_MODEL_TYPE = "alt_video"
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
__all__ = [
    "LICENSE",
    "files_to_upload",
    "widget_examples",
    "model_card",
    "is_hub_id",
    "stage_model_repo",
    "push_model",
    "push_dataset",
]

# One licence for the project's code and what it publishes: setup.cfg's.
LICENSE = "apache-2.0"
# The SFAR paper's own ViT-B/16 figures (NeurIPS 2025), shown beside ours and never mixed with them.
PAPER_RESULTS = [
    ("Kinetics-400", "top-1 / top-5 (8x224, 1 view)", "84.5 / 96.7", "Table 1"),
    ("Charades", "mAP (16 frames)", "51.1", "Table 2a"),
    ("UCF-101, zero-shot", "top-1", "79.0", "Table 2b"),
    ("HMDB-51, zero-shot", "top-1", "56.6", "Table 2b"),
    ("HMDB-51 / UCF-101 / K-400, few-shot", "top-1, mean over K = 2, 4, 8, 16", "78.7", "Table 3"),
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


def widget_examples(folder: str | os.PathLike, videos: list[str], top_k: int = 5) -> list[dict[str, Any]]:
    """Run the folder's model on each widget video (through the pipeline, as the Hub would) now, at push time."""
    from transformers import pipeline

    classifier = pipeline(
        "video-classification", model=os.fspath(folder), trust_remote_code=True, model_kwargs={"use_safetensors": True}
    )
    examples = []
    for video in videos:
        predictions = classifier(video, top_k=top_k)
        examples.append(
            {
                "file": f"examples/{Path(video).name}",
                "title": Path(video).stem.replace("_", " "),
                "output": [{"label": p["label"], "score": round(float(p["score"]), 4)} for p in predictions],
            }
        )
    return examples


def model_card(
    folder: str | os.PathLike,
    repo_id: str,
    base_model: str | None,
    dataset_name: str,
    metrics: dict[str, float],
    revision: str = "main",
    license: str = LICENSE,
    views: str = "1 clip x 1 crop",
    examples: list[dict[str, Any]] | None = None,
    subtexts: str | None = None,
) -> ModelCard:
    """The model card of a trained folder, from `hub_cards/model_card.md` (`alt_model_card.md` for an ALT folder),
    with a model-index of `metrics` and the widget `examples` (see `widget_examples`). `base_model` None: the
    checkpoint the folder's model was converted from (`converted_from` in its config); only a Hub id becomes the
    card's `base_model` metadata."""
    from huggingface_hub import constants

    config = json.loads((Path(folder) / "config.json").read_text())
    base_model = base_model or config.get("converted_from")
    base_on_hub = base_model if base_model and is_hub_id(base_model) else None
    results, rows = [], []
    names = {
        TOP1: ("accuracy", "top-1 accuracy"),
        TOP5: ("top_5_accuracy", "top-5 accuracy"),
        MAP: ("map", "mAP"),
    }
    for key, value in metrics.items():
        prefix, _, metric = key.rpartition("_")
        if metric in names and prefix in (EVAL_PREFIX, ZERO_SHOT_PREFIX):
            metric_type, metric_name = names[metric]
            split = "test" if prefix == EVAL_PREFIX else "zero-shot"
            rows.append({"split": split, "metric": metric_name, "value": value})
            results.append(
                EvalResult(
                    task_type="video-classification",
                    dataset_type=dataset_name,
                    dataset_name=dataset_name,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=round(value, 2),
                )
            )
    examples = examples or []
    widget = [
        {
            "src": f"{constants.ENDPOINT}/{repo_id}/resolve/{revision}/{example['file']}",
            "example_title": example["title"],
            "output": example["output"],
        }
        for example in examples
    ]
    alt = config.get("model_type") == ALT_MODEL_TYPE
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="video-classification",
        license=license,
        tags=["alt" if alt else "sfar", "video-classification", "clip", "custom_code"],
        base_model=base_on_hub,
        datasets=[d for d in (dataset_name, subtexts) if d and "/" in d] or None,
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
        widget=widget or None,
    )
    common = dict(
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        revision=revision,
        base_model=base_model,
        base_on_hub=base_on_hub,
        dataset_name=dataset_name,
        num_labels=len(config.get("id2label", {})),
        num_frames=config.get("num_frames", 8),
        results=rows,
        views=views,
        examples=examples,
    )
    if alt:
        return ModelCard.from_template(
            data,
            template_path=str(ALT_TEMPLATE),
            token_merging_r=config.get("token_merging_r", 8),
            use_entity_corpus=config.get("use_entity_corpus", True),
            num_entities=len(config.get("entities") or []),
            num_decoder_layers=config.get("num_decoder_layers", 4),
            **common,
        )
    return ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        variant=config.get("fusion", "coarse+fine"),
        num_subtexts=config.get("num_subtexts", 4),
        paper_results=PAPER_RESULTS,
        **common,
    )


def is_hub_id(name: str) -> bool:
    """Whether `name` is a Hub repo id (`owner/name`) rather than a local path."""
    return (
        name.count("/") == 1
        and not name.startswith(("/", ".", "~"))
        and not os.path.exists(name)
        and all(part.strip() for part in name.split("/"))
    )


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
    dry_run: bool = False,
) -> list[str]:
    """
    Write exactly what the model repo will hold to `staging` (see `prepare_staging`: a separate folder, emptied
    only of what an earlier staging wrote; with `dry_run` nothing is deleted, and a dry run beside an earlier
    staging writes to a new folder, logged). Returns the repo's files, sorted.
    """
    folder = Path(folder)
    files = files_to_upload(folder)
    _check_weights(files, folder)
    for video in widget_videos:
        if not Path(video).is_file():
            raise FileNotFoundError(f"widget video {video} does not exist")
    staging = prepare_staging(folder, staging, dry_run=dry_run)
    examples = [f"examples/{Path(video).name}" for video in widget_videos]
    record_staging(staging, [*files, *examples, *(["README.md"] if card is not None else [])])
    for relative in files:
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / relative, staging / relative)
    for video, relative in zip(widget_videos, examples, strict=True):
        (staging / "examples").mkdir(parents=True, exist_ok=True)
        shutil.copy2(video, staging / relative)
    if card is not None:
        card.save(staging / "README.md")
    if dry_run:
        logger.info("dry run: the repo is staged in %s; nothing is sent", staging)
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
    """Stage (see `stage_model_repo`) and, unless `dry_run`, upload a trained folder; returns the repo's files.

    Without `card`, the folder's README.md (our card, written by train.py) is used."""
    staging = Path(staging or f"{os.fspath(folder).rstrip('/')}-hub")
    files = stage_model_repo(folder, staging, card, widget_videos, dry_run=dry_run)
    if not dry_run:
        upload_staged(staging, repo_id, "model", api, private, "Upload SFAR model")
    return files


def push_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    dry_run: bool = False,
    api: Any = None,
    staging: str | os.PathLike | None = None,
    private: bool = False,
) -> list[str]:
    """Stage (see `stage_dataset_repo`) and, unless `dry_run`, upload a sub-text set as a dataset repo; returns the
    repo's files."""
    staging = Path(staging or f"{os.fspath(folder).rstrip('/')}-hub")
    files = stage_dataset_repo(folder, staging, dry_run=dry_run)
    if not dry_run:
        upload_staged(staging, repo_id, "dataset", api, private, "Upload SFAR sub-texts")
    return files


# What a Space repo holds besides its own folder's files: library modules it imports, copied beside `app.py` (each is
# self-contained, so the Space runs without this package installed).
# (paths inside the package; each is staged beside `app.py` under its own name)
SPACE_LIBRARY_FILES = ("demo/plots.py",)


def stage_space_repo(space: str | os.PathLike, staging: str | os.PathLike, dry_run: bool = False) -> list[str]:
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
    staging = prepare_staging(space, staging, dry_run=dry_run)
    record_staging(staging, [*files, *(Path(name).name for name in SPACE_LIBRARY_FILES)])
    for relative in files:
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(space / relative, staging / relative)
    package = Path(__file__).resolve().parents[1]
    for name in SPACE_LIBRARY_FILES:
        shutil.copy2(package / name, staging / Path(name).name)
    if dry_run:
        logger.info("dry run: the Space is staged in %s; nothing is sent", staging)
    return record_staging(staging)


def push_space(
    space: str | os.PathLike,
    repo_id: str,
    dry_run: bool = False,
    api: Any = None,
    staging: str | os.PathLike | None = None,
    private: bool = False,
) -> list[str]:
    """Stage (see `stage_space_repo`) and, unless `dry_run`, upload the Space (Gradio SDK); returns its files."""
    staging = Path(staging or f"{os.fspath(space).rstrip('/')}-hub")
    files = stage_space_repo(space, staging, dry_run=dry_run)
    if not dry_run:
        upload_staged(staging, repo_id, "space", api, private, "Upload the SFAR Space", space_sdk="gradio")
    return files
