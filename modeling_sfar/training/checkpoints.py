"""Checkpoints of a training run: the newest one a save finished, for `--resume`."""

from __future__ import annotations

import json
import logging
import os
import re

logger = logging.getLogger(__name__)

__all__ = ["last_complete_checkpoint"]


def last_complete_checkpoint(output_dir: str) -> str | None:
    """
    The newest `checkpoint-N` of `output_dir` that a save finished, or None. The Trainer writes
    `trainer_state.json` last, so a checkpoint without it (or with it cut short) was being written when the run was
    killed: it is skipped with a warning that names it and says why.
    """
    if not os.path.isdir(output_dir):
        return None
    found = []
    for name in os.listdir(output_dir):
        match = re.fullmatch(r"checkpoint-(\d+)", name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    for _, folder in sorted(found, reverse=True):
        state = os.path.join(folder, "trainer_state.json")
        if not os.path.isfile(state):
            reason = "it has no trainer_state.json (the run was stopped while saving it)"
        else:
            try:
                with open(state, encoding="utf-8") as f:
                    json.load(f)
                return folder
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                reason = f"its trainer_state.json is cut short ({error})"
        logger.warning("not resuming from %s: %s", folder, reason)
    return None


