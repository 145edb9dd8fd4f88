# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""Configuration of SFAR (Storyboard-guided Alignment for Fine-grained video Action Recognition).

This file is shipped to the Hub as remote code: it imports only from transformers, its `huggingface_hub` (the `@strict`
dataclass decorator of transformers' configs), the standard library and its sibling `configuration_clip_video.py`.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict

from .configuration_clip_video import (
    ACTIONCLIP_PROMPT_TEMPLATES,
    ClipVideoConfig,
    _check_integer,
    _check_number,
)

__all__ = ["SfarConfig", "ACTIONCLIP_PROMPT_TEMPLATES", "DEFAULT_PROMPT_TEMPLATE", "SFAR_VARIANTS"]

FUSIONS = ("coarse+fine", "coarse", "fine", "mean")
WORD_TOKENS = ("words", "all")
LOSS_TYPES = ("sfar", "actionclip")
PROBLEM_TYPES = (None, "single_label_classification", "multi_label_classification")

# The global prompt T_c that a class name fills (docs/method.md): the configuration's default, and the one that TPP
# selection and sub-text generation score with unless told otherwise.
DEFAULT_PROMPT_TEMPLATE = "This is a video about {}"

# The rows of the paper's ablation (Table 2e) and ActionCLIP, as configurations of one model.
SFAR_VARIANTS: dict[str, dict[str, Any]] = {
    "clip": {"fusion": "mean", "num_temporal_layers": 0},  # Baseline (CLIP)
    "temporal": {"fusion": "mean", "num_temporal_layers": 6},  # Baseline (Temporal)
    "fine": {"fusion": "fine"},
    "coarse": {"fusion": "coarse"},
    "sfar": {"fusion": "coarse+fine"},
    "actionclip": {
        "fusion": "mean",
        "num_temporal_layers": 6,
        "loss_type": "actionclip",
        "prompt_templates": list(ACTIONCLIP_PROMPT_TEMPLATES),
        "temporal_layer_norm_eps": 1e-12,  # the LayerNorm of ActionCLIP's temporal transformer (Visual_Prompt.py)
    },
}


@strict
class SfarConfig(ClipVideoConfig):
    r"""
    Configuration of [`SfarModel`] and [`SfarForVideoClassification`].

    SFAR is CLIP (a text and a vision tower, each with a projection into a joint space of width `projection_dim`: the
    fields of [`ClipVideoConfig`]) plus a temporal transformer over frame embeddings and two text-guided frame
    poolings: a coarse one guided by the class prompt augmented with its sub-texts, and a fine one guided by the
    sub-texts alone.

    The configuration describes the architecture. The label set (`id2label` and `subtexts`) is metadata: its encoded
    text features are an input of the model or the cache saved with its weights, sized by the number of labels and
    `stored_prompt_words`.

    Args (besides those of [`ClipVideoConfig`]: `text_config`, `vision_config`, `projection_dim`,
    `logit_scale_init_value`, `num_frames` (the paper's L; the temporal position embedding has this many entries),
    `token_merging_r` (0 by default: a speed option; the frame embedding is still the projected class token),
    `prompt_templates` (an ensemble, as ActionCLIP's: the class embedding is the mean of the normalised embeddings of
    its templates; the word embeddings still come from `prompt_template`) and `initializer_range`):
        num_temporal_layers (`int`, *optional*, defaults to 6):
            Depth of the temporal transformer; 0 disables the temporal module ("Baseline (CLIP)").
        temporal_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the temporal transformer's layer norms (CLIP's and BIKE's value); the `"actionclip"` variant
            uses ActionCLIP's 1e-12.
        num_subtexts (`int`, *optional*, defaults to 4):
            Sub-texts N per class (atomic-action descriptions).
        prompt_template (`str`, *optional*, defaults to `"This is a video about {}"`):
            Global prompt T_c, filled with the normalised class name (BIKE's template).
        word_tokens (`str`, *optional*, defaults to `"words"`):
            Which token positions form a text's word embeddings: `"words"` (the text's own tokens and its end token,
            without start token and padding) or `"all"` (every context position, as BIKE).
        frame_temperature (`float`, *optional*, defaults to 0.01):
            Temperature tau of the softmax over frames in the coarse and fine frame weights (BIKE's value).
        fusion (`str`, *optional*, defaults to `"coarse+fine"`):
            Video embedding: `"coarse+fine"` (Eq. 11), `"coarse"`, `"fine"`, or `"mean"` (mean of frames, no text).
        loss_type (`str`, *optional*, defaults to `"sfar"`):
            `"sfar"` (text-to-video + lambda x video-to-text InfoNCE, multi-positive, Eq. 12-14) or `"actionclip"`
            (symmetric KL between video-text similarities and soft multi-positive targets).
        loss_lambda (`float`, *optional*, defaults to 1.0):
            Weight lambda of the video-to-text term (Eq. 14).
        subtexts (`dict[str, list[str]]`, *optional*):
            For every label of `id2label`, its N sub-texts: the text of the stored label set (the `"coarse"` and
            `"fine"` fusions read sub-texts).
        stored_prompt_words (`int`, *optional*):
            Set by `set_label_set`, not by hand: the word positions W of the stored augmented prompt words (the
            longest class prompt of the stored label set; 0 for a fusion without the coarse branch), which size the
            stored label set's buffers. `None`: the stored label set is kept as the text tower's words padded to its
            context, the layout of checkpoints saved before the inference constants were stored (they load, and
            are converted); a model built from a configuration has that layout until a label set is stored.
    """

    model_type = "sfar"
    # Outputs that evaluation loops (Trainer) should not collect: only the logits are needed for metrics.
    keys_to_ignore_at_inference = [
        "video_embeds",
        "frame_embeds",
        "coarse_frame_weights",
        "fine_frame_weights",
        "text_embeds",
        "hidden_states",
        "attentions",
        "temporal_hidden_states",
        "temporal_attentions",
    ]
    num_temporal_layers: int = 6
    temporal_layer_norm_eps: float | int = 1e-5
    num_subtexts: int = 4
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    word_tokens: str = "words"
    frame_temperature: float | int = 0.01
    fusion: str = "coarse+fine"
    loss_type: str = "sfar"
    loss_lambda: float | int = 1.0
    subtexts: dict | None = None
    stored_prompt_words: int | None = None

    def __post_init__(self, **kwargs):
        # Configs saved before the label set became an input sized their label-set buffers with these; they are no
        # longer part of the architecture (the stored label set's sizes come with its weights).
        for legacy in ("prompt_length", "subtext_length"):
            kwargs.pop(legacy, None)
        if self.prompt_templates is not None:
            self.prompt_templates = list(self.prompt_templates) or None
        super().__post_init__(**kwargs)

    @property
    def uses_coarse(self) -> bool:
        """Whether the fusion has the coarse branch (Eq. 4-8)."""
        return self.fusion in ("coarse+fine", "coarse")

    @property
    def uses_fine(self) -> bool:
        """Whether the fusion has the fine branch (Eq. 9-10)."""
        return self.fusion in ("coarse+fine", "fine")

    @property
    def uses_subtexts(self) -> bool:
        """Whether the configured fusion reads sub-texts (every fusion but `"mean"`)."""
        return self.uses_coarse or self.uses_fine

    @property
    def temporal_num_heads(self) -> int:
        """Heads of the temporal transformer and of the coarse cross-attention: D/64, at least 1."""
        return self.joint_num_heads

    # -- `@strict` class validators: `validate()` (generated) runs them with the library's own after __init__ --

    def validate_sizes(self) -> None:
        """SFAR's depths and counts are integers in range."""
        for name, minimum in (("num_temporal_layers", 0), ("num_subtexts", 1)):
            _check_integer(self, name, minimum)
        if self.stored_prompt_words is not None:
            _check_integer(self, "stored_prompt_words", 0)

    def validate_choices(self) -> None:
        """The named options are among the supported ones."""
        for name, choices in (("fusion", FUSIONS), ("word_tokens", WORD_TOKENS), ("loss_type", LOSS_TYPES),
                              ("problem_type", PROBLEM_TYPES)):  # fmt: skip
            if getattr(self, name) not in choices:
                raise ValueError(f"SfarConfig.{name} must be one of {choices}, got {getattr(self, name)!r}")

    def validate_numbers(self) -> None:
        """Temperatures and weights are finite real numbers in range (NaN and infinity refused)."""
        _check_number(self, "frame_temperature", 0, strict_minimum=True)
        _check_number(self, "loss_lambda", 0)
        _check_number(self, "temporal_layer_norm_eps", 0, strict_minimum=True)
        if self.temporal_layer_norm_eps >= 1:
            raise ValueError(
                f"SfarConfig.temporal_layer_norm_eps must be a number in (0, 1), got {self.temporal_layer_norm_eps!r}"
            )

    def all_prompt_templates(self) -> list[str]:
        """The global prompt and the ensemble's templates."""
        return [self.prompt_template, *(self.prompt_templates or [])]

    def validate_subtexts(self) -> None:
        """`subtexts`, when given, holds `num_subtexts` non-empty strings for every label of `id2label`."""
        if self.subtexts is not None:
            if not isinstance(self.subtexts, dict):
                raise ValueError(f"SfarConfig.subtexts must map each label to its sub-texts, got {self.subtexts!r}")
            self.check_subtexts(list((self.id2label or {}).values()), self.subtexts)

    def check_subtexts(self, labels: list[str], subtexts: dict[str, list[str]]) -> None:
        """Raise `ValueError` naming the first label without exactly `num_subtexts` non-empty string sub-texts."""
        for label in labels:
            texts = subtexts.get(label)
            if texts is None or (isinstance(texts, (list, tuple)) and not texts):
                raise ValueError(f"label {label!r} has no sub-texts")
            if not isinstance(texts, (list, tuple)):
                raise ValueError(
                    f"label {label!r}: sub-texts must be a list of strings, got {type(texts).__name__} {texts!r}"
                )
            if len(texts) != self.num_subtexts:
                raise ValueError(
                    f"label {label!r} has {len(texts)} sub-texts, the model needs num_subtexts={self.num_subtexts}"
                )
            for text in texts:
                if not isinstance(text, str):
                    raise ValueError(f"label {label!r} has a sub-text that is not a string: {text!r}")
                if not text.strip():
                    raise ValueError(f"label {label!r} has an empty sub-text")

    @classmethod
    def from_variant(cls, variant: str, **kwargs) -> SfarConfig:
        """A configuration for one row of the paper's ablation (`SFAR_VARIANTS`), with `kwargs` on top."""
        if variant not in SFAR_VARIANTS:
            raise ValueError(f"unknown SFAR variant {variant!r}; choose from {sorted(SFAR_VARIANTS)}")
        return cls(**{**SFAR_VARIANTS[variant], **kwargs})


SfarConfig.register_for_auto_class("AutoConfig")
