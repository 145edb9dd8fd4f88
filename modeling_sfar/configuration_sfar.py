"""Configuration of SFAR (Storyboard-guided Alignment for Fine-grained video Action Recognition).

This file is shipped to the Hub as remote code: it imports only from transformers and the standard library.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig
from transformers.models.clip.configuration_clip import CLIPTextConfig, CLIPVisionConfig

__all__ = ["SfarConfig", "ACTIONCLIP_PROMPT_TEMPLATES", "SFAR_VARIANTS"]

FUSIONS = ("coarse+fine", "coarse", "fine", "mean")
WORD_TOKENS = ("words", "all")
LOSS_TYPES = ("sfar", "actionclip")
PROBLEM_TYPES = (None, "single_label_classification", "multi_label_classification")

# The 16 prompt templates of ActionCLIP's public code (its prompt ensemble, SPEC.md section 9).
ACTIONCLIP_PROMPT_TEMPLATES = (
    "a photo of action {}",
    "a picture of action {}",
    "Human action of {}",
    "{}, an action",
    "{} this is an action",
    "{}, a video of action",
    "Playing action of {}",
    "{}",
    "Playing a kind of action, {}",
    "Doing a kind of action, {}",
    "Look, the human is {}",
    "Can you recognize the action of {}?",
    "Video classification of {}",
    "A video of {}",
    "The man is {}",
    "The woman is {}",
)

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


class SfarConfig(PreTrainedConfig):
    r"""
    Configuration of [`SfarModel`] and [`SfarForVideoClassification`].

    SFAR is CLIP (a text and a vision tower, each with a projection into a joint space of width `projection_dim`)
    plus a temporal transformer over frame embeddings and two text-guided frame poolings: a coarse one guided by the
    class prompt augmented with its sub-texts, and a fine one guided by the sub-texts alone.

    Args:
        text_config (`dict` or `CLIPTextConfig`, *optional*):
            The CLIP text tower. Frozen: its features are computed once per label set.
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            The CLIP vision tower, fine-tuned.
        projection_dim (`int`, *optional*, defaults to 512):
            Width D of the joint text-video space (CLIP's projection width).
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592):
            Initial value of CLIP's log logit scale (trainable); overwritten when converting from CLIP.
        num_frames (`int`, *optional*, defaults to 8):
            Frames per video T (the paper's L); the temporal position embedding has this many entries.
        num_temporal_layers (`int`, *optional*, defaults to 6):
            Depth of the temporal transformer; 0 disables the temporal module ("Baseline (CLIP)").
        temporal_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the temporal transformer's layer norms (CLIP's and BIKE's value); the `"actionclip"` variant
            uses ActionCLIP's 1e-12.
        num_subtexts (`int`, *optional*, defaults to 4):
            Sub-texts N per class (atomic-action descriptions).
        prompt_template (`str`, *optional*, defaults to `"This is a video about {}"`):
            Global prompt T_c, filled with the normalised class name (BIKE's template).
        prompt_templates (`list[str]`, *optional*):
            A prompt ensemble (ActionCLIP): the class embedding is the mean of the normalised embeddings of these
            templates. Word embeddings still come from `prompt_template`.
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
            For every label of `id2label`, its N sub-texts. Required by the `"coarse"` and `"fine"` fusions.
        prompt_length (`int`, *optional*, defaults to 0):
            Word positions W kept for class prompts; set by `SfarModel.set_label_set`, read to size the text buffers.
        subtext_length (`int`, *optional*, defaults to 0):
            Word positions S kept for sub-texts; set by `SfarModel.set_label_set`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the new (non-CLIP) modules.
    """

    model_type = "sfar"
    # Outputs that evaluation loops (Trainer) should not collect: only the logits are needed for metrics.
    keys_to_ignore_at_inference = [
        "video_embeds",
        "frame_embeds",
        "coarse_frame_weights",
        "fine_frame_weights",
        "text_embeds",
    ]
    sub_configs = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}

    def __init__(
        self,
        text_config: dict | CLIPTextConfig | None = None,
        vision_config: dict | CLIPVisionConfig | None = None,
        projection_dim: int = 512,
        logit_scale_init_value: float = 2.6592,
        num_frames: int = 8,
        num_temporal_layers: int = 6,
        temporal_layer_norm_eps: float = 1e-5,
        num_subtexts: int = 4,
        prompt_template: str = "This is a video about {}",
        prompt_templates: list[str] | None = None,
        word_tokens: str = "words",
        frame_temperature: float = 0.01,
        fusion: str = "coarse+fine",
        loss_type: str = "sfar",
        loss_lambda: float = 1.0,
        subtexts: dict[str, list[str]] | None = None,
        prompt_length: int = 0,
        subtext_length: int = 0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if isinstance(text_config, CLIPTextConfig):
            text_config = text_config.to_dict()
        if isinstance(vision_config, CLIPVisionConfig):
            vision_config = vision_config.to_dict()
        self.text_config = CLIPTextConfig(**(text_config or {}))
        self.vision_config = CLIPVisionConfig(**(vision_config or {}))
        self.projection_dim = projection_dim
        self.logit_scale_init_value = logit_scale_init_value
        self.num_frames = num_frames
        self.num_temporal_layers = num_temporal_layers
        self.temporal_layer_norm_eps = temporal_layer_norm_eps
        self.num_subtexts = num_subtexts
        self.prompt_template = prompt_template
        self.prompt_templates = list(prompt_templates) if prompt_templates else None
        self.word_tokens = word_tokens
        self.frame_temperature = frame_temperature
        self.fusion = fusion
        self.loss_type = loss_type
        self.loss_lambda = loss_lambda
        self.subtexts = {str(k): list(v) for k, v in subtexts.items()} if subtexts else None
        self.prompt_length = prompt_length
        self.subtext_length = subtext_length
        self.initializer_range = initializer_range
        super().__init__(**kwargs)
        if self.id2label is not None and not self.label2id:
            self.label2id = {label: int(i) for i, label in self.id2label.items()}
        self.validate()

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
        return max(1, self.projection_dim // 64)

    def validate(self) -> None:
        """Raise `ValueError` naming the first invalid field."""

        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"SfarConfig.{name} must be an integer >= {minimum}, got {value!r}")

        positive_int("projection_dim", self.projection_dim)
        positive_int("num_frames", self.num_frames)
        positive_int("num_temporal_layers", self.num_temporal_layers, minimum=0)
        positive_int("num_subtexts", self.num_subtexts)
        positive_int("prompt_length", self.prompt_length, minimum=0)
        positive_int("subtext_length", self.subtext_length, minimum=0)
        if self.projection_dim % self.temporal_num_heads:
            raise ValueError(
                f"SfarConfig.projection_dim ({self.projection_dim}) must split into {self.temporal_num_heads} "
                "attention heads (D/64)"
            )
        if self.fusion not in FUSIONS:
            raise ValueError(f"SfarConfig.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.word_tokens not in WORD_TOKENS:
            raise ValueError(f"SfarConfig.word_tokens must be one of {WORD_TOKENS}, got {self.word_tokens!r}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"SfarConfig.loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"SfarConfig.problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}")
        if not isinstance(self.frame_temperature, (int, float)) or self.frame_temperature <= 0:
            raise ValueError(f"SfarConfig.frame_temperature must be > 0, got {self.frame_temperature!r}")
        if (
            not isinstance(self.temporal_layer_norm_eps, (int, float))
            or isinstance(self.temporal_layer_norm_eps, bool)
            or not 0 < self.temporal_layer_norm_eps < 1
        ):
            raise ValueError(
                f"SfarConfig.temporal_layer_norm_eps must be a number in (0, 1), got {self.temporal_layer_norm_eps!r}"
            )
        if not isinstance(self.loss_lambda, (int, float)) or self.loss_lambda < 0:
            raise ValueError(f"SfarConfig.loss_lambda must be >= 0, got {self.loss_lambda!r}")
        for template in [self.prompt_template, *(self.prompt_templates or [])]:
            if not isinstance(template, str) or template.count("{}") != 1:
                raise ValueError(f"SfarConfig prompt template {template!r} must contain exactly one '{{}}'")
        if self.subtexts is not None:
            self.check_subtexts(list(self.id2label.values()), self.subtexts)

    def check_subtexts(self, labels: list[str], subtexts: dict[str, list[str]]) -> None:
        """Raise `ValueError` naming the first label without exactly `num_subtexts` non-empty sub-texts."""
        for label in labels:
            texts = subtexts.get(label)
            if not texts:
                raise ValueError(f"label {label!r} has no sub-texts")
            if len(texts) != self.num_subtexts:
                raise ValueError(
                    f"label {label!r} has {len(texts)} sub-texts, the model needs num_subtexts={self.num_subtexts}"
                )
            if any(not isinstance(text, str) or not text.strip() for text in texts):
                raise ValueError(f"label {label!r} has an empty sub-text")

    @classmethod
    def from_variant(cls, variant: str, **kwargs) -> SfarConfig:
        """A configuration for one row of the paper's ablation (`SFAR_VARIANTS`), with `kwargs` on top."""
        if variant not in SFAR_VARIANTS:
            raise ValueError(f"unknown SFAR variant {variant!r}; choose from {sorted(SFAR_VARIANTS)}")
        return cls(**{**SFAR_VARIANTS[variant], **kwargs})

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        for name in ("text_config", "vision_config"):
            value = output.get(name)
            if hasattr(value, "to_dict"):
                output[name] = value.to_dict()
        return output


SfarConfig.register_for_auto_class("AutoConfig")
