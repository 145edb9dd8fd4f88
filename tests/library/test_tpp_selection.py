"""Selecting sub-text sets by TPP: per class, the valid candidate with the highest score."""

from __future__ import annotations

import pytest
import torch

from modeling_sfar import text_prompt_perplexity
from modeling_sfar.generation.tpp import select_by_tpp


def test_selection_matches_a_loop_over_classes_and_candidates():
    torch.manual_seed(0)
    classes, candidates = torch.randn(3, 8), torch.randn(3, 5, 4, 8)
    valid = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    best, tpp = select_by_tpp(["a", "b", "c"], classes, candidates, valid)
    for c in range(3):
        scores = {
            k: float(text_prompt_perplexity(classes[c : c + 1], candidates[c, k : k + 1].reshape(1, 4, 8)))
            for k in range(5)
            if valid[c, k]
        }
        assert int(best[c]) == max(scores, key=scores.get)
        for k in range(5):
            if valid[c, k]:
                assert float(tpp[c, k]) == pytest.approx(scores[k], rel=1e-5)
            else:
                assert torch.isnan(tpp[c, k])


def test_class_without_valid_candidate_is_named():
    valid = torch.tensor([[True, False], [False, False]])
    with pytest.raises(ValueError, match="class 'Archery' has no valid sub-text candidate"):
        select_by_tpp(["Diving", "Archery"], torch.randn(2, 8), torch.randn(2, 2, 4, 8), valid)


def test_the_text_encoder_is_loaded_once_per_clip_and_again_when_its_files_change(tiny_clip_dir, tmp_path, monkeypatch):
    import shutil

    from transformers import CLIPModel

    from modeling_sfar.generation.tpp import encode_texts

    loads = []
    real = CLIPModel.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(CLIPModel, "from_pretrained", classmethod(counting))
    clip = shutil.copytree(tiny_clip_dir, tmp_path / "clip")
    first = encode_texts(str(clip), ["a video of a jump", "a bar moves"])
    again = encode_texts(str(clip), ["a video of a jump", "a bar moves"])
    assert len(loads) == 1 and first.shape == (2, first.shape[-1])
    torch.testing.assert_close(again, first)
    (clip / "config.json").write_text((clip / "config.json").read_text() + "\n")  # the folder was rewritten
    encode_texts(str(clip), ["a bar moves"])
    assert len(loads) == 2
