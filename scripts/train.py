"""Train SFAR with the Trainer, on one process or many (`accelerate launch scripts/train.py ...`).

    python datasets_scripts/build_dataset.py ucf101 --root /data/UCF101 --split 1 --output data/ucf101
    accelerate launch scripts/train.py --dataset data/ucf101 --subtexts org/sfar-subtexts-ucf101 \\
        --base openai/clip-vit-base-patch16 --output_dir runs/ucf101 --push_to_hub org/sfar-vitb16-ucf101

Supervised by default; `--few_shot K` trains on K videos per class (seeded); `--zero_shot_dataset` (with
`--zero_shot_subtexts`) evaluates the trained model on another dataset's label set after training. `--resume`
continues a killed run from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from datasets_scripts.subtext_dataset import load_subtexts
from modeling_sfar import SFAR_VARIANTS, SfarForVideoClassification, SfarProcessor, convert_clip_to_sfar
from modeling_sfar.training import (
    EpochCallback,
    SfarTrainer,
    VideoTransform,
    check_dataset,
    check_videos,
    compute_metrics,
    dataset_labels,
    evaluate_split,
    few_shot_subset,
    load_video_dataset,
    with_row_index,
)

logger = logging.getLogger("sfar.train")


@dataclass
class ModelArguments:
    base: str = field(
        default="openai/clip-vit-base-patch16", metadata={"help": "CLIP checkpoint to start from (Hub id or folder)."}
    )
    model: str | None = field(
        default=None, metadata={"help": "An SFAR checkpoint to start from instead of CLIP (its label set is replaced)."}
    )
    variant: str = field(
        default="sfar", metadata={"help": "clip, temporal, fine, coarse, sfar (coarse+fine) or actionclip."}
    )
    num_frames: int = field(default=8, metadata={"help": "Frames per video."})
    num_temporal_layers: int | None = field(default=None, metadata={"help": "Temporal layers (variant default: 6)."})
    revision: str | None = field(default=None, metadata={"help": "Revision of --base."})


@dataclass
class DataArguments:
    dataset: str = field(metadata={"help": "A video dataset: a folder from build_dataset.py or a Hub id."})
    subtexts: str | None = field(
        default=None, metadata={"help": "Sub-texts: a sub-text dataset (folder or Hub id) or a JSON label -> list."}
    )
    train_split: str = field(default="train")
    eval_split: str | None = field(default="test", metadata={"help": "Split to evaluate on; empty to skip."})
    few_shot: int = field(default=0, metadata={"help": "K videos per class (0: all)."})
    few_shot_seed: int = field(default=0)
    zero_shot_dataset: str | None = field(default=None, metadata={"help": "Evaluate on this dataset's labels."})
    zero_shot_subtexts: str | None = field(default=None)
    zero_shot_split: str = field(default="test")
    num_clips: int = field(default=1, metadata={"help": "Temporal clips per video at evaluation."})
    num_crops: int = field(default=1, metadata={"help": "Spatial crops per clip at evaluation (1 or 3)."})
    flip_probability: float | None = field(
        default=None, metadata={"help": "Horizontal flip rate in training (default 0.5; 0 for direction classes)."}
    )
    group_columns: list[str] = field(
        default_factory=list, metadata={"help": "Also score the subsets these columns define (e.g. ambiguous)."}
    )
    augment: bool = field(
        default=True, metadata={"help": "Random frames and crops in training; false: the evaluation transform."}
    )
    crop_area_min: float | None = field(
        default=None, metadata={"help": "Smallest area share of the training crop (default 0.08, BIKE)."}
    )
    strict: bool = field(default=False, metadata={"help": "Stop on a missing or corrupt video instead of skip."})
    check_videos: bool = field(default=True, metadata={"help": "Open every video before training."})


@dataclass
class SfarTrainingArguments(TrainingArguments):
    learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of the new modules."})
    vision_learning_rate: float = field(default=5e-6, metadata={"help": "Learning rate of the CLIP vision tower."})
    weight_decay: float = field(default=0.2)
    num_train_epochs: float = field(default=30)
    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=5 / 30, metadata={"help": "Warm-up steps, or a fraction of all steps."})
    remove_unused_columns: bool = field(default=False)
    save_strategy: str = field(default="epoch")
    save_total_limit: int | None = field(default=2)
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in output_dir."})
    push_to_hub: str | None = field(  # type: ignore[assignment]
        default=None, metadata={"help": "Push the trained model to this Hub repo at the end (with our card)."}
    )

    def __post_init__(self):
        # The Trainer's own pushing would write its card (without pipeline_tag); we push once, at the end.
        self.push_repo, self.push_to_hub = self.push_to_hub, False
        super().__post_init__()


def build_model(model_args: ModelArguments, labels: list[str], subtexts, multi_label: bool):
    """SFAR from CLIP (`--base`) or from an SFAR checkpoint (`--model`), with the dataset's label set."""
    problem = "multi_label_classification" if multi_label else "single_label_classification"
    if model_args.model is not None:
        model = SfarForVideoClassification.from_pretrained(model_args.model, use_safetensors=True)
        processor = SfarProcessor.from_pretrained(model_args.model)
        model.config.problem_type = problem
        model.set_label_set(labels, processor.tokenizer, subtexts)
        return model, processor
    extra = {}
    if subtexts:  # N is the sub-text set's; a class with another count is refused by the model, named
        extra["num_subtexts"] = len(next(iter(subtexts.values())))
    if model_args.num_temporal_layers is not None:  # the depth of a temporal module; "clip" has none
        if SFAR_VARIANTS[model_args.variant].get("num_temporal_layers", 1) > 0:
            extra["num_temporal_layers"] = model_args.num_temporal_layers
    return convert_clip_to_sfar(
        model_args.base,
        labels,
        subtexts,
        variant=model_args.variant,
        revision=model_args.revision,
        num_frames=model_args.num_frames,
        problem_type=problem,
        **extra,
    )


def subtexts_for(labels: list[str], source: str | None, needed: bool, what: str) -> dict | None:
    """Load the sub-texts of `source` and check that they cover `labels` (an error lists the classes without)."""
    if source is None:
        if needed:
            raise ValueError(f"this variant needs sub-texts for the {what}: pass --subtexts")
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


def prepare_split(dataset, split, data_args, num_classes, multi_label, main_process_first):
    check_dataset(dataset, split, num_classes, multi_label)
    if data_args.check_videos:
        with main_process_first(desc=f"checking {split} videos"):
            dataset = check_videos(dataset, split, strict=data_args.strict)
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} has no usable video")
    return dataset


def zero_shot(trainer, processor, data_args, multi_label: bool, main_process_first, views) -> dict:
    """Replace the trained model's label set by another dataset's and evaluate on it (metrics `zero_shot_*`)."""
    dataset = load_video_dataset(data_args.zero_shot_dataset, data_args.zero_shot_split)
    labels, zs_multi_label = dataset_labels(dataset)
    if zs_multi_label != multi_label:
        raise ValueError("zero-shot evaluation needs a dataset of the same kind (single- or multi-label)")
    model = trainer.model
    subtexts = subtexts_for(
        labels, data_args.zero_shot_subtexts, model.config.uses_subtexts, f"classes of {data_args.zero_shot_dataset}"
    )
    dataset = prepare_split(dataset, data_args.zero_shot_split, data_args, len(labels), multi_label, main_process_first)
    model.set_label_set(labels, processor.tokenizer, subtexts)
    scores, _, _ = evaluate_split(
        trainer,
        dataset,
        data_args.zero_shot_split,
        processor.video_processor,
        len(labels),
        multi_label,
        prefix="zero_shot",
        **views,
    )
    return scores


def main(argv: list[str] | None = None, callbacks: list | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataArguments, SfarTrainingArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(os.path.abspath(sys.argv[1]))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # Our own progress lines on the main process; the libraries at the level that `--log_level` gives them.
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    for name in ("sfar", "modeling_sfar"):
        logging.getLogger(name).setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    set_seed(training_args.seed)

    # Data and label set, checked before any model is built.
    dataset = load_video_dataset(data_args.dataset)
    train = dataset[data_args.train_split] if data_args.train_split in dataset else None
    if train is None:
        raise ValueError(f"{data_args.dataset} has no split {data_args.train_split!r}; it has {sorted(dataset)}")
    labels, multi_label = dataset_labels(train)
    from modeling_sfar import SfarConfig

    needs_subtexts = SfarConfig.from_variant(model_args.variant).uses_subtexts and model_args.model is None
    subtexts = subtexts_for(labels, data_args.subtexts, needs_subtexts, f"classes of {data_args.dataset}")
    first = training_args.main_process_first
    train = prepare_split(train, data_args.train_split, data_args, len(labels), multi_label, first)
    if data_args.few_shot:
        if multi_label:
            raise ValueError("few-shot training is defined for single-label datasets")
        train = few_shot_subset(train, data_args.few_shot, data_args.few_shot_seed, len(labels))
    evaluation = None
    if data_args.eval_split:
        if data_args.eval_split not in dataset:
            raise ValueError(f"{data_args.dataset} has no split {data_args.eval_split!r}; it has {sorted(dataset)}")
        evaluation = prepare_split(
            dataset[data_args.eval_split], data_args.eval_split, data_args, len(labels), multi_label, first
        )

    model, processor = build_model(model_args, labels, subtexts, multi_label)
    video_processor = processor.video_processor
    if data_args.flip_probability is not None:
        video_processor.flip_probability = data_args.flip_probability
    if data_args.crop_area_min is not None:
        video_processor.crop_area_min = data_args.crop_area_min
    train = with_row_index(train)
    transform = VideoTransform(video_processor, data_args.augment, len(labels), multi_label, seed=training_args.seed)
    train.set_transform(transform)
    logger.info(
        "training %s on %d videos of %d classes, on %d process(es)",
        model_args.variant,
        len(train),
        len(labels),
        training_args.world_size,
    )

    trainer = SfarTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        compute_metrics=compute_metrics,
        processing_class=processor,
        callbacks=[EpochCallback(transform), *(callbacks or [])],
        vision_learning_rate=training_args.vision_learning_rate,
    )
    checkpoint = None
    if training_args.resume:
        if os.path.isdir(training_args.output_dir):
            checkpoint = get_last_checkpoint(training_args.output_dir)
        logger.info("resuming from %s", checkpoint or "nothing: no checkpoint yet")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.save_state()
    metrics = dict(result.metrics)

    views = {"num_clips": data_args.num_clips, "num_crops": data_args.num_crops}
    if evaluation is not None:
        scores, _, _ = evaluate_split(
            trainer,
            evaluation,
            data_args.eval_split,
            video_processor,
            len(labels),
            multi_label,
            group_columns=tuple(data_args.group_columns),
            **views,
        )
        metrics.update(scores)
    if data_args.zero_shot_dataset:
        metrics.update(zero_shot(trainer, processor, data_args, multi_label, first, views))
    if trainer.is_world_process_zero():
        with open(os.path.join(training_args.output_dir, "all_results.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        logger.info("results: %s", json.dumps(metrics))
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from push_to_hub import model_card, push_model

        repo_id = training_args.push_repo or f"local/{os.path.basename(os.path.normpath(training_args.output_dir))}"
        base = model_args.model or model_args.base
        card = model_card(training_args.output_dir, repo_id, base, data_args.dataset, metrics,
                          views=f"{data_args.num_clips} clip(s) x {data_args.num_crops} crop(s)")  # fmt: skip
        card.save(os.path.join(training_args.output_dir, "README.md"))  # our card, also for a later push
        if training_args.push_repo:
            sent = push_model(training_args.output_dir, training_args.push_repo)
            logger.info("pushed %d files to %s", len(sent), training_args.push_repo)
    return metrics


if __name__ == "__main__":
    main()
