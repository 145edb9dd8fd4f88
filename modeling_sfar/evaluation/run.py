"""Evaluating a trained SFAR or ALT model on a video dataset (what `scripts/eval.py` runs): its own label set, or
another one (zero-shot; SFAR with sub-texts, ALT with its own entity corpus). `EvaluateArguments` are parsed by
`HfArgumentParser`; `run_evaluation` writes `eval_results.json` and, for single-label sets of at most 50 classes, a
confusion matrix picture, and returns the metrics.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import AutoConfig, Trainer, TrainingArguments

from ..data.subtexts import subtexts_for_labels
from ..remote_code.configuration_alt import AltConfig
from ..remote_code.modeling_alt import AltForVideoClassification
from ..remote_code.modeling_sfar import SfarForVideoClassification
from ..remote_code.processing_sfar import SfarProcessor
from ..training.trainer import (
    BadVideoLog,
    VideoTransform,
    check_dataset,
    check_model_source,
    check_videos,
    compute_metrics,
    dataset_labels,
    evaluate_split,
    load_video_dataset,
    with_row_index,
)
from .metrics import EVAL_PREFIX, metric_key

logger = logging.getLogger(__name__)

__all__ = ["EvaluateArguments", "run_evaluation", "plot_confusion"]


@dataclass
class EvaluateArguments:
    model: str = field(metadata={"help": "A trained SFAR or ALT folder or Hub id."})
    dataset: str = field(metadata={"help": "A video dataset folder (build_dataset.py) or Hub id."})
    split: str = field(default="test")
    subtexts: str | None = field(
        default=None,
        metadata={
            "help": "SFAR: sub-texts of the dataset's classes, replacing the model's label set (ALT needs none)."
        },
    )
    output_dir: str | None = field(default=None, metadata={"help": "Default: <model>/eval-<dataset name>."})
    num_clips: int = field(default=1)
    num_crops: int = field(default=1)
    batch_size: int = field(default=8)
    num_workers: int = field(default=0)
    group_columns: list[str] = field(default_factory=list, metadata={"help": "Also score these columns' subsets."})
    strict: bool = field(
        default=False, metadata={"help": "Stop on a missing or corrupt video (before or during) instead of skip."}
    )
    revision: str | None = field(default=None)
    dtype: str = field(
        default="float32", metadata={"help": "float32 or bfloat16 (the label set is encoded in float32 first)."}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (the Trainer's torch_compile)."})
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "The model's attention (eager, sdpa, sfar_sdpa, ...). Default: sfar_sdpa with --dtype bfloat16 "
            "(SFAR's bfloat16 CPU attention; SDPA elsewhere), transformers' default with float32."
        },
    )


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


def run_evaluation(args: EvaluateArguments) -> dict[str, float]:
    """
    Load the model (`args.model`) and the dataset's split, check every video as the evaluation will load it, replace
    the label set when the dataset's classes differ (zero-shot: `args.subtexts` must cover them), and score it.

    Returns:
        The metrics (`eval_top1`/`eval_top5` or `eval_mAP`, their subsets, the skipped and failed video counts).

    Raises:
        ValueError / FileNotFoundError: a bad argument, model, dataset or sub-text set, named, before any video is
            predicted.
    """
    if args.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"--dtype must be float32 or bfloat16, got {args.dtype!r}")
    attn_implementation = args.attn_implementation
    # the model first: a folder without safetensors weights fails before the videos are checked
    check_model_source(args.model, "--model")
    alt = isinstance(AutoConfig.from_pretrained(args.model, revision=args.revision), AltConfig)
    if attn_implementation is None and args.dtype == "bfloat16" and not alt:
        attn_implementation = "sfar_sdpa"  # chosen by name: SFAR's blocked attention for bfloat16 on a CPU
    model = (AltForVideoClassification if alt else SfarForVideoClassification).from_pretrained(
        args.model, revision=args.revision, use_safetensors=True, attn_implementation=attn_implementation
    )
    processor = SfarProcessor.from_pretrained(args.model, revision=args.revision)
    dataset = load_video_dataset(args.dataset, args.split)
    labels, multi_label = dataset_labels(dataset)
    check_dataset(dataset, args.split, len(labels), multi_label)
    # The videos as they are now, loaded as the evaluation will load them (reader, frames, views).
    checker = VideoTransform(
        processor.video_processor, False, len(labels), multi_label, num_clips=args.num_clips, num_crops=args.num_crops
    )
    dataset, skipped = check_videos(
        with_row_index(dataset), args.split, checker.load, strict=args.strict, num_workers=args.num_workers
    )
    if len(dataset) == 0:
        raise ValueError(f"split {args.split!r} of {args.dataset} has no usable video")
    own = list(model.config.id2label.values())
    if alt and args.subtexts is not None:
        raise ValueError("--subtexts is SFAR's; an ALT model keeps its entity corpus and needs only the class names")
    if alt and labels != own:  # zero-shot: the classes change, the entity corpus stays
        logger.info("zero-shot: replacing the model's %d labels by the dataset's %d", len(own), len(labels))
        entities = model.config.entities if model.config.use_entity_corpus else None
        model.set_label_set(labels, processor.tokenizer, entities)
    elif not alt and (args.subtexts is not None or labels != own):
        if args.subtexts is None and model.config.uses_subtexts:
            raise ValueError(
                f"the dataset's classes differ from the model's label set: pass --subtexts for {args.dataset}"
            )
        subtexts = subtexts_for_labels(labels, args.subtexts, False, f"classes of {args.dataset}")
        logger.info("zero-shot: replacing the model's %d labels by the dataset's %d", len(own), len(labels))
        model.set_label_set(labels, processor.tokenizer, subtexts)

    model = model.to(getattr(torch, args.dtype))
    output_dir = args.output_dir or os.path.join(args.model, f"eval-{os.path.basename(os.path.normpath(args.dataset))}")
    log = BadVideoLog(os.path.join(output_dir, "bad_videos.jsonl"))
    log.reset()
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=output_dir,
            per_device_eval_batch_size=args.batch_size,
            dataloader_num_workers=args.num_workers,
            remove_unused_columns=False,
            report_to="none",
            torch_compile=args.compile,
        ),
        compute_metrics=compute_metrics,
    )
    metrics, logits, label_ids = evaluate_split(
        trainer,
        dataset,
        args.split,
        processor.video_processor,
        len(labels),
        multi_label,
        args.num_clips,
        args.num_crops,
        tuple(args.group_columns),
        log=log,
        strict=args.strict,
    )
    metrics[metric_key(EVAL_PREFIX, "skipped_videos")] = len(skipped)
    if trainer.is_world_process_zero():
        os.makedirs(output_dir, exist_ok=True)
        failed = {video: reason for video, reason in log.read(f"eval:{args.split}").values()}
        problems = {"skipped_before_evaluation": dict(skipped), "failed_during_evaluation": failed}
        with open(os.path.join(output_dir, "eval_results.json"), "w") as f:
            json.dump({**metrics, "bad_videos": problems}, f, indent=2)
        if not multi_label and len(labels) <= 50:
            plot_confusion(logits, label_ids, labels, os.path.join(output_dir, "confusion.png"))
    return metrics
