"""Build an ALT model from a CLIP checkpoint (a Hub id such as `openai/clip-vit-base-patch16`, or a local folder).

ALT keeps CLIP's towers under CLIP's own key names (token merging has no parameters), so the weight conversion is a
renaming (`clip_to_state_dict` under ALT's prefix).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..remote_code.configuration_alt import AltConfig
from ..remote_code.modeling_alt import AltForVideoClassification
from ..remote_code.processing_sfar import SfarProcessor
from .clip import clip_config_fields, clip_to_state_dict, convert_from_clip

__all__ = ["ALT_NEW_KEY_PREFIXES", "clip_to_alt_state_dict", "alt_config_from_clip", "convert_clip_to_alt"]

# AltModel keys that CLIP does not have: the new modules and the label-set buffers.
ALT_NEW_KEY_PREFIXES = ("alignment.", "learnable_queries", "decoder.", "label_set_cache.")


def clip_to_alt_state_dict(
    clip_state_dict: Mapping[str, torch.Tensor], prefix: str = "alt."
) -> dict[str, torch.Tensor]:
    """A `CLIPModel` state dict under ALT's keys (`prefix` + the CLIP key); see `clip_to_state_dict`."""
    return clip_to_state_dict(clip_state_dict, prefix)


def alt_config_from_clip(clip_config: Any, **kwargs) -> AltConfig:
    """An `AltConfig` with the CLIP towers of `clip_config` (a `CLIPConfig`); `kwargs` are further fields."""
    return AltConfig(**clip_config_fields(clip_config), **kwargs)


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
    return convert_from_clip(
        clip_name_or_path,
        lambda clip_config: alt_config_from_clip(clip_config, **config_kwargs),
        AltForVideoClassification,
        ALT_NEW_KEY_PREFIXES,
        labels,
        entities,
        revision=revision,
    )
