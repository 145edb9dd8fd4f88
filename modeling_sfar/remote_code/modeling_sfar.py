"""SFAR: Storyboard-guided Alignment for Fine-grained video Action Recognition.

The file follows the paper (docs/method.md sections 2-6): temporal module, text features, coarse video embedding
(Eq. 4-8), fine-grained video embedding (Eq. 9-10), fusion (Eq. 11), logits and loss (Eq. 12-14), and the text
prompt perplexity used to select sub-texts (Eq. 1-3).

Shape letters used in comments and docstrings:
    B videos, V views (temporal clips x spatial crops), T frames (the paper's L), C classes, N sub-texts per class,
    W word positions of a class prompt, S word positions of a sub-text, D joint embedding width, E text width.

This file is shipped to the Hub as remote code: it imports only torch, transformers and its sibling configuration.
"""

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface, PreTrainedModel
from transformers import initialization as init
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, create_bidirectional_mask, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.configuration_clip import CLIPVisionConfig
from transformers.models.clip.modeling_clip import (
    CLIPEncoderLayer,
    CLIPTextModel,
    CLIPVisionModel,
    eager_attention_forward,
)
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging

from .configuration_sfar import SfarConfig
from .processing_sfar import class_name_to_text
from .token_merging import token_merging_vision_forward

logger = logging.get_logger(__name__)

# Every auto class a saved SFAR folder answers to. `register_for_auto_class` keeps one class per model class, so the
# full map is written by `SfarPreTrainedModel.save_pretrained`, together with the processor files it names.
AUTO_MAP = {
    "AutoConfig": "configuration_sfar.SfarConfig",
    "AutoModel": "modeling_sfar.SfarModel",
    "AutoModelForVideoClassification": "modeling_sfar.SfarForVideoClassification",
    "AutoProcessor": "processing_sfar.SfarProcessor",
    "AutoVideoProcessor": "video_processing_sfar.SfarVideoProcessor",
}
SHIPPED_FILES = (
    "configuration_sfar.py",
    "modeling_sfar.py",
    "processing_sfar.py",
    "video_processing_sfar.py",
    "video_decoding.py",
    "token_merging.py",
)

__all__ = [
    "SfarLabelSet",
    "SfarModelOutput",
    "SfarVideoClassifierOutput",
    "SfarPreTrainedModel",
    "SfarModel",
    "SfarForVideoClassification",
    "class_name_to_text",
    "text_prompt_perplexity",
    "sfar_loss",
    "actionclip_loss",
]


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class SfarLabelSet(ModelOutput):
    """
    A label set encoded by the frozen text tower: what the video side of SFAR reads of the class texts.

    [`SfarModel.encode_label_set`] builds one from token ids (the text tower's words); [`SfarModel.set_label_set`]
    stores one; the forward takes one as `text_features`. A branch the fusion lacks leaves its fields `None`.

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

    @property
    def num_classes(self) -> int:
        return self.text_embeds.shape[0]


@dataclass
class SfarModelOutput(ModelOutput):
    """
    Output of [`SfarModel`].

    Args:
        logits (`torch.FloatTensor` of shape `(B, C)`):
            `logit_scale * sim(t_c, o_{b,c})`. For multi-view input `(B, V, T, 3, H, W)` these are the logarithms of
            the class probabilities averaged over the views, so that a softmax gives the averaged probabilities.
        video_embeds (`torch.FloatTensor` of shape `(B, C, D)`):
            The class-specific video embeddings o_{b,c} (Eq. 11); `(B * V, C, D)` for multi-view input.
        frame_embeds (`torch.FloatTensor` of shape `(B, T, D)`):
            Frame embeddings v_l after the temporal module: the vectors the frame weights pool.
        coarse_frame_weights (`torch.FloatTensor` of shape `(B, C, T)`, *optional*):
            a^coarse_{c,l} (Eq. 7), summing to 1 over frames; `None` when the fusion has no coarse branch.
        fine_frame_weights (`torch.FloatTensor` of shape `(B, C, T)`, *optional*):
            a^fine_{c,l} (Eq. 9), summing to 1 over frames; `None` when the fusion has no fine branch.
        text_embeds (`torch.FloatTensor` of shape `(C, D)`):
            The normalised class embeddings t_c of the label set.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The vision tower's hidden states, frames folded into the batch: the embeddings and the output of each
            layer, each `(B * T, P + 1, E)` (P patches and the class token).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            The vision tower's attention weights, each `(B * T, heads, P + 1, P + 1)`.
        temporal_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The temporal module's hidden states: the input of its first layer (frames plus positions) and the
            output of each layer, each `(B, T, D)`; `None` without a temporal module.
        temporal_attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            The temporal module's attention weights, each `(B, heads, T, T)`, where its attention returns them.
    """

    logits: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    coarse_frame_weights: torch.FloatTensor | None = None
    fine_frame_weights: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    temporal_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    temporal_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class SfarVideoClassifierOutput(ModelOutput):
    """
    Output of [`SfarForVideoClassification`]: the training loss, then the fields of [`SfarModelOutput`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            The configured loss (Eq. 14, ActionCLIP's KL loss or the multi-label sigmoid loss), given `labels`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    coarse_frame_weights: torch.FloatTensor | None = None
    fine_frame_weights: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    temporal_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    temporal_attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------

# The attention scores `blocked_sdpa_attention` holds at once: a block of heads whose scores stay in cache.
ATTENTION_BLOCK_BYTES = 2 * 1024 * 1024


def blocked_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """
    The attention implementation "sfar_sdpa": transformers' SDPA attention, except for bfloat16 inference on a CPU.
    Selected by name only (`attn_implementation="sfar_sdpa"` when loading, or `model.set_attn_implementation`).

    There torch's fused kernel computes in float32 (unless the CPU has AMX tiles), and an unfused
    matmul-softmax-matmul writes the whole (B*H, L, L) score tensor to memory and reads it back three times. So the
    heads are taken a block at a time, sized so that a block's scores (`ATTENTION_BLOCK_BYTES`) stay in cache
    between the two bfloat16 matmuls. Same softmax attention, scores rounded to bfloat16 as in the rest of a
    bfloat16 model; at ViT-B/16 size (64 frames, 197 tokens) 2.3x faster than the fused kernel on a 2-core AVX-512
    CPU. One kind of mask is taken too: an additive bias per key, `(B, 1, 1, L)` floating point, added to every
    query's scores (token merging's proportional attention, `token_merging.py`, log of each token's size), so that a
    bfloat16 tower with merging runs the same attention as without. Anything else (another device or dtype,
    gradients, another mask, causal or cross-attention, dropout, attention weights asked for) is passed to
    transformers' SDPA attention unchanged. query, key, value (B, H, L, hd) -> (B, L, H, hd), None.
    """
    batch_size, num_heads, length, head_dim = query.shape
    key_bias = (
        attention_mask is not None
        and attention_mask.is_floating_point()
        and attention_mask.shape == (batch_size, 1, 1, length)
    )
    if (
        query.device.type != "cpu"
        or query.dtype != torch.bfloat16
        or torch.is_grad_enabled()
        or (attention_mask is not None and not key_bias)
        or dropout > 0.0
        or getattr(module, "is_causal", False)
        or kwargs.get("is_causal", False)  # CLIP's text tower asks for causal attention through this argument
        or key.shape != query.shape
        or kwargs.get("output_attentions", False)
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    scaling = head_dim**-0.5 if scaling is None else scaling
    q, k, v = query.flatten(0, 1), key.flatten(0, 1), value.flatten(0, 1)  # (B*H, L, hd)
    bias = None
    if attention_mask is not None:  # the key bias, one row per (video, head): (B*H, 1, L)
        bias = attention_mask.to(query.dtype).expand(-1, num_heads, -1, -1).reshape(-1, 1, length)
    out = torch.empty_like(q)
    block = max(1, ATTENTION_BLOCK_BYTES // (length * length * query.element_size()))
    for start in range(0, len(q), block):
        rows = slice(start, start + block)
        scores = torch.bmm(q[rows], k[rows].transpose(1, 2)).mul_(scaling)  # (block, L, L)
        if bias is not None:
            scores.add_(bias[rows])  # broadcast over the queries
        torch.bmm(scores.softmax(-1), v[rows], out=out[rows])
    return out.view(batch_size, num_heads, length, head_dim).transpose(1, 2), None


# The temporal module of a short batch (B * T tokens, a few per video) is some seventy small operators that read the
# weights of its layers (75 MB at width 512, 6 layers) more than they compute: on a 2-core CPU one intra-op thread
# runs it about as fast as two at batch 1 (12.0 against 11.5 ms, idle machine). Split over two threads, each
# operator ends by waiting for the slower thread, and where that thread has been descheduled (other work on the
# machine) the wait is a scheduler slice, far longer than the operator: on a busy 2-core CPU SFAR's forward took
# 1.055x its tower call at batch 1 with two threads there, 1.021x with one. Setting `model.sfar.small_temporal_macs`
# to this value runs the temporal module on one thread in CPU inference while its largest product (the MLP's first
# layer, B * T * D * 4D multiply-adds) is below it, as at batch 1 and 2; from batch 4 on two threads are faster
# (17.4 against 23.5 ms at batch 4). It is off by default (0), because `torch.set_num_threads` is partly
# process-wide: a thread that starts using torch during that window keeps one thread, and it clears oneDNN's
# primitive cache. Measured in float32, in docs/performance.md.
SMALL_TEMPORAL_MACS = 2**25


@contextlib.contextmanager
def intra_op_threads(count: int | None):
    """Run the block with `count` intra-op threads (`torch.set_num_threads`), restored afterwards; None: as set."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# A name, not a default: the model uses transformers' choice unless "sfar_sdpa" is asked for. Its masks are SDPA's.
AttentionInterface.register("sfar_sdpa", blocked_sdpa_attention)
AttentionMaskInterface.register("sfar_sdpa", sdpa_mask)


class SfarAttention(nn.Module):
    """
    The cross-attention of Eq. 4-6: the words of a class prompt (queries) attend to the words of its sub-texts
    (keys and values), with a key padding mask.

    Dispatched like CLIP's attention: `config._attn_implementation` picks the function from transformers'
    `ALL_ATTENTION_FUNCTIONS` ("sdpa", "eager", "sfar_sdpa", ...), and the mask is built in the form that
    function expects. Width D (`config.projection_dim`), D/64 heads.
    """

    def __init__(self, config: SfarConfig):
        super().__init__()
        self.config = config
        self.embed_dim = config.projection_dim
        self.num_heads = config.temporal_num_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.scale = self.head_dim**-0.5
        self.is_causal = False
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        """query (..., Q, D), key_value (..., K, D), key_padding_mask (..., K), True for real keys -> (..., Q, D)."""
        *batch, num_queries, width = query.shape
        num_keys = key_value.shape[-2]
        query, key_value = query.reshape(-1, num_queries, width), key_value.reshape(-1, num_keys, width)  # (b, ., D)
        queries = self.q_proj(query).view(len(query), num_queries, -1, self.head_dim).transpose(1, 2)  # (b, h, Q, hd)
        keys = self.k_proj(key_value).view(len(query), num_keys, -1, self.head_dim).transpose(1, 2)  # (b, h, K, hd)
        values = self.v_proj(key_value).view(len(query), num_keys, -1, self.head_dim).transpose(1, 2)

        implementation = self.config._attn_implementation
        mask = None
        if key_padding_mask is not None:
            if implementation not in ALL_MASK_ATTENTION_FUNCTIONS:
                raise ValueError(
                    f"attn_implementation {implementation!r} has no mask function registered with transformers' "
                    "AttentionMaskInterface; the cross-attention of the coarse branch needs its key padding mask"
                )
            # (b, 1, Q, K) in the form of the implementation (boolean for SDPA, additive for eager), or None when no
            # key is padding
            mask = create_bidirectional_mask(
                config=self.config,
                inputs_embeds=query,
                attention_mask=key_padding_mask.reshape(-1, num_keys),
                encoder_hidden_states=key_value,
            )
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        out, _ = attention_interface(
            self, queries, keys, values, mask, scaling=self.scale, dropout=0.0, **kwargs
        )  # (b, Q, h, hd)
        return self.out_proj(out.reshape(*batch, num_queries, width))


def _temporal_layer_config(config: SfarConfig) -> CLIPVisionConfig:
    """The CLIP layer configuration of the temporal transformer: width D, D/64 heads, MLP 4D with QuickGELU."""
    return CLIPVisionConfig(
        hidden_size=config.projection_dim,
        intermediate_size=4 * config.projection_dim,
        num_attention_heads=config.temporal_num_heads,
        num_hidden_layers=config.num_temporal_layers,
        hidden_act="quick_gelu",
        layer_norm_eps=config.temporal_layer_norm_eps,
        attention_dropout=0.0,
        initializer_range=config.initializer_range,
    )


class SfarTemporalLayer(CLIPEncoderLayer):
    """
    One pre-LN transformer block over the frames of a video: transformers' `CLIPEncoderLayer` (hence its
    checkpoint keys `layer_norm1`, `self_attn.{q,k,v,out}_proj`, `layer_norm2`, `mlp.fc{1,2}`, its gradient
    checkpointing and its attention dispatch) at width D with D/64 heads, a 4D QuickGELU MLP and
    `config.temporal_layer_norm_eps`.
    """

    def __init__(self, config: SfarConfig):
        super().__init__(_temporal_layer_config(config))
        # CLIPAttention reads `config._attn_implementation` at every call. It reads the model's config, so that the
        # implementation chosen for the model (`attn_implementation=` when loading, `set_attn_implementation`)
        # reaches these layers as it reaches the CLIP towers.
        self.self_attn.config = config


class SfarTemporalModule(nn.Module):
    """BIKE's / ActionCLIP's `Transf`: learned frame positions, a pre-LN transformer, a residual around the stack."""

    def __init__(self, config: SfarConfig):
        super().__init__()
        self.position_embedding = nn.Embedding(config.num_frames, config.projection_dim)
        self.layers = nn.ModuleList([SfarTemporalLayer(config) for _ in range(config.num_temporal_layers)])

    def forward(self, frame_embeds: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        """
        (B, T, D) frame embeddings -> (B, T, D). `kwargs` go to every layer (and from there to the attention
        function), as in transformers' encoders.
        """
        num_frames = frame_embeds.shape[1]
        if num_frames > self.position_embedding.num_embeddings:
            raise ValueError(
                f"the video has {num_frames} frames but the model's temporal module has "
                f"{self.position_embedding.num_embeddings} positions (config.num_frames)"
            )
        # Through the embedding module, not its weight: with offloading (device_map) a module's hook loads its weight.
        positions = torch.arange(num_frames, device=frame_embeds.device)
        x = frame_embeds + self.position_embedding(positions)  # (B, T, D)
        for layer in self.layers:
            # positional: gradient checkpointing passes only positional arguments through the recomputation
            x = layer(x, None, **kwargs)
        return frame_embeds + x


class SfarZeroInitLinear(nn.Linear):
    """A linear layer that `SfarPreTrainedModel._init_weights` initialises to zero (weight and bias)."""


class SfarResidualMLP(nn.Module):
    """FFN of Eq. 11: x + W2 gelu(W1 x), with W2 zero-initialised so training starts from CLIP's alignment."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        # Zero at initialisation: a new model's FFN is the identity (docs/method.md section 6). The zeroing is done by
        # `_init_weights` on this layer itself, so it holds on every construction path (see `SfarZeroInitLinear`).
        self.fc2 = SfarZeroInitLinear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(x)))

    def pooled(self, weights: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """
        `forward(o)` for the class-specific poolings o_{b,c} = sum_t a_{b,c,t} v_{b,t} (Eq. 8, 10), all classes at once.

        The first layer is linear and every row of `weights` sums to 1, so fc1(o_{b,c}) = sum_t a_{b,c,t} fc1(v_{b,t}):
        fc1 runs on the T frames, not on the C pooled vectors (exact up to rounding). weights (B, C, T), frames
        (B, T, D) -> (B, C, D).
        """
        pooled = torch.einsum("bct,btd->bcd", weights, frames)
        hidden = torch.einsum("bct,bth->bch", weights, self.fc1(frames))  # (B, C, 4D)
        return pooled + self.fc2(F.gelu(hidden))


# ----------------------------------------------------------------------------------------------------------------
# Text side helpers (pure functions)
# ----------------------------------------------------------------------------------------------------------------


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of `x` over `dim` counting only positions where `mask` (shape of `x` without its last axis) is True."""
    mask = mask.to(x.dtype)
    total = (x * mask.unsqueeze(-1)).sum(dim)
    return total / mask.sum(dim).clamp(min=1).unsqueeze(-1)


def _prompt_width(mask: torch.Tensor) -> int:
    """The word positions up to the last word of the longest text: (C, P) mask -> W (at least 1)."""
    used = mask.any(0).nonzero()
    return int(used[-1]) + 1 if len(used) else 1


def text_prompt_perplexity(class_embeds: torch.Tensor, subtext_embeds: torch.Tensor) -> torch.Tensor:
    """
    Text prompt perplexity TPP_c of each class's sub-text set (paper Eq. 1-3, alpha(x) = 1 - x^2, beta(x) = x).

    Args:
        class_embeds: `(C, D)` CLIP class embeddings t_c of the global prompts.
        subtext_embeds: `(C, N, D)` CLIP class embeddings s_{c,n} of the sub-texts, N >= 2.

    Returns:
        `(C,)` TPP per class.
    """
    if subtext_embeds.ndim != 3 or class_embeds.ndim != 2 or subtext_embeds.shape[0] != class_embeds.shape[0]:
        raise ValueError(
            f"expected class_embeds (C, D) and subtext_embeds (C, N, D), got {tuple(class_embeds.shape)} "
            f"and {tuple(subtext_embeds.shape)}"
        )
    num_subtexts = subtext_embeds.shape[1]
    if num_subtexts < 2:
        raise ValueError("TPP needs at least 2 sub-texts per class")
    t = F.normalize(class_embeds.double(), dim=-1)  # (C, D)
    s = F.normalize(subtext_embeds.double(), dim=-1)  # (C, N, D)
    sigma = (torch.einsum("cd,cnd->cn", t, s) + 1) / 2  # (C, N), Eq. 2
    pair = (torch.einsum("cnd,cmd->cnm", s, s) + 1) / 2  # (C, N, N)
    off_diagonal = pair.sum(-1) - pair.diagonal(dim1=1, dim2=2)  # (C, N): sum over n' != n
    delta = 1 - off_diagonal / (num_subtexts - 1)  # (C, N), Eq. 3
    score = (1 - sigma**2) * delta  # alpha(sigma) * beta(delta)
    tpp = torch.exp(-torch.log(score).mean(-1))  # (C,), Eq. 1
    return tpp.to(class_embeds.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Losses (pure functions of logits and labels)
# ----------------------------------------------------------------------------------------------------------------


def sfar_loss(logits: torch.Tensor, labels: torch.Tensor, loss_lambda: float = 1.0) -> torch.Tensor:
    """
    L = L_T2V + lambda L_V2T (Eq. 12-14, with the minus signs the printed equations drop).

    Soft targets t `(B, C)` (Mixup, CutMix, label smoothing; rows are distributions over the classes) give
    L_T2V = -1/B sum_{b,c} t_{b,c} log softmax_{b''}(y_{b'',c})_b and L_V2T = -1/B sum_{b,c} t_{b,c} log
    softmax_{c'}(y_{b,c'})_c. With one-hot targets these are Eq. 12 and 13 exactly: class c's column gathers the
    |k_c| videos of that class, each weighted 1, which is Eq. 12's mean over k_b summed over the |k_c| videos b of
    class c (tested).

    Args:
        logits: `(B, C)` video-class logits y_{b,c}.
        labels: `(B,)` ground-truth class of each video, or `(B, C)` soft targets.
    """
    if labels.is_floating_point():
        targets = labels.to(logits.dtype)  # (B, C)
        t2v = -(targets * logits.log_softmax(dim=0)).sum() / len(logits)
        v2t = -(targets * logits.log_softmax(dim=-1)).sum() / len(logits)
        return t2v + loss_lambda * v2t
    same = labels[:, None] == labels[None, :]  # (B, B): k_b, the videos sharing b's class
    per_label = logits[:, labels]  # (B, B): [b'', b] = y_{b'', c_gt(b)}
    log_p = per_label.log_softmax(dim=0)  # softmax over videos b'' for the class of column b
    t2v = -(log_p * same).sum(0) / same.sum(0)  # (B,): mean over b' in k_b, Eq. 12
    v2t = F.cross_entropy(logits, labels)  # Eq. 13
    return t2v.mean() + loss_lambda * v2t


def actionclip_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """
    ActionCLIP's training loss (its published `KLLoss`, applied both ways as in its train.py): for the batch's
    video-to-text logits y_{i,j} (video i against the text of video j's class) and gt_{i,j} = 1 when videos i and j
    share their class, else 0, the mean over rows i of KL(softmax_j(10 gt_{i,j}) || softmax_j(y_{i,j})), averaged
    with the same for the text-to-video logits (y transposed). The target gives each same-class entry e^10 times the
    weight of any other entry: almost all of the mass, not all of it.

    Args:
        logits: `(B, C)` video-class logits.
        labels: `(B,)` ground-truth class of each video.
    """
    same = (labels[:, None] == labels[None, :]).to(logits.dtype)  # (B, B): ActionCLIP's gen_label
    targets = (10 * same).softmax(-1)  # (B, B); gt is symmetric, so these are the targets of both directions
    video_to_text = logits[:, labels]  # (B, B): [i, j] = y_{i, c_gt(j)}
    # "batchmean": ActionCLIP's KLDivLoss averages over all B x B entries, then multiplies by B
    kl_v2t = F.kl_div(video_to_text.log_softmax(-1), targets, reduction="batchmean")
    kl_t2v = F.kl_div(video_to_text.t().log_softmax(-1), targets, reduction="batchmean")
    return (kl_v2t + kl_t2v) / 2


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sends every process the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.batch_size = tensor.shape[0]
        return _gather(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous()
        dist.all_reduce(grad)  # every process computed the global loss: sum their gradients
        start = dist.get_rank() * ctx.batch_size
        return grad[start : start + ctx.batch_size]


def _gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor over all processes along dim 0, keeping the autograd graph to every copy."""
    return _GatherWithGrad.apply(tensor)


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class SfarPreTrainedModel(PreTrainedModel):
    config_class = SfarConfig
    config: SfarConfig
    base_model_prefix = "sfar"
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["CLIPEncoderLayer", "SfarTemporalLayer", "SfarLabelSetCache"]
    _supports_sdpa = True
    # The forward takes no loss kwargs: the Trainer must not rescale the loss by the number of items.
    accepts_loss_kwargs = False

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """Save weights (safetensors), `config.json` with the full `auto_map`, and the remote-code files."""
        if kwargs.pop("safe_serialization", True) is False:
            raise ValueError("SFAR saves safetensors weights only")
        self.config.auto_map = dict(AUTO_MAP)
        sfar = self._sfar_model()
        if sfar is not None:  # before the config is written: the layout is in it (`stored_prompt_words`)
            sfar._convert_legacy_label_set()
            sfar._sync_stored_constants()
        super().save_pretrained(save_directory, *args, **kwargs)
        here = os.path.dirname(os.path.abspath(__file__))
        for name in SHIPPED_FILES:
            source = os.path.join(here, name)
            if os.path.isfile(source):
                shutil.copyfile(source, os.path.join(save_directory, name))

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' `from_pretrained`; a label set saved in the legacy layout (the text tower's words, before
        `config.stored_prompt_words`) is then converted to the inference layout (see `SfarModel.store_label_set`)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        sfar = model._sfar_model() if isinstance(model, SfarPreTrainedModel) else None
        if sfar is not None:
            if sfar._convert_legacy_label_set():
                logger.info("the stored label set was saved as words (legacy layout); converted to inference constants")
            sfar.label_set_cache.align_buffers()
        return loaded

    def _sfar_model(self) -> "SfarModel | None":
        return self if isinstance(self, SfarModel) else getattr(self, "sfar", None)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """
        The library's initialisation first (normal(0, `initializer_range`) linear and embedding weights, zero biases,
        unit norms), then SFAR's own: zero fusion-FFN output layers, CLIP's projection and logit-scale values, and an
        empty label-set cache.

        transformers calls this module by module, skipping a module whose own tensors were all loaded; so every rule
        below is keyed on the module that owns the tensor (a fusion FFN's `fc2` is an `SfarZeroInitLinear`, not a
        child the FFN would have to reach), and holds for `Model(config)`, `from_config`, remote code and weights
        missing from a checkpoint alike.
        """
        super()._init_weights(module)
        if isinstance(module, SfarZeroInitLinear):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        if isinstance(module, SfarModel):
            init.normal_(module.text_projection.weight, std=module.config.text_config.hidden_size**-0.5)
            init.normal_(module.visual_projection.weight, std=module.config.vision_config.hidden_size**-0.5)
            init.constant_(module.logit_scale, module.config.logit_scale_init_value)
            if module.logit_bias is not None:
                init.constant_(module.logit_bias, -10.0)
        if isinstance(module, SfarLabelSetCache):
            # A label-set tensor that was not loaded (a new model, or a checkpoint without it) empties the whole
            # cache: the forward then refuses to classify without a label set, instead of reading zeros.
            missing = [
                name
                for name in module.saved_buffer_names()
                if not getattr(getattr(module, name), "_is_hf_initialized", False)
            ]
            for name in missing:
                init.zeros_(getattr(module, name))
            if missing:
                module.has_text_features.zero_()


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


class SfarLabelSetCache(nn.Module):
    """
    The stored label set of an [`SfarModel`]: buffers saved with the weights; calling it returns them as an
    [`SfarLabelSet`].

    A module of its own, so that big-model loading places it like any module: `device_map` gives it a device, and an
    offloaded module's tensors are loaded when the module is called (accelerate's hooks), which reading another
    module's buffers would bypass. Every name of `ALL_LABEL_SET_BUFFERS` is a buffer here, `None` where the layout
    has none.
    """

    def saved_buffer_names(self) -> list[str]:
        """The label-set buffers that are saved with the weights (the persistent ones that hold a tensor)."""
        return [
            name
            for name in ALL_LABEL_SET_BUFFERS
            if self._buffers.get(name) is not None and name not in self._non_persistent_buffers_set
        ]

    def align_buffers(self, alignment: int = 64) -> None:
        """
        Copy every CPU buffer that does not start at a multiple of `alignment` bytes (a tensor read in place from
        a memory-mapped safetensors file starts wherever the file puts it) to memory of its own, which torch aligns.

        CPU matrix kernels round differently on differently aligned inputs, so the constants read in place would
        give logits that differ in the last bits from those of the same constants computed in memory.
        """
        for name, buffer in self._buffers.items():
            if buffer is not None and buffer.device.type == "cpu" and buffer.data_ptr() % alignment:
                self._buffers[name] = buffer.clone()

    def forward(self) -> SfarLabelSet:
        """
        Raises:
            ValueError: no label set is stored (a model built from a configuration, or a checkpoint without one) or
                its tensors were never loaded (the meta device).
        """
        if self.text_embeds.is_meta:
            raise ValueError(
                "the stored label set was not loaded (its tensors are on the meta device): load the model with "
                "`from_pretrained`, or pass the label set (`input_ids`, `subtext_input_ids` or `text_features`)"
            )
        if not torch.compiler.is_compiling() and not bool(self.has_text_features):
            # checked in eager runs; a data-dependent branch would break a compiled graph
            raise ValueError(
                "the model has no label set: pass one to the forward (`input_ids` and `subtext_input_ids` of the "
                "class prompts and sub-texts, or encoded `text_features`), or store one with "
                "`set_label_set(labels, tokenizer, subtexts)` (or convert it from CLIP with labels)"
            )
        fields = [name for name in ALL_LABEL_SET_BUFFERS if name != "has_text_features"]
        return SfarLabelSet(**{name: getattr(self, name) for name in fields})


def _sync_before_state_dict(module: nn.Module, prefix: str, keep_vars: bool) -> None:
    module._sync_stored_constants()


def _stored(name: str) -> property:
    return property(lambda self: getattr(self.label_set_cache, name), doc=f"The stored label set's `{name}`.")


class SfarModel(SfarPreTrainedModel):
    """
    CLIP towers, temporal module and SFAR's text-guided poolings; returns logits over a label set.

    The label set is a value: the forward takes it as the class prompts' and sub-texts' token ids (`input_ids`,
    `subtext_input_ids`, as X-CLIP takes its text) or as an encoded [`SfarLabelSet`] (`text_features`). Without one it
    uses the stored label set: the cache that [`~SfarModel.set_label_set`] fills by encoding a label set once with
    the frozen text tower. What a saved model keeps of it is what inference reads (the class embeddings and the
    constants of Eq. 4-6 and 9, see [`~SfarModel.store_label_set`]), so it classifies videos without a tokenizer
    or a text-tower run; the text tower's words stay in memory after `set_label_set`, so that training on the
    stored label set never re-encodes text. A model built from a configuration has no stored label set until one
    is set or loaded.
    """

    # Below this many multiply-adds in its largest product, CPU inference runs the temporal module on one intra-op
    # thread; 0 (the default) keeps the threads as set. `SMALL_TEMPORAL_MACS` is the value for a busy machine.
    small_temporal_macs: int = 0

    def __init__(self, config: SfarConfig):
        super().__init__(config)
        width = config.projection_dim
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.vision_model = CLIPVisionModel._from_config(config.vision_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, width, bias=False)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, width, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        # A sigmoid objective needs a bias to start from low probabilities (SigLIP's -10); softmax ones do not.
        multi_label = config.problem_type == "multi_label_classification"
        self.logit_bias = nn.Parameter(torch.tensor(-10.0)) if multi_label else None

        self.temporal = SfarTemporalModule(config) if config.num_temporal_layers > 0 else None
        self.subtext_attention = SfarAttention(config) if config.uses_coarse else None
        self.coarse_ffn = SfarResidualMLP(width) if config.uses_coarse else None
        self.fine_ffn = SfarResidualMLP(width) if config.uses_fine else None

        self.label_set_cache = SfarLabelSetCache()
        self._register_label_set_buffers(config.num_labels)
        self._word_cache: tuple | None = None  # see `label_set_words`
        self._stored_constants_key: tuple | None = None  # see `_sync_stored_constants`
        # the saved inference constants follow the words kept in memory (a trained cross-attention saves its own)
        self.register_state_dict_pre_hook(_sync_before_state_dict)
        self.text_model.requires_grad_(False)
        self.text_projection.requires_grad_(False)
        self.post_init()

    # -- the label set ---------------------------------------------------------------------------------------------

    @property
    def word_positions(self) -> int:
        """
        Word positions P of a stored text: the text tower's context without its start token (`word_tokens="words"`)
        or the whole context (`"all"`). Stored word tensors are padded to P, so their shapes follow from the text
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
            "prompt_word_embeds": torch.zeros(num_classes, positions, width) if coarse else None,  # (C, P, D)
            "prompt_word_mask": torch.zeros(num_classes, positions, dtype=torch.bool) if coarse else None,  # (C, P)
            "subtext_word_embeds": (  # (C, N, P, D)
                torch.zeros(num_classes, num_subtexts, positions, width) if subtexts else None
            ),
            "subtext_word_mask": (  # (C, N, P)
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
        self, labels: list[str], tokenizer: Any, subtexts: dict[str, list[str]] | None = None
    ) -> dict[str, torch.Tensor]:
        """
        The token ids of a label set, as the forward and [`~SfarModel.encode_label_set`] take them: `input_ids` and
        `attention_mask` (C, L) of the class prompts (`config.prompt_template` filled with the normalised class
        name), `ensemble_input_ids` and `ensemble_attention_mask` (C, K, L) of a prompt ensemble
        (`config.prompt_templates`), and `subtext_input_ids` and `subtext_attention_mask` (C, N, L) of the
        sub-texts. Labels and sub-texts are checked first (`check_label_set`).
        """
        labels, subtexts = self.check_label_set(labels, subtexts)
        context = self.config.text_config.max_position_embeddings
        padding = "max_length" if self.config.word_tokens == "all" else "longest"

        def tokenize(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            tokens = tokenizer(texts, padding=padding, truncation=True, max_length=context, return_tensors="pt")
            return tokens["input_ids"], tokens["attention_mask"]

        names = [class_name_to_text(label) for label in labels]
        inputs = {}
        inputs["input_ids"], inputs["attention_mask"] = tokenize([self.config.prompt_template.format(n) for n in names])
        if self.config.prompt_templates:
            ids, mask = tokenize([t.format(n) for n in names for t in self.config.prompt_templates])
            shape = (len(labels), len(self.config.prompt_templates), -1)
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
        labels = [str(label) for label in labels]
        if not labels:
            raise ValueError("the label set is empty")
        if len(set(labels)) != len(labels):
            duplicates = sorted({label for label in labels if labels.count(label) > 1})
            raise ValueError(f"duplicate labels: {duplicates}")
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
        """Frozen text tower on (n, L) token ids -> projected end tokens (n, D), words (n, P', D), word mask (n, P')."""
        device = self.text_projection.weight.device
        input_ids = input_ids.to(device)
        mask = (
            torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.to(device).bool()
        )
        embeds, words = [], []
        with torch.no_grad():
            for start in range(0, len(input_ids), batch_size):
                # A causal mask alone is enough: no real token attends to the padding after it.
                out = self.text_model(input_ids=input_ids[start : start + batch_size])
                words.append(self.text_projection(out.last_hidden_state))  # (b, L, D)
                embeds.append(self.text_projection(out.pooler_output))  # (b, D)
        words = torch.cat(words)
        if self.config.word_tokens == "all":
            mask = torch.ones_like(mask)
        else:  # drop the start token: it is the same vector for every text
            words, mask = words[:, 1:], mask[:, 1:]
        return torch.cat(embeds), words, mask

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
            ensemble_input_ids, ensemble_attention_mask (`torch.LongTensor` of shape `(C, K, L)`, *optional*): a
                prompt ensemble; the class embedding is then the mean of the K normalised embeddings.
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
                    f"ensemble_input_ids must be (C={num_classes}, K, L), got {tuple(ensemble_input_ids.shape)}"
                )
            flat_mask = None if ensemble_attention_mask is None else ensemble_attention_mask.flatten(0, 1)
            ensemble = self._encode_tokens(ensemble_input_ids.flatten(0, 1), flat_mask, batch_size)[0]
            ensemble = F.normalize(ensemble, dim=-1).view(num_classes, ensemble_input_ids.shape[1], -1)  # (C, K, D)
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

        Returns a dict with `embeds` (len, D): projected end-of-text tokens; `word_embeds` (len, P, D): projected
        tokens at the positions that `config.word_tokens` keeps; `word_mask` (len, P).
        """
        padding = "max_length" if self.config.word_tokens == "all" else "longest"
        context = self.config.text_config.max_position_embeddings
        tokens = tokenizer(texts, padding=padding, truncation=True, max_length=context, return_tensors="pt")
        embeds, words, mask = self._encode_tokens(tokens["input_ids"], tokens["attention_mask"], batch_size)
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
        labels, subtexts = self.check_label_set(labels, subtexts)
        label_set = self.encode_label_set(**self.tokenize_label_set(labels, tokenizer, subtexts), batch_size=batch_size)
        self.store_label_set(label_set, labels, subtexts)

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
        num_classes = label_set.num_classes
        if labels is None:
            labels = list((self.config.id2label or {}).values())
            if len(labels) != num_classes:
                labels = [f"LABEL_{i}" for i in range(num_classes)]
        if len(labels) != num_classes:
            raise ValueError(f"{len(labels)} labels for a label set of {num_classes} classes")
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
        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {label: i for i, label in enumerate(labels)}
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
        prompt_words, mean_words = self._word_constants(label_set)
        if prompt_words is not None:
            width = _prompt_width(label_set.prompt_word_mask)
            self.config.stored_prompt_words = width  # changes only when the words' mask was edited in place
            values = {"augmented_prompt_words": prompt_words, "augmented_prompt_mask": label_set.prompt_word_mask}
            for name, value in values.items():
                value, buffer = value[:, :width], getattr(cache, name)
                if buffer.shape == value.shape:
                    buffer.copy_(value)
                else:
                    cache.register_buffer(name, value.clone())
        if mean_words is not None:
            cache.mean_subtext_words.copy_(mean_words)
        self._stored_constants_key = self._words_key(label_set)

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

    def stored_label_set(self) -> SfarLabelSet:
        """The stored label set (views of the buffers of `label_set_cache`); see [`SfarLabelSetCache.forward`]."""
        return self.label_set_cache()

    def _resolve_label_set(
        self,
        label_set: SfarLabelSet | None,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        subtext_input_ids: torch.Tensor | None,
        subtext_attention_mask: torch.Tensor | None,
        ensemble_input_ids: torch.Tensor | None,
        ensemble_attention_mask: torch.Tensor | None,
    ) -> SfarLabelSet | None:
        """The label set a forward is given (encoded or as token ids), checked; None for the stored one."""
        if label_set is not None and input_ids is not None:
            raise ValueError("give the label set once: either `text_features` or `input_ids`, not both")
        if input_ids is not None:
            label_set = self.encode_label_set(
                input_ids, attention_mask, subtext_input_ids, subtext_attention_mask,
                ensemble_input_ids, ensemble_attention_mask,
            )  # fmt: skip
        elif subtext_input_ids is not None or ensemble_input_ids is not None:
            raise ValueError("`subtext_input_ids` and `ensemble_input_ids` come with the class prompts' `input_ids`")
        if label_set is None:
            return None
        if isinstance(label_set, dict) and not isinstance(label_set, SfarLabelSet):
            label_set = SfarLabelSet(**label_set)
        self._check_label_set_fields(label_set)
        return label_set

    # -- video side --------------------------------------------------------------------------------------------

    def get_frame_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP frame embeddings: (B, T, 3, H, W) -> (B, T, D), before the temporal module."""
        return self._frame_features(pixel_values)[0]

    def _frame_features(
        self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, Any]:
        """(B, T, 3, H, W) -> frame embeddings (B, T, D) and the vision tower's output (its hidden states etc.)."""
        batch_size, num_frames = pixel_values.shape[:2]
        frames = pixel_values.flatten(0, 1).to(self.visual_projection.weight.dtype)  # (B*T, 3, H, W), model dtype
        if self.config.token_merging_r:
            # ToMe in every block (a speed option); the pooled output is still the class token's
            vision = token_merging_vision_forward(
                self.vision_model,
                frames,
                self.config.token_merging_r,
                output_hidden_states=bool(kwargs.get("output_hidden_states")),
                output_attentions=bool(kwargs.get("output_attentions")),
            )
        else:
            vision = self.vision_model(pixel_values=frames, **kwargs)
        embeds = self.visual_projection(vision.pooler_output).view(batch_size, num_frames, -1)  # (B, T, D)
        return embeds, vision

    def _temporal(
        self, frame_embeds: torch.Tensor, output_hidden_states: bool, output_attentions: bool
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        """
        The temporal module on (B, T, D) frames, with its hidden states and attention weights when asked.

        They are recorded by forward hooks, removed afterwards, on `temporal.layers[i]` (its first input, then each
        layer's output or the first element of a tuple output) and on `temporal.layers[i].self_attn` (the second
        element of a tuple output `(attn_output, attn_weights)`, as transformers' attention modules return them).
        """
        if self.temporal is None:
            return frame_embeds, None, None
        hidden_states: list[torch.Tensor] = []
        attentions: list[torch.Tensor] = []

        def record_hidden(module, args, kwargs, output):
            if not hidden_states:
                hidden_states.append(args[0] if args else kwargs["hidden_states"])
            hidden_states.append(output[0] if isinstance(output, tuple) else output)

        def record_attention(module, args, output):
            if isinstance(output, tuple) and len(output) > 1 and output[1] is not None:
                attentions.append(output[1])

        handles = []
        for layer in self.temporal.layers if (output_hidden_states or output_attentions) else ():
            if output_hidden_states:
                handles.append(layer.register_forward_hook(record_hidden, with_kwargs=True))
            if output_attentions:
                handles.append(layer.self_attn.register_forward_hook(record_attention))
        try:
            with intra_op_threads(self._temporal_threads(frame_embeds)):
                frames = self.temporal(frame_embeds)
        finally:
            for handle in handles:
                handle.remove()
        return (
            frames,
            tuple(hidden_states) if output_hidden_states else None,
            tuple(attentions) if output_attentions and attentions else None,
        )

    def augmented_prompt_words(self, label_set: SfarLabelSet | None = None) -> torch.Tensor:
        """T^_c = Attention(T_c W_q, [S_c] W_k, [S_c] W_v) + T_c (Eq. 4-6): (C, W, D), for all classes at once, from
        the text tower's words of the label set (default: the stored one's, kept after `set_label_set`)."""
        label_set = self.stored_label_set() if label_set is None else label_set
        if label_set.prompt_word_embeds is None or label_set.subtext_word_embeds is None:
            raise ValueError(
                "Eq. 4-6 need the text tower's words of the label set, which a loaded model does not store (it "
                "stores the result): call `set_label_set` to encode them, or pass the label set to the forward"
            )
        prompt = label_set.prompt_word_embeds  # (C, W, D)
        subtext_words = label_set.subtext_word_embeds.flatten(1, 2)  # (C, N*S, D): the concatenation of Eq. 5
        subtext_mask = label_set.subtext_word_mask.flatten(1, 2)  # (C, N*S)
        return self.subtext_attention(prompt, subtext_words, key_padding_mask=subtext_mask) + prompt

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
                    "`subtext_input_ids`, or `text_features` from `encode_label_set`)"
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

    def _word_constants(self, label_set: SfarLabelSet) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The constants of `label_set_words`, computed (never cached) from the text tower's words of `label_set`."""
        prompt_words = F.normalize(self.augmented_prompt_words(label_set), dim=-1) if self.config.uses_coarse else None
        mean_words = None
        if self.config.uses_fine:
            # The mean over words of sim(s, v) is sim-weighted by normalised words, so it is one dot product with
            # the mean of the normalised word embeddings.
            words = F.normalize(label_set.subtext_word_embeds, dim=-1)  # (C, N, S, D)
            mean_words = _masked_mean(words, label_set.subtext_word_mask, dim=2)  # (C, N, D)
        return prompt_words, mean_words

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

    def coarse_frame_weights(self, frames: torch.Tensor, label_set: SfarLabelSet | None = None) -> torch.Tensor:
        """a^coarse (Eq. 7): per word of T^_c a softmax over frames of sim / tau, averaged over words. (B, C, T)."""
        words, prompt_mask, _ = self._label_set_words(label_set)  # (C, W, D) normalised, (C, W)
        sim = torch.einsum("cwd,btd->bcwt", words, F.normalize(frames, dim=-1))  # (B, C, W, T)
        per_word = (sim / self.config.frame_temperature).softmax(dim=-1)  # softmax over frames
        mask = prompt_mask.to(per_word.dtype)  # (C, W)
        return torch.einsum("bcwt,cw->bct", per_word, mask) / mask.sum(-1).clamp(min=1)[None, :, None]

    def fine_frame_weights(self, frames: torch.Tensor, label_set: SfarLabelSet | None = None) -> torch.Tensor:
        """a^fine (Eq. 9): softmax over frames of max_n (mean over the words of S_{c,n} of sim) / tau. (B, C, T)."""
        mean_words = self.label_set_words(label_set)[1]  # (C, N, D)
        sim = torch.einsum("cnd,btd->bcnt", mean_words, F.normalize(frames, dim=-1))  # (B, C, N, T)
        return (sim.amax(dim=2) / self.config.frame_temperature).softmax(dim=-1)  # (B, C, T)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        subtext_input_ids: torch.Tensor | None = None,
        subtext_attention_mask: torch.Tensor | None = None,
        ensemble_input_ids: torch.Tensor | None = None,
        ensemble_attention_mask: torch.Tensor | None = None,
        text_features: SfarLabelSet | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SfarModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, T, 3, H, W)` or `(B, V, T, 3, H, W)`):
                Normalised frames. With a view axis V (multi-view testing) the class probabilities are averaged
                over the views.
            input_ids, attention_mask (`torch.LongTensor` of shape `(C, L)`, *optional*):
                The label set's class prompts (see [`~SfarModel.tokenize_label_set`]), encoded by the frozen text
                tower for this call.
            subtext_input_ids, subtext_attention_mask (`torch.LongTensor` of shape `(C, N, L)`, *optional*):
                Its sub-texts, N per class; required with `input_ids` by the `"coarse"` and `"fine"` fusions.
            ensemble_input_ids, ensemble_attention_mask (`torch.LongTensor` of shape `(C, K, L)`, *optional*):
                A prompt ensemble of K prompts per class.
            text_features ([`SfarLabelSet`], *optional*):
                An encoded label set ([`~SfarModel.encode_label_set`]), instead of token ids. (Not named
                `label_set`: the Trainer takes every forward argument whose name contains "label" for a label.)

            Without a label set the stored one is used (see [`~SfarModel.set_label_set`]).
            `output_hidden_states` and `output_attentions` return the vision tower's and the temporal module's.
        """
        unknown = sorted(set(kwargs) - set(TransformersKwargs.__annotations__))
        if unknown:
            raise TypeError(f"{type(self).__name__}.forward() got unexpected keyword arguments {unknown}")
        label_set = self._resolve_label_set(
            text_features, input_ids, attention_mask, subtext_input_ids, subtext_attention_mask,
            ensemble_input_ids, ensemble_attention_mask,
        )  # fmt: skip
        if label_set is None:
            self.stored_label_set()  # fail before the vision tower runs when none is stored
        if pixel_values.ndim == 6:
            batch_size, num_views = pixel_values.shape[:2]
            output = self.forward(pixel_values.flatten(0, 1), text_features=label_set, return_dict=True, **kwargs)
            probs = output.logits.softmax(-1).view(batch_size, num_views, -1).mean(1)  # (B, C)
            output.logits = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
            return output
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be (B, T, 3, H, W) or (B, V, T, 3, H, W), got {pixel_values.shape}")

        output_hidden_states = kwargs.pop("output_hidden_states", None)
        output_attentions = kwargs.pop("output_attentions", None)
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        frame_embeds, vision = self._frame_features(
            pixel_values, output_hidden_states=output_hidden_states, output_attentions=output_attentions, **kwargs
        )
        frames, temporal_hidden_states, temporal_attentions = self._temporal(
            frame_embeds, bool(output_hidden_states), bool(output_attentions)
        )
        output = self._head(frames, label_set)
        output.hidden_states = vision.hidden_states
        output.attentions = vision.attentions
        output.temporal_hidden_states = temporal_hidden_states
        output.temporal_attentions = temporal_attentions
        return output

    def head(self, frame_embeds: torch.Tensor, label_set: SfarLabelSet | None = None) -> SfarModelOutput:
        """Everything after the vision tower (temporal module, text-guided poolings, logits) on (B, T, D) frames."""
        return self._head(self._temporal(frame_embeds, False, False)[0], label_set)

    def _temporal_threads(self, frame_embeds: torch.Tensor) -> int | None:
        """
        The intra-op threads of the temporal module on (B, T, D) frames: 1 in CPU inference (no gradient, not
        compiling, more than one thread set) while its largest product is below `small_temporal_macs` (default 0:
        never; `SMALL_TEMPORAL_MACS` for a busy machine); None (the threads as set) otherwise.
        """
        if (
            frame_embeds.device.type != "cpu"
            or torch.is_grad_enabled()
            or torch.compiler.is_compiling()
            or torch.get_num_threads() == 1
        ):
            return None
        batch_size, num_frames, width = frame_embeds.shape
        return 1 if batch_size * num_frames * width * 4 * width < self.small_temporal_macs else None

    def _head(self, frames: torch.Tensor, label_set: SfarLabelSet | None) -> SfarModelOutput:
        """The text-guided poolings and logits (Eq. 4-11) on the frame embeddings v_l (B, T, D); `label_set` None:
        the stored one (whose words `label_set_words` caches)."""
        words_from = label_set
        label_set = self.stored_label_set() if label_set is None else label_set
        num_classes = label_set.num_classes

        coarse_weights = fine_weights = None
        if not self.config.uses_subtexts:  # "mean": no text guidance
            video_embeds = frames.mean(1, keepdim=True).expand(-1, num_classes, -1)  # (B, C, D)
        else:
            video_embeds = 0
            if self.config.uses_coarse:
                coarse_weights = self.coarse_frame_weights(frames, words_from)  # (B, C, T)
                video_embeds = video_embeds + self.coarse_ffn.pooled(coarse_weights, frames)  # FFN(o^coarse), Eq. 8
            if self.config.uses_fine:
                fine_weights = self.fine_frame_weights(frames, words_from)  # (B, C, T)
                video_embeds = video_embeds + self.fine_ffn.pooled(fine_weights, frames)  # FFN(o^fine), Eq. 10-11

        text_embeds = label_set.text_embeds.to(video_embeds.dtype)
        sim = torch.einsum("bcd,cd->bc", F.normalize(video_embeds, dim=-1), text_embeds)  # (B, C)
        logits = self.logit_scale.exp() * sim
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        return SfarModelOutput(
            logits=logits,
            video_embeds=video_embeds,
            frame_embeds=frames,
            coarse_frame_weights=coarse_weights,
            fine_frame_weights=fine_weights,
            text_embeds=label_set.text_embeds,
        )


class SfarForVideoClassification(SfarPreTrainedModel):
    """
    [`SfarModel`] with the training loss, for `AutoModelForVideoClassification` and the `video-classification`
    pipeline.

    When several processes train (DDP), the logits are gathered across processes with their gradient, so the
    text-to-video term contrasts each class over the global batch: 2 processes x 16 videos give the loss of 1 x 32.
    """

    def __init__(self, config: SfarConfig):
        super().__init__(config)
        self.sfar = SfarModel(config)
        self.post_init()

    def set_label_set(
        self, labels: list[str], tokenizer: Any, subtexts: dict[str, list[str]] | None = None, batch_size: int = 256
    ) -> None:
        """See [`SfarModel.set_label_set`]."""
        self.sfar.set_label_set(labels, tokenizer, subtexts, batch_size)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        subtext_input_ids: torch.Tensor | None = None,
        subtext_attention_mask: torch.Tensor | None = None,
        ensemble_input_ids: torch.Tensor | None = None,
        ensemble_attention_mask: torch.Tensor | None = None,
        text_features: SfarLabelSet | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SfarVideoClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, T, 3, H, W)` or `(B, V, T, 3, H, W)`):
                Normalised frames; see [`SfarModel.forward`].
            labels (`torch.LongTensor` of shape `(B,)`, or `torch.FloatTensor` of shape `(B, C)` for multi-label):
                Ground-truth classes; for single-label training also `(B, C)` soft targets (Mixup, CutMix, label
                smoothing; see [`sfar_loss`]).
            input_ids, attention_mask, subtext_input_ids, subtext_attention_mask, ensemble_input_ids,
            ensemble_attention_mask, text_features:
                The label set, given; see [`SfarModel.forward`]. Without it the stored one is used.
        """
        output = self.sfar(
            pixel_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            subtext_input_ids=subtext_input_ids,
            subtext_attention_mask=subtext_attention_mask,
            ensemble_input_ids=ensemble_input_ids,
            ensemble_attention_mask=ensemble_attention_mask,
            text_features=text_features,
            return_dict=True,
            **kwargs,
        )
        loss = None
        if labels is not None:
            if pixel_values.ndim == 6 and self.training:
                raise ValueError("multi-view input is for evaluation; train on (B, T, 3, H, W) clips")
            loss = self.loss(output.logits, labels)
        return SfarVideoClassifierOutput(loss=loss, **output)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The configured loss on `(B, C)` logits, over the global batch when several processes train."""
        labels = labels.to(logits.device)
        num_classes = logits.shape[-1]
        multi_label = self.config.problem_type == "multi_label_classification"
        soft = not multi_label and labels.is_floating_point()
        if soft:  # Mixup, CutMix, label smoothing: a distribution over the classes per video
            if labels.shape != logits.shape:
                raise ValueError(
                    f"soft targets must have the logits' shape {tuple(logits.shape)}, got {tuple(labels.shape)}"
                )
            if (labels < 0).any() or not torch.allclose(labels.sum(-1), labels.new_ones(()), atol=1e-3):
                raise ValueError("soft targets must be distributions over the classes (>= 0, each row summing to 1)")
            if self.config.loss_type == "actionclip":
                raise ValueError("ActionCLIP's loss takes class indices (B,), not soft targets (Mixup, smoothing)")
        elif not multi_label:
            if labels.ndim != 1:
                raise ValueError(
                    f"single-label training needs labels of shape (B,), or (B, C) soft targets, got "
                    f"{tuple(labels.shape)}"
                )
            if labels.min() < 0 or labels.max() >= num_classes:
                raise ValueError(f"labels must lie in [0, {num_classes}), got values {labels.unique().tolist()}")
        if self.training and torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                logits, labels = _gather_with_grad(logits), _gather(labels)
        if multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        if self.config.loss_type == "actionclip":
            return actionclip_loss(logits, labels)
        return sfar_loss(logits, labels, self.config.loss_lambda)


SfarForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
