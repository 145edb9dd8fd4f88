"""Choosing each class's sub-text set by text prompt perplexity (docs/method.md section 3), for all classes at once."""

from __future__ import annotations

import functools
import os

import torch

from ..remote_code.configuration_clip_video import clean_clip_text
from ..remote_code.configuration_sfar import DEFAULT_PROMPT_TEMPLATE
from ..remote_code.modeling_sfar import class_name_to_text, text_prompt_perplexity

__all__ = ["select_by_tpp", "select_candidates", "encode_texts", "load_text_encoder"]


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


def load_text_encoder(clip_name_or_path: str, revision: str | None = None):
    """The `CLIPModel` (in eval mode) and tokenizer of a CLIP checkpoint, loaded once: the last one asked for is kept,
    so that scoring several sets with the same CLIP (a generation run, the tests) loads it once. A local folder is
    loaded again when its files changed."""
    stamp = None
    if os.path.isdir(clip_name_or_path):
        stamp = tuple(
            (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
            for entry in sorted(os.scandir(clip_name_or_path), key=lambda e: e.name)
            if entry.is_file()
        )
    return _load_text_encoder(clip_name_or_path, revision, stamp)


@functools.lru_cache(maxsize=1)
def _load_text_encoder(clip_name_or_path: str, revision: str | None, stamp: tuple | None):
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(clip_name_or_path, revision=revision).eval()
    return model, AutoTokenizer.from_pretrained(clip_name_or_path, revision=revision)


@torch.no_grad()
def encode_texts(clip_name_or_path: str, texts: list[str], batch_size: int = 256, revision: str | None = None):
    """CLIP class embeddings (projected end-of-text features) of `texts`, cleaned as the label set cleans them
    (`clean_clip_text`): `(len, D)`. The CLIP is loaded once (see `load_text_encoder`)."""
    model, tokenizer = load_text_encoder(clip_name_or_path, revision)
    context = model.config.text_config.max_position_embeddings
    out = []
    for start in range(0, len(texts), batch_size):
        batch = [clean_clip_text(text) for text in texts[start : start + batch_size]]
        tokens = tokenizer(batch, padding=True, truncation=True, max_length=context, return_tensors="pt")
        features = model.get_text_features(**tokens)
        out.append(getattr(features, "pooler_output", features))
    return torch.cat(out)


def select_candidates(
    clip_name_or_path: str,
    candidates: dict[str, list[dict]],
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    revision: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """
    Score every candidate sub-text set by TPP with a CLIP text tower and keep the best one per class.

    Args:
        candidates: label -> list of `{"subtexts": [N strings] or None (did not parse), "generator", "prompt",
            "answer"}`; every parsed candidate of all classes has the same N.
        prompt_template: the global prompt T_c that the class name fills (the model's `prompt_template`).

    Returns:
        `selected` (one row per class: label, subtexts, tpp, generator, prompt) and `rows` (every candidate with its
        tpp, NaN when it did not parse, and whether it was selected), the two configurations of a sub-text dataset.
    """
    labels = list(candidates)
    width = max(len(c) for c in candidates.values())
    sizes = {len(c["subtexts"]) for cands in candidates.values() for c in cands if c.get("subtexts")}
    if len(sizes) > 1:
        raise ValueError(f"candidates must all have the same number of sub-texts, got {sorted(sizes)}")
    num_subtexts = sizes.pop() if sizes else 0
    valid = torch.zeros(len(labels), width, dtype=torch.bool)
    texts = [prompt_template.format(class_name_to_text(label)) for label in labels]
    for c, label in enumerate(labels):
        for k, candidate in enumerate(candidates[label]):
            if candidate.get("subtexts"):
                valid[c, k] = True
                texts.extend(candidate["subtexts"])
    if not valid.any(dim=1).all():
        missing = [label for c, label in enumerate(labels) if not valid[c].any()]
        raise ValueError(f"class {missing[0]!r} has no valid sub-text candidate")
    embeds = encode_texts(clip_name_or_path, texts, revision=revision)
    class_embeds, flat = embeds[: len(labels)], embeds[len(labels) :].view(-1, num_subtexts, embeds.shape[-1])
    candidate_embeds = torch.zeros(len(labels), width, num_subtexts, embeds.shape[-1])
    candidate_embeds[valid] = flat
    best, tpp = select_by_tpp(labels, class_embeds, candidate_embeds, valid)

    selected, rows = [], []
    for c, label in enumerate(labels):
        for k, candidate in enumerate(candidates[label]):
            row = {
                "label": label,
                "subtexts": list(candidate.get("subtexts") or []),
                "tpp": float(tpp[c, k]),
                "generator": candidate.get("generator", ""),
                "prompt": candidate.get("prompt", ""),
                "selected": k == int(best[c]),
                "answer": candidate.get("answer", ""),
            }
            rows.append(row)
            if row["selected"]:
                selected.append({key: row[key] for key in ("label", "subtexts", "tpp", "generator", "prompt")})
    return selected, rows
