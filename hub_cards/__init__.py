"""Card templates (Jinja, rendered by huggingface_hub) of the model repos (SFAR's and ALT's), sub-text datasets, entity
corpora and video indexes.

Shipped as package data, so cards render from an installed wheel as from a clone.
"""

from __future__ import annotations

from importlib import resources

__all__ = [
    "SFAR_MODEL_CARD",
    "ALT_MODEL_CARD",
    "SUBTEXT_DATASET_CARD",
    "ENTITY_DATASET_CARD",
    "VIDEO_DATASET_CARD",
    "template_path",
]

SFAR_MODEL_CARD = "sfar_model_card.md"
ALT_MODEL_CARD = "alt_model_card.md"
SUBTEXT_DATASET_CARD = "subtext_dataset_card.md"
ENTITY_DATASET_CARD = "entity_dataset_card.md"
VIDEO_DATASET_CARD = "video_dataset_card.md"


def template_path(name: str) -> str:
    """The file of the card template `name` (one of the constants above)."""
    path = resources.files(__name__) / name
    if not path.is_file():
        raise ValueError(f"no card template {name!r} in {resources.files(__name__)}")
    return str(path)
