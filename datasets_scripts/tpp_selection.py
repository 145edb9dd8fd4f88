"""Choosing each class's sub-text set by text prompt perplexity (SPEC.md section 3), for all classes at once."""

from __future__ import annotations

import torch

from modeling_sfar import text_prompt_perplexity

__all__ = ["select_by_tpp"]


def select_by_tpp(
    class_names: list[str],
    class_embeds: torch.Tensor,
    candidate_embeds: torch.Tensor,
    valid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The candidate sub-text set with the highest TPP for every class.

    Args:
        class_names: C names, for the error message.
        class_embeds: `(C, D)` CLIP class embeddings of the global prompts.
        candidate_embeds: `(C, K, N, D)` CLIP class embeddings of the N sub-texts of K candidates per class
            (LLMs x prompts); invalid slots may hold anything.
        valid: `(C, K)` True where a candidate parsed into N sub-texts.

    Returns:
        `best` `(C,)` candidate index per class and `tpp` `(C, K)` (NaN where invalid).

    Raises:
        ValueError: a class without any valid candidate, named.
    """
    num_classes, num_candidates = valid.shape
    for c in range(num_classes):
        if not bool(valid[c].any()):
            raise ValueError(f"class {class_names[c]!r} has no valid sub-text candidate")
    flat_classes = class_embeds[:, None].expand(-1, num_candidates, -1).flatten(0, 1)  # (C*K, D)
    tpp = text_prompt_perplexity(flat_classes, candidate_embeds.flatten(0, 1)).view(num_classes, num_candidates)
    tpp = tpp.masked_fill(~valid, float("nan"))
    best = tpp.nan_to_num(float("-inf")).argmax(dim=1)  # (C,)
    return best, tpp
