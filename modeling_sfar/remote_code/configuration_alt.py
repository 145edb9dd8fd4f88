# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""Configuration of ALT ("Align before Adapt", Chen et al., ICLR 2024), the second video classifier of this package.

This file is shipped to the Hub as remote code: it imports only from transformers, its `huggingface_hub` (the `@strict`
dataclass decorator of transformers' configs), the standard library and its sibling `configuration_clip_video.py`.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict

from .configuration_clip_video import ACTIONCLIP_PROMPT_TEMPLATES, ClipVideoConfig, _check_integer, _check_number

__all__ = ["AltConfig", "ALT_PROMPT_TEMPLATES"]

# The class-prompt ensemble (section 3.4 of the paper: "prompt ensembling with a bunch of handcraft templates", citing
# X-CLIP): the 16 templates of ActionCLIP's public code, which the X-CLIP line of work reuses (docs/alt.md).
ALT_PROMPT_TEMPLATES = ACTIONCLIP_PROMPT_TEMPLATES
PROBLEM_TYPES = (None, "single_label_classification")


@strict
class AltConfig(ClipVideoConfig):
    r"""
    Configuration of [`AltModel`] and [`AltForVideoClassification`].

    ALT is CLIP (a frozen text tower and a fine-tuned vision tower, each projected into a joint space of width
    `projection_dim`: the fields of [`ClipVideoConfig`]) with token merging in the vision tower (region-aware image
    encoder, Eq. 1-3), an alignment of every frame token with a corpus of text entities (Eq. 4-6), and a multi-modal
    video decoder whose queries are the aligned entities (Eq. 7-9).

    The label set (`id2label`, `entities`) is metadata: its encoded text features are an input of the model or the
    cache saved with its weights.

    Args (besides those of [`ClipVideoConfig`]: `text_config`, `vision_config`, `projection_dim` (also the decoder's
    width), `logit_scale_init_value`, `num_frames` (the learnable queries of `use_entity_corpus=False` have this many
    entries), `prompt_templates` (the class-prompt ensemble, `ALT_PROMPT_TEMPLATES` by default) and
    `initializer_range`):
        token_merging_r (`int`, *optional*, defaults to 8):
            Tokens merged in every block of the vision tower (the paper's r); 0 disables merging.
        num_decoder_layers (`int`, *optional*, defaults to 4):
            Blocks M of the multi-modal video decoder (4 for ViT-B, 6 for ViT-L in the paper).
        decoder_kernel_size (`int`, *optional*, defaults to 3):
            Temporal kernel of the decoder's 1D convolution over frames (odd, so the frame count is kept).
        decoder_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the decoder's layer norms.
        gumbel_tau (`float`, *optional*, defaults to 1.0):
            Temperature tau of the Gumbel-softmax of the alignment (Eq. 4; the paper's appendix B sets 1).
        use_entity_corpus (`bool`, *optional*, defaults to `True`):
            `False` replaces the aligned entities by learnable queries, one per frame position (the paper's Table C3
            baseline, "ALT without corpus"); the model then needs no entities.
        entities (`list[str]`, *optional*):
            The texts of the stored entity corpus, in the order of its embeddings (metadata, like `id2label`).
    """

    model_type = "alt_video"  # not "alt": transformers' registry has "altclip", a different model
    keys_to_ignore_at_inference = [
        "video_embeds",
        "frame_embeds",
        "aligned_queries",
        "entity_indices",
        "token_sizes",
        "patch_to_token",
        "text_embeds",
        "hidden_states",
        "attentions",
    ]
    token_merging_r: int = 8
    num_decoder_layers: int = 4
    decoder_kernel_size: int = 3
    decoder_layer_norm_eps: float | int = 1e-5
    gumbel_tau: float | int = 1.0
    use_entity_corpus: bool = True
    entities: list[str] | tuple[str, ...] | None = None

    def __post_init__(self, **kwargs):
        self.prompt_templates = list(self.prompt_templates or ALT_PROMPT_TEMPLATES)
        if self.entities is not None:
            self.entities = list(self.entities)
        super().__post_init__(**kwargs)

    @property
    def decoder_num_heads(self) -> int:
        """Heads of the decoder's attentions: d/64, at least 1."""
        return self.joint_num_heads

    @property
    def num_entities(self) -> int:
        """K, the entities of the stored corpus (0 without a corpus)."""
        return len(self.entities or []) if self.use_entity_corpus else 0

    # -- `@strict` class validators: `validate()` (generated) runs them with the library's own after __init__ --

    def validate_sizes(self) -> None:
        """The decoder's depth and kernel are integers in range (the kernel odd); the corpus switch is a bool."""
        for name, minimum in (("num_decoder_layers", 0), ("decoder_kernel_size", 1)):
            _check_integer(self, name, minimum)
        if self.decoder_kernel_size % 2 == 0:
            raise ValueError(
                f"AltConfig.decoder_kernel_size must be odd (the convolution keeps the frame count), "
                f"got {self.decoder_kernel_size}"
            )
        if not isinstance(self.use_entity_corpus, bool):
            raise ValueError(f"AltConfig.use_entity_corpus must be a bool, got {self.use_entity_corpus!r}")

    def validate_numbers(self) -> None:
        """Temperatures and epsilons are finite real numbers in range (NaN and infinity refused)."""
        _check_number(self, "gumbel_tau", 0, strict_minimum=True)
        _check_number(self, "decoder_layer_norm_eps", 0, strict_minimum=True)
        if self.decoder_layer_norm_eps >= 1:
            raise ValueError(f"AltConfig.decoder_layer_norm_eps must be in (0, 1), got {self.decoder_layer_norm_eps!r}")

    def validate_choices(self) -> None:
        """ALT is a single-label classifier (Eq. 10 is a softmax cross-entropy)."""
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"AltConfig.problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}")

    def validate_prompt_templates(self) -> None:
        """At least one template; every template has exactly one `{}` slot for the class name."""
        if not self.prompt_templates:
            raise ValueError("AltConfig.prompt_templates must hold at least one template")
        super().validate_prompt_templates()

    def validate_entities(self) -> None:
        """`entities`, when given, are distinct non-empty strings."""
        if self.entities is not None:
            self.check_entities(self.entities)

    @staticmethod
    def check_entities(entities: list[str]) -> None:
        """Raise `ValueError` naming the first entity that is not a non-empty string, or a repeated one."""
        if not isinstance(entities, (list, tuple)):
            raise ValueError(f"the entities must be a list of strings, got {type(entities).__name__}")
        seen = set()
        for index, entity in enumerate(entities):
            if not isinstance(entity, str) or not entity.strip():
                raise ValueError(f"entity {index} must be a non-empty string, got {entity!r}")
            if entity in seen:
                raise ValueError(f"entity {index} repeats an earlier one: {entity!r}")
            seen.add(entity)


AltConfig.register_for_auto_class("AutoConfig")
