"""Build an SFAR model from a CLIP checkpoint (a Hub id such as `openai/clip-vit-base-patch16`, or a local folder)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..remote_code.configuration_sfar import SfarConfig
from ..remote_code.modeling_sfar import SfarForVideoClassification
from ..remote_code.processing_sfar import SfarProcessor
from .clip import CLIP_KEY_PREFIXES, CLIP_VIT_B16, clip_config_fields, clip_to_state_dict, convert_from_clip

__all__ = [
    "CLIP_VIT_B16",
    "CLIP_KEY_PREFIXES",
    "SFAR_NEW_KEY_PREFIXES",
    "clip_to_sfar_state_dict",
    "sfar_config_from_clip",
    "convert_clip_to_sfar",
]

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
    """A `CLIPModel` state dict under SFAR's keys (`prefix` + the CLIP key); see `clip_to_state_dict`."""
    return clip_to_state_dict(clip_state_dict, prefix)


def sfar_config_from_clip(clip_config: Any, variant: str = "sfar", **kwargs) -> SfarConfig:
    """An `SfarConfig` for `variant` with the CLIP towers of `clip_config` (a `CLIPConfig`); `kwargs` on top."""
    return SfarConfig.from_variant(variant, **clip_config_fields(clip_config), **kwargs)


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
    return convert_from_clip(
        clip_name_or_path,
        lambda clip_config: sfar_config_from_clip(clip_config, variant, **config_kwargs),
        SfarForVideoClassification,
        SFAR_NEW_KEY_PREFIXES,
        labels,
        subtexts,
        revision=revision,
    )
