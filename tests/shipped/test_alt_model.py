"""ALT as a user meets it: converted from CLIP, saved and loaded (also as remote code in a fresh process without this
package, through the auto classes and the video-classification pipeline on an mp4), its label set, its errors."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoTokenizer

from modeling_sfar import AltConfig, AltForVideoClassification, clip_to_alt_state_dict, convert_clip_to_alt
from tests.conftest import ENTITIES, LABELS


def test_conversion_takes_clip_weights_and_stores_the_label_set(alt_converted, tiny_clip_dir):
    from transformers import CLIPModel

    model, processor = alt_converted
    clip = CLIPModel.from_pretrained(tiny_clip_dir)
    state = model.state_dict()
    for key, value in clip_to_alt_state_dict(clip.state_dict()).items():
        torch.testing.assert_close(state[key], value, msg=key)
    assert model.config.id2label == dict(enumerate(LABELS)) and model.config.entities == ENTITIES
    cache = model.alt.label_set_cache
    assert cache.text_embeds.shape == (4, 32) and cache.entity_embeds.shape == (6, 32) and bool(cache.has_text_features)
    torch.testing.assert_close(cache.entity_embeds.norm(dim=-1), torch.ones(6))
    with pytest.raises(ValueError, match="unexpected key"):
        clip_to_alt_state_dict({"something.else": torch.zeros(1)})


def test_outputs_show_what_each_region_grounded(alt_converted, video_path):
    model, processor = alt_converted
    inputs = processor(videos=video_path)
    with torch.no_grad():
        out = model.eval()(**inputs)
    tokens = 17 - 2 * 3
    assert out.logits.shape == (1, 4)
    assert out.entity_indices.shape == (1, 4, tokens) and out.entity_indices.max() < len(ENTITIES)
    assert out.token_sizes.shape == (1, 4, tokens) and (out.token_sizes.sum(-1) == 17).all()
    assert out.patch_to_token.shape == (1, 4, 17) and out.patch_to_token.max() < tokens
    grounded = [model.config.entities[j] for j in out.entity_indices[0, 0].tolist()]
    assert all(text in ENTITIES for text in grounded)


def test_bad_label_sets_and_configs_are_refused_with_a_reason(alt_converted, tiny_clip_dir):
    model, _ = alt_converted
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_dir)
    with pytest.raises(ValueError, match="entity corpus"):
        model.alt.tokenize_label_set(LABELS, tokenizer, None)
    with pytest.raises(ValueError, match="entity 1 must be a non-empty string"):
        model.alt.check_label_set(LABELS, ["hands", " "])
    with pytest.raises(ValueError, match="repeats"):
        model.alt.check_label_set(LABELS, ["hands", "hands"])
    with pytest.raises(ValueError, match="duplicate labels"):
        model.alt.check_label_set(["a", "a"], ENTITIES)
    with pytest.raises(ValueError, match="come with the class prompts"):
        model(torch.zeros(1, 4, 3, 32, 32), entity_input_ids=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="pixel_values must be"):
        model(torch.zeros(4, 3, 32, 32))
    for field, value, message in [
        ("token_merging_r", -1, "token_merging_r must be an integer >= 0"),
        ("decoder_kernel_size", 2, "must be odd"),
        ("gumbel_tau", 0.0, "gumbel_tau must be > 0"),
        ("gumbel_tau", float("nan"), "gumbel_tau must be a finite number"),
        ("prompt_templates", ["no slot"], "exactly one"),
        ("problem_type", "multi_label_classification", "problem_type"),
    ]:
        # 5.19's strict config reports a validator's ValueError as a StrictDataclassError naming the reason
        with pytest.raises(StrictDataclassError, match=message):
            AltConfig(**{field: value})


def test_the_corpus_free_baseline_needs_no_entities(tiny_clip_dir):
    model, _ = convert_clip_to_alt(tiny_clip_dir, LABELS, None, num_frames=4, use_entity_corpus=False)
    assert "alt.label_set_cache.entity_embeds" not in model.state_dict()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 3, 32, 32))
    assert out.entity_indices is None and out.logits.shape == (1, 4)


def test_the_decoder_starts_as_clip_starts_its_transformer_layers(tiny_clip_dir, tmp_path):
    """The decoder's and the alignment's layers take CLIP's width-scaled standard deviations (not the library's fixed
    0.02, with which a small-width decoder's output is too small to depend on the video: docs/alt.md), converted
    models included; loading a checkpoint keeps its values."""
    from modeling_sfar.remote_code.modeling_alt import AltMLP
    from modeling_sfar.remote_code.modeling_clip_video import ClipVideoAttention

    torch.manual_seed(0)
    model, _ = convert_clip_to_alt(tiny_clip_dir, LABELS, ENTITIES, num_frames=4, num_decoder_layers=2)
    width, depth = model.config.projection_dim, model.config.num_decoder_layers
    inner = width**-0.5 * (2 * depth) ** -0.5
    expected = {}
    for name, module in model.named_modules():
        if isinstance(module, ClipVideoAttention):
            expected.update({f"{name}.q_proj.weight": 0.02, f"{name}.k_proj.weight": 0.02})  # the library's
            expected.update({f"{name}.v_proj.weight": inner, f"{name}.out_proj.weight": width**-0.5})
        elif isinstance(module, AltMLP):
            expected[f"{name}.fc1.weight"] = (2 * width) ** -0.5
            expected[f"{name}.fc2.weight"] = inner
    assert any(".decoder.video_mlp." in key for key in expected) and any(".alignment.mlp." in key for key in expected)
    weights = dict(model.named_parameters())
    for key, std in expected.items():
        assert weights[key].std().item() == pytest.approx(std, rel=0.25), key

    trained = {key: torch.full_like(weights[key], 0.5) for key in expected}
    model.load_state_dict(trained, strict=False)
    model.save_pretrained(tmp_path)
    restored = AltForVideoClassification.from_pretrained(tmp_path)
    assert all(torch.equal(dict(restored.named_parameters())[key], trained[key]) for key in expected)


def test_a_decoder_of_no_blocks_builds_and_runs(tiny_clip_dir):
    """`num_decoder_layers=0` is a valid configuration: z is the final MLP of the averaged aligned queries."""
    model, _ = convert_clip_to_alt(tiny_clip_dir, LABELS, ENTITIES, num_frames=4, num_decoder_layers=0)
    with torch.no_grad():
        assert model(torch.randn(1, 4, 3, 32, 32)).logits.shape == (1, len(LABELS))
