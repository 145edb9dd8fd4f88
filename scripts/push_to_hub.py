"""Push a trained SFAR folder as a model repo, or a sub-text set as a dataset repo, with our cards.

    python scripts/push_to_hub.py model --folder runs/ucf101 --repo_id org/sfar-vitb16-ucf101 \\
        --dataset_name ucf101 --widget_video examples/archery.mp4 --widget_video examples/diving.mp4 [--dry_run]
    python scripts/push_to_hub.py dataset --folder subtexts/k400 --repo_id org/sfar-subtexts-k400 [--dry_run]

The repo is first written to a staging folder (`--staging`, by default `<folder>-hub`) holding exactly what the repo
will hold: for a model, the config (with `auto_map`), safetensors weights, processor and tokenizer files, the
remote-code files, our card (`hub_cards/model_card.md`; the Trainer's drops `pipeline_tag`), the results and the
widget videos under `examples/` with the model's predictions for them, computed now; checkpoints, optimizer states
and pickled files (`*.bin`, `*.pt`, `*.pth`, `*.pkl`) never. `--dry_run` stops there and lists the files; otherwise
one commit adds every staged file.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from datasets_scripts.subtext_dataset import stage_dataset_repo
from hub_cards import MODEL_CARD, template_path
from modeling_sfar.hub import prepare_staging, record_staging, upload_staged

logger = logging.getLogger("sfar.push_to_hub")
TEMPLATE = template_path(MODEL_CARD)
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
# One licence for the project's code and what it publishes: setup.cfg's.
LICENSE = "apache-2.0"
# The SFAR paper's own ViT-B/16 figures (seeds/001), shown beside ours and never mixed with them.
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
    """The model card of a trained folder, from `hub_cards/model_card.md`, with a model-index of `metrics` and the
    widget `examples` (see `widget_examples`). `base_model` None: the checkpoint the folder's model was converted
    from (`converted_from` in its config); only a Hub id becomes the card's `base_model` metadata."""
    from huggingface_hub import constants

    config = json.loads((Path(folder) / "config.json").read_text())
    base_model = base_model or config.get("converted_from")
    base_on_hub = base_model if base_model and is_hub_id(base_model) else None
    results, rows = [], []
    names = {
        "top1": ("accuracy", "top-1 accuracy"),
        "top5": ("top_5_accuracy", "top-5 accuracy"),
        "mAP": ("map", "mAP"),
    }
    for key, value in metrics.items():
        prefix, _, metric = key.rpartition("_")
        if metric in names and prefix in ("eval", "zero_shot"):
            metric_type, metric_name = names[metric]
            split = "test" if prefix == "eval" else "zero-shot"
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
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="video-classification",
        license=license,
        tags=["sfar", "video-classification", "clip", "custom_code"],
        base_model=base_on_hub,
        datasets=[d for d in (dataset_name, subtexts) if d and "/" in d] or None,
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
        widget=widget or None,
    )
    return ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        revision=revision,
        base_model=base_model,
        base_on_hub=base_on_hub,
        dataset_name=dataset_name,
        num_labels=len(config.get("id2label", {})),
        variant=config.get("fusion", "coarse+fine"),
        num_frames=config.get("num_frames", 8),
        num_subtexts=config.get("num_subtexts", 4),
        results=rows,
        views=views,
        examples=examples,
        paper_results=PAPER_RESULTS,
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


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["model", "dataset"], help="A trained model folder or a sub-text set.")
    parser.add_argument("--folder", required=True)
    parser.add_argument("--repo_id", required=True)
    parser.add_argument("--staging", default=None, help="Where the repo is written first (default <folder>-hub).")
    parser.add_argument("--dry_run", action="store_true", help="Write the staging folder and list it; send nothing.")
    parser.add_argument("--private", action="store_true")
    parser.add_argument(
        "--base_model", default=None, help="model: the model it came from (default: recorded in its config)."
    )
    parser.add_argument("--dataset_name", default="unknown", help="model: the dataset it was trained on.")
    parser.add_argument("--subtexts", default=None, help="model: the sub-text dataset repo it used.")
    parser.add_argument("--revision", default="main", help="model: the revision the card's snippets pin.")
    parser.add_argument("--license", default=LICENSE)
    parser.add_argument("--widget_video", action="append", default=[], help="model: a video for the widget.")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.kind == "dataset":
        files = push_dataset(args.folder, args.repo_id, args.dry_run, staging=args.staging, private=args.private)
    else:
        results = Path(args.folder) / "all_results.json"
        metrics = json.loads(results.read_text()) if results.is_file() else {}
        examples = widget_examples(args.folder, args.widget_video) if args.widget_video else []
        card = model_card(
            args.folder,
            args.repo_id,
            args.base_model,
            args.dataset_name,
            metrics,
            revision=args.revision,
            license=args.license,
            examples=examples,
            subtexts=args.subtexts,
        )
        files = push_model(
            args.folder, args.repo_id, card, args.dry_run, widget_videos=args.widget_video, staging=args.staging,
            private=args.private,
        )  # fmt: skip
    print("\n".join(files))
    return files


if __name__ == "__main__":
    main()
