"""A saved folder loads through the auto classes and the pipeline as remote code, where `modeling_sfar` is absent."""

from __future__ import annotations

import copy
import json
import textwrap

import pytest
import torch

from modeling_sfar.remote_code.modeling_sfar import SHIPPED_FILES
from tests.conftest import BLOCK_MODELING_SFAR, run_python_offline

SCRIPT = BLOCK_MODELING_SFAR + textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import AutoModel, AutoModelForVideoClassification, AutoProcessor, pipeline

    folder, video = sys.argv[1], sys.argv[2]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    inputs = processor(videos=video)
    result = {"processor": type(processor).__name__, "video_processor": type(processor.video_processor).__name__}
    for auto in (AutoModel, AutoModelForVideoClassification):
        model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        with torch.no_grad():
            result[auto.__name__] = {"class": type(model).__name__, "logits": model(**inputs).logits.tolist()}
    classifier = pipeline("video-classification", model=folder, trust_remote_code=True)
    result["pipeline"] = classifier(video, top_k=3)
    # SFAR's bfloat16 CPU attention, chosen by name through the remote code
    chosen = AutoModelForVideoClassification.from_pretrained(
        folder, trust_remote_code=True, attn_implementation="sfar_sdpa"
    ).eval()
    attention = {m.config._attn_implementation for m in chosen.modules() if type(m).__name__.endswith("Attention")}
    with torch.no_grad():
        result["sfar_sdpa"] = {"attention": sorted(attention), "logits": chosen(**inputs).logits.tolist()}
    half = pipeline(
        "video-classification", model=folder, trust_remote_code=True, dtype=torch.bfloat16,
        model_kwargs={"attn_implementation": "sfar_sdpa"},
    )  # fmt: skip
    result["pipeline_bfloat16"] = {
        "dtype": str(half.model.dtype), "attention": half.model.config._attn_implementation,
        "scores": half(video, top_k=3),
    }  # fmt: skip
    print(json.dumps(result))
    """
)


def test_remote_code_round_trip_through_auto_classes_and_pipeline(converted, video_path, tmp_path):
    model, processor = converted
    folder = tmp_path / "sfar-tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert set(config["auto_map"]) >= {
        "AutoConfig",
        "AutoModel",
        "AutoModelForVideoClassification",
        "AutoProcessor",
        "AutoVideoProcessor",
    }
    for name in (*SHIPPED_FILES, "model.safetensors"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))

    with torch.no_grad():
        expected = model.eval()(**processor(videos=video_path)).logits
    scores = expected.softmax(-1)[0]
    top = scores.topk(3)

    run = run_python_offline(["-c", SCRIPT, str(folder), video_path], cwd=tmp_path, tmp_path=tmp_path)
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["processor"] == "SfarProcessor" and result["video_processor"] == "SfarVideoProcessor"
    assert result["AutoModel"]["class"] == "SfarModel"
    assert result["AutoModelForVideoClassification"]["class"] == "SfarForVideoClassification"
    for name in ("AutoModel", "AutoModelForVideoClassification"):
        torch.testing.assert_close(torch.tensor(result[name]["logits"]), expected)
    labels = [model.config.id2label[i] for i in top.indices.tolist()]
    assert [p["label"] for p in result["pipeline"]] == labels
    torch.testing.assert_close(torch.tensor([p["score"] for p in result["pipeline"]]), top.values)
    assert result["sfar_sdpa"]["attention"] == ["sfar_sdpa"]  # every attention module of the loaded model
    torch.testing.assert_close(torch.tensor(result["sfar_sdpa"]["logits"]), expected)  # float32: SDPA's results
    half = result["pipeline_bfloat16"]
    assert half["dtype"] == "torch.bfloat16" and half["attention"] == "sfar_sdpa"
    for p in half["scores"]:
        assert abs(p["score"] - float(scores[model.config.label2id[p["label"]]])) < 0.02


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
