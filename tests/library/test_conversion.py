"""CLIP -> SFAR conversion: a pure key mapping, loaded strictly, that keeps CLIP's behaviour."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, CLIPModel

from modeling_sfar import SfarConfig, SfarForVideoClassification, clip_to_sfar_state_dict, sfar_config_from_clip
from modeling_sfar.conversion.sfar import SFAR_NEW_KEY_PREFIXES
from tests.conftest import LABELS, SUBTEXTS


def test_conversion_loads_strictly(tiny_clip_dir):
    clip = CLIPModel.from_pretrained(tiny_clip_dir)
    converted = clip_to_sfar_state_dict(clip.state_dict())
    model = SfarForVideoClassification(sfar_config_from_clip(clip.config, num_frames=4))
    new = {k for k in model.state_dict() if k.removeprefix("sfar.").startswith(SFAR_NEW_KEY_PREFIXES)}
    # CLIP provides exactly every key that is not SFAR's own: nothing missing, nothing unexpected
    assert set(converted) == set(model.state_dict()) - new
    assert not set(converted) & new
    result = model.load_state_dict({**converted, **{k: model.state_dict()[k] for k in new}}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_conversion_rejects_foreign_keys():
    with pytest.raises(ValueError, match="unexpected key in the CLIP state dict: 'classifier.weight'"):
        clip_to_sfar_state_dict({"classifier.weight": torch.zeros(1)})


def test_converted_model_keeps_clip_text_and_frame_features(tiny_clip_dir, converted):
    model, _ = converted
    clip = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_dir)
    prompts = [f"This is a video about {t}" for t in ("Apply Eye Makeup", "brush hair", "jump", "Playing Daf")]
    expected = clip.get_text_features(**tokenizer(prompts, padding=True, return_tensors="pt"))
    expected = getattr(expected, "pooler_output", expected)
    torch.testing.assert_close(model.sfar.text_embeds, torch.nn.functional.normalize(expected, dim=-1))
    images = torch.randn(3, 3, 32, 32)
    image_features = clip.get_image_features(pixel_values=images)
    image_features = getattr(image_features, "pooler_output", image_features)
    torch.testing.assert_close(model.sfar.get_frame_features(images[None])[0], image_features)
    torch.testing.assert_close(model.sfar.logit_scale, clip.logit_scale)


def test_converted_model_starts_as_clip_mean_pooling_for_clip_variant(tiny_clip_dir):
    from modeling_sfar import convert_clip_to_sfar

    model, _ = convert_clip_to_sfar(tiny_clip_dir, LABELS, SUBTEXTS, variant="clip", num_frames=4)
    assert model.sfar.temporal is None and model.sfar.coarse_ffn is None
    clip = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    frames = torch.randn(2, 4, 3, 32, 32)
    image = clip.get_image_features(pixel_values=frames.flatten(0, 1))
    image = getattr(image, "pooler_output", image).view(2, 4, -1).mean(1)
    expected = clip.logit_scale.exp() * torch.nn.functional.normalize(image, dim=-1) @ model.sfar.text_embeds.T
    torch.testing.assert_close(model(frames).logits, expected)


def test_vit_b16_parameter_count():
    """The figure the README reports: SFAR on CLIP ViT-B/16 (the paper prints 126.1 M)."""
    vision = {
        "patch_size": 16,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "image_size": 224,
    }
    with torch.device("meta"):
        model = SfarForVideoClassification(SfarConfig(vision_config=vision, projection_dim=512))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert round(total / 1e6, 1) == 173.8
    assert round(trainable / 1e6, 1) == 110.4
