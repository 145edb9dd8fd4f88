"""The model card of a trained folder: the family's template (`hub_cards/`), a model-index of the run's metrics, and
the widget examples with the model's predictions for them, computed at push time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hub_cards import template_path

from ..evaluation.metrics import EVAL_PREFIX, MAP, TOP1, TOP5, ZERO_SHOT_PREFIX
from ..families import family_of
from .sources import is_hub_id

__all__ = ["LICENSE", "widget_files", "widget_examples", "model_card"]

# One licence for the project's code and what it publishes: setup.cfg's.
LICENSE = "apache-2.0"


def widget_files(videos: list[str]) -> list[str]:
    """
    The path in the repo of each widget video, one per video and all different: `examples/<file name>`, where several
    videos share a file name the name prefixed with as many of its folders as tell them apart
    (`archery/v1.mp4`, `diving/v1.mp4`: `examples/archery-v1.mp4`, `examples/diving-v1.mp4`), and where that cannot
    (the same file given twice) a number (`examples/v1-2.mp4`). The same command line gives the same names.
    """
    paths = [Path(video).resolve() for video in videos]
    names = []
    for path in paths:
        folders = path.parent.parts
        others = [other.parent.parts for other in paths if other != path and other.name == path.name]
        # the fewest of its folders, nearest first, that no other video of that name ends with (the root excluded)
        depth = 0
        if others:
            depth = next((d for d in range(1, len(folders)) if all(o[-d:] != folders[-d:] for o in others)), 0)
        names.append("-".join((*folders[len(folders) - depth :], path.name)) if depth else path.name)
    unique, seen = [], set()
    for name in names:
        stem, suffix, number = Path(name).stem, Path(name).suffix, 1
        while name in seen:
            number += 1
            name = f"{stem}-{number}{suffix}"
        seen.add(name)
        unique.append(f"examples/{name}")
    return unique


def widget_examples(folder: str | os.PathLike, videos: list[str], top_k: int = 5) -> list[dict[str, Any]]:
    """
    Run the folder's model on each widget video (through the pipeline, as the Hub would) now, at push time; each
    example's `file` is its path in the repo (`widget_files`).
    """
    from transformers import pipeline

    classifier = pipeline(
        "video-classification", model=os.fspath(folder), trust_remote_code=True, model_kwargs={"use_safetensors": True}
    )
    examples = []
    for video, file in zip(videos, widget_files(videos), strict=True):
        predictions = classifier(video, top_k=top_k)
        examples.append(
            {
                "file": file,
                "title": Path(file).stem.replace("_", " "),
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
    """The model card of a trained folder, from its family's template (`hub_cards/sfar_model_card.md`, ...),
    with a model-index of `metrics` and the widget `examples` (see `widget_examples`). `subtexts` is the Hub dataset
    of the label set's texts (SFAR's sub-texts, ALT's entity corpus), listed among the card's datasets. `base_model`
    None: the checkpoint the folder's model was converted from (`converted_from` in its config); only a Hub id
    becomes the card's `base_model` metadata."""
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
            "src": f"{constants.ENDPOINT}/{repo_id}/resolve/{revision}/{quote(example['file'])}",
            "example_title": example["title"],
            "output": example["output"],
        }
        for example in examples
    ]
    family = family_of(config)
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="video-classification",
        license=license,
        tags=[family.name, "video-classification", "clip", "custom_code"],
        base_model=base_on_hub,
        datasets=[d for d in (dataset_name, subtexts) if d and "/" in d] or None,
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
        widget=widget or None,
    )
    return ModelCard.from_template(
        data,
        template_path=template_path(family.card_template),
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
        **family.card_fields(config),
    )
