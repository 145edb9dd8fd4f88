# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""ALT: "Align before Adapt" (Chen et al., ICLR 2024), CLIP with token merging, entity alignment and a video decoder.

The file follows the paper's section 3 (docs/alt.md): region-aware image encoder (Eq. 1-3, `token_merging.py`),
alignment of frame tokens with text entities (Eq. 4-6), multi-modal video decoder (Eq. 7-9), logits and loss
(Eq. 10). What ALT shares with SFAR (CLIP's towers, the frozen text encoder, the stored label set, saving) is
`modeling_clip_video.py`.

Shape letters: the table of `modeling_clip_video.py` (B videos, T frames, G tokens of a frame after merging, the
class token first, then the regions; P patches of a frame, C classes, K entities, R prompt templates, D joint width,
L text length).

This file is shipped to the Hub as remote code: it imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput, logging

from .configuration_alt import AltConfig
from .configuration_clip_video import class_name_to_text
from .modeling_clip_video import (
    SHARED_SHIPPED_FILES,
    ClipVideoAttention,
    ClipVideoClassifierMixin,
    ClipVideoLabelSet,
    ClipVideoLabelSetCache,
    ClipVideoModel,
    ClipVideoPreTrainedModel,
    check_class_indices,
    check_soft_targets,
    family_auto_map,
)
from .token_merging import token_merging_vision_forward

logger = logging.get_logger(__name__)

# Every auto class a saved ALT folder answers to, and the remote-code files it ships.
AUTO_MAP = family_auto_map("alt", "Alt")
SHIPPED_FILES = ("configuration_alt.py", "modeling_alt.py", *SHARED_SHIPPED_FILES)

__all__ = [
    "AltLabelSet",
    "AltModelOutput",
    "AltVideoClassifierOutput",
    "AltPreTrainedModel",
    "AltModel",
    "AltForVideoClassification",
    "entity_alignment",
    "alt_loss",
]


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AltLabelSet(ClipVideoLabelSet):
    """
    A label set encoded by the frozen text tower: the class embeddings and the entity corpus.

    Args:
        text_embeds (`torch.FloatTensor` of shape `(C, D)`):
            The normalised class embeddings c_i: the normalised mean of the prompt ensemble's normalised embeddings.
        entity_embeds (`torch.FloatTensor` of shape `(K, D)`, *optional*):
            The normalised entity embeddings S (Eq. 4); `None` for a model without a corpus.
    """

    entity_embeds: torch.FloatTensor | None = None


@dataclass
class AltModelOutput(ModelOutput):
    """
    Output of [`AltModel`].

    Args:
        logits (`torch.FloatTensor` of shape `(B, C)`):
            `logit_scale * sim(c_i, z)`.
        video_embeds (`torch.FloatTensor` of shape `(B, D)`):
            The video representation z (Eq. 9).
        frame_embeds (`torch.FloatTensor` of shape `(B, T, D)`):
            The projected class tokens of the frames, X^ (Eq. 7).
        aligned_queries (`torch.FloatTensor` of shape `(B, T, D)`):
            The aligned semantic embeddings Q^ (Eq. 6-7), the decoder's initial queries (the learnable queries
            without a corpus).
        entity_indices (`torch.LongTensor` of shape `(B, T, G)`, *optional*):
            For every token of every frame (class token first, then the regions), the index of the entity it was
            aligned with (into `config.entities`); `None` without a corpus.
        token_sizes (`torch.FloatTensor` of shape `(B, T, G)`):
            How many of the frame's patches (or its class token) each token holds.
        patch_to_token (`torch.LongTensor` of shape `(B, T, P + 1)`):
            For the class token and every patch (row-major), the token it was merged into: the regions to draw.
        text_embeds (`torch.FloatTensor` of shape `(C, D)`):
            The normalised class embeddings of the label set.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The vision tower's hidden states, frames folded into the batch: the embeddings and every block's output,
            each `(F, G_i, E)` (F = B * T frames), G_i shrinking with merging.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            The vision tower's attention weights, each `(F, h, G_i, G_i)`.
    """

    logits: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    aligned_queries: torch.FloatTensor | None = None
    entity_indices: torch.LongTensor | None = None
    token_sizes: torch.FloatTensor | None = None
    patch_to_token: torch.LongTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class AltVideoClassifierOutput(ModelOutput):
    """
    Output of [`AltForVideoClassification`]: the loss (Eq. 10), then the fields of [`AltModelOutput`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Cross-entropy of the logits, given `labels`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    aligned_queries: torch.FloatTensor | None = None
    entity_indices: torch.LongTensor | None = None
    token_sizes: torch.FloatTensor | None = None
    patch_to_token: torch.LongTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------
# Alignment with entities (Eq. 4-6)
# ----------------------------------------------------------------------------------------------------------------


def entity_alignment(
    tokens: torch.Tensor, entities: torch.Tensor, tau: float, gumbel_noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Align every token with one entity (Eq. 4-5).

    w_{i,j} = sim(x_i, s_j); A_{i,j} = softmax_j(w_{i,j} / tau + gamma_j) (Eq. 4, the noise added after the
    temperature, as printed); A^ = one-hot(argmax_j A_{i,j}) + A - sg(A) (Eq. 5): the forward value is the hard
    assignment, the gradient is the soft one's.

    Args:
        tokens: `(..., G, D)` frame tokens x_i.
        entities: `(K, D)` entity embeddings s_j.
        tau: the temperature.
        gumbel_noise: `(..., G, K)` samples of Gumbel(0, 1), or None (evaluation: a deterministic argmax).

    Returns:
        A^ `(..., G, K)`, A `(..., G, K)` and the aligned entity of every token `(..., G)`.
    """
    # in float32 whatever the model's dtype, as transformers' models take their softmaxes: the argmax is a discrete
    # choice, and a half-precision cosine (3 significant digits) ties often enough to flip on the last bit
    unit_tokens, unit_entities = F.normalize(tokens.float(), dim=-1), F.normalize(entities.float(), dim=-1)
    similarity = torch.einsum("...nd,kd->...nk", unit_tokens, unit_entities)
    scores = similarity / tau
    if gumbel_noise is not None:
        scores = scores + gumbel_noise
    soft = scores.softmax(dim=-1)  # (..., G, K)
    indices = soft.argmax(dim=-1)  # (..., G)
    soft = soft.to(tokens.dtype)
    hard = F.one_hot(indices, soft.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach(), soft, indices


def sample_gumbel(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Samples of Gumbel(0, 1): -log(-log U), U uniform in (0, 1), kept away from 0 and 1."""
    tiny = torch.finfo(like.dtype).tiny
    uniform = torch.rand(shape, device=like.device, dtype=like.dtype).clamp(tiny, 1 - torch.finfo(like.dtype).eps)
    return -torch.log(-torch.log(uniform))


class AltMLP(nn.Module):
    """Two linear layers with a GELU between them: D -> `hidden` -> D."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.activation = ACT2FN[activation]
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


def _init_as_clip_layers(module: nn.Module, width: int, num_layers: int) -> None:
    """
    Initialise the layers that carry the signal through a `ClipVideoAttention` or `AltMLP` of width D as CLIP
    initialises those of its transformers (transformers' `CLIPPreTrainedModel._init_weights`), with the decoder's
    depth M:
    attention values normal(0, D^-0.5 (2M)^-0.5) and output normal(0, D^-0.5); MLP first layer normal(0, (2D)^-0.5),
    second normal(0, D^-0.5 (2M)^-0.5). Queries and keys keep the library's normal(0, `initializer_range`), so that
    every attention starts close to an average (and float16 stays as close to float32 as before). Biases stay zero.

    The paper does not say how the decoder starts. Its output z = MLP(AvgPool(Q_M)) is not a residual on CLIP's
    embedding, so it is only as large as these layers make it: with the library's normal(0, 0.02) everywhere, at a
    small width (64) z starts at about 1e-3 in norm, the first optimizer steps on the zero biases outweigh what the
    video contributes, and training stalls at chance with one output for every video (docs/alt.md). These standard
    deviations keep the value paths near unit gain at any width (at 512, the ViT-B/16 width, 0.016-0.044).
    """
    in_std = width**-0.5 * (2 * max(num_layers, 1)) ** -0.5  # a decoder of 0 blocks still has its final MLP
    if isinstance(module, ClipVideoAttention):
        init.normal_(module.v_proj.weight, std=in_std)
        init.normal_(module.out_proj.weight, std=width**-0.5)
    elif isinstance(module, AltMLP):
        init.normal_(module.fc1.weight, std=(2 * width) ** -0.5)
        init.normal_(module.fc2.weight, std=in_std)


class AltEntityAlignment(nn.Module):
    """
    The semantic alignment module (Eq. 4-6): frame tokens -> one aligned query per frame.

    Q = MLP(mean_i (A^ S)_i): each token's aligned entity embedding, averaged over the frame's tokens (class and
    regions, one vote each), then an MLP (D -> D -> D). The paper's MLP "reduces (G, D) to (1, D)" without saying
    how; the mean makes the reduction independent of G, which changes with r and the image size (docs/alt.md).
    """

    def __init__(self, config: AltConfig):
        super().__init__()
        self.tau = config.gumbel_tau
        self.mlp = AltMLP(config.projection_dim, config.projection_dim)

    def forward(
        self, tokens: torch.Tensor, entities: torch.Tensor, gumbel_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T, G, D), entities (K, D), noise (B, T, G, K) or None -> queries (B, T, D), indices (B, T, G)."""
        hard, _, indices = entity_alignment(tokens, entities, self.tau, gumbel_noise)
        aligned = hard @ entities.to(hard.dtype)  # (B, T, G, D): A^ S
        return self.mlp(aligned.mean(dim=2)), indices


# ----------------------------------------------------------------------------------------------------------------
# Multi-modal video decoder (Eq. 7-9)
# ----------------------------------------------------------------------------------------------------------------


class AltDecoderLayer(nn.Module):
    """
    One block of the multi-modal video decoder (Eq. 8):

        X'_i = X'_{i-1} + Conv1D_i(X'_{i-1})            (temporal convolution over frame embeddings, residual)
        Q'_i = Q_{i-1} + SA_i(LN(Q_{i-1}))              (self-attention over the aligned queries)
        Q_i  = Q'_i + CA_i(LN(Q'_i), LN(X'_i))          (queries attend to the frames)
        Q_i  = Q_i + MLP_i(LN(Q_i))                     (the transformer's feed-forward, 4d QuickGELU)

    The attentions are pre-LN transformer sublayers ("the same way as the ones in the transformer"); X'_0 = X^.
    """

    def __init__(self, config: AltConfig):
        super().__init__()
        width, eps = config.projection_dim, config.decoder_layer_norm_eps
        self.temporal_conv = nn.Conv1d(
            width, width, config.decoder_kernel_size, padding=config.decoder_kernel_size // 2
        )
        self.self_attn_layer_norm = nn.LayerNorm(width, eps=eps)
        self.self_attn = ClipVideoAttention(config)
        self.cross_attn_layer_norm = nn.LayerNorm(width, eps=eps)
        self.frame_layer_norm = nn.LayerNorm(width, eps=eps)
        self.cross_attn = ClipVideoAttention(config)
        self.mlp_layer_norm = nn.LayerNorm(width, eps=eps)
        self.mlp = AltMLP(width, 4 * width, "quick_gelu")

    def forward(self, queries: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, T, D), frames (B, T, D) -> both updated."""
        frames = frames + self.temporal_conv(frames.transpose(1, 2)).transpose(1, 2)  # conv over T: (B, D, T)
        normed = self.self_attn_layer_norm(queries)
        queries = queries + self.self_attn(normed, normed)
        queries = queries + self.cross_attn(self.cross_attn_layer_norm(queries), self.frame_layer_norm(frames))
        queries = queries + self.mlp(self.mlp_layer_norm(queries))
        return queries, frames


class AltVideoDecoder(nn.Module):
    """M decoder blocks, then z = MLP(AvgPool_t(Q_M)) (Eq. 9)."""

    def __init__(self, config: AltConfig):
        super().__init__()
        self.layers = nn.ModuleList([AltDecoderLayer(config) for _ in range(config.num_decoder_layers)])
        self.video_mlp = AltMLP(config.projection_dim, config.projection_dim)

    def forward(self, queries: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """queries Q^ (B, T, D), frames X^ (B, T, D) -> z (B, D)."""
        for layer in self.layers:
            queries, frames = layer(queries, frames)
        return self.video_mlp(queries.mean(dim=1))


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class AltLabelSetCache(ClipVideoLabelSetCache):
    """
    The stored label set of an [`AltModel`]: buffers saved with the weights (`text_embeds` (C, D), `entity_embeds`
    (K, D) with a corpus, `has_text_features`); calling it returns them as an [`AltLabelSet`] (see
    [`ClipVideoLabelSetCache`]).
    """

    label_set_class = AltLabelSet
    how_to_give = (
        "pass one to the forward (`input_ids` of the class prompts and `entity_input_ids` of the entities, or an "
        "encoded `label_set`), or store one with `set_label_set(labels, tokenizer, entities)` (or convert it from "
        "CLIP with labels and entities)"
    )


class AltPreTrainedModel(ClipVideoPreTrainedModel):
    config_class = AltConfig
    config: AltConfig
    base_model_prefix = "alt"
    # (gradient checkpointing: the CLIP layers', which the merging tower applies around each block, token_merging.py)
    _no_split_modules = ["CLIPEncoderLayer", "AltDecoderLayer", "AltLabelSetCache"]
    shipped_auto_map = AUTO_MAP
    shipped_files = SHIPPED_FILES

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """
        ALT's decoder and alignment layers as CLIP initialises its transformer layers (width-scaled:
        `_init_as_clip_layers`), then what every family initialises (`ClipVideoPreTrainedModel._init_weights`: the
        library's values, CLIP's projections and logit scale, the label-set cache), then the learnable queries.
        """
        if isinstance(module, AltModel):
            # here, not on each layer: transformers skips custom-code modules that own no tensor themselves, and
            # calls a module after its children, so these values replace the library's
            for layer in module.modules():
                if isinstance(layer, (ClipVideoAttention, AltMLP)):
                    _init_as_clip_layers(layer, module.config.projection_dim, module.config.num_decoder_layers)
        super()._init_weights(module)
        if isinstance(module, AltModel) and module.learnable_queries is not None:
            init.normal_(module.learnable_queries, std=module.config.initializer_range)


class AltModel(AltPreTrainedModel, ClipVideoModel):
    """
    CLIP towers with token merging, the entity alignment and the multi-modal video decoder; logits over a label set.

    The label set is a value: the forward takes the class prompts' and entities' token ids (`input_ids`,
    `entity_input_ids`) or an encoded [`AltLabelSet`] (`label_set`); without one it uses the stored label set
    (`set_label_set`, saved with the weights). A model built from a configuration has none until one is set or loaded.
    """

    label_set_class = AltLabelSet
    label_set_inputs = ("entity_input_ids", "entity_attention_mask")
    texts_argument = "entities"

    def __init__(self, config: AltConfig):
        super().__init__(config)
        width = config.projection_dim
        self._build_clip_towers(config)
        self.alignment = AltEntityAlignment(config) if config.use_entity_corpus else None
        # Table C3's baseline: the aligned entities replaced by learnable queries, one per frame position
        self.learnable_queries = (
            None if config.use_entity_corpus else nn.Parameter(torch.zeros(config.num_frames, width))
        )
        self.decoder = AltVideoDecoder(config)

        self.label_set_cache = AltLabelSetCache()
        self._register_label_set_buffers(config.num_labels, config.num_entities)
        self._freeze_text_encoder()
        self.post_init()

    # -- the label set ---------------------------------------------------------------------------------------------

    def _register_label_set_buffers(self, num_classes: int, num_entities: int) -> None:
        """(Re)allocate the stored label set, empty: `text_embeds` (C, D) and, with a corpus, `entity_embeds` (K, D)."""
        width = self.config.projection_dim
        device, dtype = self.logit_scale.device, self.logit_scale.dtype
        cache = self.label_set_cache
        cache.register_buffer("text_embeds", torch.zeros(num_classes, width, device=device, dtype=dtype))
        if self.config.use_entity_corpus:
            cache.register_buffer("entity_embeds", torch.zeros(num_entities, width, device=device, dtype=dtype))
        cache.register_buffer("has_text_features", torch.zeros((), dtype=torch.bool, device=device))

    def default_texts(self) -> list[str] | None:
        """The stored entity corpus (`config.entities`), which a new label set reuses unless given another (ALT's
        paper reuses and extends its corpus for new classes); None without a corpus."""
        if not self.config.use_entity_corpus or not self.config.entities:
            return None
        return list(self.config.entities)

    def tokenize_label_set(
        self,
        labels: list[str],
        tokenizer: Any,
        entities: list[str] | None = None,
        prompt_template: str | None = None,
    ) -> dict[str, torch.Tensor]:
        """
        The token ids of a label set as the forward takes them: `input_ids` and `attention_mask` (C, R, L) of the
        prompt ensemble (`config.prompt_templates`, R of them, filled with the readable class name; a
        `prompt_template` given replaces them, R = 1) and `entity_input_ids` and `entity_attention_mask` (K, L) of
        the entities.
        """
        labels, entities = self.check_label_set(labels, entities)
        templates = [prompt_template] if prompt_template else self.config.prompt_templates
        prompts = [template.format(class_name_to_text(label)) for label in labels for template in templates]
        ids, mask = self._tokenize(tokenizer, prompts)
        shape = (len(labels), len(templates), -1)
        inputs = {"input_ids": ids.view(shape), "attention_mask": mask.view(shape)}
        if entities is not None:
            inputs["entity_input_ids"], inputs["entity_attention_mask"] = self._tokenize(tokenizer, entities)
        return inputs

    def check_label_set(
        self, labels: list[str], entities: list[str] | None = None
    ) -> tuple[list[str], list[str] | None]:
        """
        Check a label set and return it normalised.

        Raises:
            ValueError: an empty label set, duplicate labels, entities missing for a model with a corpus, or an entity
                that is empty, not a string or repeated (the message names it).
        """
        labels = self.check_labels(labels)
        if not self.config.use_entity_corpus:
            if entities:
                logger.warning("the model has no entity corpus (use_entity_corpus=False): the entities are ignored")
            return labels, None
        if not entities:
            raise ValueError("ALT aligns frames with an entity corpus: give the entities (a list of texts)")
        AltConfig.check_entities(entities)
        return labels, list(entities)

    def encode_label_set(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        entity_input_ids: torch.Tensor | None = None,
        entity_attention_mask: torch.Tensor | None = None,
        batch_size: int = 256,
    ) -> AltLabelSet:
        """
        Encode a label set's token ids with the frozen text tower.

        Args:
            input_ids (`torch.LongTensor` of shape `(C, R, L)` or `(C, L)`): the class prompts, right-padded, R per
                class (the ensemble) or one.
            entity_input_ids (`torch.LongTensor` of shape `(K, L)`): the entities, right-padded; required with a
                corpus.
            attention_mask, entity_attention_mask: the tokenizer's masks, accepted with its output; the causal text
                tower needs no padding mask for right-padded text (see `encode_texts`).
            batch_size: texts per text-tower call.
        """
        if input_ids.ndim == 2:
            input_ids = input_ids[:, None]
        if input_ids.ndim != 3:
            raise ValueError(
                f"input_ids must be (C, R, L) or (C, L) class-prompt token ids, got {tuple(input_ids.shape)}"
            )
        num_classes, num_prompts = input_ids.shape[:2]
        prompts = self.encode_texts(input_ids.flatten(0, 1), batch_size)[0]  # (C * R, D)
        prompts = F.normalize(prompts, dim=-1).view(num_classes, num_prompts, -1)
        label_set = AltLabelSet(text_embeds=F.normalize(prompts.mean(1), dim=-1))  # (C, D)
        if self.config.use_entity_corpus:
            if entity_input_ids is None:
                raise ValueError("ALT aligns frames with an entity corpus: pass entity_input_ids with input_ids")
            if entity_input_ids.ndim != 2 or len(entity_input_ids) == 0:
                raise ValueError(
                    f"entity_input_ids must be (K, L) token ids of K >= 1 entities, got {tuple(entity_input_ids.shape)}"
                )
            entities = self.encode_texts(entity_input_ids, batch_size)[0]
            label_set.entity_embeds = F.normalize(entities, dim=-1)  # (K, D)
        return label_set

    @torch.no_grad()
    def set_label_set(
        self, labels: list[str], tokenizer: Any, entities: list[str] | None = None, batch_size: int = 256
    ) -> None:
        """
        Replace the stored label set: encode the class prompt ensemble and the entities (default: the stored corpus,
        `default_texts`) once with the frozen text tower and keep the features (saved with the weights), the labels
        in `config.id2label` and the entities in `config.entities`.
        """
        self._set_label_set(labels, tokenizer, entities, batch_size)

    @torch.no_grad()
    def store_label_set(
        self, label_set: AltLabelSet, labels: list[str] | None = None, entities: list[str] | None = None
    ) -> None:
        """Keep an encoded label set as the stored one; `labels` become `config.id2label`, `entities`
        `config.entities` (default: `LABEL_i` and `ENTITY_j` when the config's lists do not fit)."""
        self._check_label_set_fields(label_set)
        num_classes = label_set.num_classes
        num_entities = 0 if label_set.entity_embeds is None else len(label_set.entity_embeds)
        labels = self._labels_for(labels, num_classes)
        if self.config.use_entity_corpus:
            if entities is None:
                entities = self.config.entities or []
                entities = entities if len(entities) == num_entities else [f"ENTITY_{j}" for j in range(num_entities)]
            if len(entities) != num_entities:
                raise ValueError(f"{len(entities)} entity texts for a label set of {num_entities} entities")
        self._register_label_set_buffers(num_classes, num_entities)
        self.label_set_cache.text_embeds.copy_(label_set.text_embeds)
        if self.config.use_entity_corpus:
            self.label_set_cache.entity_embeds.copy_(label_set.entity_embeds)
            self.config.entities = list(entities)
        self._write_labels(labels)
        self.label_set_cache.has_text_features.fill_(True)

    def _check_label_set_fields(self, label_set: AltLabelSet) -> None:
        if label_set.text_embeds is None:
            raise ValueError("the label set lacks text_embeds (the class embeddings)")
        if self.config.use_entity_corpus and (label_set.entity_embeds is None or len(label_set.entity_embeds) == 0):
            raise ValueError("the label set lacks entity_embeds, which the alignment with the corpus reads")

    # -- video side --------------------------------------------------------------------------------------------

    def forward_features(self, pixel_values: torch.Tensor, **kwargs) -> tuple[torch.Tensor, Any]:
        """
        The region-aware image encoder (Eq. 1-3) on (B, T, 3, H, W) frames: the projected tokens X of every frame
        (B, T, G, D), class token first (CLIP's image embedding) then the regions, and the merging output (sizes,
        region map, hidden states).
        """
        batch_size, num_frames = pixel_values.shape[:2]
        frames = pixel_values.flatten(0, 1).to(self.visual_projection.weight.dtype)  # (F, 3, H, W)
        merged = token_merging_vision_forward(self.vision_model, frames, self.config.token_merging_r, **kwargs)
        # every token through CLIP's post-layernorm and projection: the joint space where entities live
        tokens = self.visual_projection(self.vision_model.post_layernorm(merged.last_hidden_state))  # (F, G, D)
        return tokens.view(batch_size, num_frames, *tokens.shape[1:]), merged

    def _forward_video(
        self,
        pixel_values: torch.Tensor,
        label_set: AltLabelSet | None,
        output_hidden_states: Any,
        output_attentions: Any,
        **kwargs,
    ) -> AltModelOutput:
        """
        The forward ([`ClipVideoModel.forward`]) after the label set is resolved: the region-aware encoder, the
        alignment and the decoder. ALT's further label-set inputs (`label_set_inputs`) are `entity_input_ids`,
        `entity_attention_mask` (K, L), the entity corpus, required with `input_ids` (class prompts, (C, R, L) or
        (C, L)) by a model with a corpus. In training mode the alignment samples Gumbel noise; in evaluation mode it
        takes the deterministic argmax.
        """
        batch_size, num_frames = pixel_values.shape[:2]

        tokens, merged = self.forward_features(
            pixel_values,
            # a list of block indices passes through (transformers' `output_hidden_states=[...]`)
            output_hidden_states=output_hidden_states
            if isinstance(output_hidden_states, (list, tuple))
            else bool(output_hidden_states),
            output_attentions=bool(output_attentions),
        )  # (B, T, G, D)
        output = self.forward_head(tokens, label_set)
        unfold = (batch_size, num_frames, -1)
        output.token_sizes = merged.token_sizes.view(unfold)
        output.patch_to_token = merged.patch_to_token.reshape(unfold)
        output.hidden_states, output.attentions = merged.hidden_states, merged.attentions
        return output

    def forward_head(self, tokens: torch.Tensor, label_set: AltLabelSet | None = None) -> AltModelOutput:
        """
        Everything after the region-aware encoder: the alignment with the entities (Eq. 4-6, with Gumbel noise in
        training mode), the video decoder (Eq. 7-9) and the logits, on the projected tokens (B, T, G, D) of
        `forward_features`; `label_set` None: the stored one.
        """
        label_set = self.stored_label_set() if label_set is None else label_set
        batch_size, num_frames = tokens.shape[:2]
        frames = tokens[:, :, 0]  # X^ (Eq. 7): the class tokens, (B, T, D)
        entity_indices = None
        if self.alignment is not None:
            entities = label_set.entity_embeds.to(tokens.dtype)  # (K, D)
            noise = None
            if self.training:
                noise = sample_gumbel((*tokens.shape[:-1], entities.shape[0]), tokens)  # (B, T, G, K)
            queries, entity_indices = self.alignment(tokens, entities, noise)  # (B, T, D), (B, T, G)
        else:
            if num_frames > self.learnable_queries.shape[0]:
                raise ValueError(
                    f"the video has {num_frames} frames but the model has {self.learnable_queries.shape[0]} learnable "
                    "queries (config.num_frames)"
                )
            queries = self.learnable_queries[:num_frames].expand(batch_size, -1, -1)
        video_embeds = self.decoder(queries, frames)  # z (B, D)

        text_embeds = label_set.text_embeds.to(video_embeds.dtype)
        logits = self.logit_scale.exp() * F.normalize(video_embeds, dim=-1) @ text_embeds.t()  # (B, C)
        return AltModelOutput(
            logits=logits,
            video_embeds=video_embeds,
            frame_embeds=frames,
            aligned_queries=queries,
            entity_indices=entity_indices,
            text_embeds=label_set.text_embeds,
        )


class AltForVideoClassification(ClipVideoClassifierMixin, AltPreTrainedModel):
    """[`AltModel`] with the cross-entropy loss (Eq. 10, `loss`), for `AutoModelForVideoClassification` and the
    `video-classification` pipeline; its forward is [`ClipVideoClassifierMixin.forward`] (ALT's `entity_input_ids`
    and its mask pass on to [`AltModel.forward`])."""

    base_model_class = AltModel
    output_class = AltVideoClassifierOutput

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The cross-entropy of Eq. 10 ([`alt_loss`]) on `(B, C)` logits."""
        return alt_loss(logits, labels.to(logits.device))


def alt_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """
    The cross-entropy of Eq. 10 on `(B, C)` logits, against class indices `(B,)` or soft targets `(B, C)` (Mixup,
    CutMix, label smoothing: a distribution over the classes per video), as the mean over videos of
    -sum_c t_{b,c} log softmax(y_b)_c; with one-hot targets the two are the same.

    Raises:
        ValueError: labels of another shape, class indices outside [0, C), or soft targets that are negative or do
            not sum to 1 per video.
    """
    if labels.is_floating_point():
        check_soft_targets(logits, labels)
        return -(labels.to(logits.dtype) * logits.log_softmax(-1)).sum(-1).mean()
    check_class_indices(labels, logits.shape[-1], what="ALT")
    return F.cross_entropy(logits, labels)  # Eq. 10


AltModel.register_for_auto_class("AutoModel")
AltForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
