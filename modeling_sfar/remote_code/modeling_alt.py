"""ALT: "Align before Adapt" (Chen et al., ICLR 2024), CLIP with token merging, entity alignment and a video decoder.

The file follows the paper's section 3 (docs/alt.md): region-aware image encoder (Eq. 1-3, `token_merging.py`),
alignment of frame tokens with text entities (Eq. 4-6), multi-modal video decoder (Eq. 7-9), logits and loss
(Eq. 10).

Shape letters used in comments and docstrings:
    B videos, V views, T frames, N tokens of a frame after merging (the class token first, then the regions),
    P + 1 tokens of a frame before merging, C classes, K entities, d joint embedding width, L text length.

This file is shipped to the Hub as remote code: it imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.modeling_clip import CLIPTextModel, CLIPVisionModel, eager_attention_forward
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging

from .configuration_alt import AltConfig
from .processing_sfar import class_name_to_text
from .token_merging import token_merging_vision_forward

logger = logging.get_logger(__name__)

# Every auto class a saved ALT folder answers to; ALT reads videos with SFAR's processors.
AUTO_MAP = {
    "AutoConfig": "configuration_alt.AltConfig",
    "AutoModel": "modeling_alt.AltModel",
    "AutoModelForVideoClassification": "modeling_alt.AltForVideoClassification",
    "AutoProcessor": "processing_sfar.SfarProcessor",
    "AutoVideoProcessor": "video_processing_sfar.SfarVideoProcessor",
}
SHIPPED_FILES = (
    "configuration_alt.py",
    "modeling_alt.py",
    "token_merging.py",
    "processing_sfar.py",
    "video_processing_sfar.py",
    "video_decoding.py",
)

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
class AltLabelSet(ModelOutput):
    """
    A label set encoded by the frozen text tower: the class embeddings and the entity corpus.

    Args:
        text_embeds (`torch.FloatTensor` of shape `(C, d)`):
            The normalised class embeddings c_i: the normalised mean of the prompt ensemble's normalised embeddings.
        entity_embeds (`torch.FloatTensor` of shape `(K, d)`, *optional*):
            The normalised entity embeddings S (Eq. 4); `None` for a model without a corpus.
    """

    text_embeds: torch.FloatTensor | None = None
    entity_embeds: torch.FloatTensor | None = None

    @property
    def num_classes(self) -> int:
        return self.text_embeds.shape[0]


@dataclass
class AltModelOutput(ModelOutput):
    """
    Output of [`AltModel`].

    Args:
        logits (`torch.FloatTensor` of shape `(B, C)`):
            `logit_scale * sim(c_i, z)`. For multi-view input `(B, V, T, 3, H, W)` the logarithms of the class
            probabilities averaged over the views.
        video_embeds (`torch.FloatTensor` of shape `(B, d)`):
            The video representation z (Eq. 9); `(B * V, d)` for multi-view input.
        frame_embeds (`torch.FloatTensor` of shape `(B, T, d)`):
            The projected class tokens of the frames, X^ (Eq. 7).
        aligned_queries (`torch.FloatTensor` of shape `(B, T, d)`):
            The aligned semantic embeddings Q^ (Eq. 6-7), the decoder's initial queries (the learnable queries
            without a corpus).
        entity_indices (`torch.LongTensor` of shape `(B, T, N)`, *optional*):
            For every token of every frame (class token first, then the regions), the index of the entity it was
            aligned with (into `config.entities`); `None` without a corpus.
        token_sizes (`torch.FloatTensor` of shape `(B, T, N)`):
            How many of the frame's patches (or its class token) each token holds.
        patch_to_token (`torch.LongTensor` of shape `(B, T, P + 1)`):
            For the class token and every patch (row-major), the token it was merged into: the regions to draw.
        text_embeds (`torch.FloatTensor` of shape `(C, d)`):
            The normalised class embeddings of the label set.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The vision tower's hidden states, frames folded into the batch: the embeddings and every block's output,
            each `(B * T, N_i, E)`, N_i shrinking with merging.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            The vision tower's attention weights, each `(B * T, heads, N_i, N_i)`.
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
        tokens: `(..., N, d)` frame tokens x_i.
        entities: `(K, d)` entity embeddings s_j.
        tau: the temperature.
        gumbel_noise: `(..., N, K)` samples of Gumbel(0, 1), or None (evaluation: a deterministic argmax).

    Returns:
        A^ `(..., N, K)`, A `(..., N, K)` and the aligned entity of every token `(..., N)`.
    """
    similarity = torch.einsum("...nd,kd->...nk", F.normalize(tokens, dim=-1), F.normalize(entities, dim=-1))
    scores = similarity / tau
    if gumbel_noise is not None:
        scores = scores + gumbel_noise
    soft = scores.softmax(dim=-1)  # (..., N, K)
    indices = soft.argmax(dim=-1)  # (..., N)
    hard = F.one_hot(indices, soft.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach(), soft, indices


def sample_gumbel(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Samples of Gumbel(0, 1): -log(-log U), U uniform in (0, 1), kept away from 0 and 1."""
    tiny = torch.finfo(like.dtype).tiny
    uniform = torch.rand(shape, device=like.device, dtype=like.dtype).clamp(tiny, 1 - torch.finfo(like.dtype).eps)
    return -torch.log(-torch.log(uniform))


class AltMLP(nn.Module):
    """Two linear layers with a GELU between them: d -> `hidden` -> d."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu"):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.activation = ACT2FN[activation]
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


def _init_as_clip_layers(module: nn.Module, width: int, num_layers: int) -> None:
    """
    Initialise the layers that carry the signal through an `AltAttention` or `AltMLP` of width d as CLIP initialises
    those of its transformers (transformers' `CLIPPreTrainedModel._init_weights`), with the decoder's depth M:
    attention values normal(0, d^-0.5 (2M)^-0.5) and output normal(0, d^-0.5); MLP first layer normal(0, (2d)^-0.5),
    second normal(0, d^-0.5 (2M)^-0.5). Queries and keys keep the library's normal(0, `initializer_range`), so that
    every attention starts close to an average (and float16 stays as close to float32 as before). Biases stay zero.

    The paper does not say how the decoder starts. Its output z = MLP(AvgPool(Q_M)) is not a residual on CLIP's
    embedding, so it is only as large as these layers make it: with the library's normal(0, 0.02) everywhere, at a
    small width (64) z starts at about 1e-3 in norm, the first optimizer steps on the zero biases outweigh what the
    video contributes, and training stalls at chance with one output for every video (docs/alt.md). These standard
    deviations keep the value paths near unit gain at any width (at 512, the ViT-B/16 width, 0.016-0.044).
    """
    in_std = width**-0.5 * (2 * max(num_layers, 1)) ** -0.5  # a decoder of 0 blocks still has its final MLP
    if isinstance(module, AltAttention):
        init.normal_(module.v_proj.weight, std=in_std)
        init.normal_(module.out_proj.weight, std=width**-0.5)
    elif isinstance(module, AltMLP):
        init.normal_(module.fc1.weight, std=(2 * width) ** -0.5)
        init.normal_(module.fc2.weight, std=in_std)


class AltEntityAlignment(nn.Module):
    """
    The semantic alignment module (Eq. 4-6): frame tokens -> one aligned query per frame.

    Q = MLP(mean_i (A^ S)_i): each token's aligned entity embedding, averaged over the frame's tokens (class and
    regions, one vote each), then an MLP (d -> d -> d). The paper's MLP "reduces (N, d) to (1, d)" without saying
    how; the mean makes the reduction independent of N, which changes with r and the image size (docs/alt.md).
    """

    def __init__(self, config: AltConfig):
        super().__init__()
        self.tau = config.gumbel_tau
        self.mlp = AltMLP(config.projection_dim, config.projection_dim)

    def forward(
        self, tokens: torch.Tensor, entities: torch.Tensor, gumbel_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T, N, d), entities (K, d), noise (B, T, N, K) or None -> queries (B, T, d), indices (B, T, N)."""
        hard, _, indices = entity_alignment(tokens, entities, self.tau, gumbel_noise)
        aligned = hard @ entities.to(hard.dtype)  # (B, T, N, d): A^ S
        return self.mlp(aligned.mean(dim=2)), indices


# ----------------------------------------------------------------------------------------------------------------
# Multi-modal video decoder (Eq. 7-9)
# ----------------------------------------------------------------------------------------------------------------


class AltAttention(nn.Module):
    """
    Multi-head attention of width d with d/64 heads, for the decoder's self-attention (queries attend to queries)
    and cross-attention (queries attend to frames). No mask: every frame is real. Dispatched like CLIP's attention
    through transformers' `ALL_ATTENTION_FUNCTIONS` by `config._attn_implementation`.
    """

    def __init__(self, config: AltConfig):
        super().__init__()
        self.config = config
        self.embed_dim = config.projection_dim
        self.num_heads = config.decoder_num_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
        """query (B, Q, d), key_value (B, K, d) -> (B, Q, d)."""
        batch_size, num_queries, width = query.shape
        queries = self.q_proj(query).view(batch_size, num_queries, -1, self.head_dim).transpose(1, 2)  # (B, h, Q, hd)
        keys = self.k_proj(key_value).view(batch_size, key_value.shape[1], -1, self.head_dim).transpose(1, 2)
        values = self.v_proj(key_value).view(batch_size, key_value.shape[1], -1, self.head_dim).transpose(1, 2)
        interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        out, _ = interface(self, queries, keys, values, None, scaling=self.scale, dropout=0.0)  # (B, Q, h, hd)
        return self.out_proj(out.reshape(batch_size, num_queries, width))


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
        self.self_attn = AltAttention(config)
        self.cross_attn_layer_norm = nn.LayerNorm(width, eps=eps)
        self.frame_layer_norm = nn.LayerNorm(width, eps=eps)
        self.cross_attn = AltAttention(config)
        self.mlp_layer_norm = nn.LayerNorm(width, eps=eps)
        self.mlp = AltMLP(width, 4 * width, "quick_gelu")

    def forward(self, queries: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, T, d), frames (B, T, d) -> both updated."""
        frames = frames + self.temporal_conv(frames.transpose(1, 2)).transpose(1, 2)  # conv over T: (B, d, T)
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
        """queries Q^ (B, T, d), frames X^ (B, T, d) -> z (B, d)."""
        for layer in self.layers:
            queries, frames = layer(queries, frames)
        return self.video_mlp(queries.mean(dim=1))


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class AltLabelSetCache(nn.Module):
    """
    The stored label set of an [`AltModel`]: buffers saved with the weights (`text_embeds` (C, d), `entity_embeds`
    (K, d) with a corpus, `has_text_features`); calling it returns them as an [`AltLabelSet`]. A module of its own so
    that big-model loading places and loads it like any module.
    """

    def forward(self) -> AltLabelSet:
        """
        Raises:
            ValueError: no label set is stored (a model built from a configuration) or it was never loaded (meta).
        """
        if self.text_embeds.is_meta:
            raise ValueError(
                "the stored label set was not loaded (its tensors are on the meta device): load the model with "
                "`from_pretrained`, or pass the label set (`input_ids` and `entity_input_ids`, or `text_features`)"
            )
        if not torch.compiler.is_compiling() and not bool(self.has_text_features):
            raise ValueError(
                "the model has no label set: pass one to the forward (`input_ids` of the class prompts and "
                "`entity_input_ids` of the entities, or encoded `text_features`), or store one with "
                "`set_label_set(labels, tokenizer, entities)` (or convert it from CLIP with labels and entities)"
            )
        return AltLabelSet(text_embeds=self.text_embeds, entity_embeds=getattr(self, "entity_embeds", None))


class AltPreTrainedModel(PreTrainedModel):
    config_class = AltConfig
    config: AltConfig
    base_model_prefix = "alt"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    # the CLIP layers' checkpointing, which the merging tower applies around each merging block (token_merging.py)
    supports_gradient_checkpointing = True
    _no_split_modules = ["CLIPEncoderLayer", "AltDecoderLayer", "AltLabelSetCache"]
    _supports_sdpa = True
    accepts_loss_kwargs = False

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """Save weights (safetensors), `config.json` with the full `auto_map`, and the remote-code files."""
        if kwargs.pop("safe_serialization", True) is False:
            raise ValueError("ALT saves safetensors weights only")
        self.config.auto_map = dict(AUTO_MAP)
        super().save_pretrained(save_directory, *args, **kwargs)
        here = os.path.dirname(os.path.abspath(__file__))
        for name in SHIPPED_FILES:
            source = os.path.join(here, name)
            if os.path.isfile(source):
                shutil.copyfile(source, os.path.join(save_directory, name))

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """
        The library's initialisation (normal(0, `initializer_range`) linear, convolution and embedding weights, zero
        biases, unit norms), then ALT's own: the decoder's and the alignment's layers as CLIP initialises its
        transformer layers (width-scaled: `_init_as_clip_layers`), CLIP's projection and logit-scale values, the
        learnable queries, and an empty label-set cache when its tensors were not loaded. Keyed on the module owning
        each tensor, as transformers calls this module by module.
        """
        super()._init_weights(module)
        if isinstance(module, AltModel):
            # here, not on each layer: transformers skips custom-code modules that own no tensor themselves, and
            # calls a module after its children, so these values replace the library's
            for layer in module.modules():
                if isinstance(layer, (AltAttention, AltMLP)):
                    _init_as_clip_layers(layer, module.config.projection_dim, module.config.num_decoder_layers)
            init.normal_(module.text_projection.weight, std=module.config.text_config.hidden_size**-0.5)
            init.normal_(module.visual_projection.weight, std=module.config.vision_config.hidden_size**-0.5)
            init.constant_(module.logit_scale, module.config.logit_scale_init_value)
            if module.learnable_queries is not None:
                init.normal_(module.learnable_queries, std=module.config.initializer_range)
        if isinstance(module, AltLabelSetCache):
            names = [name for name, _ in module.named_buffers(recurse=False) if name != "has_text_features"]
            missing = [name for name in names if not getattr(getattr(module, name), "_is_hf_initialized", False)]
            for name in missing:
                init.zeros_(getattr(module, name))
            if missing:
                module.has_text_features.zero_()


class AltModel(AltPreTrainedModel):
    """
    CLIP towers with token merging, the entity alignment and the multi-modal video decoder; logits over a label set.

    The label set is a value: the forward takes the class prompts' and entities' token ids (`input_ids`,
    `entity_input_ids`) or an encoded [`AltLabelSet`] (`text_features`); without one it uses the stored label set
    (`set_label_set`, saved with the weights). A model built from a configuration has none until one is set or loaded.
    """

    def __init__(self, config: AltConfig):
        super().__init__(config)
        width = config.projection_dim
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, width, bias=False)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, width, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))

        self.alignment = AltEntityAlignment(config) if config.use_entity_corpus else None
        # Table C3's baseline: the aligned entities replaced by learnable queries, one per frame position
        self.learnable_queries = (
            None if config.use_entity_corpus else nn.Parameter(torch.zeros(config.num_frames, width))
        )
        self.decoder = AltVideoDecoder(config)

        self.label_set_cache = AltLabelSetCache()
        self._register_label_set_buffers(config.num_labels, config.num_entities)
        self.text_model.requires_grad_(False)
        self.text_projection.requires_grad_(False)
        self.post_init()

    # -- the label set ---------------------------------------------------------------------------------------------

    def _register_label_set_buffers(self, num_classes: int, num_entities: int) -> None:
        """(Re)allocate the stored label set, empty: `text_embeds` (C, d) and, with a corpus, `entity_embeds` (K, d)."""
        width = self.config.projection_dim
        device, dtype = self.logit_scale.device, self.logit_scale.dtype
        cache = self.label_set_cache
        cache.register_buffer("text_embeds", torch.zeros(num_classes, width, device=device, dtype=dtype))
        if self.config.use_entity_corpus:
            cache.register_buffer("entity_embeds", torch.zeros(num_entities, width, device=device, dtype=dtype))
        cache.register_buffer("has_text_features", torch.zeros((), dtype=torch.bool, device=device))

    def tokenize_label_set(
        self, labels: list[str], tokenizer: Any, entities: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """
        The token ids of a label set as the forward takes them: `input_ids` and `attention_mask` (C, P, L) of the
        prompt ensemble (`config.prompt_templates`, P of them, filled with the readable class name) and
        `entity_input_ids` and `entity_attention_mask` (K, L) of the entities.
        """
        labels, entities = self.check_label_set(labels, entities)
        context = self.config.text_config.max_position_embeddings

        def tokenize(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            tokens = tokenizer(texts, padding="longest", truncation=True, max_length=context, return_tensors="pt")
            return tokens["input_ids"], tokens["attention_mask"]

        templates = self.config.prompt_templates
        ids, mask = tokenize([t.format(class_name_to_text(label)) for label in labels for t in templates])
        shape = (len(labels), len(templates), -1)
        inputs = {"input_ids": ids.view(shape), "attention_mask": mask.view(shape)}
        if entities is not None:
            inputs["entity_input_ids"], inputs["entity_attention_mask"] = tokenize(entities)
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
        labels = [str(label) for label in labels]
        if not labels:
            raise ValueError("the label set is empty")
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate labels: {sorted({label for label in labels if labels.count(label) > 1})}")
        if not self.config.use_entity_corpus:
            if entities:
                logger.warning("the model has no entity corpus (use_entity_corpus=False): the entities are ignored")
            return labels, None
        if not entities:
            raise ValueError("ALT aligns frames with an entity corpus: give the entities (a list of texts)")
        AltConfig.check_entities(entities)
        return labels, list(entities)

    def _encode_texts(self, input_ids: torch.Tensor, batch_size: int) -> torch.Tensor:
        """
        Frozen text tower on (n, L) right-padded token ids -> projected end-of-text tokens (n, d).

        No padding mask is passed: the tower is causal, so the end token never attends to the padding after it (CLIP's
        own training setting, and SFAR's `_encode_tokens`).
        """
        device = self.text_projection.weight.device
        embeds = []
        with torch.no_grad():
            for start in range(0, len(input_ids), batch_size):
                out = self.text_model(input_ids=input_ids[start : start + batch_size].to(device))
                embeds.append(self.text_projection(out.pooler_output))
        return torch.cat(embeds)

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
            input_ids (`torch.LongTensor` of shape `(C, P, L)` or `(C, L)`): the class prompts, right-padded, P per
                class (the ensemble) or one.
            entity_input_ids (`torch.LongTensor` of shape `(K, L)`): the entities, right-padded; required with a
                corpus.
            attention_mask, entity_attention_mask: the tokenizer's masks, accepted with its output; the causal text
                tower needs no padding mask for right-padded text (see `_encode_texts`).
            batch_size: texts per text-tower call.
        """
        if input_ids.ndim == 2:
            input_ids = input_ids[:, None]
        if input_ids.ndim != 3:
            raise ValueError(
                f"input_ids must be (C, P, L) or (C, L) class-prompt token ids, got {tuple(input_ids.shape)}"
            )
        num_classes, num_prompts = input_ids.shape[:2]
        prompts = self._encode_texts(input_ids.flatten(0, 1), batch_size)  # (C * P, d)
        prompts = F.normalize(prompts, dim=-1).view(num_classes, num_prompts, -1)
        label_set = AltLabelSet(text_embeds=F.normalize(prompts.mean(1), dim=-1))  # (C, d)
        if self.config.use_entity_corpus:
            if entity_input_ids is None:
                raise ValueError("ALT aligns frames with an entity corpus: pass entity_input_ids with input_ids")
            if entity_input_ids.ndim != 2 or len(entity_input_ids) == 0:
                raise ValueError(
                    f"entity_input_ids must be (K, L) token ids of K >= 1 entities, got {tuple(entity_input_ids.shape)}"
                )
            entities = self._encode_texts(entity_input_ids, batch_size)
            label_set.entity_embeds = F.normalize(entities, dim=-1)  # (K, d)
        return label_set

    @torch.no_grad()
    def set_label_set(
        self, labels: list[str], tokenizer: Any, entities: list[str] | None = None, batch_size: int = 256
    ) -> None:
        """
        Replace the stored label set: encode the class prompt ensemble and the entities once with the frozen text
        tower and keep the features (saved with the weights), the labels in `config.id2label` and the entities in
        `config.entities`.
        """
        labels, entities = self.check_label_set(labels, entities)
        label_set = self.encode_label_set(**self.tokenize_label_set(labels, tokenizer, entities), batch_size=batch_size)
        self.store_label_set(label_set, labels, entities)

    @torch.no_grad()
    def store_label_set(
        self, label_set: AltLabelSet, labels: list[str] | None = None, entities: list[str] | None = None
    ) -> None:
        """Keep an encoded label set as the stored one; `labels` become `config.id2label`, `entities`
        `config.entities` (default: `LABEL_i` and `ENTITY_j` when the config's lists do not fit)."""
        self._check_label_set_fields(label_set)
        num_classes = label_set.num_classes
        num_entities = 0 if label_set.entity_embeds is None else len(label_set.entity_embeds)
        if labels is None:
            labels = list((self.config.id2label or {}).values())
            labels = labels if len(labels) == num_classes else [f"LABEL_{i}" for i in range(num_classes)]
        if len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for a label set of {num_classes} classes")
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
        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {label: i for i, label in enumerate(labels)}
        self.label_set_cache.has_text_features.fill_(True)

    def _check_label_set_fields(self, label_set: AltLabelSet) -> None:
        if label_set.text_embeds is None:
            raise ValueError("the label set lacks text_embeds (the class embeddings)")
        if self.config.use_entity_corpus and (label_set.entity_embeds is None or len(label_set.entity_embeds) == 0):
            raise ValueError("the label set lacks entity_embeds, which the alignment with the corpus reads")

    def stored_label_set(self) -> AltLabelSet:
        """The stored label set; see [`AltLabelSetCache.forward`]."""
        return self.label_set_cache()

    def _resolve_label_set(
        self,
        label_set: AltLabelSet | None,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        entity_input_ids: torch.Tensor | None,
        entity_attention_mask: torch.Tensor | None,
    ) -> AltLabelSet:
        """The label set of a forward: given (encoded or as token ids) and checked, else the stored one."""
        if label_set is not None and input_ids is not None:
            raise ValueError("give the label set once: either `text_features` or `input_ids`, not both")
        if input_ids is not None:
            label_set = self.encode_label_set(input_ids, attention_mask, entity_input_ids, entity_attention_mask)
        elif entity_input_ids is not None:
            raise ValueError("`entity_input_ids` come with the class prompts' `input_ids`")
        if label_set is None:
            return self.stored_label_set()
        if isinstance(label_set, dict) and not isinstance(label_set, AltLabelSet):
            label_set = AltLabelSet(**label_set)
        self._check_label_set_fields(label_set)
        return label_set

    # -- video side --------------------------------------------------------------------------------------------

    def get_frame_tokens(self, pixel_values: torch.Tensor, **kwargs) -> tuple[torch.Tensor, Any]:
        """
        The region-aware image encoder (Eq. 1-3) on (B, T, 3, H, W) frames: the projected tokens X of every frame
        (B, T, N, d), class token first (CLIP's image embedding) then the regions, and the merging output (sizes,
        region map, hidden states).
        """
        batch_size, num_frames = pixel_values.shape[:2]
        frames = pixel_values.flatten(0, 1).to(self.visual_projection.weight.dtype)  # (B*T, 3, H, W)
        merged = token_merging_vision_forward(self.vision_model, frames, self.config.token_merging_r, **kwargs)
        # every token through CLIP's post-layernorm and projection: the joint space where entities live
        tokens = self.visual_projection(self.vision_model.post_layernorm(merged.last_hidden_state))  # (B*T, N, d)
        return tokens.view(batch_size, num_frames, *tokens.shape[1:]), merged

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        entity_input_ids: torch.Tensor | None = None,
        entity_attention_mask: torch.Tensor | None = None,
        text_features: AltLabelSet | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AltModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, T, 3, H, W)` or `(B, V, T, 3, H, W)`):
                Normalised frames. With a view axis V the class probabilities are averaged over the views.
            input_ids, attention_mask (`torch.LongTensor` of shape `(C, P, L)` or `(C, L)`, *optional*):
                The class prompts (see [`~AltModel.tokenize_label_set`]), encoded by the frozen text tower.
            entity_input_ids, entity_attention_mask (`torch.LongTensor` of shape `(K, L)`, *optional*):
                The entity corpus; required with `input_ids` by a model with a corpus.
            text_features ([`AltLabelSet`], *optional*):
                An encoded label set ([`~AltModel.encode_label_set`]) instead of token ids.

            Without a label set the stored one is used. In training mode the alignment samples Gumbel noise; in
            evaluation mode it takes the deterministic argmax.
        """
        unknown = sorted(set(kwargs) - set(TransformersKwargs.__annotations__))
        if unknown:
            raise TypeError(f"{type(self).__name__}.forward() got unexpected keyword arguments {unknown}")
        label_set = self._resolve_label_set(
            text_features, input_ids, attention_mask, entity_input_ids, entity_attention_mask
        )
        if pixel_values.ndim == 6:
            batch_size, num_views = pixel_values.shape[:2]
            output = self.forward(pixel_values.flatten(0, 1), text_features=label_set, return_dict=True, **kwargs)
            probs = output.logits.softmax(-1).view(batch_size, num_views, -1).mean(1)  # (B, C)
            output.logits = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
            return output
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be (B, T, 3, H, W) or (B, V, T, 3, H, W), got {pixel_values.shape}")
        batch_size, num_frames = pixel_values.shape[:2]
        output_hidden_states = kwargs.get("output_hidden_states")
        output_attentions = kwargs.get("output_attentions")
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions

        tokens, merged = self.get_frame_tokens(
            pixel_values,
            # a list of block indices passes through (transformers' `output_hidden_states=[...]`)
            output_hidden_states=output_hidden_states
            if isinstance(output_hidden_states, (list, tuple))
            else bool(output_hidden_states),
            output_attentions=bool(output_attentions),
        )  # (B, T, N, d)
        frames = tokens[:, :, 0]  # X^ (Eq. 7): the class tokens, (B, T, d)
        entity_indices = None
        if self.alignment is not None:
            entities = label_set.entity_embeds.to(tokens.dtype)  # (K, d)
            noise = None
            if self.training:
                noise = sample_gumbel((*tokens.shape[:-1], entities.shape[0]), tokens)  # (B, T, N, K)
            queries, entity_indices = self.alignment(tokens, entities, noise)  # (B, T, d), (B, T, N)
        else:
            if num_frames > self.learnable_queries.shape[0]:
                raise ValueError(
                    f"the video has {num_frames} frames but the model has {self.learnable_queries.shape[0]} learnable "
                    "queries (config.num_frames)"
                )
            queries = self.learnable_queries[:num_frames].expand(batch_size, -1, -1)
        video_embeds = self.decoder(queries, frames)  # z (B, d)

        text_embeds = label_set.text_embeds.to(video_embeds.dtype)
        logits = self.logit_scale.exp() * F.normalize(video_embeds, dim=-1) @ text_embeds.t()  # (B, C)
        unfold = (batch_size, num_frames, -1)
        return AltModelOutput(
            logits=logits,
            video_embeds=video_embeds,
            frame_embeds=frames,
            aligned_queries=queries,
            entity_indices=entity_indices,
            token_sizes=merged.token_sizes.view(unfold),
            patch_to_token=merged.patch_to_token.reshape(unfold),
            text_embeds=label_set.text_embeds,
            hidden_states=merged.hidden_states,
            attentions=merged.attentions,
        )


class AltForVideoClassification(AltPreTrainedModel):
    """[`AltModel`] with the cross-entropy loss (Eq. 10), for `AutoModelForVideoClassification` and the
    `video-classification` pipeline."""

    def __init__(self, config: AltConfig):
        super().__init__(config)
        self.alt = AltModel(config)
        self.post_init()

    def set_label_set(
        self, labels: list[str], tokenizer: Any, entities: list[str] | None = None, batch_size: int = 256
    ) -> None:
        """See [`AltModel.set_label_set`]."""
        self.alt.set_label_set(labels, tokenizer, entities, batch_size)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        entity_input_ids: torch.Tensor | None = None,
        entity_attention_mask: torch.Tensor | None = None,
        text_features: AltLabelSet | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> AltVideoClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, T, 3, H, W)` or `(B, V, T, 3, H, W)`):
                Normalised frames; see [`AltModel.forward`].
            labels (`torch.LongTensor` of shape `(B,)` or `torch.FloatTensor` of shape `(B, C)`, *optional*):
                Ground-truth classes, or soft targets (Mixup, CutMix, label smoothing; see [`alt_loss`]).
            input_ids, attention_mask, entity_input_ids, entity_attention_mask, text_features:
                The label set, given; see [`AltModel.forward`]. Without it the stored one is used.
        """
        output = self.alt(
            pixel_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            entity_input_ids=entity_input_ids,
            entity_attention_mask=entity_attention_mask,
            text_features=text_features,
            return_dict=True,
            **kwargs,
        )
        loss = None
        if labels is not None:
            if pixel_values.ndim == 6 and self.training:
                raise ValueError("multi-view input is for evaluation; train on (B, T, 3, H, W) clips")
            loss = alt_loss(output.logits, labels.to(output.logits.device))
        return AltVideoClassifierOutput(loss=loss, **output)


def alt_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """
    The cross-entropy of Eq. 10 on `(B, C)` logits, against class indices `(B,)` or soft targets `(B, C)` (Mixup,
    CutMix, label smoothing: a distribution over the classes per video), as the mean over videos of
    -sum_c t_{b,c} log softmax(y_b)_c; with one-hot targets the two are the same.

    Raises:
        ValueError: labels of another shape, class indices outside [0, C), or soft targets that are negative or do
            not sum to 1 per video.
    """
    num_classes = logits.shape[-1]
    if labels.is_floating_point():
        if labels.shape != logits.shape:
            raise ValueError(
                f"soft targets must have the logits' shape {tuple(logits.shape)}, got {tuple(labels.shape)}"
            )
        if (labels < 0).any() or not torch.allclose(labels.sum(-1), labels.new_ones(()), atol=1e-3):
            raise ValueError("soft targets must be distributions over the classes (>= 0, each row summing to 1)")
        return -(labels.to(logits.dtype) * logits.log_softmax(-1)).sum(-1).mean()
    if labels.ndim != 1:
        raise ValueError(
            f"ALT needs labels of shape (B,) (class indices) or (B, C) (soft targets), got {tuple(labels.shape)}"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got values {labels.unique().tolist()}")
    return F.cross_entropy(logits, labels)  # Eq. 10


AltModel.register_for_auto_class("AutoModel")
AltForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
