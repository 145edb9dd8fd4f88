"""The training run that `scripts/train.py`, the demo and the ablation share: its arguments as dataclasses
(`ModelArguments`, `DataArguments`, `SfarTrainingArguments`, parsed by `HfArgumentParser`) and `run_training`, which
checks the data, builds the model, trains it with the Trainer (on one process or many under `accelerate launch`),
evaluates it, writes `all_results.json` and the model card, and returns the metrics.

Supervised by default; `few_shot` trains on K videos per class (seeded); `zero_shot_dataset` (with
`zero_shot_subtexts`) evaluates the trained model on another dataset's label set after training. `resume` continues
a killed run from its last checkpoint. `model_type="alt"` trains ALT (docs/alt.md) instead of SFAR: converted from CLIP
with an entity corpus (`entities`, or none with `no_entity_corpus`), with ALT's recipe (`ALT_RECIPE`) as the defaults
of the command line. Training augmentation (`flip_probability`, `crop_area_min`) is passed to the
training transform, never written onto the video processor that is saved with the model; Mixup / CutMix and label
smoothing (`mixup_alpha`, `cutmix_alpha`, `mixup_switch_prob`, `label_smoothing_factor`: ALT's recipe, off for SFAR)
are applied by the training collator (`MixingCollator`) as soft targets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field

import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed

from ..conversion.alt import convert_clip_to_alt
from ..conversion.sfar import CLIP_VIT_B16, convert_clip_to_sfar
from ..data.entities import entity_texts
from ..data.subtexts import subtexts_for_labels
from ..evaluation.metrics import ZERO_SHOT_PREFIX
from ..hub.cards import is_hub_id, model_card, push_model
from ..remote_code.configuration_alt import AltConfig
from ..remote_code.configuration_sfar import SFAR_VARIANTS, SfarConfig
from ..remote_code.modeling_alt import AltForVideoClassification
from ..remote_code.modeling_sfar import SfarForVideoClassification
from ..remote_code.processing_sfar import SfarProcessor
from .trainer import (
    BadVideoLog,
    EpochCallback,
    MixingCollator,
    SfarTrainer,
    VideoTransform,
    _looks_local,
    check_dataset,
    check_model_source,
    check_videos,
    compute_metrics,
    dataset_labels,
    evaluate_split,
    few_shot_subset,
    last_complete_checkpoint,
    load_video_dataset,
    with_row_index,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_TYPES",
    "ALT_RECIPE",
    "ALT_FEW_SHOT_DECODER_SCALE",
    "ModelArguments",
    "DataArguments",
    "SfarTrainingArguments",
    "parse_training_args",
    "training_augmentation",
    "run_training",
    "warn_if_fewer_processes",
]

MODEL_TYPES = ("sfar", "alt")
# ALT's training recipe (its section 3.4): the defaults of the command line when `--model_type alt`; a flag given
# explicitly wins. Library callers building `SfarTrainingArguments` themselves pass them: `SfarTrainingArguments(
# **ALT_RECIPE, output_dir=...)`.
# Its augmentation follows X-CLIP (section 3.4: "RandomFlip, MultiScaleCrop, Mixup and Label smoothing, following the
# manner of X-CLIP"): X-CLIP's defaults (its utils/config.py AUG section, which its configs keep) are Mixup alpha 0.8,
# CutMix alpha 1.0, CutMix in half the batches, label smoothing 0.1 (`MixingCollator`; docs/alt.md).
ALT_RECIPE = {
    "learning_rate": 8e-5,
    "vision_learning_rate": 8e-6,
    "weight_decay": 0.001,
    "num_train_epochs": 30,
    "warmup_steps": 5 / 30,
    "lr_scheduler_type": "cosine",
    "mixup_alpha": 0.8,
    "cutmix_alpha": 1.0,
    "mixup_switch_prob": 0.5,
    "label_smoothing_factor": 0.1,
}
# Few-shot ALT: "the learning rate of the multi-modal video decoder is scaled up by ten times" (section 3.4), unless
# `decoder_learning_rate` is given.
ALT_FEW_SHOT_DECODER_SCALE = 10


@dataclass
class ModelArguments:
    base: str = field(default=CLIP_VIT_B16, metadata={"help": "CLIP checkpoint to start from (Hub id or folder)."})
    model: str | None = field(
        default=None,
        metadata={"help": "A checkpoint of --model_type to start from instead of CLIP (its label set is replaced)."},
    )
    variant: str = field(
        default="sfar", metadata={"help": "clip, temporal, fine, coarse, sfar (coarse+fine) or actionclip."}
    )
    num_frames: int = field(default=8, metadata={"help": "Frames per video."})
    num_temporal_layers: int | None = field(default=None, metadata={"help": "Temporal layers (variant default: 6)."})
    revision: str | None = field(default=None, metadata={"help": "Revision of --base."})
    model_type: str = field(
        default="sfar", metadata={"help": "sfar, or alt (Align before Adapt; its recipe becomes the default)."}
    )
    entities: str | None = field(
        default=None,
        metadata={"help": "ALT: the entity corpus, a folder from datasets_scripts/entity_corpus.py or a Hub id."},
    )
    entity_kinds: list[str] = field(
        default_factory=list, metadata={"help": "ALT: keep only entities of these kinds (object, body part, ...)."}
    )
    no_entity_corpus: bool = field(
        default=False, metadata={"help": "ALT without a corpus: learnable queries (the paper's Table C3 baseline)."}
    )
    token_merging_r: int | None = field(
        default=None, metadata={"help": "Tokens merged per vision block (default: ALT 8, SFAR 0)."}
    )
    num_decoder_layers: int | None = field(default=None, metadata={"help": "ALT: video decoder blocks (default 4)."})


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
    strict: bool = field(
        default=False,
        metadata={"help": "Stop on a missing or corrupt video (before or during the run) instead of skip/replace."},
    )
    check_videos: bool = field(
        default=True, metadata={"help": "Load every video before training, as the run will (reader and sampling)."}
    )


@dataclass
class SfarTrainingArguments(TrainingArguments):
    learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of the new modules."})
    vision_learning_rate: float = field(default=5e-6, metadata={"help": "Learning rate of the CLIP vision tower."})
    weight_decay: float = field(default=0.2)
    num_train_epochs: float = field(default=30)
    lr_scheduler_type: str = field(default="cosine")
    warmup_steps: float = field(default=5 / 30, metadata={"help": "Warm-up steps, or a fraction of all steps."})
    decoder_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "ALT: learning rate of the video decoder (default: --learning_rate; 10x it with --few_shot)."
        },
    )
    mixup_alpha: float = field(
        default=0.0, metadata={"help": "Mixup's Beta(alpha, alpha) in training; 0: off (ALT's default 0.8)."}
    )
    cutmix_alpha: float = field(
        default=0.0, metadata={"help": "CutMix's Beta(alpha, alpha) in training; 0: off (ALT's default 1.0)."}
    )
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "With both on, the share of batches mixed by CutMix instead of Mixup."}
    )
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


def check_model_arguments(model_args: ModelArguments, data_args: DataArguments) -> None:
    """
    Refuse flags that do not belong to the model type, and an ALT run without its corpus choice, naming them.

    Raises:
        ValueError: an unknown `--model_type`; an SFAR flag with `alt` or an ALT flag with `sfar`; ALT with neither
            `--entities` nor `--no_entity_corpus` (unless `--model` brings its own), or with both.
    """
    kind = model_args.model_type
    if kind not in MODEL_TYPES:
        raise ValueError(f"--model_type must be one of {list(MODEL_TYPES)}, got {kind!r}")
    if kind == "sfar":
        alt_only = {
            "--entities": model_args.entities is not None,
            "--entity_kinds": bool(model_args.entity_kinds),
            "--no_entity_corpus": model_args.no_entity_corpus,
            "--num_decoder_layers": model_args.num_decoder_layers is not None,
        }
        given = [flag for flag, set_ in alt_only.items() if set_]
        if given:
            raise ValueError(f"{', '.join(given)}: ALT's, not SFAR's; add --model_type alt")
        return
    sfar_only = {
        "--subtexts": data_args.subtexts is not None,
        "--zero_shot_subtexts": data_args.zero_shot_subtexts is not None,
        "--variant": model_args.variant != "sfar",
        "--num_temporal_layers": model_args.num_temporal_layers is not None,
    }
    given = [flag for flag, set_ in sfar_only.items() if set_]
    if given:
        raise ValueError(f"{', '.join(given)}: SFAR's, not ALT's (ALT reads an entity corpus, --entities)")
    if model_args.model is not None:
        shaping = [
            f"--{name}" for name in ("token_merging_r", "num_decoder_layers") if getattr(model_args, name) is not None
        ]
        if shaping:
            raise ValueError(f"{', '.join(shaping)} shape a new model; --model {model_args.model} brings its own")
    if model_args.entities is not None and model_args.no_entity_corpus:
        raise ValueError("--entities and --no_entity_corpus exclude each other: ALT with or without a corpus")
    if model_args.entity_kinds and model_args.entities is None:
        raise ValueError("--entity_kinds selects entities of --entities: give the corpus too")
    if model_args.entities is None and not model_args.no_entity_corpus and model_args.model is None:
        raise ValueError(
            "ALT aligns frames with an entity corpus: give --entities (a folder from "
            "datasets_scripts/entity_corpus.py or a Hub dataset id), or --no_entity_corpus for ALT without one"
        )


def load_entities(model_args: ModelArguments) -> list[str] | None:
    """The entity texts of `--entities` (of `--entity_kinds` only, when given), or None without the flag.

    Raises:
        FileNotFoundError: `--entities` is a local path that does not exist.
        ValueError: the source is not an entity corpus or has no entities (of those kinds), named.
    """
    source = model_args.entities
    if source is None:
        return None
    if not os.path.isdir(source) and (os.path.exists(source) or _looks_local(source)):
        kind = "a file, not an entity corpus folder" if os.path.exists(source) else "no such folder"
        raise (ValueError if os.path.exists(source) else FileNotFoundError)(f"--entities {source}: {kind}")
    try:
        return entity_texts(source, model_args.entity_kinds or None)
    except ValueError as error:
        raise ValueError(f"--entities {source}: {error}") from error


def build_alt_model(model_args: ModelArguments, labels: list[str], entities: list[str] | None):
    """ALT from CLIP (`--base`) or from an ALT checkpoint (`--model`, its entities kept unless `--entities` is given),
    with the dataset's label set."""
    if model_args.model is not None:
        model = AltForVideoClassification.from_pretrained(model_args.model, use_safetensors=True)
        processor = SfarProcessor.from_pretrained(model_args.model)
        if model_args.no_entity_corpus and model.config.use_entity_corpus:
            raise ValueError(
                f"--model {model_args.model} aligns with an entity corpus; --no_entity_corpus cannot drop it"
            )
        if entities is None and model.config.use_entity_corpus:
            entities = model.config.entities
        model.set_label_set(labels, processor.tokenizer, entities)
        return model, processor
    extra = {}
    for name in ("token_merging_r", "num_decoder_layers"):
        if getattr(model_args, name) is not None:
            extra[name] = getattr(model_args, name)
    return convert_clip_to_alt(
        model_args.base,
        labels,
        entities,
        revision=model_args.revision,
        num_frames=model_args.num_frames,
        use_entity_corpus=not model_args.no_entity_corpus,
        **extra,
    )


def check_checkpoint_type(source: str, model_type: str) -> None:
    """A local `--model` folder of the other model type is refused, named (a Hub id is checked when it loads)."""
    path = os.path.join(source, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        found = json.load(f).get("model_type")
    expected = AltConfig.model_type if model_type == "alt" else SfarConfig.model_type
    if found != expected:
        raise ValueError(
            f"--model {source} is a {found!r} checkpoint; --model_type {model_type} trains {expected!r} models"
        )


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
    if model_args.token_merging_r is not None:
        extra["token_merging_r"] = model_args.token_merging_r
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


def training_augmentation(
    training_args: SfarTrainingArguments, data_args: DataArguments, alt: bool, num_classes: int, multi_label: bool
) -> tuple[MixingCollator | None, float | None]:
    """
    The training collator of Mixup / CutMix / label smoothing (None when all are off) and the video decoder's
    learning rate (None: the new modules'; few-shot ALT: `ALT_FEW_SHOT_DECODER_SCALE` x `learning_rate` unless
    `decoder_learning_rate` is given).

    Raises:
        ValueError: mixing or smoothing on a multi-label dataset, `decoder_learning_rate` for SFAR, or a bad value,
            each naming its flag.
    """
    mixing = {"--mixup_alpha": training_args.mixup_alpha, "--cutmix_alpha": training_args.cutmix_alpha,
              "--label_smoothing_factor": training_args.label_smoothing_factor}  # fmt: skip
    if multi_label and any(mixing.values()):
        given = ", ".join(flag for flag, value in mixing.items() if value)
        raise ValueError(
            f"{given}: soft targets for single-label datasets; {data_args.dataset} is multi-label (set them to 0)"
        )
    if training_args.decoder_learning_rate is not None and not alt:
        raise ValueError("--decoder_learning_rate: ALT's (its video decoder), not SFAR's; add --model_type alt")
    collator = None
    if any(mixing.values()):
        try:
            collator = MixingCollator(
                num_classes,
                mixup_alpha=training_args.mixup_alpha,
                cutmix_alpha=training_args.cutmix_alpha,
                switch_prob=training_args.mixup_switch_prob,
                label_smoothing=training_args.label_smoothing_factor,
            )
        except ValueError as error:
            raise ValueError(f"--{error}") from error
    decoder_learning_rate = training_args.decoder_learning_rate
    if alt and data_args.few_shot and decoder_learning_rate is None:
        decoder_learning_rate = ALT_FEW_SHOT_DECODER_SCALE * training_args.learning_rate
        logger.info(
            "few-shot ALT: the video decoder trains at %g (%d x --learning_rate)",
            decoder_learning_rate,
            ALT_FEW_SHOT_DECODER_SCALE,
        )
    return collator, decoder_learning_rate


def prepare_split(dataset, split: str, data_args, transform: VideoTransform, num_workers: int):
    """
    Load every video of a split as the run will (`transform.load`: same reader, sampling and seeds) and drop those
    that fail, or stop with `--strict`. Returns the usable rows and the (video, reason) pairs dropped.
    """
    skipped = []
    if data_args.check_videos:
        logger.info("checking the %d videos of split %r", len(dataset), split)
        dataset, skipped = check_videos(
            dataset, split, transform.load, strict=data_args.strict, num_workers=num_workers
        )
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} has no usable video")
    return dataset, skipped


def zero_shot(trainer, processor, data_args, multi_label: bool, views, log, num_workers: int) -> dict:
    """Replace the trained model's label set by another dataset's and evaluate on it (metrics `zero_shot_*`)."""
    dataset = load_video_dataset(data_args.zero_shot_dataset, data_args.zero_shot_split)
    labels, zs_multi_label = dataset_labels(dataset)
    if zs_multi_label != multi_label:
        raise ValueError("zero-shot evaluation needs a dataset of the same kind (single- or multi-label)")
    model = trainer.model
    if isinstance(model.config, AltConfig):  # ALT keeps its entity corpus; only the classes change
        subtexts = model.config.entities if model.config.use_entity_corpus else None
    else:
        subtexts = subtexts_for_labels(
            labels,
            data_args.zero_shot_subtexts,
            model.config.uses_subtexts,
            f"classes of {data_args.zero_shot_dataset}",
        )
    split = data_args.zero_shot_split
    check_dataset(dataset, split, len(labels), multi_label)
    checker = VideoTransform(processor.video_processor, False, len(labels), multi_label, **views)
    dataset, skipped = prepare_split(with_row_index(dataset), split, data_args, checker, num_workers)
    model.set_label_set(labels, processor.tokenizer, subtexts)
    scores, _, _ = evaluate_split(
        trainer,
        dataset,
        split,
        processor.video_processor,
        len(labels),
        multi_label,
        prefix=ZERO_SHOT_PREFIX,
        log=log,
        strict=data_args.strict,
        **views,
    )
    scores["zero_shot_skipped_videos"] = len(skipped)
    return scores


def warn_if_fewer_processes(world_size: int) -> None:
    """
    `accelerate launch --num_processes N` without `--multi_gpu` on a machine without several GPUs starts one process
    and says nothing: warn when the launcher was asked for more processes than run. The request is read from the
    launcher's command line (Linux: /proc); elsewhere nothing is checked.
    """
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parent = [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return
    # `accelerate launch ...`, `accelerate-launch ...` or `python -m accelerate.commands.launch ...`
    start = None
    for i, part in enumerate(parent):
        name = os.path.basename(part)
        if name in ("accelerate-launch", "accelerate.commands.launch") or (
            part == "launch" and any(os.path.basename(p) == "accelerate" for p in parent[:i])
        ):
            start = i + 1
            break
    if start is None:
        return
    asked = None
    for i in range(start, len(parent)):
        part = parent[i]
        if part.endswith(".py"):  # the training script: what follows is its own arguments
            break
        if part in ("--num_processes", "--num-processes") and i + 1 < len(parent):
            asked = parent[i + 1]
        elif part.startswith(("--num_processes=", "--num-processes=")):
            asked = part.split("=", 1)[1]
    if asked is not None and asked.isdigit() and int(asked) > world_size:
        logger.warning(
            "accelerate launch was asked for %s processes but %d run: on a CPU add --multi_gpu and set "
            "ACCELERATE_USE_CPU=true (`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes %s ...`)",
            asked,
            world_size,
            asked,
        )


def report_bad_videos(log: BadVideoLog, scope: str, what: str) -> dict[str, str]:
    """Log the videos that failed during `what` (recorded under `scope`) and return video -> reason."""
    bad = {video: reason for video, reason in log.read(scope).values()}
    if bad:
        logger.warning(
            "%d video(s) failed during %s and were replaced: %s",
            len(bad),
            what,
            "; ".join(f"{video}: {reason}" for video, reason in bad.items()),
        )
    return bad


def parse_training_args(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, SfarTrainingArguments]:
    """The three argument dataclasses from a command line (`argv`, default `sys.argv[1:]`), or from a JSON file when
    the command line is only that file's path (as transformers' example scripts accept)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, SfarTrainingArguments))
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 1 and args[0].endswith(".json"):
        with open(os.path.abspath(args[0])) as f:
            values = json.load(f)
        if values.get("model_type") == "alt":  # ALT's recipe where the file sets nothing
            values = {**ALT_RECIPE, **values}
        return parser.parse_dict(values)
    # `--model_type` read first, so that ALT's recipe replaces SFAR's defaults and the flags given still win.
    # No abbreviations: `--model` must not be read as `--model_type`.
    scan = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    scan.add_argument("--model_type", default="sfar")
    if scan.parse_known_args(args)[0].model_type == "alt":
        parser.set_defaults(**ALT_RECIPE)
    return parser.parse_args_into_dataclasses(args=args)


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: SfarTrainingArguments,
    callbacks: list | None = None,
) -> dict:
    """
    Check the data and the label set, build the model (SFAR, or ALT with `model_type="alt"`), train, evaluate (and
    zero-shot evaluate), save the model, `all_results.json` and the model card to `training_args.output_dir`, and
    push when `push_to_hub` names a repo.

    Returns:
        The metrics: the Trainer's training metrics, `eval_top1`/`eval_top5` (or `eval_mAP`) and their subsets
        (see `modeling_sfar.evaluation.metrics.metric_key`), `zero_shot_*`, and the counts of skipped and failed videos.

    Raises:
        ValueError / FileNotFoundError: a bad argument, dataset, split or sub-text set, named, before any model is
            built.
    """
    # Our own progress lines on the main process; the libraries at the level that `--log_level` gives them.
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    for name in ("sfar", "modeling_sfar"):
        logging.getLogger(name).setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    set_seed(training_args.seed)

    warn_if_fewer_processes(training_args.world_size)

    # Data and label set, checked before any model is built.
    check_model_arguments(model_args, data_args)
    alt = model_args.model_type == "alt"
    if model_args.model is not None:
        check_model_source(model_args.model, "--model")
        check_checkpoint_type(model_args.model, model_args.model_type)
    else:
        check_model_source(model_args.base, "--base")
    dataset = load_video_dataset(data_args.dataset)
    train = dataset[data_args.train_split] if data_args.train_split in dataset else None
    if train is None:
        raise ValueError(f"{data_args.dataset} has no split {data_args.train_split!r}; it has {sorted(dataset)}")
    labels, multi_label = dataset_labels(train)
    if alt:
        subtexts = None
        if multi_label:
            raise ValueError(f"{data_args.dataset} is multi-label; ALT is trained on single-label datasets (Eq. 10)")
        entities = load_entities(model_args)
    else:
        needs_subtexts = SfarConfig.from_variant(model_args.variant).uses_subtexts and model_args.model is None
        subtexts = subtexts_for_labels(labels, data_args.subtexts, needs_subtexts, f"classes of {data_args.dataset}")
    check_dataset(train, data_args.train_split, len(labels), multi_label)
    if data_args.few_shot and multi_label:
        raise ValueError("few-shot training is defined for single-label datasets")
    # checked here, before any model is built
    train_collator, decoder_learning_rate = training_augmentation(
        training_args, data_args, alt, len(labels), multi_label
    )
    evaluation = None
    if data_args.eval_split:
        if data_args.eval_split not in dataset:
            raise ValueError(f"{data_args.dataset} has no split {data_args.eval_split!r}; it has {sorted(dataset)}")
        evaluation = dataset[data_args.eval_split]
        check_dataset(evaluation, data_args.eval_split, len(labels), multi_label)

    if alt:
        model, processor = build_alt_model(model_args, labels, entities)
    else:
        model, processor = build_model(model_args, labels, subtexts, multi_label)
    # The processor is saved with the model for inference: the augmentation settings go to the training transform.
    video_processor = processor.video_processor

    # Videos that fail during the run are recorded here by every process and worker (see BadVideoLog).
    log = BadVideoLog(os.path.join(training_args.output_dir, "bad_videos.jsonl"))
    if not training_args.resume and training_args.process_index == 0:
        log.reset()
    views = {"num_clips": data_args.num_clips, "num_crops": data_args.num_crops}
    workers = training_args.dataloader_num_workers
    # The row index is taken before any row is dropped, so that every row keeps its seed (see with_row_index).
    transform = VideoTransform(
        video_processor, data_args.augment, len(labels), multi_label, seed=training_args.seed, log=log,
        strict=data_args.strict, keep_labels=False, flip_probability=data_args.flip_probability,
        crop_area_min=data_args.crop_area_min,
    )  # fmt: skip
    train, skipped = prepare_split(with_row_index(train), data_args.train_split, data_args, transform, workers)
    if data_args.few_shot:
        train = few_shot_subset(train, data_args.few_shot, data_args.few_shot_seed, len(labels))
    eval_skipped, eval_failed = [], {}
    if evaluation is not None:
        checker = VideoTransform(video_processor, False, len(labels), multi_label, **views)
        evaluation, eval_skipped = prepare_split(
            with_row_index(evaluation), data_args.eval_split, data_args, checker, workers
        )
    transform.bind(train)
    train.set_transform(transform)
    logger.info(
        "training %s on %d videos of %d classes, on %d process(es)",
        ("ALT" + ("" if model.config.use_entity_corpus else " without a corpus")) if alt else model_args.variant,
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
        decoder_learning_rate=decoder_learning_rate,
        train_collator=train_collator,
    )
    checkpoint = None
    if training_args.resume:
        checkpoint = last_complete_checkpoint(training_args.output_dir)
        logger.info("resuming from %s", checkpoint or "nothing: no complete checkpoint yet")
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.save_state()
    metrics = dict(result.metrics)
    failed = report_bad_videos(log, "train", "training")
    metrics.update(train_skipped_videos=len(skipped), train_bad_videos=len(failed))

    if evaluation is not None:
        scores, _, _ = evaluate_split(
            trainer,
            evaluation,
            data_args.eval_split,
            video_processor,
            len(labels),
            multi_label,
            group_columns=tuple(data_args.group_columns),
            log=log,
            strict=data_args.strict,
            **views,
        )
        metrics.update(scores, eval_skipped_videos=len(eval_skipped))
        eval_failed = report_bad_videos(log, f"eval:{data_args.eval_split}", "evaluation")
    zero_shot_failed = {}
    if data_args.zero_shot_dataset:
        metrics.update(zero_shot(trainer, processor, data_args, multi_label, views, log, workers))
        zero_shot_failed = report_bad_videos(log, f"zero_shot:{data_args.zero_shot_split}", "zero-shot evaluation")
    if trainer.is_world_process_zero():
        # Which videos were skipped before the run or replaced during it, and why: beside the metrics, not in them.
        problems = {
            "skipped_before_training": dict(skipped),
            "skipped_before_evaluation": dict(eval_skipped),
            "failed_during_training": failed,
            "failed_during_evaluation": eval_failed,
            "failed_during_zero_shot": zero_shot_failed,
        }
        with open(os.path.join(training_args.output_dir, "all_results.json"), "w") as f:
            json.dump({**metrics, "bad_videos": problems}, f, indent=2)
        logger.info("results: %s", json.dumps(metrics))
        repo_id = training_args.push_repo or f"local/{os.path.basename(os.path.normpath(training_args.output_dir))}"
        base = model_args.model  # None: the CLIP it was converted from, recorded in its config
        # ALT's entity corpus, when it is a Hub dataset, is listed among the card's datasets (as SFAR's sub-texts are
        # by push_to_hub.py); a local folder is not a name the Hub can link.
        corpus = model_args.entities if alt and model_args.entities and is_hub_id(model_args.entities) else None
        card = model_card(training_args.output_dir, repo_id, base, data_args.dataset, metrics, subtexts=corpus,
                          views=f"{data_args.num_clips} clip(s) x {data_args.num_crops} crop(s)")  # fmt: skip
        card.save(os.path.join(training_args.output_dir, "README.md"))  # our card, also for a later push
        if training_args.push_repo:
            sent = push_model(training_args.output_dir, training_args.push_repo)
            logger.info("pushed %d files to %s", len(sent), training_args.push_repo)
    return metrics
