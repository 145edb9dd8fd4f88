"""The ALT family: its classes, CLIP conversion, its recipe, an entity corpus as its label set's texts, its card and
its picture (the regions of the frames, tinted by the entity each was aligned with)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from hub_cards import ALT_MODEL_CARD

from ..conversion.alt import convert_clip_to_alt
from ..data.entities import entity_texts
from ..hub.sources import is_hub_id, looks_local
from ..remote_code.configuration_alt import AltConfig
from ..remote_code.modeling_alt import AltForVideoClassification
from .base import ModelFamily

logger = logging.getLogger(__name__)

__all__ = ["ALT_RECIPE", "ALT_FEW_SHOT_DECODER_SCALE", "AltArguments", "AltEvaluationArguments", "AltFamily", "ALT"]

# ALT's training recipe (its section 3.4): the defaults of the command line with `--model_type alt`; a flag given
# explicitly wins. Its augmentation follows X-CLIP (section 3.4: "RandomFlip, MultiScaleCrop, Mixup and Label
# smoothing, following the manner of X-CLIP"): X-CLIP's defaults (its utils/config.py AUG section, which its configs
# keep) are Mixup alpha 0.8, CutMix alpha 1.0, CutMix in half the batches, label smoothing 0.1 (docs/alt.md).
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
class AltArguments:
    """ALT's flags of a training run."""

    entities: str | None = field(
        default=None,
        metadata={"help": "The entity corpus: a folder from datasets_scripts/entity_corpus.py or a Hub dataset id."},
    )
    entity_kinds: list[str] = field(
        default_factory=list, metadata={"help": "Keep only entities of these kinds (object, body part, ...)."}
    )
    no_entity_corpus: bool = field(
        default=False, metadata={"help": "ALT without a corpus: learnable queries (the paper's Table C3 baseline)."}
    )
    num_decoder_layers: int | None = field(default=None, metadata={"help": "Video decoder blocks (default 4)."})
    decoder_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the video decoder (default: --learning_rate; 10x it with --few_shot)."},
    )


@dataclass
class AltEvaluationArguments:
    """ALT's flags of an evaluation."""

    entities: str | None = field(
        default=None,
        metadata={"help": "An entity corpus replacing the model's (default: the model keeps its own)."},
    )
    entity_kinds: list[str] = field(
        default_factory=list, metadata={"help": "Keep only entities of these kinds (with --entities)."}
    )


def load_entities(source: str | None, kinds: list[str] | None, flag: str = "--entities") -> list[str] | None:
    """The entity texts of a corpus (of `kinds` only, when given), or None without one.

    Raises:
        FileNotFoundError: `source` is a local path that does not exist.
        ValueError: the source is not an entity corpus or has no entities (of those kinds), named.
    """
    if source is None:
        return None
    if not os.path.isdir(source) and (os.path.exists(source) or looks_local(source)):
        kind = "a file, not an entity corpus folder" if os.path.exists(source) else "no such folder"
        raise (ValueError if os.path.exists(source) else FileNotFoundError)(f"{flag} {source}: {kind}")
    try:
        return entity_texts(source, kinds or None)
    except ValueError as error:
        raise ValueError(f"{flag} {source}: {error}") from error


class AltFamily(ModelFamily):
    name = "alt"
    model_type = AltConfig.model_type
    title = "ALT"
    config_class = AltConfig
    model_class = AltForVideoClassification
    arguments = AltArguments
    evaluation_arguments = AltEvaluationArguments
    recipe = ALT_RECIPE
    card_template = ALT_MODEL_CARD
    texts_name = "entities"

    def check_arguments(self, args: AltArguments, model_args: Any) -> None:
        """
        Raises:
            ValueError: ALT with neither `--entities` nor `--no_entity_corpus` (unless `--model` brings its own), or
                with both; `--entity_kinds` without a corpus; shaping flags with `--model`.
        """
        if model_args.model is not None:
            shaping = ["--num_decoder_layers"] if args.num_decoder_layers is not None else []
            shaping += ["--token_merging_r"] if model_args.token_merging_r is not None else []
            if shaping:
                raise ValueError(f"{', '.join(shaping)} shape a new model; --model {model_args.model} brings its own")
        if args.entities is not None and args.no_entity_corpus:
            raise ValueError("--entities and --no_entity_corpus exclude each other: ALT with or without a corpus")
        if args.entity_kinds and args.entities is None:
            raise ValueError("--entity_kinds selects entities of --entities: give the corpus too")
        if args.entities is None and not args.no_entity_corpus and model_args.model is None:
            raise ValueError(
                "ALT aligns frames with an entity corpus: give --entities (a folder from "
                "datasets_scripts/entity_corpus.py or a Hub dataset id), or --no_entity_corpus for ALT without one"
            )

    def check_dataset(self, multi_label: bool, dataset: str) -> None:
        if multi_label:
            raise ValueError(f"{dataset} is multi-label; ALT is trained on single-label datasets (Eq. 10)")

    def training_texts(self, args: AltArguments, model_args: Any, labels: list[str], what: str) -> Any:
        return load_entities(args.entities, args.entity_kinds)

    def build(self, model_args: Any, args: AltArguments, labels: list[str], texts: Any, multi_label: bool):
        """ALT from CLIP (`--base`) or from an ALT checkpoint (`--model`, its entities kept unless `--entities` is
        given), with the dataset's label set."""
        if model_args.model is not None:
            model, processor = self.load(model_args.model)
            if args.no_entity_corpus and model.config.use_entity_corpus:
                raise ValueError(
                    f"--model {model_args.model} aligns with an entity corpus; --no_entity_corpus cannot drop it"
                )
            model.set_label_set(labels, processor.tokenizer, texts)  # texts None: its corpus stays
            return model, processor
        extra = {
            name: value
            for name, value in (
                ("token_merging_r", model_args.token_merging_r),
                ("num_decoder_layers", args.num_decoder_layers),
            )
            if value is not None
        }
        return convert_clip_to_alt(
            model_args.base,
            labels,
            texts,
            revision=model_args.revision,
            num_frames=model_args.num_frames,
            use_entity_corpus=not args.no_entity_corpus,
            **extra,
        )

    def module_learning_rates(self, args: AltArguments, training_args: Any, few_shot: int) -> dict[str, float]:
        rate = args.decoder_learning_rate
        if rate is None and few_shot:
            rate = ALT_FEW_SHOT_DECODER_SCALE * training_args.learning_rate
            logger.info("few-shot ALT: the video decoder trains at %g (%d x --learning_rate)", rate,
                        ALT_FEW_SHOT_DECODER_SCALE)  # fmt: skip
        return {} if rate is None else {"decoder.": rate}

    def describe(self, model: torch.nn.Module, args: AltArguments) -> str:
        return "ALT" + ("" if model.config.use_entity_corpus else " without a corpus")

    def card_datasets(self, args: AltArguments) -> list[str]:
        # a local folder is not a name the Hub can link
        return [args.entities] if args.entities and is_hub_id(args.entities) else []

    def zero_shot_texts(self, model: torch.nn.Module, labels: list[str], source: str | None, what: str, flag: str):
        """A new corpus when given (ALT's paper reuses and extends its corpus); None: the model keeps its own
        (`AltModel.default_texts`)."""
        if source is not None and not model.config.use_entity_corpus:
            raise ValueError(f"{flag} {source}: the model has no entity corpus (learnable queries)")
        return None if source is None else load_entities(source, None, flag)

    def training_zero_shot_source(self, args: AltArguments) -> tuple[str | None, str]:
        return None, "--entities"  # the trained corpus stays

    def evaluation_source(self, args: AltEvaluationArguments) -> tuple[str | None, str]:
        return args.entities, "--entities"

    def card_fields(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "token_merging_r": config.get("token_merging_r", 8),
            "use_entity_corpus": config.get("use_entity_corpus", True),
            "num_entities": len(config.get("entities") or []),
            "num_decoder_layers": config.get("num_decoder_layers", 4),
        }

    def picture(self, model: torch.nn.Module, output: Any, frames: torch.Tensor, label: str, top: int):
        """The frames with every merged region tinted by its aligned entity (the alignment belongs to the video, not
        to a class: drawn under the top class's name), and the entities with their shares of the patches."""
        from ..demo.plots import entity_region_picture, patch_entities, region_legend

        indices = None if output.entity_indices is None else output.entity_indices[0]  # (T, G)
        image = entity_region_picture(frames, output.patch_to_token[0], indices, model.config.entities, label)
        grounded = []
        if indices is not None:
            shares = region_legend(patch_entities(output.patch_to_token[0], indices))
            grounded = [(model.config.entities[j], share) for j, share in shares]
        return image, grounded


ALT = AltFamily()
