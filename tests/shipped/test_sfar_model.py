"""Model contract over every variant, gradients, label sets, save/load, multi-view, bad configuration."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from modeling_sfar import SFAR_VARIANTS, SfarConfig, SfarModel
from tests.conftest import LABELS, SUBTEXTS, tiny_classifier, tiny_config


@pytest.mark.parametrize("variant", sorted(SFAR_VARIANTS))
def test_every_variant_trains_one_step(variant):
    model = tiny_classifier(variant).train()
    pixel_values = torch.randn(4, 5, 3, 16, 16)
    labels = torch.tensor([0, 1, 1, 2])
    out = model(pixel_values, labels=labels)
    assert out.logits.shape == (4, 3) and out.video_embeds.shape == (4, 3, 16)
    assert out.frame_embeds.shape == (4, 5, 16) and out.text_embeds.shape == (3, 16)
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all()
    out.loss.backward()
    assert model.sfar.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0


def test_gradients_reach_vision_and_new_modules_never_text():
    model = tiny_classifier("sfar").train()
    model(torch.randn(4, 5, 3, 16, 16), labels=torch.tensor([0, 1, 2, 0])).loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name, grad in grads.items():
        if ".text_model." in name or ".text_projection." in name:
            assert grad is None, name
    for prefix in (
        "sfar.vision_model.",
        "sfar.visual_projection.",
        "sfar.temporal.",
        "sfar.subtext_attention.",
        "sfar.coarse_ffn.",
        "sfar.fine_ffn.",
        "sfar.logit_scale",
    ):
        reached = [g for n, g in grads.items() if n.startswith(prefix) and g is not None and g.abs().sum() > 0]
        assert reached, prefix


def test_text_tower_is_frozen():
    model = tiny_classifier()
    assert not any(p.requires_grad for p in model.sfar.text_model.parameters())
    assert not model.sfar.text_projection.weight.requires_grad


def test_multi_label_views_average_the_sigmoid_probabilities():
    """A multi-label model's views are averaged as its loss reads them: per-class sigmoids, whose logit is returned."""
    from modeling_sfar import average_over_views
    from modeling_sfar.evaluation.predict import predict_views

    model = tiny_classifier("sfar", problem_type="multi_label_classification").eval()
    views = torch.randn(2, 3, 5, 3, 16, 16)
    with torch.no_grad():
        out, _ = predict_views(model, views)
        per_view = torch.stack([model(views[:, v]).logits.sigmoid() for v in range(3)], 1)
    torch.testing.assert_close(out.sigmoid(), per_view.mean(1))
    # a class no view sees keeps its logit (near the bias of -10, not the -5.4 a softmax average would give); a class
    # one view sees gets the logit of the mean of its two probabilities
    logits = torch.tensor([[[-10.1, 2.0], [-10.1, -3.0]]])  # (B=1, V=2, C=2)
    averaged = average_over_views(logits, multi_label=True)
    torch.testing.assert_close(averaged[0, 0], torch.tensor(-10.1), atol=1e-4, rtol=0)
    mean = (torch.tensor(2.0).sigmoid() + torch.tensor(-3.0).sigmoid()) / 2
    torch.testing.assert_close(averaged[0, 1], torch.log(mean / (1 - mean)))


def test_set_label_set_encodes_once_and_replaces_labels(converted):
    model, processor = converted
    assert model.config.id2label[0] == LABELS[0]
    assert model.sfar.text_embeds.shape == (4, model.config.projection_dim)
    assert model.sfar.subtext_word_embeds.shape[:2] == (4, 4)
    # the mask keeps the text's own tokens and its end token, not the start token or padding
    tokens = processor.tokenizer(SUBTEXTS[LABELS[0]][0])["input_ids"]
    assert int(model.sfar.subtext_word_mask[0, 0].sum()) == len(tokens) - 1


def test_new_label_set_for_zero_shot(converted, tiny_clip_dir):
    from transformers import AutoTokenizer

    model, _ = converted
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_dir)
    other = copy.deepcopy(model)
    labels = ["swim", "run"]
    other.set_label_set(labels, tokenizer, {label: [f"{label} {i}" for i in range(4)] for label in labels})
    assert other.config.id2label == {0: "swim", 1: "run"} and other.config.label2id == {"swim": 0, "run": 1}
    out = other(torch.randn(1, 4, 3, 32, 32))
    assert out.logits.shape == (1, 2)


@pytest.mark.parametrize(
    "subtexts, message",
    [
        ({"swim": ["a", "b", "c", "d"]}, "label 'run' has no sub-texts"),
        ({"swim": ["a", "b", "c", "d"], "run": ["a", "b"]}, "label 'run' has 2 sub-texts"),
        ({"swim": ["a", "b", "c", "d"], "run": ["a", "b", " ", "d"]}, "label 'run' has an empty sub-text"),
        ({"swim": ["a", "b", "c", "d"], "run": "abcd"}, "label 'run': sub-texts must be a list of strings, got str"),
        ({"swim": ["a", "b", "c", "d"], "run": ["a", None, "c", "d"]}, "label 'run' has a sub-text that is not a s"),
    ],
)
def test_label_without_n_subtexts_is_an_error_naming_it(converted, tiny_clip_dir, subtexts, message):
    from transformers import AutoTokenizer

    model, _ = converted
    with pytest.raises(ValueError, match=message):
        model.set_label_set(["swim", "run"], AutoTokenizer.from_pretrained(tiny_clip_dir), subtexts)
    assert model.config.id2label[0] == LABELS[0]  # a failed call leaves the label set alone


def test_model_without_label_set_says_so():
    model = SfarModel(tiny_config())
    with pytest.raises(ValueError, match="no label set"):
        model(torch.randn(1, 5, 3, 16, 16))


def test_too_many_frames_is_an_error():
    model = tiny_classifier()
    with pytest.raises(ValueError, match="6 frames but the model's temporal module has 5"):
        model(torch.randn(1, 6, 3, 16, 16))


def test_out_of_range_label_is_an_error():
    model = tiny_classifier().train()
    with pytest.raises(ValueError, match="labels must lie in"):
        model(torch.randn(2, 5, 3, 16, 16), labels=torch.tensor([0, 7]))


def test_multi_label_uses_a_sigmoid_objective():
    model = tiny_classifier(problem_type="multi_label_classification").train()
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model(torch.randn(2, 5, 3, 16, 16), labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels)
    torch.testing.assert_close(out.loss, expected)
    assert model.sfar.logit_bias is not None


def test_prompt_ensemble_is_mean_of_normalised_template_embeddings(tiny_clip_dir):
    from transformers import AutoTokenizer

    from modeling_sfar import ACTIONCLIP_PROMPT_TEMPLATES, class_name_to_text, convert_clip_to_sfar

    model, _ = convert_clip_to_sfar(tiny_clip_dir, LABELS, variant="actionclip", num_frames=4)
    assert model.config.loss_type == "actionclip" and len(model.config.prompt_templates) == 16
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_dir)
    per_template = [
        torch.nn.functional.normalize(
            model.sfar.encode_text([t.format(class_name_to_text(label)) for label in LABELS], tokenizer)["embeds"],
            dim=-1,
        )
        for t in ACTIONCLIP_PROMPT_TEMPLATES
    ]
    expected = torch.nn.functional.normalize(torch.stack(per_template).mean(0), dim=-1)
    torch.testing.assert_close(model.sfar.text_embeds, expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fusion": "max"}, "fusion must be one of"),
        ({"num_frames": 0}, "num_frames must be an integer >= 1"),
        ({"num_temporal_layers": -1}, "num_temporal_layers must be an integer >= 0"),
        ({"frame_temperature": 0.0}, "frame_temperature must be > 0"),
        ({"word_tokens": "some"}, "word_tokens must be one of"),
        ({"loss_type": "mse"}, "loss_type must be one of"),
        ({"loss_lambda": -1.0}, "loss_lambda must be >= 0"),
        ({"prompt_template": "no slot"}, "must contain exactly one"),
        ({"projection_dim": 199}, "must split into 3 attention heads"),
        ({"id2label": {0: "a", 1: "b"}, "subtexts": {"a": ["x"] * 4}}, "label 'b' has no sub-texts"),
        ({"frame_temperature": float("nan")}, "frame_temperature must be a finite number"),
        ({"loss_lambda": float("inf")}, "loss_lambda must be a finite number"),
        ({"logit_scale_init_value": "2.6"}, "logit_scale_init_value must be a finite number"),
        ({"num_subtexts": True}, "num_subtexts must be an integer >= 1"),
        ({"problem_type": "regression"}, "problem_type must be one of"),
        ({"id2label": {0: "a"}, "subtexts": {"a": "abcd"}}, "label 'a': sub-texts must be a list of strings"),
        (
            {"id2label": {0: "a"}, "subtexts": {"a": ["w", 2, "y", "z"]}},
            "label 'a' has a sub-text that is not a string",
        ),
    ],
)
def test_invalid_config_raises_naming_the_field(kwargs, message):
    """The `@strict` config's validators (run by the generated `validate()`, with transformers' own)."""
    from huggingface_hub.errors import StrictDataclassClassValidationError

    with pytest.raises(StrictDataclassClassValidationError, match=message):
        SfarConfig(**kwargs)


def test_config_runs_the_library_validators_too():
    """The generated `validate()` is not overridden: transformers' own checks run (here the output-attentions one)."""
    config = SfarConfig()
    assert "validate_output_attentions" in {v.__name__ for v in type(config).__class_validators__}
    assert {"validate_sizes", "validate_numbers", "validate_subtexts"} <= {
        v.__name__ for v in type(config).__class_validators__
    }


def test_legacy_label_set_lengths_in_a_saved_config_are_dropped():
    """Configs saved before the label set became an input carried `prompt_length` / `subtext_length`."""
    config = SfarConfig(prompt_length=7, subtext_length=9)
    assert "prompt_length" not in config.to_dict() and "subtext_length" not in config.to_dict()


def test_config_round_trip(tmp_path):
    config = SfarConfig.from_variant(
        "coarse", id2label={0: "a", 1: "b"}, subtexts={"a": list("wxyz"), "b": list("wxyz")}
    )
    config.save_pretrained(tmp_path)
    loaded = SfarConfig.from_pretrained(tmp_path)
    assert loaded.fusion == "coarse" and loaded.subtexts == config.subtexts and loaded.id2label == {0: "a", 1: "b"}
    assert loaded.label2id == {"a": 0, "b": 1}


def test_class_names_are_normalised_for_text():
    from modeling_sfar import class_name_to_text

    assert class_name_to_text("ApplyEyeMakeup") == "Apply Eye Makeup"
    assert class_name_to_text("brush_hair") == "brush hair"
    assert class_name_to_text("YoYo") == "Yo Yo"
    assert class_name_to_text("playing guitar") == "playing guitar"


@pytest.mark.parametrize("variant", sorted(SFAR_VARIANTS))
def test_every_parameter_outside_the_text_tower_gets_a_gradient(variant):
    """No unused parameters: DDP can run without find_unused_parameters."""
    model = tiny_classifier(variant).train()
    model(torch.randn(4, 5, 3, 16, 16), labels=torch.tensor([0, 1, 1, 2])).loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def test_new_label_set_keeps_the_model_dtype(converted, tiny_clip_dir):
    from transformers import AutoTokenizer

    model = copy.deepcopy(converted[0]).double()
    model.set_label_set(
        ["swim", "run"],
        AutoTokenizer.from_pretrained(tiny_clip_dir),
        {label: [f"{label} {i}" for i in range(4)] for label in ["swim", "run"]},
    )
    assert model.sfar.text_embeds.dtype == torch.float64
    assert model(torch.randn(1, 4, 3, 32, 32, dtype=torch.float64)).logits.dtype == torch.float64


def test_label_set_words_are_cached_outside_training_and_follow_every_change():
    """Eq. 4-6 and the mean sub-text words are computed once for evaluation, and recomputed after an optimizer
    step, a state-dict load or a dtype change; with gradients they are never cached."""
    model = tiny_classifier("sfar").sfar.eval()
    frames = torch.randn(2, 5, model.config.projection_dim)
    with torch.no_grad():
        first = model.label_set_words()
        assert model.label_set_words()[0] is first[0]  # reused
        weights = model.coarse_frame_weights(frames)
    model._word_cache = None
    with torch.no_grad():
        torch.testing.assert_close(model.coarse_frame_weights(frames), weights)  # the cache changes nothing

    optimizer = torch.optim.SGD(model.subtext_attention.parameters(), lr=1.0)
    with torch.enable_grad():
        words = model.label_set_words()
        assert model.label_set_words()[0] is not words[0]  # with gradients: recomputed every time
        words[0].sum().backward()
    optimizer.step()
    with torch.no_grad():
        after_step = model.label_set_words()[0]
    assert not torch.allclose(after_step, first[0])
    uncached = F.normalize(model.augmented_prompt_words(), dim=-1)
    width = after_step.shape[1]  # cached up to the longest prompt, as stored; the positions after it are padding
    assert not model.prompt_word_mask[:, width:].any() and model.prompt_word_mask[:, width - 1].any()
    torch.testing.assert_close(after_step, uncached[:, :width])

    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.subtext_attention.q_proj.weight.mul_(-1)
        changed = model.label_set_words()[0]
        model.load_state_dict(state)
        torch.testing.assert_close(model.label_set_words()[0], after_step)
        assert not torch.allclose(changed, after_step)
        model.to(torch.float64)
        assert model.label_set_words()[0].dtype == torch.float64


def reference_softmax_attention(query, key, value, scaling):
    """softmax(q k^T * scaling) v, head by head, in float64: (B, H, L, hd) -> (B, L, H, hd)."""
    out = torch.empty(query.shape, dtype=torch.float64)
    for b in range(query.shape[0]):
        for h in range(query.shape[1]):
            q, k, v = (t[b, h].double() for t in (query, key, value))
            out[b, h] = ((q @ k.T) * scaling).softmax(-1) @ v
    return out.transpose(1, 2)


@pytest.mark.parametrize("block_bytes", [1, 2 * 7 * 7 * 3, 2**21], ids=["one-head", "three-heads", "default"])
def test_blocked_attention_is_softmax_attention_in_any_block_size(block_bytes, monkeypatch):
    """bfloat16 inference on a CPU takes the blocked path; blocks of 1, 3 (not dividing the 2 x 5 heads) or all."""
    import modeling_sfar.remote_code.cpu_kernels as modeling

    monkeypatch.setattr(modeling, "ATTENTION_BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 5, 7, 8).bfloat16() for _ in range(3))
    module = torch.nn.Module()
    with torch.no_grad():
        out, weights = modeling.blocked_sdpa_attention(module, query, key, value, None, scaling=0.3)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 7, 5, 8) and weights is None
    torch.testing.assert_close(out.double(), reference_softmax_attention(query, key, value, 0.3), rtol=0.02, atol=0.02)


def test_blocked_attention_is_transformers_sdpa_everywhere_else():
    """float32, training (gradients), a mask, or a causal module: exactly transformers' SDPA attention."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from modeling_sfar.remote_code.cpu_kernels import blocked_sdpa_attention

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.is_causal = False
    query, key, value = (torch.randn(2, 5, 7, 8) for _ in range(3))
    mask = torch.rand(2, 1, 7, 7) > 0.3
    half = [t.bfloat16().requires_grad_() for t in (query, key, value)]
    cases = [((query, key, value, None), torch.no_grad), ((query, key, value, mask), torch.no_grad),
             ((*half, None), torch.enable_grad)]  # fmt: skip
    for args, grad_mode in cases:
        with grad_mode():
            expected = sdpa_attention_forward(module, *args, scaling=0.3)[0]
            torch.testing.assert_close(blocked_sdpa_attention(module, *args, scaling=0.3)[0], expected, rtol=0, atol=0)
