"""Token merging as SFAR's speed option (`SfarConfig.token_merging_r`): off by default and then bit-identical to
CLIP's tower; on, the frame embedding is the projected class token of the merging tower."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError

from modeling_sfar import SfarForVideoClassification
from modeling_sfar.remote_code.token_merging import token_merging_vision_forward
from tests.conftest import tiny_classifier, tiny_config


def test_default_r_zero_is_the_bare_clip_tower_bit_for_bit():
    model = tiny_classifier().eval()
    assert model.config.token_merging_r == 0
    pixels = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        frames = model.sfar.get_frame_features(pixels)
        bare = model.sfar.visual_projection(model.sfar.vision_model(pixel_values=pixels.flatten(0, 1)).pooler_output)
    assert torch.equal(frames, bare.view(2, 5, -1))


def test_merging_frames_are_the_projected_class_token_and_the_head_is_unchanged(tmp_path):
    bare = tiny_classifier().eval()
    merged = tiny_classifier(token_merging_r=1).eval()
    merged.load_state_dict(bare.state_dict())  # merging has no parameters: the same checkpoint serves both
    pixels = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        frames = merged.sfar.get_frame_features(pixels)
        tome = token_merging_vision_forward(merged.sfar.vision_model, pixels.flatten(0, 1), 1)
        out = merged(pixels, output_hidden_states=True)
    torch.testing.assert_close(frames, merged.sfar.visual_projection(tome.pooler_output).view(2, 5, -1))
    assert out.logits.shape == (2, 3)
    # 5 tokens (4 patches and the class token), one merged per block: 5, then 4
    assert [h.shape[1] for h in out.hidden_states] == [5, 4, 3][: len(out.hidden_states)]
    merged.save_pretrained(tmp_path)
    assert (tmp_path / "token_merging.py").is_file()
    assert SfarForVideoClassification.from_pretrained(tmp_path).config.token_merging_r == 1


def test_negative_r_is_refused():
    with pytest.raises(StrictDataclassError, match="token_merging_r must be an integer >= 0"):
        tiny_config(token_merging_r=-2)
