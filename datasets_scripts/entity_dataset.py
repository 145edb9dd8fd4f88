"""The entity corpus's dataset format, re-exported from the library (`modeling_sfar.entity_dataset`), where it moved
so that the training run can read a corpus without importing a dataset builder (docs/layout.md)."""

from modeling_sfar.entity_dataset import (  # noqa: F401
    ENTITY_CONFIGS,
    config_metadata,
    entity_text,
    entity_texts,
    load_entity_config,
    push_entity_dataset,
    save_entity_dataset,
    stage_entity_dataset,
)

__all__ = [
    "ENTITY_CONFIGS",
    "config_metadata",
    "save_entity_dataset",
    "load_entity_config",
    "entity_texts",
    "entity_text",
    "stage_entity_dataset",
    "push_entity_dataset",
]
