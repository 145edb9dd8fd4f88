"""Evaluating a trained model of any family on a video dataset (what `scripts/eval.py` runs): its own label set, or
another one (zero-shot, with the texts its family reads: SFAR's sub-texts, ALT's entity corpus). `EvaluateArguments`
and the family's evaluation arguments are parsed by `HfArgumentParser` (`parse_evaluation_args`); `run_evaluation`
writes `eval_results.json` and, for single-label sets of at most 50 classes, a confusion matrix picture, and returns
the metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import HfArgumentParser, PretrainedConfig, TrainingArguments

from ..data.bad_videos import BadVideoLog, check_videos
from ..data.datasets import check_dataset, dataset_labels, evaluation_split, load_video_dataset, with_row_index
from ..data.transform import VideoTransform
from ..families import ModelFamily, family_of, unknown_flags_message
from ..hub.sources import check_model_source
from .metrics import EVAL_PREFIX, metric_key
from .predict import VideoEvaluationTrainer, compute_metrics, evaluate_split
from .zero_shot import replace_label_set

logger = logging.getLogger(__name__)

__all__ = ["EvaluateArguments", "parse_evaluation_args", "run_evaluation", "plot_confusion"]


@dataclass
class EvaluateArguments:
    model: str = field(metadata={"help": "A trained model: a folder or a Hub id."})
    dataset: str = field(metadata={"help": "A video dataset folder (build_dataset.py) or Hub id."})
    split: str | None = field(
        default=None, metadata={"help": "The split to evaluate (default: `test`, else `validation`)."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Default: <model>/eval-<dataset name>."})
    num_clips: int = field(default=1, metadata={"help": "Temporal clips per video."})
    num_crops: int = field(default=1, metadata={"help": "Spatial crops per clip (1 or 3)."})
    batch_size: int = field(default=8, metadata={"help": "Videos per batch."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers that decode videos."})
    group_columns: list[str] = field(default_factory=list, metadata={"help": "Also score these columns' subsets."})
    strict: bool = field(
        default=False, metadata={"help": "Stop on a missing or corrupt video (before or during) instead of skip."}
    )
    revision: str | None = field(default=None, metadata={"help": "Revision of --model (a Hub id)."})
    dtype: str = field(
        default="float32", metadata={"help": "float32 or bfloat16 (the label set is encoded in float32 first)."}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (the Trainer's torch_compile)."})
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "The model's attention (eager, sdpa, sfar_sdpa, ...). Default: the family's bfloat16 CPU attention "
            "with --dtype bfloat16 (SFAR's sfar_sdpa), transformers' default otherwise."
        },
    )


def family_of_checkpoint(source: str, revision: str | None = None) -> ModelFamily:
    """The family of a saved model (folder or Hub id), from its `config.json`, checked first (`check_model_source`)."""
    check_model_source(source, "--model")
    config, _ = PretrainedConfig.get_config_dict(source, revision=revision)
    return family_of(config)


def parse_evaluation_args(argv: list[str] | None = None) -> tuple[EvaluateArguments, Any, ModelFamily]:
    """
    The evaluation's arguments from a command line: `--model` is read first, its family found from its config, and
    the family's evaluation flags (`--subtexts` for SFAR, `--entities` for ALT) join the parser.

    Returns:
        The common arguments, the family's and the family.
    """
    args = sys.argv[1:] if argv is None else argv
    scan = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    scan.add_argument("--model")
    scan.add_argument("--revision")
    known = scan.parse_known_args(args)[0]
    if known.model is None:  # no model yet (or --help): the common flags and the default family's
        from ..families import FAMILIES

        family = next(iter(FAMILIES.values()))
    else:
        family = family_of_checkpoint(known.model, known.revision)
    parser = HfArgumentParser((EvaluateArguments, family.evaluation_arguments))
    common, family_args, remaining = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    if remaining:
        raise ValueError(unknown_flags_message(family, remaining, "eval.py --model <model>", "evaluation_arguments"))
    return common, family_args, family


def plot_confusion(logits: np.ndarray, labels: np.ndarray, names: list[str], path: str) -> None:
    """Row-normalised confusion matrix (true class x predicted class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(names)
    matrix = np.zeros((count, count))
    np.add.at(matrix, (labels, logits.argmax(1)), 1)
    matrix /= matrix.sum(1, keepdims=True).clip(min=1)
    size = max(4, 0.35 * count + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(count), names, rotation=90, fontsize=7)
    ax.set_yticks(range(count), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_evaluation(args: EvaluateArguments, family_args: Any = None, family: ModelFamily | None = None) -> dict:
    """
    Load the model (`args.model`) and the dataset's split, check every video as the evaluation will load it, replace
    the label set when the dataset's classes differ or the family's texts are given (zero-shot), and score it.

    Returns:
        The metrics (`eval_top1`/`eval_top5` or `eval_mAP`, their subsets, the skipped and failed video counts).

    Raises:
        ValueError / FileNotFoundError: a bad argument, model, dataset or text set, named, before any video is
            predicted.
    """
    if args.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"--dtype must be float32 or bfloat16, got {args.dtype!r}")
    # the model first: a folder without safetensors weights fails before the videos are checked
    family = family or family_of_checkpoint(args.model, args.revision)
    family_args = family_args if family_args is not None else family.evaluation_arguments()
    attn_implementation = args.attn_implementation
    if attn_implementation is None and args.dtype == "bfloat16":
        attn_implementation = family.bfloat16_attention
    model, processor = family.load(args.model, args.revision, attn_implementation=attn_implementation)
    dataset = load_video_dataset(args.dataset)
    split = evaluation_split(dataset, args.split, args.dataset, "--split")
    dataset = dataset[split]
    labels, multi_label = dataset_labels(dataset)
    check_dataset(dataset, split, len(labels), multi_label)
    # The videos as they are now, loaded as the evaluation will load them (reader, frames, views).
    checker = VideoTransform(
        processor.video_processor, len(labels), multi_label, num_clips=args.num_clips, num_crops=args.num_crops
    )
    dataset, skipped = check_videos(
        with_row_index(dataset), split, checker.load, strict=args.strict, num_workers=args.num_workers
    )
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of {args.dataset} has no usable video")
    source, flag = family.evaluation_source(family_args)
    if source is not None or labels != list(model.config.id2label.values()):
        what = f"classes of {args.dataset}"
        replace_label_set(model, processor.tokenizer, family, labels, source, what, flag)

    model = model.to(getattr(torch, args.dtype))
    output_dir = args.output_dir or os.path.join(args.model, f"eval-{os.path.basename(os.path.normpath(args.dataset))}")
    log = BadVideoLog(os.path.join(output_dir, "bad_videos.jsonl"))
    log.reset()
    trainer = VideoEvaluationTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=output_dir,
            per_device_eval_batch_size=args.batch_size,
            dataloader_num_workers=args.num_workers,
            remove_unused_columns=False,
            label_names=["labels"],
            report_to="none",
            torch_compile=args.compile,
        ),
        compute_metrics=compute_metrics,
    )
    metrics, logits, label_ids = evaluate_split(
        trainer, dataset, split, processor.video_processor, len(labels), multi_label, args.num_clips,
        args.num_crops, tuple(args.group_columns), log=log, strict=args.strict,
    )  # fmt: skip
    metrics[metric_key(EVAL_PREFIX, "skipped_videos")] = len(skipped)
    if trainer.is_world_process_zero():
        os.makedirs(output_dir, exist_ok=True)
        failed = {video: reason for video, reason in log.read(f"eval:{split}").values()}
        problems = {"skipped_before_evaluation": dict(skipped), "failed_during_evaluation": failed}
        with open(os.path.join(output_dir, "eval_results.json"), "w") as f:
            json.dump({**metrics, "bad_videos": problems}, f, indent=2)
        if not multi_label and len(labels) <= 50:
            plot_confusion(logits, label_ids, labels, os.path.join(output_dir, "confusion.png"))
    return metrics
