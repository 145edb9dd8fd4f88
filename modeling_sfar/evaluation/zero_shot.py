"""Zero-shot: a trained model classifies another label set, its texts given by its family (SFAR's sub-texts, ALT's
entity corpus). The one place the training run and the evaluation swap a model's label set."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..families import ModelFamily

logger = logging.getLogger(__name__)

__all__ = ["replace_label_set"]


def replace_label_set(
    model: torch.nn.Module,
    tokenizer: Any,
    family: ModelFamily,
    labels: list[str],
    source: str | None,
    what: str,
    flag: str,
) -> None:
    """
    Store `labels` (the classes of `what`) as `model`'s label set, with the texts its family reads from `source`
    (the argument `flag` gave; None: the family's default, e.g. ALT's own corpus), encoded once by the text tower.

    Raises:
        ValueError: the family needs texts that `source` does not give for every label (the message names `flag`).
    """
    texts = family.zero_shot_texts(model, labels, source, what, flag)
    old = len(model.config.id2label or {})
    logger.info("zero-shot: replacing the model's %d labels by the %d %s", old, len(labels), what)
    model.set_label_set(labels, tokenizer, texts)
