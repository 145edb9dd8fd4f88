"""The arguments of a training run, as `HfArgumentParser` dataclasses: what every model family takes
(`ModelArguments`, `DataArguments`, `VideoTrainingArguments`), with the family's own dataclass beside them
(`modeling_sfar.families`), and `parse_training_args`, which picks the family by `--model_type` before parsing so that
its flags and its recipe's defaults are the ones a command line (and `--help`) sees.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import SaveStrategy

from ..conversion.clip import CLIP_VIT_B16
from ..families import FAMILIES, ModelFamily, get_family, unknown_flags_message
from ..hub.sources import check_repo_id

__all__ = [
    "ModelArguments",
    "DataArguments",
    "VideoTrainingArguments",
    "TrainingRun",
    "parse_training_args",
]


@dataclass
class ModelArguments:
    model_type: str = field(
        default="sfar",
        metadata={
            "help": f"The model family: {', '.join(FAMILIES)}. Its own flags and its recipe's defaults follow it "
            "(`train.py --model_type alt --help` lists ALT's)."
        },
    )
    base: str = field(default=CLIP_VIT_B16, metadata={"help": "CLIP checkpoint to start from (Hub id or folder)."})
    model: str | None = field(
        default=None,
        metadata={"help": "A checkpoint of --model_type to start from instead of CLIP (its label set is replaced)."},
    )
    num_frames: int = field(default=8, metadata={"help": "Frames per video."})
    revision: str | None = field(default=None, metadata={"help": "Revision of --base."})
    token_merging_r: int | None = field(
        default=None, metadata={"help": "Tokens merged per vision block (default: the family's; SFAR 0, ALT 8)."}
    )


@dataclass
class DataArguments:
    dataset: str = field(metadata={"help": "A video dataset: a folder from build_dataset.py or a Hub id."})
    train_split: str = field(default="train", metadata={"help": "The split to train on."})
    eval_split: str | None = field(
        default=None,
        metadata={
            "help": "The split to evaluate on (default: the dataset's `test` split, else its `validation` split); "
            "an empty string skips evaluation."
        },
    )
    few_shot: int = field(default=0, metadata={"help": "K videos per class (0: all)."})
    few_shot_seed: int = field(default=0, metadata={"help": "The seed that draws the few-shot videos."})
    zero_shot_dataset: str | None = field(
        default=None, metadata={"help": "After training, evaluate on this dataset's label set (zero-shot)."}
    )
    zero_shot_split: str | None = field(
        default=None, metadata={"help": "The zero-shot dataset's split (default: its test, else validation, split)."}
    )
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
    strict: bool = field(
        default=False,
        metadata={"help": "Stop on a missing or corrupt video (before or during the run) instead of skip/replace."},
    )
    check_videos: bool = field(
        default=True, metadata={"help": "Load every video before training, as the run will (reader and sampling)."}
    )


@dataclass
class VideoTrainingArguments(TrainingArguments):
    """transformers' `TrainingArguments` with SFAR's defaults (docs/method.md section 7; a family's recipe replaces
    them on the command line) and the settings of the run's own parts."""

    learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of the new modules."})
    vision_learning_rate: float = field(default=5e-6, metadata={"help": "Learning rate of the CLIP vision tower."})
    weight_decay: float = field(
        default=0.2, metadata={"help": "AdamW weight decay of weights (never of biases, norms or positions)."}
    )
    num_train_epochs: float = field(default=30, metadata={"help": "Epochs to train."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "The learning-rate schedule after warm-up (transformers' names)."}
    )
    warmup_steps: float = field(default=5 / 30, metadata={"help": "Warm-up steps, or a fraction of all steps."})
    mixup_alpha: float = field(
        default=0.0, metadata={"help": "Mixup's Beta(alpha, alpha) in training; 0: off (ALT's recipe: 0.8)."}
    )
    cutmix_alpha: float = field(
        default=0.0, metadata={"help": "CutMix's Beta(alpha, alpha) in training; 0: off (ALT's recipe: 1.0)."}
    )
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "With both on, the share of batches mixed by CutMix instead of Mixup."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every dataset column (the video transform reads the video paths)."}
    )
    # Only `labels` holds labels: the forward's `label_set` (an encoded label set) is an input, which the Trainer
    # would otherwise take for a label because of its name.
    label_names: list[str] | None = field(
        default_factory=lambda: ["labels"], metadata={"help": "The inputs the Trainer treats as labels."}
    )
    save_strategy: str | None = field(
        default=None,
        metadata={
            "help": "When to save a checkpoint: epoch, steps or no (default: steps when --save_steps is given, "
            "else epoch)."
        },
    )
    save_steps: float | None = field(
        default=None,
        metadata={"help": "Save every this many steps (or this fraction of all steps); turns step saving on."},
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept in output_dir."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in output_dir."})
    push_to_hub: str | None = field(  # type: ignore[assignment]
        default=None, metadata={"help": "Push the trained model to this Hub repo at the end (with our card)."}
    )

    def __post_init__(self):
        # The Trainer's own pushing would write its card (without pipeline_tag); we push once, at the end.
        self.push_repo, self.push_to_hub = self.push_to_hub, False
        if self.push_repo:
            check_repo_id(self.push_repo, "--push_to_hub")  # now, not after the training
        # A step count saves by steps; an explicit other strategy with one would silently ignore it.
        strategy = self.save_strategy.value if isinstance(self.save_strategy, SaveStrategy) else self.save_strategy
        if self.save_steps is not None and strategy not in (None, "steps"):
            raise ValueError(
                f"--save_steps {self.save_steps:g} has no effect with --save_strategy {strategy}: drop one of them "
                "(--save_steps alone saves every that many steps)"
            )
        if strategy is None:
            self.save_strategy = "steps" if self.save_steps is not None else "epoch"
        if self.save_steps is None:
            self.save_steps = 500  # transformers' default, unused by epoch saving
        super().__post_init__()


@dataclass
class TrainingRun:
    """The parsed arguments of one run: the family, its own arguments and those every family takes."""

    family: ModelFamily
    model: ModelArguments
    family_args: Any
    data: DataArguments
    training: VideoTrainingArguments

    def __iter__(self):  # `model_args, family_args, data_args, training_args = run`
        return iter((self.model, self.family_args, self.data, self.training))


def _family_of(args: list[str] | dict) -> ModelFamily:
    """The family a command line (or a dict of arguments) asks for, by `--model_type` (default sfar)."""
    if isinstance(args, dict):
        return get_family(args.get("model_type", "sfar"))
    # No abbreviations: `--model` must not be read as `--model_type`.
    scan = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    scan.add_argument("--model_type", default="sfar")
    return get_family(scan.parse_known_args(args)[0].model_type)


def _parser(family: ModelFamily) -> HfArgumentParser:
    parser = HfArgumentParser((ModelArguments, family.arguments, DataArguments, VideoTrainingArguments))
    parser.set_defaults(**family.recipe)
    return parser


def parse_training_args(argv: list[str] | None = None) -> TrainingRun:
    """
    The run's arguments from a command line (`argv`, default `sys.argv[1:]`), or from a JSON file when the command
    line is only that file's path (as transformers' example scripts accept). The family (`--model_type`) is read
    first: its dataclass joins the parser and its recipe replaces SFAR's defaults, flags given explicitly winning.

    Raises:
        ValueError: an unknown `--model_type`, or a flag that is another family's (naming it and its family).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 1 and args[0].endswith(".json"):
        with open(os.path.abspath(args[0])) as f:
            values = json.load(f)
        family = _family_of(values)
        parsed = _parser(family).parse_dict({**family.recipe, **values})
    else:
        family = _family_of(args)
        parsed = _parser(family).parse_args_into_dataclasses(args=args, return_remaining_strings=True)
        *parsed, remaining = parsed
        if remaining:
            message = unknown_flags_message(family, remaining, f"train.py --model_type {family.name}")
            raise ValueError(message)
    model_args, family_args, data_args, training_args = parsed
    return TrainingRun(family, model_args, family_args, data_args, training_args)
