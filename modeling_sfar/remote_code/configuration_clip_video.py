# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""The configuration both video classifiers of this package build on (SFAR and ALT): CLIP's two towers, their joint
space, the frames of a video, and the prompts that turn class names into text.

This file is shipped to the Hub as remote code: it imports only from transformers, its `huggingface_hub` (the `@strict`
dataclass decorator of transformers' configs) and the standard library.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.models.clip.configuration_clip import CLIPTextConfig, CLIPVisionConfig

__all__ = ["ClipVideoConfig", "ACTIONCLIP_PROMPT_TEMPLATES", "class_name_to_text", "clean_clip_text"]

# The 16 prompt templates of ActionCLIP's public code: SFAR's ActionCLIP preset and ALT's class-prompt ensemble (ALT's
# section 3.4 follows X-CLIP, which reuses them). docs/method.md section 9, docs/alt.md.
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


def class_name_to_text(name: str) -> str:
    """Normalise a dataset class name for text: `ApplyEyeMakeup` -> `Apply Eye Makeup`, `brush_hair` -> `brush hair`."""
    text = name.replace("_", " ")
    text = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _clip_text_fixes() -> dict[int, str | None]:
    """
    The character fixes of CLIP's text cleaning that the standard library can make (CLIP's tokenizer runs ftfy's
    `fix_text`): C1 control characters read as the Windows-1252 characters they stand for, Latin ligatures and digraphs
    spelled out, half- and full-width forms (and the ideographic space) in their usual width, curly quotes made
    straight, and invisible control characters removed.
    """
    fixes: dict[int, str | None] = {}
    for code in range(0x80, 0xA0):  # the five bytes that Windows-1252 leaves undefined stay as they are
        try:
            fixes[code] = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:
            pass
    ligatures = [0x132, 0x133, 0x149, *range(0x1C4, 0x1CD), *range(0x1F1, 0x1F4), *range(0xFB00, 0xFB07)]
    fixes.update({code: unicodedata.normalize("NFKC", chr(code)) for code in ligatures})
    fixes[0xFB05] = "\u017ft"  # LATIN SMALL LIGATURE LONG S T keeps its long s
    fixes[0x3000] = " "
    for code in range(0xFF01, 0xFFF0):
        if unicodedata.normalize("NFKC", chr(code)) != chr(code):
            fixes[code] = unicodedata.normalize("NFKC", chr(code))
    fixes.update({code: "'" for code in (0x2BC, *range(0x2018, 0x201C))})
    fixes.update({code: '"' for code in range(0x201C, 0x2020)})
    controls = [
        *range(0x00, 0x09),
        0x0B,
        *range(0x0E, 0x20),
        0x7F,
        *range(0x206A, 0x2070),
        0xFEFF,
        *range(0xFFF9, 0xFFFD),
    ]
    fixes.update(dict.fromkeys(controls))
    return fixes


_CLIP_TEXT_FIXES = _clip_text_fixes()
_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def clean_clip_text(text: str) -> str:
    """
    `text` cleaned as CLIP's own tokenizer cleans it before BPE (OpenAI's `basic_clean` and `whitespace_clean`),
    so that a label set gets the token ids CLIP was trained with; transformers' CLIP tokenizer only normalises
    (NFC, whitespace, lower case). What chat models write changes: curly quotes, HTML entities (`&amp;`, `&rsquo;`),
    ligatures (`ﬁ`), full-width forms, stray control characters. Plain text without `&` entities or control
    characters keeps its ids.

    Done with the standard library, without ftfy: its character fixes (see `_clip_text_fixes`), repeated until the
    text no longer changes, with HTML entities decoded first unless the text holds a `<` (ftfy's rule), then NFC,
    then `html.unescape` twice and whitespace collapsed, as CLIP does. Not covered: ftfy's repair of mojibake (text
    decoded with the wrong encoding, `â€™` for `’`), of lone surrogates, and its stricter choice of which entities
    to decode before its other fixes.
    """
    while True:
        before = text
        if "<" not in text:
            text = html.unescape(text)
        text = _TERMINAL_ESCAPE.sub("", text).translate(_CLIP_TEXT_FIXES)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            break
    return " ".join(html.unescape(html.unescape(text)).split())


def _check_integer(config: PreTrainedConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{type(config).__name__}.{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(
    config: PreTrainedConfig, name: str, minimum: float | None = None, strict_minimum: bool = False
) -> None:
    value = getattr(config, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{type(config).__name__}.{name} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict_minimum else value < minimum):
        relation = ">" if strict_minimum else ">="
        raise ValueError(f"{type(config).__name__}.{name} must be {relation} {minimum}, got {value!r}")


@strict
class ClipVideoConfig(PreTrainedConfig):
    r"""
    What every video classifier of this package shares: CLIP's text tower (frozen: it encodes a label set once) and
    vision tower (fine-tuned), each projected into a joint space of width `projection_dim`, videos of `num_frames`
    frames, and class prompts. A family's configuration (`SfarConfig`, `AltConfig`) adds its own modules.

    The label set (`id2label`, and the family's texts: SFAR's sub-texts, ALT's entities) is metadata: its encoded text
    features are an input of the model or the cache saved with its weights.

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
            Frames per video T.
        token_merging_r (`int`, *optional*, defaults to 0):
            Tokens merged in every block of the vision tower (ToMe, `token_merging.py`); 0: CLIP's tower unchanged.
        prompt_templates (`list[str]`, *optional*):
            A prompt ensemble: a class embedding is the normalised mean of the normalised embeddings of these templates
            filled with the class name (`class_name_to_text`).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the new (non-CLIP) modules.
    """

    sub_configs = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}

    text_config: dict | CLIPTextConfig | None = None
    vision_config: dict | CLIPVisionConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float | int = 2.6592
    num_frames: int = 8
    token_merging_r: int = 0
    prompt_templates: list[str] | tuple[str, ...] | None = None
    initializer_range: float | int = 0.02

    def __post_init__(self, **kwargs):
        if isinstance(self.text_config, CLIPTextConfig):
            self.text_config = self.text_config.to_dict()
        if isinstance(self.vision_config, CLIPVisionConfig):
            self.vision_config = self.vision_config.to_dict()
        self.text_config = CLIPTextConfig(**(self.text_config or {}))
        self.vision_config = CLIPVisionConfig(**(self.vision_config or {}))
        super().__post_init__(**kwargs)
        if self.id2label is not None and not self.label2id:
            self.label2id = {label: int(i) for i, label in self.id2label.items()}

    @property
    def joint_num_heads(self) -> int:
        """Heads of an attention of width D in the new modules: D/64, at least 1."""
        return max(1, self.projection_dim // 64)

    # -- `@strict` class validators: `validate()` (generated) runs them with the library's own after __init__ --

    def validate_clip_video_sizes(self) -> None:
        """The joint width, frames and merged tokens are integers in range; the width splits into D/64 heads."""
        for name, minimum in (("projection_dim", 1), ("num_frames", 1), ("token_merging_r", 0)):
            _check_integer(self, name, minimum)
        if self.projection_dim % self.joint_num_heads:
            raise ValueError(
                f"{type(self).__name__}.projection_dim ({self.projection_dim}) must split into "
                f"{self.joint_num_heads} attention heads (D/64)"
            )

    def validate_clip_video_numbers(self) -> None:
        """The initial logit scale and the initialiser's standard deviation are finite numbers in range."""
        _check_number(self, "logit_scale_init_value")
        _check_number(self, "initializer_range", 0)

    def validate_prompt_templates(self) -> None:
        """Every prompt template has exactly one `{}` slot for the class name."""
        for template in self.all_prompt_templates():
            if not isinstance(template, str) or template.count("{}") != 1:
                raise ValueError(f"{type(self).__name__} prompt template {template!r} must contain exactly one '{{}}'")

    def all_prompt_templates(self) -> list[str]:
        """Every template the configuration fills with class names (a family may add its own, single prompt)."""
        return list(self.prompt_templates or [])
