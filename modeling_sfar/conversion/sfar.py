"""Build an SFAR model from a CLIP checkpoint (a Hub id such as `openai/clip-vit-base-patch16`, or a local folder).

The weight conversion is a small pure function, `clip_to_sfar_state_dict`; `convert_clip_to_sfar` wires it to
loading, the label set and the processor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..remote_code.configuration_sfar import SfarConfig
from ..remote_code.modeling_sfar import SfarForVideoClassification
from ..remote_code.processing_sfar import SfarProcessor
from ..remote_code.video_processing_sfar import SfarVideoProcessor

__all__ = [
    "CLIP_VIT_B16",
    "CLIP_KEY_PREFIXES",
    "SFAR_NEW_KEY_PREFIXES",
    "clip_to_sfar_state_dict",
    "sfar_config_from_clip",
    "convert_clip_to_sfar",
]

# CLIPModel keys SFAR takes over unchanged (SfarModel names its CLIP parts as CLIPModel does).
# The CLIP that SFAR starts from by default (the paper's ViT-B/16): training's `--base` and the sub-text generator's
# `--clip` (whose text tower scores TPP).
CLIP_VIT_B16 = "openai/clip-vit-base-patch16"

CLIP_KEY_PREFIXES = ("text_model.", "vision_model.", "text_projection.", "visual_projection.", "logit_scale")
# SfarModel keys that CLIP does not have: the new modules and the label-set buffers.
SFAR_NEW_KEY_PREFIXES = (
    "temporal.",
    "subtext_attention.",
    "coarse_ffn.",
    "fine_ffn.",
    "logit_bias",
    "label_set_cache.",
)


def clip_to_sfar_state_dict(
    clip_state_dict: Mapping[str, torch.Tensor], prefix: str = "sfar."
) -> dict[str, torch.Tensor]:
    """
    Map a `CLIPModel` state dict onto SFAR's keys (`prefix` + the CLIP key). Position-id buffers are dropped.

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


def sfar_config_from_clip(clip_config: Any, variant: str = "sfar", **kwargs) -> SfarConfig:
    """An `SfarConfig` for `variant` with the CLIP towers of `clip_config` (a `CLIPConfig`); `kwargs` on top."""
    return SfarConfig.from_variant(
        variant,
        text_config=clip_config.text_config.to_dict(),
        vision_config=clip_config.vision_config.to_dict(),
        projection_dim=clip_config.projection_dim,
        logit_scale_init_value=clip_config.logit_scale_init_value,
        **kwargs,
    )


def convert_clip_to_sfar(
    clip_name_or_path: str,
    labels: list[str],
    subtexts: dict[str, list[str]] | None = None,
    variant: str = "sfar",
    revision: str | None = None,
    **config_kwargs,
) -> tuple[SfarForVideoClassification, SfarProcessor]:
    """
    Build an SFAR model and its processor from a CLIP checkpoint, with text features for `labels`.

    Args:
        clip_name_or_path: a Hub id (e.g. `openai/clip-vit-base-patch16`) or a local folder of a `CLIPModel`.
        labels: class names, in class-index order.
        subtexts: for every label, `num_subtexts` sub-texts (not needed by the "clip", "temporal" and "actionclip"
            variants).
        variant: a row of `SFAR_VARIANTS` ("clip", "temporal", "fine", "coarse", "sfar", "actionclip").
        config_kwargs: further `SfarConfig` fields (`num_frames`, `frame_temperature`, ...).
    """
    from transformers import AutoTokenizer, CLIPModel

    clip = CLIPModel.from_pretrained(clip_name_or_path, revision=revision)
    tokenizer = AutoTokenizer.from_pretrained(clip_name_or_path, revision=revision)
    config = sfar_config_from_clip(clip.config, variant, **config_kwargs)
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.converted_from = clip_name_or_path  # the model card's `base_model` comes from here
    model = SfarForVideoClassification(config)
    state = clip_to_sfar_state_dict(clip.state_dict())
    own = {k: v for k, v in model.state_dict().items() if k.removeprefix("sfar.").startswith(SFAR_NEW_KEY_PREFIXES)}
    model.load_state_dict({**state, **own}, strict=True)
    model.set_label_set(labels, tokenizer, subtexts)

    image_size = config.vision_config.image_size
    video_processor = SfarVideoProcessor(
        num_frames=config.num_frames,
        size={"shortest_edge": round(image_size * 256 / 224)},
        crop_size={"height": image_size, "width": image_size},
    )
    return model.eval(), SfarProcessor(video_processor=video_processor, tokenizer=tokenizer)
