"""SFAR's reduced-precision and compiled paths agree with its float32 eager logits (the remote-code round trip of every
family is tests/contract/test_families.py)."""

from __future__ import annotations

import copy

import pytest
import torch


def test_bfloat16_model_and_pipeline_agree_with_float32(converted, video_path):
    """The reduced-precision path: float32 pixel values into a bfloat16 model with "sfar_sdpa", directly and through
    the pipeline."""
    from transformers import pipeline

    model, processor = converted
    inputs = processor(videos=video_path)
    with torch.no_grad():
        full = model.eval()(**inputs).logits
        half_model = copy.deepcopy(model).to(torch.bfloat16)
        half_model.set_attn_implementation("sfar_sdpa")  # SFAR's bfloat16 CPU attention, by name
        half = half_model(**inputs).logits
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)
    classifier = pipeline("video-classification", model=half_model, image_processor=processor.video_processor)
    scores = {p["label"]: p["score"] for p in classifier(video_path, top_k=4)}
    expected = full.softmax(-1)[0]
    for i, label in model.config.id2label.items():
        assert abs(scores[label] - float(expected[i])) < 0.02


@pytest.mark.slow
def test_compiled_model_gives_the_eager_logits(converted, video_path):
    """The compilation path (`model.compile()`, as `--compile` in eval.py does) changes nothing but speed."""
    model, processor = converted
    inputs = processor(videos=video_path)
    compiled = copy.deepcopy(model).eval()
    with torch.no_grad():
        eager = model.eval()(**inputs).logits
        compiled.compile()
        torch.testing.assert_close(compiled(**inputs).logits, eager, rtol=1e-4, atol=1e-4)
