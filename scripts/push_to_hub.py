"""Push a trained SFAR folder to the Hub as a model repo, with our card (the Trainer's drops `pipeline_tag`).

    python scripts/push_to_hub.py --folder runs/ucf101 --repo_id org/sfar-vitb16-ucf101 [--dry_run]

Only what a user needs is sent: config, safetensors weights, processor and tokenizer files, the remote-code files,
the card and the results; checkpoints, optimizer states and pickled files (`*.bin`, `*.pt`, `*.pth`) stay local.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

TEMPLATE = Path(__file__).resolve().parents[1] / "hub_cards" / "model_card.md"
IGNORE = ["checkpoint-*", "checkpoint-*/**", "runs/**", "eval-*/**", "*.bin", "*.pt", "*.pth", "trainer_state.json"]


def files_to_upload(folder: str | os.PathLike) -> list[str]:
    """The relative paths under `folder` that a push sends (everything but `IGNORE`)."""
    folder = Path(folder)
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if not any(fnmatch.fnmatch(relative, pattern) for pattern in IGNORE):
            out.append(relative)
    return out


def model_card(
    folder: str | os.PathLike,
    repo_id: str,
    base_model: str,
    dataset_name: str,
    metrics: dict[str, float],
    revision: str = "main",
    license: str = "mit",
    views: str = "1 clip x 1 crop",
) -> ModelCard:
    """The model card of a trained folder, from `hub_cards/model_card.md`, with a model-index of `metrics`."""
    config = json.loads((Path(folder) / "config.json").read_text())
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
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="video-classification",
        license=license,
        tags=["sfar", "video-classification", "clip", "custom_code"],
        base_model=base_model if "/" in base_model else None,
        datasets=[dataset_name] if "/" in dataset_name else None,
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
    )
    return ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        revision=revision,
        base_model=base_model,
        dataset_name=dataset_name,
        num_labels=len(config.get("id2label", {})),
        variant=config.get("fusion", "coarse+fine"),
        num_frames=config.get("num_frames", 8),
        results=rows,
        views=views,
    )


def push_model(
    folder: str | os.PathLike, repo_id: str, card: ModelCard | None = None, dry_run: bool = False, api: Any = None
) -> list[str]:
    """Write the card to `folder/README.md` and upload the folder (see `files_to_upload`); returns the files sent."""
    if card is not None:
        card.save(Path(folder) / "README.md")
    files = files_to_upload(folder)
    if "model.safetensors" not in files and not any(f.startswith("model-") for f in files):
        raise FileNotFoundError(f"{folder}: no safetensors weights to push")
    if dry_run:
        return files
    api = api or HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    api.upload_folder(
        folder_path=os.fspath(folder),
        repo_id=repo_id,
        repo_type="model",
        ignore_patterns=IGNORE,
        commit_message="Upload SFAR model",
    )
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("--repo_id", required=True)
    parser.add_argument("--base_model", default="openai/clip-vit-base-patch16")
    parser.add_argument("--dataset_name", default="unknown")
    parser.add_argument("--dry_run", action="store_true", help="write the card and list the files, send nothing")
    args = parser.parse_args()
    results = Path(args.folder) / "all_results.json"
    metrics = json.loads(results.read_text()) if results.is_file() else {}
    card = model_card(args.folder, args.repo_id, args.base_model, args.dataset_name, metrics)
    for name in push_model(args.folder, args.repo_id, card, dry_run=args.dry_run):
        print(name)


if __name__ == "__main__":
    main()
