"""The contract every model family keeps, one test for all of them (SFAR and ALT): a saved folder ships exactly its
family's remote-code files and loads through the auto classes, also as remote code in a fresh process where
`modeling_sfar` cannot be imported, with the video-classification pipeline on an mp4 and the zero-shot pipeline on
real videos; torch.save round trips; the label set given as token ids, or built as a value, equals the stored one;
multi-view prediction averages the probabilities; a training step reaches the vision tower and the family's own
modules, never the frozen text tower."""

from __future__ import annotations

import copy
import io
import json
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoTokenizer

from modeling_sfar.evaluation.predict import predict_views
from tests.conftest import BLOCK_MODELING_SFAR, LABELS, ZERO_SHOT_LABELS, run_python_offline

AUTO_CLASSES = {"AutoConfig", "AutoModel", "AutoModelForVideoClassification", "AutoProcessor", "AutoVideoProcessor"}


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


def test_a_label_set_built_as_a_value_classifies_as_the_stored_one(case):
    """`build_label_set` is what `set_label_set` stores, as a value for the forward (in the words' form and in the
    inference form); it leaves the stored label set alone; its texts default to the family's (ALT: its corpus)."""
    base, tokenizer, pixels = case.model.base_model, case.processor.tokenizer, case.pixels(2)
    texts = case.zero_shot_texts.get(base.texts_argument)  # the pipeline's keyword for the family's texts
    with torch.no_grad():
        stored = case.model(pixels).logits
        built = base.build_label_set(LABELS, tokenizer, case.texts)
        torch.testing.assert_close(case.model(pixels, label_set=built).logits, stored)
        torch.testing.assert_close(case.model(pixels, label_set=base.inference_label_set(built)).logits, stored)
        new = base.build_label_set(ZERO_SHOT_LABELS, tokenizer, texts)
        assert case.model(pixels, label_set=new).logits.shape == (2, len(ZERO_SHOT_LABELS))
        templated = base.build_label_set(ZERO_SHOT_LABELS, tokenizer, texts, prompt_template="a clip of {}")
    assert not torch.allclose(templated.text_embeds, new.text_embeds)
    assert list(case.model.config.id2label.values()) == LABELS
    torch.testing.assert_close(case.model.base_model.stored_label_set().text_embeds, built.text_embeds)
    with pytest.raises(ValueError, match="exactly one"):
        base.build_label_set(ZERO_SHOT_LABELS, tokenizer, texts, prompt_template="no slot")
    if base.default_texts() is not None:  # ALT: a new label set reuses the stored corpus
        torch.testing.assert_close(new.entity_embeds, built.entity_embeds)


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


ZERO_SHOT = BLOCK_MODELING_SFAR + textwrap.dedent(
    """
    import json, sys

    from transformers import pipeline

    folder, request = sys.argv[1], json.loads(sys.argv[2])
    classifier = pipeline("zero-shot-video-classification", model=folder, trust_remote_code=True)
    results = classifier(request.pop("videos"), batch_size=2, **request)
    print(json.dumps({"class": type(classifier).__module__, "results": results}))
    """
)


@pytest.mark.slow
def test_zero_shot_pipeline_of_a_saved_folder_in_a_process_without_the_package(case, real_videos, tmp_path):
    """The folder's own pipeline classifies real videos among new labels (SFAR with their sub-texts, ALT with its
    stored corpus), in one batch: the scores of the model given the label set, sorted, with what the family explains
    of each video (SFAR's frame weights of every label, ALT's grounded entities)."""
    folder = tmp_path / f"{case.family.name}-tiny"
    case.model.save_pretrained(folder)
    case.processor.save_pretrained(folder)
    request = {"videos": real_videos, "candidate_labels": ZERO_SHOT_LABELS, case.explanation: True}
    run = run_python_offline(
        ["-c", ZERO_SHOT, str(folder), json.dumps({**request, **case.zero_shot_texts})], cwd=tmp_path, tmp_path=tmp_path
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["class"].startswith("transformers_modules.") and result["class"].endswith(".pipeline_clip_video")

    base = case.model.base_model
    texts = case.zero_shot_texts.get(base.texts_argument)
    label_set = base.build_label_set(ZERO_SHOT_LABELS, case.processor.tokenizer, texts)
    for video, ranked in zip(real_videos, result["results"], strict=True):
        with torch.no_grad():
            out = case.model(**case.processor(videos=video), label_set=label_set)
        scores = out.logits[0].softmax(-1)
        order = scores.argsort(descending=True).tolist()
        assert [item["label"] for item in ranked] == [ZERO_SHOT_LABELS[c] for c in order]
        torch.testing.assert_close(torch.tensor([item["score"] for item in ranked]), scores[order])
        for item, c in zip(ranked, order, strict=True):
            if case.explanation == "return_frame_weights":
                for name in ("coarse_frame_weights", "fine_frame_weights"):
                    torch.testing.assert_close(torch.tensor(item[name]), getattr(out, name)[0, c])
            else:  # the shares of the video's patches, as the demo's picture counts them
                from modeling_sfar.demo.plots import patch_entities, region_legend

                shares = region_legend(patch_entities(out.patch_to_token[0], out.entity_indices[0]))
                assert [(e["entity"], e["share"]) for e in item["entities"]] == [
                    (case.model.config.entities[j], share) for j, share in shares
                ]
