"""Processor of SFAR: the video processor paired with the CLIP tokenizer.

The model classifies from `pixel_values` alone (its label-set text features are saved with it); the tokenizer is
needed only to set a new label set (`SfarModel.set_label_set`) or to compute TPP scores of sub-texts.

This file is shipped to the Hub as remote code.
"""

from __future__ import annotations

import re

from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .configuration_clip_video import clean_clip_text

__all__ = ["SfarProcessor", "class_name_to_text"]


def class_name_to_text(name: str) -> str:
    """Normalise a dataset class name for text: `ApplyEyeMakeup` -> `Apply Eye Makeup`, `brush_hair` -> `brush hair`.

    Here, in the processor's file, because every model's repo ships this file (SFAR's and ALT's label sets both
    read class names through it)."""
    text = name.replace("_", " ")
    text = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", text)
    return re.sub(r"\s+", " ", text).strip()


class SfarProcessor(ProcessorMixin):
    r"""
    Pairs an [`SfarVideoProcessor`] with a CLIP tokenizer.

    `processor(videos=...)` returns the video processor's `pixel_values`; `processor(text=...)` the tokenizer's
    `input_ids` and `attention_mask` of the text cleaned as CLIP's own tokenizer cleans it (`clean_clip_text`, as the
    label set is), so ids given to the model match the stored label set's; both may be given together.
    """

    def __init__(self, video_processor=None, tokenizer=None, **kwargs):
        super().__init__(video_processor, tokenizer, **kwargs)

    def __call__(self, videos=None, text=None, **kwargs):
        if videos is None and text is None:
            raise ValueError("give `videos`, `text` or both")
        output = {}
        return_tensors = kwargs.pop("return_tensors", "pt")
        if videos is not None:
            output.update(self.video_processor(videos, return_tensors=return_tensors, **kwargs))
        if text is not None:
            text = clean_clip_text(text) if isinstance(text, str) else [clean_clip_text(t) for t in text]
            output.update(self.tokenizer(text, padding=True, truncation=True, return_tensors=return_tensors))
        return BatchFeature(output)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values"]


SfarProcessor.register_for_auto_class("AutoProcessor")
