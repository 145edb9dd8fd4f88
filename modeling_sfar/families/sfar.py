"""The SFAR family: its classes, CLIP conversion by variant, sub-texts as its label set's texts, its card and its
picture (the coarse and fine frame weights of the top class)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from hub_cards import SFAR_MODEL_CARD

from ..conversion.sfar import convert_clip_to_sfar
from ..data.subtexts import subtexts_for_labels
from ..hub.sources import is_hub_id
from ..remote_code.configuration_sfar import SFAR_VARIANTS, SfarConfig
from ..remote_code.modeling_sfar import SfarForVideoClassification
from .base import ModelFamily

__all__ = ["SfarArguments", "SfarEvaluationArguments", "SfarFamily", "SFAR", "PAPER_RESULTS"]

# The SFAR paper's own ViT-B/16 figures (NeurIPS 2025), shown on the card beside ours and never mixed with them.
PAPER_RESULTS = [
    ("Kinetics-400", "top-1 / top-5 (8x224, 1 view)", "84.5 / 96.7", "Table 1"),
    ("Charades", "mAP (16 frames)", "51.1", "Table 2a"),
    ("UCF-101, zero-shot", "top-1", "79.0", "Table 2b"),
    ("HMDB-51, zero-shot", "top-1", "56.6", "Table 2b"),
    ("HMDB-51 / UCF-101 / K-400, few-shot", "top-1, mean over K = 2, 4, 8, 16", "78.7", "Table 3"),
]


@dataclass
class SfarArguments:
    """SFAR's flags of a training run."""

    variant: str = field(
        default="sfar",
        metadata={"help": f"A row of the paper's ablation, or the ActionCLIP preset: {', '.join(SFAR_VARIANTS)}."},
    )
    num_temporal_layers: int | None = field(default=None, metadata={"help": "Temporal layers (variant default: 6)."})
    subtexts: str | None = field(
        default=None, metadata={"help": "Sub-texts: a sub-text dataset (folder or Hub id) or a JSON label -> list."}
    )
    zero_shot_subtexts: str | None = field(
        default=None, metadata={"help": "Sub-texts of --zero_shot_dataset's classes (a sub-text dataset or JSON)."}
    )


@dataclass
class SfarEvaluationArguments:
    """SFAR's flags of an evaluation."""

    subtexts: str | None = field(
        default=None,
        metadata={"help": "Sub-texts of the dataset's classes, replacing the model's label set (zero-shot)."},
    )


class SfarFamily(ModelFamily):
    name = "sfar"
    model_type = SfarConfig.model_type
    title = "SFAR"
    config_class = SfarConfig
    model_class = SfarForVideoClassification
    arguments = SfarArguments
    evaluation_arguments = SfarEvaluationArguments
    card_template = SFAR_MODEL_CARD
    bfloat16_attention = "sfar_sdpa"  # cpu_kernels.py: the blocked attention of bfloat16 CPU inference
    texts_name = "sub-texts"

    def check_arguments(self, args: SfarArguments, model_args: Any) -> None:
        if args.variant not in SFAR_VARIANTS:
            raise ValueError(f"--variant {args.variant!r}: choose one of {list(SFAR_VARIANTS)}")

    def training_texts(self, args: SfarArguments, model_args: Any, labels: list[str], what: str) -> Any:
        needed = SfarConfig.from_variant(args.variant).uses_subtexts and model_args.model is None
        return subtexts_for_labels(labels, args.subtexts, needed, what, flag="--subtexts")

    def build(self, model_args: Any, args: SfarArguments, labels: list[str], texts: Any, multi_label: bool):
        problem = "multi_label_classification" if multi_label else "single_label_classification"
        if model_args.model is not None:
            model, processor = self.load(model_args.model)
            model.config.problem_type = problem
            model.set_label_set(labels, processor.tokenizer, texts)
            return model, processor
        extra = {}
        if texts:  # N is the sub-text set's; a class with another count is refused by the model, named
            extra["num_subtexts"] = len(next(iter(texts.values())))
        if args.num_temporal_layers is not None:  # the depth of a temporal module; "clip" has none
            if SFAR_VARIANTS[args.variant].get("num_temporal_layers", 1) > 0:
                extra["num_temporal_layers"] = args.num_temporal_layers
        if model_args.token_merging_r is not None:
            extra["token_merging_r"] = model_args.token_merging_r
        return convert_clip_to_sfar(
            model_args.base,
            labels,
            texts,
            variant=args.variant,
            revision=model_args.revision,
            num_frames=model_args.num_frames,
            problem_type=problem,
            **extra,
        )

    def describe(self, model: torch.nn.Module, args: SfarArguments) -> str:
        return f"SFAR ({args.variant})"

    def card_datasets(self, args: SfarArguments) -> list[str]:
        return [args.subtexts] if args.subtexts and is_hub_id(args.subtexts) else []

    def zero_shot_texts(self, model: torch.nn.Module, labels: list[str], source: str | None, what: str, flag: str):
        return subtexts_for_labels(labels, source, model.config.uses_subtexts, what, flag=flag)

    def training_zero_shot_source(self, args: SfarArguments) -> tuple[str | None, str]:
        return args.zero_shot_subtexts, "--zero_shot_subtexts"

    def evaluation_source(self, args: SfarEvaluationArguments) -> tuple[str | None, str]:
        return args.subtexts, "--subtexts"

    def card_fields(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "variant": config.get("fusion", "coarse+fine"),
            "num_subtexts": config.get("num_subtexts", 4),
            "paper_results": PAPER_RESULTS,
        }

    def picture(self, model: torch.nn.Module, output: Any, frames: torch.Tensor, label: str, top: int):
        from ..demo.plots import frame_weight_picture

        def weights(tensor: torch.Tensor | None) -> list[float] | None:
            return None if tensor is None else tensor[0, top].tolist()

        image = frame_weight_picture(
            frames, weights(output.coarse_frame_weights), weights(output.fine_frame_weights), label
        )
        return image, []


SFAR = SfarFamily()
