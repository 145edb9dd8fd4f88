# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""SFAR's label set: the class prompts and sub-texts encoded by the frozen text tower (`SfarLabelSet`), and the store
that keeps one with the weights (`SfarLabelSetCache`, `SfarLabelSetMixin`).

What a saved model keeps is what inference reads: the class embeddings and the constants of Eq. 4-6 and 9 (computed
from the text tower's words by the trained cross-attention), so a loaded model classifies without a tokenizer or a
text-tower run. The words themselves stay in memory after `set_label_set`, since training reads them; checkpoints of
the older layout (the words saved) load and are converted. docs/method.md section 8 has the details.

Shape letters: the table of `modeling_clip_video.py`.

This file is shipped to the Hub as remote code: it imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_clip_video import class_name_to_text
from .modeling_clip_video import ClipVideoLabelSet, ClipVideoLabelSetCache

__all__ = [
    "SfarLabelSet",
    "SfarLabelSetCache",
    "SfarLabelSetMixin",
    "LABEL_SET_BUFFERS",
    "LABEL_SET_WORD_BUFFERS",
    "LEGACY_LABEL_SET_BUFFERS",
    "ALL_LABEL_SET_BUFFERS",
]


@dataclass
class SfarLabelSet(ClipVideoLabelSet):
    """
    A label set encoded by the frozen text tower: what the video side of SFAR reads of the class texts.

    [`SfarModel.encode_label_set`] builds one from token ids (the text tower's words); [`SfarModel.set_label_set`]
    stores one; the forward takes one as `label_set`. A branch the fusion lacks leaves its fields `None`.

    Two forms carry the same label set. The text tower's words (`prompt_word_embeds`, `subtext_word_embeds` and
    their masks) are what training reads: the coarse branch's cross-attention (Eq. 4-6) is trained on them. The
    inference constants (`augmented_prompt_words`, `augmented_prompt_mask`, `mean_subtext_words`) are what a
    forward without gradients reads, computed from the words by the model's cross-attention; they are what a saved
    model stores. A label set with the words is read through them; one with the constants only (the stored label
    set of a loaded model) cannot train the cross-attention.

    Args:
        text_embeds (`torch.FloatTensor` of shape `(C, D)`):
            The normalised class embeddings t_c (the mean over the prompt ensemble when there is one).
        prompt_word_embeds (`torch.FloatTensor` of shape `(C, W, D)`, *optional*):
            The word embeddings of the class prompts T_c (Eq. 4), read by the coarse branch.
        prompt_word_mask (`torch.BoolTensor` of shape `(C, W)`, *optional*):
            True at the words of each prompt.
        subtext_embeds (`torch.FloatTensor` of shape `(C, N, D)`, *optional*):
            The class embeddings s_{c,n} of the sub-texts (for TPP scores, Eq. 1-3); never stored.
        subtext_word_embeds (`torch.FloatTensor` of shape `(C, N, S, D)`, *optional*):
            The word embeddings of the sub-texts S_{c,n}: keys of the coarse cross-attention (Eq. 5), and the words
            whose normalised mean the fine branch compares with frames (Eq. 9).
        subtext_word_mask (`torch.BoolTensor` of shape `(C, N, S)`, *optional*):
            True at the words of each sub-text.
        augmented_prompt_words (`torch.FloatTensor` of shape `(C, W, D)`, *optional*):
            The normalised augmented prompt words T^_c (Eq. 4-6), W the longest prompt: an inference constant of the
            coarse branch.
        augmented_prompt_mask (`torch.BoolTensor` of shape `(C, W)`, *optional*):
            True at the words of each prompt, for `augmented_prompt_words`.
        mean_subtext_words (`torch.FloatTensor` of shape `(C, N, D)`, *optional*):
            The mean of the normalised words of every sub-text (Eq. 9): the inference constant of the fine branch.
    """

    text_embeds: torch.FloatTensor | None = None
    prompt_word_embeds: torch.FloatTensor | None = None
    prompt_word_mask: torch.BoolTensor | None = None
    subtext_embeds: torch.FloatTensor | None = None
    subtext_word_embeds: torch.FloatTensor | None = None
    subtext_word_mask: torch.BoolTensor | None = None
    augmented_prompt_words: torch.FloatTensor | None = None
    augmented_prompt_mask: torch.BoolTensor | None = None
    mean_subtext_words: torch.FloatTensor | None = None


# The stored label set of `SfarModel`, buffers of its `label_set_cache` (see `SfarModel._register_label_set_buffers`).
# What inference reads, saved with the weights: (C, D) class embeddings, (C, W, D) + (C, W) augmented prompt words
# of Eq. 4-6 and their mask (coarse branch), (C, N, D) mean sub-text words of Eq. 9 (fine branch).
LABEL_SET_BUFFERS = (
    "text_embeds",
    "augmented_prompt_words",
    "augmented_prompt_mask",
    "mean_subtext_words",
    "has_text_features",
)
# The text tower's words of the stored label set, padded to `SfarModel.word_positions`: kept in memory (not saved)
# after `set_label_set`, since training reads them (the cross-attention of Eq. 4-6 trains on them).
LABEL_SET_WORD_BUFFERS = ("prompt_word_embeds", "prompt_word_mask", "subtext_word_embeds", "subtext_word_mask")
# The layout saved before the inference constants were (`config.stored_prompt_words` None): the words, padded to the
# text context, and the sub-texts' class embeddings. Such checkpoints load into it and are converted.
LEGACY_LABEL_SET_BUFFERS = (
    "text_embeds",
    "prompt_word_embeds",
    "prompt_word_mask",
    "subtext_embeds",
    "subtext_word_embeds",
    "subtext_word_mask",
    "has_text_features",
)
ALL_LABEL_SET_BUFFERS = tuple(dict.fromkeys(LABEL_SET_BUFFERS + LABEL_SET_WORD_BUFFERS + LEGACY_LABEL_SET_BUFFERS))


class SfarLabelSetCache(ClipVideoLabelSetCache):
    """
    The stored label set of an [`SfarModel`]: buffers saved with the weights; calling it returns them as an
    [`SfarLabelSet`] (see [`ClipVideoLabelSetCache`]). Every name of `ALL_LABEL_SET_BUFFERS` is a buffer here, `None`
    where the layout has none.
    """

    label_set_class = SfarLabelSet
    how_to_give = (
        "pass one to the forward (`input_ids` and `subtext_input_ids` of the class prompts and sub-texts, or an "
        "encoded `label_set`), or store one with `set_label_set(labels, tokenizer, subtexts)` (or convert it from "
        "CLIP with labels)"
    )


def _sync_before_state_dict(module: nn.Module, prefix: str, keep_vars: bool) -> None:
    module._sync_stored_constants()


def _stored(name: str) -> property:
    return property(lambda self: getattr(self.label_set_cache, name), doc=f"The stored label set's `{name}`.")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of `x` over `dim` counting only positions where `mask` (shape of `x` without its last axis) is True."""
    mask = mask.to(x.dtype)
    total = (x * mask.unsqueeze(-1)).sum(dim)
    return total / mask.sum(dim).clamp(min=1).unsqueeze(-1)


def _prompt_width(mask: torch.Tensor) -> int:
    """The word positions up to the last word of the longest text: (C, P) mask -> W (at least 1)."""
    used = mask.any(0).nonzero()
    return int(used[-1]) + 1 if len(used) else 1



class SfarLabelSetMixin:
    """
    The label set of [`SfarModel`]: tokenizing, checking and encoding class prompts and sub-texts with the frozen
    text tower, storing an encoded label set in `label_set_cache` in the layout `config.stored_prompt_words` names,
    and the word-side constants of the frame weights, computed once per stored label set.
    """

    texts_argument = "subtexts"

    def _init_label_set_store(self, num_classes: int) -> None:
        """Allocate the (empty) stored label set for `num_classes` classes, and keep its saved constants in step with
        the words kept in memory (a trained cross-attention saves its own)."""
        self.label_set_cache = SfarLabelSetCache()
        self._register_label_set_buffers(num_classes)
        self._word_cache: tuple | None = None  # see `label_set_words`
        self._stored_constants_key: tuple | None = None  # see `_sync_stored_constants`
        self.register_state_dict_pre_hook(_sync_before_state_dict)

    @property
    def word_positions(self) -> int:
        """
        Word positions L' of a stored text: the text tower's context without its start token (`word_tokens="words"`)
        or the whole context (`"all"`). Stored word tensors are padded to L', so their shapes follow from the text
        tower's architecture and the number of classes, never from a particular label set.
        """
        context = self.config.text_config.max_position_embeddings
        return context if self.config.word_tokens == "all" else context - 1

    def _register_label_set_buffers(self, num_classes: int, words: bool = False) -> None:
        """
        (Re)allocate the stored label set for `num_classes` classes, empty (`has_text_features` False), in the layout
        `config.stored_prompt_words` names.

        Only what the fusion reads is kept. With `stored_prompt_words` set (W), the saved buffers are the inference
        constants (`LABEL_SET_BUFFERS`): the class embeddings, the augmented prompt words (C, W, D) for the coarse
        branch, the mean sub-text words (C, N, D) for the fine one; the text tower's words (`LABEL_SET_WORD_BUFFERS`)
        are buffers that are not saved, allocated (padded to `word_positions`) when `words` is True, else `None`.
        With it `None`, the legacy layout (`LEGACY_LABEL_SET_BUFFERS`): the words, saved.
        """
        cache = self.label_set_cache
        width, num_subtexts, positions = self.config.projection_dim, self.config.num_subtexts, self.word_positions
        current = cache._buffers.get("text_embeds")  # where big-model loading placed the stored label set
        device = current.device if current is not None else self.logit_scale.device
        dtype = self.logit_scale.dtype
        coarse, fine, subtexts = self.config.uses_coarse, self.config.uses_fine, self.config.uses_subtexts
        prompt_words = self.config.stored_prompt_words
        legacy = prompt_words is None
        word_buffers = {
            "prompt_word_embeds": torch.zeros(num_classes, positions, width) if coarse else None,  # (C, L', D)
            "prompt_word_mask": torch.zeros(num_classes, positions, dtype=torch.bool) if coarse else None,  # (C, L')
            "subtext_word_embeds": (  # (C, N, L', D)
                torch.zeros(num_classes, num_subtexts, positions, width) if subtexts else None
            ),
            "subtext_word_mask": (  # (C, N, L')
                torch.zeros(num_classes, num_subtexts, positions, dtype=torch.bool) if subtexts else None
            ),
        }
        buffers: dict[str, tuple[torch.Tensor | None, bool]] = {
            "text_embeds": (torch.zeros(num_classes, width), True)  # (C, D) normalised t_c
        }
        if legacy:
            buffers.update({name: (value, True) for name, value in word_buffers.items()})
            buffers["subtext_embeds"] = (torch.zeros(num_classes, num_subtexts, width) if subtexts else None, True)
        else:
            if coarse:
                buffers["augmented_prompt_words"] = (torch.zeros(num_classes, prompt_words, width), True)  # (C, W, D)
                buffers["augmented_prompt_mask"] = (torch.zeros(num_classes, prompt_words, dtype=torch.bool), True)
            if fine:
                buffers["mean_subtext_words"] = (torch.zeros(num_classes, num_subtexts, width), True)  # (C, N, D)
            buffers.update({name: (value if words else None, False) for name, value in word_buffers.items()})
        buffers["has_text_features"] = (torch.zeros((), dtype=torch.bool), True)
        for name in ALL_LABEL_SET_BUFFERS:
            value, persistent = buffers.get(name, (None, False))
            if value is not None:
                value = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
            cache._buffers.pop(name, None)
            cache._non_persistent_buffers_set.discard(name)
            cache.register_buffer(name, value, persistent=persistent)
        self._word_cache = None

    def tokenize_label_set(
        self,
        labels: list[str],
        tokenizer: Any,
        subtexts: dict[str, list[str]] | None = None,
        prompt_template: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """
        The token ids of a label set, as the forward and [`~SfarModel.encode_label_set`] take them: `input_ids` and
        `attention_mask` (C, L) of the class prompts (`config.prompt_template` filled with the normalised class
        name), `ensemble_input_ids` and `ensemble_attention_mask` (C, R, L) of a prompt ensemble
        (`config.prompt_templates`), and `subtext_input_ids` and `subtext_attention_mask` (C, N, L) of the
        sub-texts. Labels and sub-texts are checked first (`check_label_set`). A `prompt_template` given replaces
        the configured prompt and ensemble.
        """
        labels, subtexts = self.check_label_set(labels, subtexts)
        padding = "max_length" if self.config.word_tokens == "all" else "longest"
        template = prompt_template or self.config.prompt_template
        ensemble = None if prompt_template else self.config.prompt_templates

        def tokenize(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            return self._tokenize(tokenizer, texts, padding)

        names = [class_name_to_text(label) for label in labels]
        inputs = {}
        inputs["input_ids"], inputs["attention_mask"] = tokenize([template.format(n) for n in names])
        if ensemble:
            ids, mask = tokenize([t.format(n) for n in names for t in ensemble])
            shape = (len(labels), len(ensemble), -1)
            inputs["ensemble_input_ids"], inputs["ensemble_attention_mask"] = ids.view(shape), mask.view(shape)
        if subtexts is not None:
            ids, mask = tokenize([text for label in labels for text in subtexts[label]])
            shape = (len(labels), self.config.num_subtexts, -1)
            inputs["subtext_input_ids"], inputs["subtext_attention_mask"] = ids.view(shape), mask.view(shape)
        return inputs

    def check_label_set(
        self, labels: list[str], subtexts: dict[str, list[str]] | None = None
    ) -> tuple[list[str], dict[str, list[str]] | None]:
        """
        Check a label set and return it normalised (labels as strings, sub-texts in label order).

        Raises:
            ValueError: an empty label set, duplicate labels, or (when sub-texts are given or the fusion reads them)
                a label without exactly `num_subtexts` non-empty string sub-texts (the message names the label).
        """
        labels = self.check_labels(labels)
        if subtexts is None:
            if self.config.uses_subtexts:
                raise ValueError(f"fusion {self.config.fusion!r} needs sub-texts for every label")
            return labels, None
        if not isinstance(subtexts, dict):
            raise ValueError(f"sub-texts must map each label to a list of strings, got {type(subtexts).__name__}")
        self.config.check_subtexts(labels, subtexts)
        return labels, {label: list(subtexts[label]) for label in labels}

    def _encode_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frozen text tower on (n, L) token ids -> projected end tokens (n, D), words (n, L', D), word mask (n, L'):
        every position with `word_tokens="all"`, else without the start token (the same vector for every text)."""
        embeds, words = self.encode_texts(input_ids, batch_size, words=True)
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        mask = mask.to(words.device)
        if self.config.word_tokens == "all":
            mask = torch.ones_like(mask)
        else:
            words, mask = words[:, 1:], mask[:, 1:]
        return embeds, words, mask

    def encode_label_set(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        subtext_input_ids: torch.Tensor | None = None,
        subtext_attention_mask: torch.Tensor | None = None,
        ensemble_input_ids: torch.Tensor | None = None,
        ensemble_attention_mask: torch.Tensor | None = None,
        batch_size: int = 256,
    ) -> SfarLabelSet:
        """
        Encode a label set's token ids (see [`~SfarModel.tokenize_label_set`]) with the frozen text tower.

        Args:
            input_ids, attention_mask (`torch.LongTensor` of shape `(C, L)`): the class prompts.
            subtext_input_ids, subtext_attention_mask (`torch.LongTensor` of shape `(C, N, L)`): the sub-texts;
                required by the `"coarse"` and `"fine"` fusions.
            ensemble_input_ids, ensemble_attention_mask (`torch.LongTensor` of shape `(C, R, L)`, *optional*): a
                prompt ensemble; the class embedding is then the mean of the R normalised embeddings.
            batch_size: texts per text-tower call.
        """
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (C, L) token ids of the class prompts, got {tuple(input_ids.shape)}")
        num_classes = input_ids.shape[0]
        embeds, words, mask = self._encode_tokens(input_ids, attention_mask, batch_size)
        text_embeds = F.normalize(embeds, dim=-1)  # (C, D)
        if ensemble_input_ids is not None:
            if ensemble_input_ids.ndim != 3 or ensemble_input_ids.shape[0] != num_classes:
                raise ValueError(
                    f"ensemble_input_ids must be (C={num_classes}, R, L), got {tuple(ensemble_input_ids.shape)}"
                )
            flat_mask = None if ensemble_attention_mask is None else ensemble_attention_mask.flatten(0, 1)
            ensemble = self._encode_tokens(ensemble_input_ids.flatten(0, 1), flat_mask, batch_size)[0]
            ensemble = F.normalize(ensemble, dim=-1).view(num_classes, ensemble_input_ids.shape[1], -1)  # (C, R, D)
            text_embeds = F.normalize(ensemble.mean(1), dim=-1)
        label_set = SfarLabelSet(text_embeds=text_embeds)
        if self.config.uses_coarse:
            label_set.prompt_word_embeds, label_set.prompt_word_mask = words, mask
        if subtext_input_ids is None:
            if self.config.uses_subtexts:
                raise ValueError(f"fusion {self.config.fusion!r} needs the sub-texts: pass subtext_input_ids")
            return label_set
        expected = (num_classes, self.config.num_subtexts)
        if subtext_input_ids.ndim != 3 or tuple(subtext_input_ids.shape[:2]) != expected:
            raise ValueError(
                f"subtext_input_ids must be (C, N, L) = ({expected[0]}, {expected[1]}, L), "
                f"got {tuple(subtext_input_ids.shape)}"
            )
        flat_mask = None if subtext_attention_mask is None else subtext_attention_mask.flatten(0, 1)
        sub_embeds, sub_words, sub_mask = self._encode_tokens(subtext_input_ids.flatten(0, 1), flat_mask, batch_size)
        label_set.subtext_embeds = sub_embeds.view(*expected, -1)  # (C, N, D)
        label_set.subtext_word_embeds = sub_words.view(*expected, *sub_words.shape[1:])  # (C, N, S, D)
        label_set.subtext_word_mask = sub_mask.view(*expected, -1)  # (C, N, S)
        return label_set

    @torch.no_grad()
    def encode_text(self, texts: list[str], tokenizer: Any, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """
        Run the frozen text tower on `texts`.

        Returns a dict with `embeds` (len, D): projected end-of-text tokens; `word_embeds` (len, L', D): projected
        tokens at the positions that `config.word_tokens` keeps; `word_mask` (len, L').
        """
        padding = "max_length" if self.config.word_tokens == "all" else "longest"
        input_ids, attention_mask = self._tokenize(tokenizer, texts, padding)
        embeds, words, mask = self._encode_tokens(input_ids, attention_mask, batch_size)
        return {"embeds": embeds, "word_embeds": words, "word_mask": mask}

    @torch.no_grad()
    def set_label_set(
        self,
        labels: list[str],
        tokenizer: Any,
        subtexts: dict[str, list[str]] | None = None,
        batch_size: int = 256,
    ) -> None:
        """
        Replace the stored label set: encode every class prompt and sub-text once with the frozen text tower and keep
        the features (see `store_label_set` for what is saved), the labels in `config.id2label` and the sub-texts
        in `config.subtexts`.

        Args:
            labels: class names, in class-index order; written to `config.id2label`.
            tokenizer: the CLIP tokenizer of the text tower.
            subtexts: for every label, exactly `config.num_subtexts` sub-texts. Required unless the fusion is "mean".
            batch_size: texts per text-tower call.

        Raises:
            ValueError: a label without sub-texts, with a count other than N, or with a sub-text that is empty or
                not a string (the message names the label), duplicate labels, or an empty label set.
        """
        self._set_label_set(labels, tokenizer, subtexts, batch_size)

    @torch.no_grad()
    def store_label_set(
        self, label_set: SfarLabelSet, labels: list[str] | None = None, subtexts: dict[str, list[str]] | None = None
    ) -> None:
        """
        Keep an encoded label set (with the text tower's words, as `encode_label_set` returns it) as the stored one.
        `labels` (default: `config.id2label` when it has C entries) become `config.id2label`; `subtexts` becomes
        `config.subtexts`.

        What is saved with the weights is what inference reads: the class embeddings and the inference constants
        (Eq. 4-6 and 9), computed here by the current cross-attention (and again at every save while the words are
        kept, so that a trained cross-attention is saved with its own constants); `config.stored_prompt_words`
        records their width. The words, padded to `word_positions`, stay in memory for training (not saved).
        """
        labels = self._labels_for(labels, label_set.num_classes)
        self._check_label_set_fields(label_set)
        if not self._has_words(label_set):
            raise ValueError(
                "store_label_set needs the text tower's words of the label set (as `encode_label_set` returns them): "
                "the inference constants alone cannot be trained on"
            )
        positions = self.word_positions
        words = {}
        for name in LABEL_SET_WORD_BUFFERS:
            value = getattr(label_set, name)
            used = self.config.uses_coarse if name.startswith("prompt") else self.config.uses_subtexts
            if value is None or not used:
                continue
            word_axis = -2 if value.is_floating_point() else -1
            length = value.shape[word_axis]
            if length > positions:
                raise ValueError(f"label_set.{name} has {length} word positions, the text tower only {positions}")
            # padded to the text context, as the stored words always were: the constants come from the same tensors
            words[name] = F.pad(value, [0, 0] * (-word_axis - 1) + [0, positions - length])
        self._store_words(label_set.text_embeds, words)
        self._write_labels(labels)
        self.config.subtexts = subtexts

    def _store_words(self, text_embeds: torch.Tensor, words: dict[str, torch.Tensor]) -> None:
        """Store the class embeddings (C, D) and the words padded to `word_positions` (names of
        `LABEL_SET_WORD_BUFFERS`) in the inference layout, with the constants computed from them."""
        mask = words.get("prompt_word_mask")
        self.config.stored_prompt_words = _prompt_width(mask) if mask is not None else 0
        self._register_label_set_buffers(len(text_embeds), words=True)
        cache = self.label_set_cache
        cache.text_embeds.copy_(text_embeds)
        for name, value in words.items():
            getattr(cache, name).copy_(value)
        cache.has_text_features.fill_(True)
        self._sync_stored_constants()

    @torch.no_grad()
    def _sync_stored_constants(self) -> None:
        """
        Recompute the saved inference constants from the words kept in memory, when either or the cross-attention
        changed since they were last computed (an optimizer step, `load_state_dict`, a dtype move). Called when the
        label set is stored and before every `state_dict` (so before every save); nothing to do without the words
        (a loaded model) or in the legacy layout.
        """
        cache = self.label_set_cache
        if self.config.stored_prompt_words is None or cache.text_embeds.is_meta:
            return
        label_set = SfarLabelSet(**{name: getattr(cache, name) for name in LABEL_SET_WORD_BUFFERS})
        if not self.config.uses_subtexts or not self._has_words(label_set) or not bool(cache.has_text_features):
            return
        key = self._words_key(label_set)
        if getattr(self, "_stored_constants_key", None) == key:
            return
        constants = self.inference_label_set(label_set)
        if constants.augmented_prompt_words is not None:
            # the width changes only when the words' mask was edited in place
            self.config.stored_prompt_words = constants.augmented_prompt_words.shape[1]
            for name in ("augmented_prompt_words", "augmented_prompt_mask"):
                value, buffer = getattr(constants, name), getattr(cache, name)
                if buffer.shape == value.shape:
                    buffer.copy_(value)
                else:
                    cache.register_buffer(name, value.clone())
        if constants.mean_subtext_words is not None:
            cache.mean_subtext_words.copy_(constants.mean_subtext_words)
        self._stored_constants_key = self._words_key(label_set)

    @torch.no_grad()
    def inference_label_set(self, label_set: SfarLabelSet) -> SfarLabelSet:
        """
        `label_set` in the form a forward without gradients reads, the form a saved model stores: the class
        embeddings and the inference constants of Eq. 4-6 and 9 (`augmented_prompt_words` up to the longest prompt,
        `augmented_prompt_mask`, `mean_subtext_words`), computed here once by the current cross-attention, so that
        many videos classified against it do not recompute them. It cannot train the cross-attention. A label set
        without the text tower's words (constants already) is returned as it is.
        """
        if not self._has_words(label_set):
            return label_set
        prompt_words, mean_words = self._word_constants(label_set)
        constants = SfarLabelSet(text_embeds=label_set.text_embeds, mean_subtext_words=mean_words)
        if prompt_words is not None:
            width = _prompt_width(label_set.prompt_word_mask)
            constants.augmented_prompt_words = prompt_words[:, :width].contiguous()
            constants.augmented_prompt_mask = label_set.prompt_word_mask[:, :width].contiguous()
        return constants

    @torch.no_grad()
    def _convert_legacy_label_set(self) -> bool:
        """
        A label set loaded in the legacy layout (`config.stored_prompt_words` None: the words saved, padded to the
        text context) moves to the inference layout: the constants are computed from the loaded words, which stay in
        memory, unsaved. Returns whether it converted; a layout that is current, empty, or not loaded (offloaded,
        on the meta device: then it is read as it is, computing the constants from the words) is left alone.
        """
        cache = self.label_set_cache
        if self.config.stored_prompt_words is not None or cache.text_embeds.is_meta:
            return False
        if not bool(cache.has_text_features):
            return False
        words = {name: getattr(cache, name) for name in LABEL_SET_WORD_BUFFERS if getattr(cache, name) is not None}
        self._store_words(cache.text_embeds, words)
        return True

    def _check_label_set_fields(self, label_set: SfarLabelSet) -> None:
        """A label set must carry what the configured fusion reads: the words, or the inference constants."""

        def lacking(*names: str) -> list[str]:
            return [name for name in names if getattr(label_set, name, None) is None]

        absent = lacking("text_embeds")
        if self.config.uses_coarse:
            words = lacking("prompt_word_embeds", "prompt_word_mask", "subtext_word_embeds", "subtext_word_mask")
            constants = lacking("augmented_prompt_words", "augmented_prompt_mask")
            absent += words if words and constants else []
        if self.config.uses_fine:
            words, constants = lacking("subtext_word_embeds", "subtext_word_mask"), lacking("mean_subtext_words")
            absent += words if words and constants else []
        if absent:
            raise ValueError(f"the label set lacks {sorted(set(absent))}, which fusion {self.config.fusion!r} reads")

    def _has_words(self, label_set: SfarLabelSet) -> bool:
        """Whether `label_set` carries the text tower's words that the fusion reads (not the constants only)."""
        if self.config.uses_coarse and (label_set.prompt_word_embeds is None or label_set.prompt_word_mask is None):
            return False
        return not self.config.uses_subtexts or (
            label_set.subtext_word_embeds is not None and label_set.subtext_word_mask is not None
        )

    # Read access to the stored label set's buffers, as `model.text_embeds` etc. (None where the layout has none)
    # (the inference constants as `model.label_set_cache.augmented_prompt_words` etc.)
    text_embeds = _stored("text_embeds")
    prompt_word_embeds = _stored("prompt_word_embeds")
    prompt_word_mask = _stored("prompt_word_mask")
    subtext_word_embeds = _stored("subtext_word_embeds")
    subtext_word_mask = _stored("subtext_word_mask")
    has_text_features = _stored("has_text_features")

    def label_set_words(self, label_set: SfarLabelSet | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """
        The word-side constants of the frame weights: the normalised augmented prompt words T^_c (Eq. 4-6), (C, W, D),
        and the normalised mean word of every sub-text (Eq. 9), (C, N, D); None for a branch the variant lacks.

        They depend on the label set and the trained cross-attention only, not on the video. A label set without the
        text tower's words (the stored one of a loaded model) carries them, computed when it was stored; W is then
        its longest prompt. From the words, for the stored label set outside training (no gradient), they are
        computed once and reused until a parameter or buffer they depend on changes (an optimizer step,
        `load_state_dict`, `set_label_set`, a dtype or device move); with gradients, or for a label set given to the
        forward, they are always computed. (A change written through `.data`, which bypasses version counting, is
        not seen: call `clear_word_cache`.)
        """
        prompt_words, _, mean_words = self._label_set_words(label_set)
        return prompt_words, mean_words

    def _label_set_words(
        self, label_set: SfarLabelSet | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """`label_set_words` with the mask of the prompt words: (C, W, D) words, (C, W) mask, (C, N, D) words."""
        stored = label_set is None
        label_set = self.stored_label_set() if stored else label_set
        if not self._has_words(label_set):  # the inference constants only
            if self.config.uses_coarse and self.training and torch.is_grad_enabled():
                raise ValueError(
                    "the label set holds the inference constants of Eq. 4-6 only (the stored label set of a loaded "
                    "model), through which the coarse cross-attention cannot train: store the label set with "
                    "`set_label_set(labels, tokenizer, subtexts)`, or pass it to the forward (`input_ids` and "
                    "`subtext_input_ids`, or `label_set` from `encode_label_set`)"
                )
            return label_set.augmented_prompt_words, label_set.augmented_prompt_mask, label_set.mean_subtext_words
        cacheable = stored and not torch.is_grad_enabled()
        key = None
        if cacheable:
            key = self._words_key(label_set)
            if self._word_cache is not None and self._word_cache[0] == key:
                return self._word_cache[1]
        prompt_words, mean_words = self._word_constants(label_set)
        prompt_mask = label_set.prompt_word_mask if prompt_words is not None else None
        if prompt_words is not None and cacheable and not torch.compiler.is_compiling():
            # up to the longest prompt only, as stored: the frame weights read fewer words, to the same bits (the
            # rest is masked); contiguous, as the stored constants are
            width = _prompt_width(prompt_mask)
            prompt_words, prompt_mask = prompt_words[:, :width].contiguous(), prompt_mask[:, :width].contiguous()
        words = (prompt_words, prompt_mask, mean_words)
        if cacheable:
            self._word_cache = (key, words)
        return words

    def _words_key(self, label_set: SfarLabelSet) -> tuple:
        """What the constants computed from the words of `label_set` depend on: its words and the cross-attention,
        each by identity, storage, version counter, dtype and device."""
        tensors = [getattr(label_set, name) for name in LABEL_SET_WORD_BUFFERS if getattr(label_set, name) is not None]
        if self.subtext_attention is not None:
            tensors += list(self.subtext_attention.parameters())
        return tuple((id(t), t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)

    def clear_word_cache(self) -> None:
        """Forget the cached label-set words (see `label_set_words`)."""
        self._word_cache = None
        self._stored_constants_key = None

