"""transformers' model contract beyond the common tests: the label set as an input, the initialisation of
docs/method.md section 6 on every construction path, outputs, and big-model loading (CPU + disk offload)."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForVideoClassification, AutoTokenizer, CLIPModel

from modeling_sfar import SfarForVideoClassification, SfarModel, clip_to_sfar_state_dict, sfar_config_from_clip
from tests.conftest import BLOCK_MODELING_SFAR, LABELS, SUBTEXTS, run_python_offline, tiny_classifier, tiny_config


def fusion_ffns_are_zero(model) -> bool:
    sfar = getattr(model, "sfar", model)
    layers = [ffn.fc2 for ffn in (sfar.coarse_ffn, sfar.fine_ffn)]
    return all(not layer.weight.any() and not layer.bias.any() for layer in layers)


# -- the label set is a value -----------------------------------------------------------------------------------


def test_model_from_config_classifies_with_the_label_set_given_as_token_ids(converted, tiny_clip_dir):
    """The same logits from the label set given as token ids (a model built from its config, none stored) as from
    the one `set_label_set` stored."""
    model, _ = converted
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_dir)
    fresh = SfarForVideoClassification(model.config).eval()
    fresh.load_state_dict({k: v for k, v in model.state_dict().items()})
    fresh.sfar.has_text_features.zero_()  # as built from its config: nothing stored
    text = fresh.sfar.tokenize_label_set(LABELS, tokenizer, SUBTEXTS)
    assert text["input_ids"].shape[0] == 4 and text["subtext_input_ids"].shape[:2] == (4, 4)
    pixel_values = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(pixel_values).logits
        torch.testing.assert_close(fresh(pixel_values, **text).logits, expected)
        encoded = fresh.sfar.encode_label_set(**text)
        torch.testing.assert_close(fresh(pixel_values, label_set=encoded).logits, expected)
        with pytest.raises(ValueError, match="no label set"):
            fresh(pixel_values)


def test_label_set_given_to_the_forward_leaves_the_stored_one_alone(converted, tiny_clip_dir):
    model, _ = converted
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_dir)
    labels = ["swim", "run"]
    text = model.sfar.tokenize_label_set(
        labels, tokenizer, {label: [f"{label} {i}" for i in range(4)] for label in labels}
    )
    stored = model.sfar.text_embeds.clone()
    with torch.no_grad():
        assert model(torch.randn(1, 4, 3, 32, 32), **text).logits.shape == (1, 2)
    assert torch.equal(model.sfar.text_embeds, stored) and model.config.id2label[0] == LABELS[0]


def test_stored_label_set_shapes_come_from_the_architecture_and_the_config(converted):
    model, _ = converted
    positions = model.config.text_config.max_position_embeddings - 1  # the context without its start token
    # the words kept in memory for training: padded to the text context
    assert model.sfar.prompt_word_embeds.shape == (4, positions, model.config.projection_dim)
    assert model.sfar.subtext_word_mask.shape == (4, 4, positions)
    # the saved constants: as wide as the longest prompt, recorded in the config
    width = int(model.sfar.prompt_word_mask.sum(-1).max())
    assert model.config.stored_prompt_words == width
    assert model.sfar.label_set_cache.augmented_prompt_words.shape == (4, width, model.config.projection_dim)
    assert "prompt_length" not in model.config.to_dict()


def test_label_set_tensors_on_the_meta_device_are_refused():
    with torch.device("meta"):
        model = SfarModel(tiny_config())
    with pytest.raises(ValueError, match="not loaded"):
        model.stored_label_set()


def test_checkpoint_without_the_label_set_fails_loudly(tmp_path):
    """Label-set keys missing from a checkpoint empty the stored label set: the forward refuses, never reads zeros."""
    model = tiny_classifier().eval()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["sfar.label_set_cache.augmented_prompt_words"]  # one tensor missing is enough
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = SfarForVideoClassification.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no label set"):
        loaded(torch.randn(1, 5, 3, 16, 16))


# -- docs/method.md section 6: the fusion FFNs start as the identity, on every construction path


def test_fusion_ffns_start_at_zero_from_a_config_and_from_config():
    config = tiny_config()
    assert fusion_ffns_are_zero(SfarModel(config))
    assert fusion_ffns_are_zero(SfarForVideoClassification(config))
    assert fusion_ffns_are_zero(AutoModelForVideoClassification.from_config(config))
    assert fusion_ffns_are_zero(AutoModel.from_config(config))
    # the rest of the new modules is initialised (not left at zero): the temporal attention and the FFNs' first layer
    model = SfarModel(config)
    assert model.coarse_ffn.fc1.weight.std() > 0 and model.temporal.layers[0].self_attn.q_proj.weight.std() > 0


def test_fusion_ffns_start_at_zero_from_a_clip_checkpoint(tiny_clip_dir, tmp_path):
    """`from_pretrained` of CLIP weights (SFAR's keys) with the new modules missing: they are initialised."""
    clip = CLIPModel.from_pretrained(tiny_clip_dir)
    config = sfar_config_from_clip(clip.config, num_frames=4)
    config.save_pretrained(tmp_path)
    save_file(clip_to_sfar_state_dict(clip.state_dict()), tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = SfarForVideoClassification.from_pretrained(tmp_path)
    assert fusion_ffns_are_zero(model)
    torch.testing.assert_close(model.sfar.visual_projection.weight, clip.visual_projection.weight)
    with pytest.raises(ValueError, match="no label set"):  # CLIP has no label set
        model(torch.randn(1, 4, 3, 32, 32))


REMOTE_INIT = BLOCK_MODELING_SFAR + textwrap.dedent(
    """
    import json, sys
    from transformers import AutoConfig, AutoModelForVideoClassification

    config = AutoConfig.from_pretrained(sys.argv[1], trust_remote_code=True)
    model = AutoModelForVideoClassification.from_config(config, trust_remote_code=True)
    assert "transformers_modules" in type(model).__module__
    ffns = [model.sfar.coarse_ffn.fc2, model.sfar.fine_ffn.fc2]
    print(json.dumps({"max": max(float(f.weight.abs().max()) for f in ffns)}))
    """
)


def test_fusion_ffns_start_at_zero_through_remote_code(tmp_path):
    model = tiny_classifier()
    model.save_pretrained(tmp_path / "sfar")
    run = run_python_offline(["-c", REMOTE_INIT, str(tmp_path / "sfar")], cwd=tmp_path, tmp_path=tmp_path)
    assert json.loads(run.stdout.strip().splitlines()[-1])["max"] == 0.0


# -- outputs ----------------------------------------------------------------------------------------------------


def test_hidden_states_and_attentions_of_the_vision_tower_and_the_temporal_module():
    model = tiny_classifier().eval()
    model.sfar.vision_model.set_attn_implementation("eager")
    out = model(torch.randn(2, 5, 3, 16, 16), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 2 and out.hidden_states[0].shape == (10, 5, 32)  # 1 layer + embeddings
    assert len(out.attentions) == 1 and out.attentions[0].shape == (10, 2, 5, 5)
    assert len(out.temporal_hidden_states) == 3 and out.temporal_hidden_states[-1].shape == (2, 5, 16)
    # the temporal module's output is its input plus the stack (a residual around it)
    torch.testing.assert_close(out.frame_embeds - out.temporal_hidden_states[0], out.temporal_hidden_states[-1]
                               - model.sfar.temporal.position_embedding.weight[:5])  # fmt: skip
    assert model(torch.randn(1, 5, 3, 16, 16)).hidden_states is None


def test_return_dict_false_gives_a_tuple_with_the_loss_first():
    model = tiny_classifier().train()
    labels = torch.tensor([0, 1])
    out = model(torch.randn(2, 5, 3, 16, 16), labels=labels, return_dict=False)
    assert isinstance(out, tuple) and out[0].ndim == 0 and out[1].shape == (2, 3)


def test_unknown_forward_arguments_are_refused():
    model = tiny_classifier()
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['frames'\\]"):
        model(torch.randn(1, 5, 3, 16, 16), frames=3)


# -- big-model loading ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SfarForVideoClassification, SfarModel])
def test_cpu_and_disk_offload_give_the_same_logits(cls, tmp_path):
    model = tiny_classifier().eval()
    model.save_pretrained(tmp_path / "sfar")
    prefix = "sfar." if cls is SfarForVideoClassification else ""
    device_map = {f"{prefix}{name}": "cpu" for name, _ in model.sfar.named_children()}
    device_map.update({f"{prefix}{name}": "cpu" for name, _ in model.sfar.named_parameters(recurse=False)})
    device_map.update({f"{prefix}{name}": "cpu" for name, _ in model.sfar.named_buffers(recurse=False)})
    for name in ("vision_model", "temporal", "fine_ffn"):  # a split map: these go to disk
        device_map[f"{prefix}{name}"] = "disk"
    loaded = cls.from_pretrained(tmp_path / "sfar", device_map=device_map, offload_folder=tmp_path / "offload")
    assert set(loaded.hf_device_map.values()) == {"cpu", "disk"}
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values).logits, model(pixel_values).logits)


@pytest.mark.parametrize("cls", [SfarForVideoClassification, SfarModel])
def test_device_map_auto_offloads_to_disk_when_memory_is_short(cls, tmp_path):
    model = tiny_classifier().eval()
    model.save_pretrained(tmp_path / "sfar")
    loaded = cls.from_pretrained(
        tmp_path / "sfar", device_map="auto", max_memory={"cpu": "100KB"}, offload_folder=tmp_path / "offload"
    )
    assert "disk" in loaded.hf_device_map.values()
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values).logits, model(pixel_values).logits)


def _temporal_layers_return_attention_weights() -> bool:
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer

    from modeling_sfar.remote_code.modeling_sfar import SfarTemporalLayer

    return issubclass(SfarTemporalLayer, CLIPEncoderLayer)


@pytest.mark.skipif(
    not _temporal_layers_return_attention_weights(),
    reason="the temporal layers' attention returns no attention weights; CLIPEncoderLayer-based layers do",
)
def test_temporal_attentions_are_returned_with_eager_attention():
    model = tiny_classifier(attn_implementation="eager").eval()
    out = model(torch.randn(2, 5, 3, 16, 16), output_attentions=True)
    assert len(out.temporal_attentions) == 2 and out.temporal_attentions[0].shape == (2, 1, 5, 5)
