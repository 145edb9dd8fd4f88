"""What a saved model looked at in one video: its prediction and its family's picture (SFAR's frame weights of the top
class, ALT's regions tinted by their entities), as the demo draws it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..families import family_of
from .plots import denormalize

__all__ = ["explain_video"]


def explain_video(folder: str, video: str, picture: str) -> tuple[str, list[tuple[str, float]]]:
    """
    Classify `video` with the model saved in `folder` and save its family's picture for the top class to `picture`.

    Returns:
        The top class, and the (name, share) pairs the picture lists (ALT's entities and their shares of the
        patches, largest first; empty for SFAR).
    """
    family = family_of(json.loads((Path(folder) / "config.json").read_text()))
    model, processor = family.load(folder)
    model.eval()
    inputs = processor(videos=video)
    with torch.no_grad():
        output = model(**inputs)
    top = int(output.logits[0].argmax())
    label = model.config.id2label[top]
    frames = denormalize(inputs["pixel_values"][0], processor.video_processor)  # (T, 3, H, W) in [0, 1]
    image, listed = family.picture(model, output, frames, label, top)
    image.save(picture)
    return label, listed
