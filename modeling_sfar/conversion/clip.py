"""What every family's conversion from CLIP shares: the default CLIP, the renaming of a `CLIPModel` state dict under a
family's prefix (a small pure function, tested by strict loading), the towers of a CLIP config as a family config's
fields, and the end of a conversion (load CLIP, build the model, load strictly, store the label set, the processor).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..remote_code.processing_sfar import SfarProcessor
from ..remote_code.video_processing_sfar import SfarVideoProcessor

__all__ = [
    "CLIP_VIT_B16",
    "CLIP_KEY_PREFIXES",
    "clip_to_state_dict",
    "clip_config_fields",
    "convert_from_clip",
    "video_processor_for",
]

# The CLIP the families start from by default (the papers' ViT-B/16): training's `--base` and the sub-text
# generator's `--clip` (whose text tower scores TPP).
CLIP_VIT_B16 = "openai/clip-vit-base-patch16"

# CLIPModel keys a family takes over unchanged (its base model names its CLIP parts as CLIPModel does).
CLIP_KEY_PREFIXES = ("text_model.", "vision_model.", "text_projection.", "visual_projection.", "logit_scale")


def clip_to_state_dict(clip_state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """
    Map a `CLIPModel` state dict onto a family's keys (`prefix` + the CLIP key, e.g. `sfar.`). Position-id buffers are
    dropped.

    Raises:
        ValueError: a key that is not part of a CLIP model.
    """
    converted = {}
    for key, value in clip_state_dict.items():
        if key.endswith("position_ids"):
            continue
        if not key.startswith(CLIP_KEY_PREFIXES):
            raise ValueError(f"unexpected key in the CLIP state dict: {key!r}")
        converted[prefix + key] = value
    return converted


def clip_config_fields(clip_config: Any) -> dict[str, Any]:
    """The fields of a family configuration that a `CLIPConfig` gives: the towers, the joint width, the logit scale."""
    return {
        "text_config": clip_config.text_config.to_dict(),
        "vision_config": clip_config.vision_config.to_dict(),
        "projection_dim": clip_config.projection_dim,
        "logit_scale_init_value": clip_config.logit_scale_init_value,
    }


def video_processor_for(config: Any) -> SfarVideoProcessor:
    """The inference video processor of a model: its frames, CLIP's crop size, the short side at 256/224 of it."""
    image_size = config.vision_config.image_size
    return SfarVideoProcessor(
        num_frames=config.num_frames,
        size={"shortest_edge": round(image_size * 256 / 224)},
        crop_size={"height": image_size, "width": image_size},
    )


def convert_from_clip(
    clip_name_or_path: str,
    make_config: Any,
    model_class: type,
    new_key_prefixes: tuple[str, ...],
    labels: list[str],
    texts: Any,
    revision: str | None = None,
) -> tuple[Any, SfarProcessor]:
    """
    Build a family's classifier from a CLIP checkpoint: `make_config(clip_config)` gives its configuration,
    `model_class` is built from it, CLIP's weights and the model's own new modules (keys under its base model that
    start with `new_key_prefixes`) are loaded strictly, and the label set (`labels`, with the family's `texts`) is
    encoded and stored. Returns the model in evaluation mode and its processor (inference video processor, CLIP's
    tokenizer).
    """
    from transformers import AutoTokenizer, CLIPModel

    clip = CLIPModel.from_pretrained(clip_name_or_path, revision=revision)
    tokenizer = AutoTokenizer.from_pretrained(clip_name_or_path, revision=revision)
    config = make_config(clip.config)
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.converted_from = clip_name_or_path  # the model card's `base_model` comes from here
    model = model_class(config)
    prefix = f"{model.base_model_prefix}."
    state = clip_to_state_dict(clip.state_dict(), prefix)
    own = {k: v for k, v in model.state_dict().items() if k.removeprefix(prefix).startswith(new_key_prefixes)}
    model.load_state_dict({**state, **own}, strict=True)
    model.set_label_set(labels, tokenizer, texts)
    return model.eval(), SfarProcessor(video_processor=video_processor_for(config), tokenizer=tokenizer)
