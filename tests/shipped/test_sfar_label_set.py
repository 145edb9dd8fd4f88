"""The stored label set holds what inference reads (issue 17): the class embeddings and the constants of Eq. 4-6 and 9,
not the text tower's words; logits are bit for bit those computed from the words, and checkpoints saved in the
legacy layout (the words, padded to the text context) load, convert and give the same logits."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file, save_file

from modeling_sfar import SfarForVideoClassification
from modeling_sfar.evaluation.predict import predict_views
from modeling_sfar.remote_code.label_set_sfar import LABEL_SET_BUFFERS, LEGACY_LABEL_SET_BUFFERS, SfarLabelSet
from tests.conftest import tiny_classifier, tiny_config

VARIANTS = ["sfar", "coarse", "fine", "actionclip", "temporal", "clip"]
PREFIX = "sfar.label_set_cache."


def save_legacy(model: SfarForVideoClassification, path) -> None:
    """Write `model` as the code before the inference layout wrote it: the config without `stored_prompt_words`
    and the label set as the text tower's words padded to the text context (plus the sub-texts' class embeddings)."""
    assert model.config.stored_prompt_words is None  # a model built from its config keeps that layout until stored
    path.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    assert config.pop("stored_prompt_words") is None  # a key the code before did not have
    (path / "config.json").write_text(json.dumps(config))
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})


def label_set_keys(weights: dict) -> set[str]:
    return {k.removeprefix(PREFIX) for k in weights if k.startswith(PREFIX)}


def trimmed(label_set: SfarLabelSet) -> SfarLabelSet:
    """The label set padded to its longest text only, as `encode_label_set` returns it (not to the context)."""

    def width(mask: torch.Tensor) -> int:
        return int(mask.flatten(0, -2).any(0).nonzero()[-1]) + 1

    fields = dict(label_set.items())
    for words, mask in (("prompt_word_embeds", "prompt_word_mask"), ("subtext_word_embeds", "subtext_word_mask")):
        if fields.get(mask) is not None:
            keep = width(fields[mask])
            fields[words], fields[mask] = fields[words][..., :keep, :], fields[mask][..., :keep]
    return SfarLabelSet(**fields)


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_are_bit_identical_from_the_words_the_legacy_checkpoint_and_the_stored_constants(variant, tmp_path):
    model = tiny_classifier(variant).eval()  # its label set as the code before stored it: the words, padded
    words = model.sfar.stored_label_set()
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        reference = model(pixel_values).logits  # computed from the words
        assert torch.equal(model(pixel_values, label_set=words).logits, reference)

    save_legacy(model, tmp_path / "legacy")
    legacy_keys = label_set_keys(load_file(tmp_path / "legacy" / "model.safetensors"))
    assert legacy_keys == {name for name in LEGACY_LABEL_SET_BUFFERS if getattr(words, name, 0) is not None}
    converted = SfarForVideoClassification.from_pretrained(tmp_path / "legacy").eval()
    assert converted.config.stored_prompt_words is not None  # converted on load
    with torch.no_grad():
        assert torch.equal(converted(pixel_values).logits, reference)

    # saved again: the inference layout, and nothing of the words
    converted.save_pretrained(tmp_path / "converted")
    saved = label_set_keys(load_file(tmp_path / "converted" / "model.safetensors"))
    expected = {"text_embeds", "has_text_features"}
    expected |= {"augmented_prompt_words", "augmented_prompt_mask"} if model.config.uses_coarse else set()
    expected |= {"mean_subtext_words"} if model.config.uses_fine else set()
    assert saved == expected and expected <= set(LABEL_SET_BUFFERS)

    # the same label set stored anew (as `set_label_set` does, from the words padded to the longest text)
    fresh = copy.deepcopy(model)
    fresh.sfar.store_label_set(trimmed(words), labels=list(model.config.id2label.values()))
    fresh.save_pretrained(tmp_path / "stored")
    for folder in ("converted", "stored"):
        loaded = SfarForVideoClassification.from_pretrained(tmp_path / folder).eval()
        assert loaded.sfar.prompt_word_embeds is None and loaded.sfar.subtext_word_embeds is None  # not loaded
        with torch.no_grad():
            assert torch.equal(loaded(pixel_values).logits, reference), folder
            if model.config.uses_subtexts:  # and a multi-view batch, through the same constants
                views = pixel_values.view(1, 2, 5, 3, 16, 16)
                assert torch.equal(predict_views(loaded, views)[0], predict_views(model, views)[0])


def test_the_saved_label_set_has_the_sizes_inference_reads(tmp_path):
    model = tiny_classifier("sfar").eval()
    num_classes, num_subtexts, width = 3, model.config.num_subtexts, model.config.projection_dim
    longest = int(model.sfar.prompt_word_mask.sum(-1).max())  # the tiny label set's prompts are ragged
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    shapes = {k.removeprefix(PREFIX): tuple(v.shape) for k, v in weights.items() if k.startswith(PREFIX)}
    assert shapes == {
        "text_embeds": (num_classes, width),
        "augmented_prompt_words": (num_classes, longest, width),
        "augmented_prompt_mask": (num_classes, longest),
        "mean_subtext_words": (num_classes, num_subtexts, width),
        "has_text_features": (),
    }
    assert json.loads((tmp_path / "config.json").read_text())["stored_prompt_words"] == longest


def test_saved_constants_follow_the_trained_cross_attention(tmp_path):
    """The words stay in memory after `set_label_set`: training reads them, and every save writes the constants of
    the cross-attention as trained so far."""
    model = tiny_classifier("sfar")
    model.sfar.store_label_set(model.sfar.stored_label_set())
    model.save_pretrained(tmp_path / "before")
    optimizer = torch.optim.SGD(model.sfar.subtext_attention.parameters(), lr=1.0)
    pixel_values, labels = torch.randn(3, 5, 3, 16, 16), torch.tensor([0, 1, 2])
    model.train()(pixel_values, labels=labels).loss.backward()
    assert model.sfar.subtext_attention.q_proj.weight.grad.abs().sum() > 0
    optimizer.step()
    model.save_pretrained(tmp_path / "after")
    with torch.no_grad():
        trained = model.eval()(pixel_values).logits
        before = SfarForVideoClassification.from_pretrained(tmp_path / "before").eval()(pixel_values).logits
        after = SfarForVideoClassification.from_pretrained(tmp_path / "after").eval()(pixel_values).logits
    assert torch.equal(after, trained) and not torch.equal(before, trained)


def test_a_loaded_model_trains_the_cross_attention_only_on_the_words(tmp_path):
    model = tiny_classifier("sfar")
    model.save_pretrained(tmp_path)
    loaded = SfarForVideoClassification.from_pretrained(tmp_path).train()
    pixel_values, labels = torch.randn(3, 5, 3, 16, 16), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="inference constants"):
        loaded(pixel_values, labels=labels)
    with pytest.raises(ValueError, match="needs the text tower's words"):
        loaded.sfar.store_label_set(loaded.sfar.stored_label_set())
    # the label set given as words (`label_set`, or token ids): the cross-attention trains
    loaded(pixel_values, labels=labels, label_set=model.sfar.stored_label_set()).loss.backward()
    assert loaded.sfar.subtext_attention.q_proj.weight.grad.abs().sum() > 0
    with torch.no_grad():  # outside training the constants are read, with or without gradients
        loaded.eval()(pixel_values)
    loaded.eval()(pixel_values)
    # the fine branch has no trained text side: its constants serve training too
    fine = tiny_classifier("fine")
    fine.save_pretrained(tmp_path / "fine")
    loaded_fine = SfarForVideoClassification.from_pretrained(tmp_path / "fine").train()
    loaded_fine(pixel_values, labels=labels).loss.backward()


def test_a_legacy_checkpoint_offloaded_to_disk_is_read_from_its_words(tmp_path):
    """Offloaded tensors are loaded only when their module runs, so an offloaded legacy label set is not converted
    on load: the forward computes the constants from its words, as before."""
    model = tiny_classifier("sfar").eval()
    save_legacy(model, tmp_path / "legacy")
    loaded = SfarForVideoClassification.from_pretrained(
        tmp_path / "legacy", device_map="auto", max_memory={"cpu": "100KB"}, offload_folder=tmp_path / "offload"
    )
    assert "disk" in loaded.hf_device_map.values()
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values).logits, model(pixel_values).logits)


@pytest.mark.parametrize("value", [-1, 2.5, True, "16"])
def test_stored_prompt_words_must_be_a_count(value):
    with pytest.raises((ValueError, StrictDataclassError), match="stored_prompt_words"):
        tiny_config(stored_prompt_words=value)


def test_a_label_set_given_as_constants_only_is_read_and_a_missing_field_is_named():
    model = tiny_classifier("sfar").eval()
    loaded = copy.deepcopy(model)
    loaded.sfar.store_label_set(model.sfar.stored_label_set())
    constants = SfarLabelSet(
        **{k: v for k, v in loaded.sfar.stored_label_set().items() if not k.endswith(("word_embeds", "word_mask"))}
    )
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(pixel_values, label_set=constants).logits, model(pixel_values).logits)
        constants = SfarLabelSet(**{k: v for k, v in constants.items() if k != "mean_subtext_words"})
        with pytest.raises(ValueError, match="mean_subtext_words|subtext_word_embeds"):
            model(pixel_values, label_set=constants)
