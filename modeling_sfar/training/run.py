"""The training run that `scripts/train.py`, the demo and the ablation share: `run_training` checks the data and the
label set, builds the model of the run's family (converted from CLIP or loaded from a checkpoint), trains it with the
Trainer (on one process or many under `accelerate launch`), evaluates it (and zero-shot on another label set),
writes `all_results.json` and the model card, pushes when asked, and returns the metrics.

Supervised by default; `few_shot` trains on K videos per class (seeded); `zero_shot_dataset` evaluates the trained
model on another dataset's label set after training. `resume` continues a killed run from its last checkpoint. The
family (`--model_type`, `modeling_sfar.families`) decides what is built and from which texts; its recipe gives the
command line's defaults. Training augmentation is the training transform's (`VideoAugmentation`), never the video
processor's that is saved with the model; Mixup / CutMix and label smoothing are the training collator's
(`MixingCollator`), as soft targets.
"""

from __future__ import annotations

import json
import logging
import os

import transformers
from transformers import set_seed

from ..data.bad_videos import BadVideoLog, check_videos
from ..data.datasets import (
    check_dataset,
    dataset_labels,
    evaluation_split,
    few_shot_subset,
    load_video_dataset,
    with_row_index,
)
from ..data.transform import VideoTransform
from ..evaluation.metrics import ZERO_SHOT_PREFIX
from ..evaluation.predict import compute_metrics, evaluate_split
from ..evaluation.zero_shot import replace_label_set
from ..families import ModelFamily
from ..hub.cards import model_card
from ..hub.push import push_model
from ..hub.sources import check_model_source
from .arguments import DataArguments, ModelArguments, TrainingRun, VideoTrainingArguments
from .augmentation import MixingCollator, VideoAugmentation
from .checkpoints import resume_checkpoint
from .trainer import EpochCallback, VideoClassifierTrainer

logger = logging.getLogger(__name__)

__all__ = ["run_training", "training_collator", "prepare_split", "warn_if_fewer_processes", "report_bad_videos"]


def check_checkpoint_family(source: str, family: ModelFamily) -> None:
    """A local `--model` folder of another family is refused, named (a Hub id is checked when it loads)."""
    path = os.path.join(source, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        found = json.load(f).get("model_type")
    if found != family.model_type:
        raise ValueError(
            f"--model {source} is a {found!r} checkpoint; --model_type {family.name} trains {family.model_type!r} "
            "models"
        )


def training_collator(
    training_args: VideoTrainingArguments, num_classes: int, multi_label: bool, dataset: str
) -> MixingCollator | None:
    """
    The training collator of Mixup / CutMix / label smoothing, or None when all are off.

    Raises:
        ValueError: mixing or smoothing on a multi-label dataset, or a bad value, each naming its flag.
    """
    mixing = {"--mixup_alpha": training_args.mixup_alpha, "--cutmix_alpha": training_args.cutmix_alpha,
              "--label_smoothing_factor": training_args.label_smoothing_factor}  # fmt: skip
    if not any(mixing.values()):
        return None
    if multi_label:
        given = ", ".join(flag for flag, value in mixing.items() if value)
        raise ValueError(f"{given}: soft targets for single-label datasets; {dataset} is multi-label (set them to 0)")
    try:
        return MixingCollator(
            num_classes,
            mixup_alpha=training_args.mixup_alpha,
            cutmix_alpha=training_args.cutmix_alpha,
            switch_prob=training_args.mixup_switch_prob,
            label_smoothing=training_args.label_smoothing_factor,
        )
    except ValueError as error:
        raise ValueError(f"--{error}") from error


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


def zero_shot(trainer, processor, run: TrainingRun, multi_label: bool, views: dict, log: BadVideoLog) -> dict:
    """Replace the trained model's label set by another dataset's and evaluate on it (metrics `zero_shot_*`)."""
    data_args = run.data
    dataset = load_video_dataset(data_args.zero_shot_dataset)
    split = evaluation_split(dataset, data_args.zero_shot_split, data_args.zero_shot_dataset, "--zero_shot_split")
    dataset = dataset[split]
    labels, zs_multi_label = dataset_labels(dataset)
    if zs_multi_label != multi_label:
        raise ValueError("zero-shot evaluation needs a dataset of the same kind (single- or multi-label)")
    check_dataset(dataset, split, len(labels), multi_label)
    checker = VideoTransform(processor.video_processor, len(labels), multi_label, **views)
    dataset, skipped = prepare_split(
        with_row_index(dataset), split, data_args, checker, run.training.dataloader_num_workers
    )
    source, flag = run.family.training_zero_shot_source(run.family_args)
    replace_label_set(
        trainer.model, processor.tokenizer, run.family, labels, source, f"classes of {data_args.zero_shot_dataset}",
        flag,
    )  # fmt: skip
    scores, _, _ = evaluate_split(
        trainer, dataset, split, processor.video_processor, len(labels), multi_label, prefix=ZERO_SHOT_PREFIX,
        log=log, strict=data_args.strict, **views,
    )  # fmt: skip
    scores["zero_shot_skipped_videos"] = len(skipped)
    failed = report_bad_videos(log, f"{ZERO_SHOT_PREFIX}:{split}", "zero-shot evaluation")
    return scores, failed


def run_training(
    model_args: ModelArguments | TrainingRun,
    family_args=None,
    data_args: DataArguments | None = None,
    training_args: VideoTrainingArguments | None = None,
    callbacks: list | None = None,
) -> dict:
    """
    Check the data and the label set, build the model of the family that `model_args.model_type` names, train,
    evaluate (and zero-shot evaluate), save the model, `all_results.json` and the model card to
    `training_args.output_dir`, and push when `push_to_hub` names a repo. The arguments are a `TrainingRun` (what
    `parse_training_args` returns) or its four parts.

    Returns:
        The metrics: the Trainer's training metrics, `eval_top1`/`eval_top5` (or `eval_mAP`) and their subsets
        (see `modeling_sfar.evaluation.metrics.metric_key`), `zero_shot_*`, and the counts of skipped and failed
        videos.

    Raises:
        ValueError / FileNotFoundError: a bad argument, dataset, split or text set, named, before any model is built.
    """
    from ..families import get_family

    if isinstance(model_args, TrainingRun):
        run = model_args
    else:
        run = TrainingRun(get_family(model_args.model_type), model_args, family_args, data_args, training_args)
    family, model_args, family_args, data_args, training_args = (
        run.family, run.model, run.family_args, run.data, run.training,
    )  # fmt: skip
    # Our own progress lines on the main process; the libraries at the level that `--log_level` gives them.
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    for name in ("sfar", "modeling_sfar"):
        logging.getLogger(name).setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    set_seed(training_args.seed)
    warn_if_fewer_processes(training_args.world_size)
    # Decided first, by every process together: a machine that cannot resume stops all of them before any work.
    checkpoint = None
    if training_args.resume:
        checkpoint = resume_checkpoint(
            training_args.output_dir, training_args.process_index, training_args.world_size,
            training_args.save_only_model,
        )  # fmt: skip
        logger.info("resuming from %s", checkpoint or "nothing: no complete checkpoint yet")

    # Data and label set, checked before any model is built.
    family.check_arguments(family_args, model_args)
    if model_args.model is not None:
        check_model_source(model_args.model, "--model")
        check_checkpoint_family(model_args.model, family)
    else:
        check_model_source(model_args.base, "--base")
    dataset = load_video_dataset(data_args.dataset)
    if data_args.train_split not in dataset:
        raise ValueError(f"{data_args.dataset} has no split {data_args.train_split!r}; it has {sorted(dataset)}")
    train = dataset[data_args.train_split]
    labels, multi_label = dataset_labels(train)
    family.check_dataset(multi_label, data_args.dataset)
    texts = family.training_texts(family_args, model_args, labels, f"classes of {data_args.dataset}")
    check_dataset(train, data_args.train_split, len(labels), multi_label)
    if data_args.few_shot and multi_label:
        raise ValueError("few-shot training is defined for single-label datasets")
    train_collator = training_collator(training_args, len(labels), multi_label, data_args.dataset)
    module_rates = family.module_learning_rates(family_args, training_args, data_args.few_shot)
    eval_split = evaluation_split(dataset, data_args.eval_split, data_args.dataset, "--eval_split", required=False)
    evaluation = None
    if eval_split is not None:
        evaluation = dataset[eval_split]
        check_dataset(evaluation, eval_split, len(labels), multi_label)

    model, processor = family.build(model_args, family_args, labels, texts, multi_label)
    # The processor is saved with the model for inference: the augmentation is the training transform's.
    video_processor = processor.video_processor

    # Videos that fail during the run are recorded here by every process and worker (see BadVideoLog).
    log = BadVideoLog(os.path.join(training_args.output_dir, "bad_videos.jsonl"))
    if not training_args.resume and training_args.process_index == 0:
        log.reset()
    views = {"num_clips": data_args.num_clips, "num_crops": data_args.num_crops}
    workers = training_args.dataloader_num_workers
    augmentation = None
    if data_args.augment:
        augmentation = VideoAugmentation(
            video_processor, flip_probability=data_args.flip_probability, crop_area_min=data_args.crop_area_min
        )
    # The row index is taken before any row is dropped, so that every row keeps its seed (see with_row_index).
    transform = VideoTransform(
        video_processor, len(labels), multi_label, augmentation, seed=training_args.seed, log=log,
        strict=data_args.strict, keep_labels=False,
    )  # fmt: skip
    train, skipped = prepare_split(with_row_index(train), data_args.train_split, data_args, transform, workers)
    if data_args.few_shot:
        train = few_shot_subset(train, data_args.few_shot, data_args.few_shot_seed, len(labels))
    eval_skipped, eval_failed = [], {}
    if evaluation is not None:
        checker = VideoTransform(video_processor, len(labels), multi_label, **views)
        evaluation, eval_skipped = prepare_split(with_row_index(evaluation), eval_split, data_args, checker, workers)
    transform.bind(train)
    train.set_transform(transform)
    logger.info(
        "training %s on %d videos of %d classes, on %d process(es)",
        family.describe(model, family_args), len(train), len(labels), training_args.world_size,
    )  # fmt: skip

    trainer = VideoClassifierTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        compute_metrics=compute_metrics,
        processing_class=processor,
        callbacks=[EpochCallback(transform), *(callbacks or [])],
        vision_learning_rate=training_args.vision_learning_rate,
        module_learning_rates=module_rates,
        train_collator=train_collator,
    )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.save_state()
    metrics = dict(result.metrics)
    failed = report_bad_videos(log, "train", "training")
    metrics.update(train_skipped_videos=len(skipped), train_bad_videos=len(failed))

    if evaluation is not None:
        scores, _, _ = evaluate_split(
            trainer, evaluation, eval_split, video_processor, len(labels), multi_label,
            group_columns=tuple(data_args.group_columns), log=log, strict=data_args.strict, **views,
        )  # fmt: skip
        metrics.update(scores, eval_skipped_videos=len(eval_skipped))
        eval_failed = report_bad_videos(log, f"eval:{eval_split}", "evaluation")
    zero_shot_failed = {}
    if data_args.zero_shot_dataset:
        scores, zero_shot_failed = zero_shot(trainer, processor, run, multi_label, views, log)
        metrics.update(scores)
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
        text_datasets = family.card_datasets(family_args)
        card = model_card(
            training_args.output_dir, repo_id, model_args.model, data_args.dataset, metrics,
            subtexts=text_datasets[0] if text_datasets else None,
            views=f"{data_args.num_clips} clip(s) x {data_args.num_crops} crop(s)",
        )  # fmt: skip
        card.save(os.path.join(training_args.output_dir, "README.md"))  # our card, also for a later push
        if training_args.push_repo:
            sent = push_model(training_args.output_dir, training_args.push_repo)
            logger.info("pushed %d files to %s", len(sent), training_args.push_repo)
    return metrics
