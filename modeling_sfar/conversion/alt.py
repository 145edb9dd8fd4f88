"""Build an ALT model from a CLIP checkpoint (a Hub id such as `openai/clip-vit-base-patch16`, or a local folder).

ALT keeps CLIP's towers under CLIP's own key names (token merging has no parameters), so the weight conversion is a
renaming, `clip_to_alt_state_dict`; `convert_clip_to_alt` wires it to loading, the label set and the processor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..remote_code.configuration_alt import AltConfig
from ..remote_code.modeling_alt import AltForVideoClassification
from ..remote_code.processing_sfar import SfarProcessor
from ..remote_code.video_processing_sfar import SfarVideoProcessor
from .sfar import clip_to_sfar_state_dict

__all__ = ["ALT_NEW_KEY_PREFIXES", "clip_to_alt_state_dict", "alt_config_from_clip", "convert_clip_to_alt"]

# AltModel keys that CLIP does not have: the new modules and the label-set buffers.
ALT_NEW_KEY_PREFIXES = ("alignment.", "learnable_queries", "decoder.", "label_set_cache.")


def clip_to_alt_state_dict(
    clip_state_dict: Mapping[str, torch.Tensor], prefix: str = "alt."
) -> dict[str, torch.Tensor]:
    """Map a `CLIPModel` state dict onto ALT's keys (`prefix` + the CLIP key), as `clip_to_sfar_state_dict` does for
    SFAR (the same CLIP towers under another prefix)."""
    return clip_to_sfar_state_dict(clip_state_dict, prefix)


def alt_config_from_clip(clip_config: Any, **kwargs) -> AltConfig:
    """An `AltConfig` with the CLIP towers of `clip_config` (a `CLIPConfig`); `kwargs` are further fields."""
    return AltConfig(
        text_config=clip_config.text_config.to_dict(),
        vision_config=clip_config.vision_config.to_dict(),
        projection_dim=clip_config.projection_dim,
        logit_scale_init_value=clip_config.logit_scale_init_value,
        **kwargs,
    )


def convert_clip_to_alt(
    clip_name_or_path: str,
    labels: list[str],
    entities: list[str] | None = None,
    revision: str | None = None,
    **config_kwargs,
) -> tuple[AltForVideoClassification, SfarProcessor]:
    """
    Build an ALT classifier and its processor from a CLIP checkpoint, with the label set encoded and stored.

    Args:
        clip_name_or_path: a Hub id (e.g. `openai/clip-vit-base-patch16`) or a local folder of a `CLIPModel`.
        labels: class names, in class-index order.
        entities: the entity corpus texts (required unless `use_entity_corpus=False`).
        config_kwargs: further `AltConfig` fields (`num_frames`, `token_merging_r`, `num_decoder_layers`, ...).
    """
    from transformers import AutoTokenizer, CLIPModel

    clip = CLIPModel.from_pretrained(clip_name_or_path, revision=revision)
    tokenizer = AutoTokenizer.from_pretrained(clip_name_or_path, revision=revision)
    config = alt_config_from_clip(clip.config, **config_kwargs)
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.converted_from = clip_name_or_path
    model = AltForVideoClassification(config)
    state = clip_to_alt_state_dict(clip.state_dict())
    own = {k: v for k, v in model.state_dict().items() if k.removeprefix("alt.").startswith(ALT_NEW_KEY_PREFIXES)}
    model.load_state_dict({**state, **own}, strict=True)
    model.set_label_set(labels, tokenizer, entities)

    image_size = config.vision_config.image_size
    video_processor = SfarVideoProcessor(
        num_frames=config.num_frames,
        size={"shortest_edge": round(image_size * 256 / 224)},
        crop_size={"height": image_size, "width": image_size},
    )
    return model.eval(), SfarProcessor(video_processor=video_processor, tokenizer=tokenizer)
