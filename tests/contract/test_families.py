"""The contract every model family keeps, one test for all of them (SFAR and ALT): a saved folder ships exactly its
family's remote-code files and loads through the auto classes, also as remote code in a fresh process where
`modeling_sfar` cannot be imported, with the video-classification pipeline on an mp4; torch.save round trips; the
label set given as token ids equals the stored one; multi-view prediction averages the probabilities; a training step
reaches the vision tower and the family's own modules, never the frozen text tower."""

from __future__ import annotations

import copy
import io
import json
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoTokenizer

from modeling_sfar.evaluation.predict import predict_views
from modeling_sfar.families import FAMILIES, ModelFamily
from modeling_sfar.remote_code import modeling_alt, modeling_sfar
from tests.conftest import BLOCK_MODELING_SFAR, ENTITIES, LABELS, SUBTEXTS, run_python_offline

AUTO_CLASSES = {"AutoConfig", "AutoModel", "AutoModelForVideoClassification", "AutoProcessor", "AutoVideoProcessor"}


@dataclass
class Case:
    """A converted tiny model of one family, its processor, the texts of its label set and its frames' size."""

    family: ModelFamily
    model: torch.nn.Module
    processor: Any
    texts: Any
    shipped_files: tuple[str, ...]
    image_size: int

    def pixels(self, *batch: int) -> torch.Tensor:
        frames = self.model.config.num_frames
        generator = torch.Generator().manual_seed(0)
        return torch.randn(*batch, frames, 3, self.image_size, self.image_size, generator=generator)


@pytest.fixture(params=sorted(FAMILIES))
def case(request) -> Case:
    family = FAMILIES[request.param]
    fixture, texts, shipped = {
        "sfar": ("converted", SUBTEXTS, modeling_sfar.SHIPPED_FILES),
        "alt": ("alt_converted", ENTITIES, modeling_alt.SHIPPED_FILES),
    }[family.name]
    model, processor = request.getfixturevalue(fixture)
    return Case(family, model.eval(), processor, texts, shipped, model.config.vision_config.image_size)


def test_a_saved_folder_ships_its_family_s_files_and_loads_through_the_auto_classes(case, video_path, tmp_path):
    case.model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".py") == sorted(case.shipped_files)
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == case.family.model_type and set(config["auto_map"]) == AUTO_CLASSES
    assert isinstance(AutoConfig.from_pretrained(tmp_path), case.family.config_class)
    inputs = case.processor(videos=video_path)
    with torch.no_grad():
        expected = case.model(**inputs).logits
        for auto in (AutoModel, AutoModelForVideoClassification):
            loaded = auto.from_pretrained(tmp_path).eval()
            torch.testing.assert_close(loaded(**inputs).logits, expected)


def test_torch_save_load_round_trip(case):
    """`torch.save(model.state_dict())` and `load_state_dict` restore every tensor, the boolean ones included."""
    buffer = io.BytesIO()
    torch.save(case.model.state_dict(), buffer)
    buffer.seek(0)
    loaded = case.family.model_class(case.model.config)
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    for key, value in case.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    pixels = case.pixels(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(pixels).logits, case.model(pixels).logits)


def test_the_label_set_given_as_token_ids_is_the_stored_one(case, tiny_clip_dir):
    tokens = case.model.base_model.tokenize_label_set(LABELS, AutoTokenizer.from_pretrained(tiny_clip_dir), case.texts)
    pixels = case.pixels(2)
    with torch.no_grad():
        stored = case.model(pixels).logits
        torch.testing.assert_close(case.model(pixels, **tokens).logits, stored)
    # a model built from the configuration has no label set until one is given
    fresh = case.family.model_class(case.model.config).eval()
    weights = {key: value for key, value in case.model.state_dict().items() if "label_set_cache" not in key}
    fresh.load_state_dict(weights, strict=False)
    with pytest.raises(ValueError, match="no label set"):
        fresh(pixels)
    with torch.no_grad():
        torch.testing.assert_close(fresh(pixels, **tokens).logits, stored)


def test_multi_view_prediction_averages_the_class_probabilities(case):
    """Several views of each video are folded into one batch and their softmax probabilities averaged; the forward
    itself takes one shape and names the helper."""
    views = case.pixels(2, 3)  # (B, V, T, 3, H, W)
    with torch.no_grad():
        logits, _ = predict_views(case.model, views)
        per_view = case.model(views.flatten(0, 1)).logits.softmax(-1).view(2, 3, -1)
    torch.testing.assert_close(logits.softmax(-1), per_view.mean(1))
    with pytest.raises(ValueError, match="average_over_views"):
        case.model(views)


def test_a_training_step_reaches_the_vision_tower_and_the_new_modules_never_the_text_tower(case):
    model = copy.deepcopy(case.model).train()
    model(case.pixels(2), labels=torch.tensor([0, 3])).loss.backward()
    base = model.base_model
    assert base.vision_model.encoder.layers[0].self_attn.q_proj.weight.grad is not None
    assert all(p.grad is None for p in base.text_model.parameters()) and base.text_projection.weight.grad is None
    clip = ("vision_model.", "visual_projection.", "text_model.", "text_projection.", "logit_scale")
    new = [name for name, p in base.named_parameters() if not name.startswith(clip) and p.requires_grad]
    assert new and all(base.get_parameter(name).grad is not None for name in new), new


REMOTE = BLOCK_MODELING_SFAR + textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import AutoModel, AutoModelForVideoClassification, AutoProcessor, pipeline

    folder, video, attention = sys.argv[1], sys.argv[2], sys.argv[3]
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
    if attention:  # the family's bfloat16 CPU attention, chosen by name through the remote code
        chosen = AutoModelForVideoClassification.from_pretrained(
            folder, trust_remote_code=True, attn_implementation=attention
        ).eval()
        names = {m.config._attn_implementation for m in chosen.modules() if type(m).__name__.endswith("Attention")}
        with torch.no_grad():
            result["chosen"] = {"attention": sorted(names), "logits": chosen(**inputs).logits.tolist()}
        half = pipeline(
            "video-classification", model=folder, trust_remote_code=True, dtype=torch.bfloat16,
            model_kwargs={"attn_implementation": attention},
        )  # fmt: skip
        result["pipeline_bfloat16"] = {
            "dtype": str(half.model.dtype), "attention": half.model.config._attn_implementation,
            "scores": half(video, top_k=3),
        }  # fmt: skip
    print(json.dumps(result))
    """
)


@pytest.mark.slow
def test_remote_code_round_trip_through_auto_classes_and_pipeline(case, video_path, tmp_path):
    folder = tmp_path / f"{case.family.name}-tiny"
    case.model.save_pretrained(folder)
    case.processor.save_pretrained(folder)
    with torch.no_grad():
        expected = case.model(**case.processor(videos=video_path)).logits
    scores = expected.softmax(-1)[0]
    top = scores.topk(3)
    attention = case.family.bfloat16_attention or ""

    run = run_python_offline(["-c", REMOTE, str(folder), video_path, attention], cwd=tmp_path, tmp_path=tmp_path)
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["processor"] == "SfarProcessor" and result["video_processor"] == "SfarVideoProcessor"
    classifier = case.family.model_class.__name__
    classes = (classifier.replace("ForVideoClassification", "Model"), classifier)
    assert (result["AutoModel"]["class"], result["AutoModelForVideoClassification"]["class"]) == classes
    for name in ("AutoModel", "AutoModelForVideoClassification"):
        torch.testing.assert_close(torch.tensor(result[name]["logits"]), expected)
    assert [p["label"] for p in result["pipeline"]] == [case.model.config.id2label[i] for i in top.indices.tolist()]
    torch.testing.assert_close(torch.tensor([p["score"] for p in result["pipeline"]]), top.values)
    if attention:
        assert result["chosen"]["attention"] == [attention]  # every attention module of the loaded model
        torch.testing.assert_close(torch.tensor(result["chosen"]["logits"]), expected)  # float32: SDPA's results
        half = result["pipeline_bfloat16"]
        assert half["dtype"] == "torch.bfloat16" and half["attention"] == attention
        for p in half["scores"]:
            assert abs(p["score"] - float(scores[case.model.config.label2id[p["label"]]])) < 0.02
