"""SFAR: Storyboard-guided Alignment for Fine-grained video Action Recognition.

The file follows the paper (SPEC.md sections 2-6): temporal module, text features, coarse video embedding
(Eq. 4-8), fine-grained video embedding (Eq. 9-10), fusion (Eq. 11), logits and loss (Eq. 12-14), and the text
prompt perplexity used to select sub-texts (Eq. 1-3).

Shape letters used in comments and docstrings:
    B videos, V views (temporal clips x spatial crops), T frames (the paper's L), C classes, N sub-texts per class,
    W word positions of a class prompt, S word positions of a sub-text, D joint embedding width, E text width.

This file is shipped to the Hub as remote code: it imports only torch, transformers and its sibling configuration.
"""

from __future__ import annotations

import os
import re
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
from transformers.utils import ModelOutput, TransformersKwargs, logging

from .configuration_sfar import SfarConfig

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
SHIPPED_FILES = ("configuration_sfar.py", "modeling_sfar.py", "processing_sfar.py", "video_processing_sfar.py")

__all__ = [
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
    """

    logits: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    coarse_frame_weights: torch.FloatTensor | None = None
    fine_frame_weights: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


@dataclass
class SfarVideoClassifierOutput(SfarModelOutput):
    """
    Output of [`SfarForVideoClassification`]: [`SfarModelOutput`] plus the training loss.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            The configured loss (Eq. 14, ActionCLIP's KL loss or the multi-label sigmoid loss), given `labels`.
    """

    loss: torch.FloatTensor | None = None


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
    CPU. Anything else (another device or dtype, gradients, a mask, causal or cross-attention, dropout, attention
    weights asked for) is passed to transformers' SDPA attention unchanged. query, key, value (B, H, L, hd) ->
    (B, L, H, hd), None.
    """
    batch_size, num_heads, length, head_dim = query.shape
    if (
        query.device.type != "cpu"
        or query.dtype != torch.bfloat16
        or torch.is_grad_enabled()
        or attention_mask is not None
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
    out = torch.empty_like(q)
    block = max(1, ATTENTION_BLOCK_BYTES // (length * length * query.element_size()))
    for start in range(0, len(q), block):
        rows = slice(start, start + block)
        scores = torch.bmm(q[rows], k[rows].transpose(1, 2)).mul_(scaling)  # (block, L, L)
        torch.bmm(scores.softmax(-1), v[rows], out=out[rows])
    return out.view(batch_size, num_heads, length, head_dim).transpose(1, 2), None


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
        x = frame_embeds + self.position_embedding.weight[:num_frames]  # (B, T, D)
        for layer in self.layers:
            # positional: gradient checkpointing passes only positional arguments through the recomputation
            x = layer(x, None, **kwargs)
        return frame_embeds + x


class SfarResidualMLP(nn.Module):
    """FFN of Eq. 11: x + W2 gelu(W1 x), with W2 zero-initialised so training starts from CLIP's alignment."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

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


def class_name_to_text(name: str) -> str:
    """Normalise a dataset class name for text: `ApplyEyeMakeup` -> `Apply Eye Makeup`, `brush_hair` -> `brush hair`."""
    text = name.replace("_", " ")
    text = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of `x` over `dim` counting only positions where `mask` (shape of `x` without its last axis) is True."""
    mask = mask.to(x.dtype)
    total = (x * mask.unsqueeze(-1)).sum(dim)
    return total / mask.sum(dim).clamp(min=1).unsqueeze(-1)


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

    Args:
        logits: `(B, C)` video-class logits y_{b,c}.
        labels: `(B,)` ground-truth class of each video.
    """
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
    _no_split_modules = ["CLIPEncoderLayer", "SfarTemporalLayer"]
    _supports_sdpa = True
    # The forward takes no loss kwargs: the Trainer must not rescale the loss by the number of items.
    accepts_loss_kwargs = False

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """Save weights (safetensors), `config.json` with the full `auto_map`, and the remote-code files."""
        if kwargs.pop("safe_serialization", True) is False:
            raise ValueError("SFAR saves safetensors weights only")
        self.config.auto_map = dict(AUTO_MAP)
        super().save_pretrained(save_directory, *args, **kwargs)
        here = os.path.dirname(os.path.abspath(__file__))
        for name in SHIPPED_FILES:
            source = os.path.join(here, name)
            if os.path.isfile(source):
                shutil.copyfile(source, os.path.join(save_directory, name))

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        if isinstance(module, SfarResidualMLP):
            init.zeros_(module.fc2.weight)
            init.zeros_(module.fc2.bias)
        if isinstance(module, SfarModel):
            init.normal_(module.text_projection.weight, std=module.config.text_config.hidden_size**-0.5)
            init.normal_(module.visual_projection.weight, std=module.config.vision_config.hidden_size**-0.5)
            init.constant_(module.logit_scale, module.config.logit_scale_init_value)
            if module.logit_bias is not None:
                init.constant_(module.logit_bias, -10.0)


class SfarModel(SfarPreTrainedModel):
    """
    CLIP towers, temporal module and SFAR's text-guided poolings; returns logits over the configured label set.

    The text tower is frozen. The features of the label set (class prompts and sub-texts) are computed once by
    [`~SfarModel.set_label_set`] and kept as buffers saved with the weights, so a saved model classifies videos
    without a tokenizer and training never re-encodes text.
    """

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

        self._register_text_buffers(config.num_labels, config.prompt_length, config.subtext_length)
        self._word_cache: tuple | None = None  # see `label_set_words`
        self.text_model.requires_grad_(False)
        self.text_projection.requires_grad_(False)
        self.post_init()

    # -- text features ---------------------------------------------------------------------------------------

    def _register_text_buffers(self, num_classes: int, prompt_length: int, subtext_length: int) -> None:
        """(Re)allocate the label-set buffers with zeros; `has_text_features` tells whether they were filled."""
        width, num_subtexts = self.config.projection_dim, self.config.num_subtexts
        device, dtype = self.logit_scale.device, self.logit_scale.dtype
        buffers = {
            "text_embeds": torch.zeros(num_classes, width),  # (C, D) normalised t_c
            "prompt_word_embeds": torch.zeros(num_classes, prompt_length, width),  # (C, W, D)
            "prompt_word_mask": torch.zeros(num_classes, prompt_length, dtype=torch.bool),  # (C, W)
            "subtext_embeds": torch.zeros(num_classes, num_subtexts, width),  # (C, N, D) s_{c,n}
            "subtext_word_embeds": torch.zeros(num_classes, num_subtexts, subtext_length, width),  # (C, N, S, D)
            "subtext_word_mask": torch.zeros(num_classes, num_subtexts, subtext_length, dtype=torch.bool),
            "has_text_features": torch.zeros((), dtype=torch.bool),
        }
        for name, value in buffers.items():
            value = value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)
            self.register_buffer(name, value, persistent=True)

    @torch.no_grad()
    def encode_text(self, texts: list[str], tokenizer: Any, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """
        Run the frozen text tower on `texts`.

        Returns a dict with `embeds` (len, D): projected end-of-text tokens; `word_embeds` (len, P, D): projected
        tokens at the positions that `config.word_tokens` keeps; `word_mask` (len, P).
        """
        context = self.config.text_config.max_position_embeddings
        all_positions = self.config.word_tokens == "all"
        device = self.text_projection.weight.device
        embeds, word_embeds, word_masks = [], [], []
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(
                texts[start : start + batch_size],
                padding="max_length" if all_positions else "longest",
                truncation=True,
                max_length=context,
                return_tensors="pt",
            ).to(device)
            # A causal mask alone is enough: no real token attends to the padding after it.
            out = self.text_model(input_ids=tokens["input_ids"])
            words = self.text_projection(out.last_hidden_state)  # (b, P, D)
            mask = tokens["attention_mask"].bool()
            if all_positions:
                mask = torch.ones_like(mask)
            else:  # drop the start token: it is the same vector for every text
                words, mask = words[:, 1:], mask[:, 1:]
            embeds.append(self.text_projection(out.pooler_output))
            word_embeds.append(words)
            word_masks.append(mask)
        length = max(w.shape[1] for w in word_embeds)
        word_embeds = [F.pad(w, (0, 0, 0, length - w.shape[1])) for w in word_embeds]
        word_masks = [F.pad(m, (0, length - m.shape[1])) for m in word_masks]
        return {
            "embeds": torch.cat(embeds),
            "word_embeds": torch.cat(word_embeds),
            "word_mask": torch.cat(word_masks),
        }

    @torch.no_grad()
    def set_label_set(
        self,
        labels: list[str],
        tokenizer: Any,
        subtexts: dict[str, list[str]] | None = None,
        batch_size: int = 256,
    ) -> None:
        """
        Replace the label set: encode every class prompt and sub-text once with the frozen text tower.

        Args:
            labels: class names, in class-index order; written to `config.id2label`.
            tokenizer: the CLIP tokenizer of the text tower.
            subtexts: for every label, exactly `config.num_subtexts` sub-texts. Required unless the fusion is "mean".
            batch_size: texts per text-tower call.

        Raises:
            ValueError: a label without sub-texts or with a count other than N (the message names the label),
                duplicate labels, or an empty label set.
        """
        labels = [str(label) for label in labels]
        if not labels:
            raise ValueError("the label set is empty")
        if len(set(labels)) != len(labels):
            duplicates = sorted({label for label in labels if labels.count(label) > 1})
            raise ValueError(f"duplicate labels: {duplicates}")
        if subtexts is not None or self.config.uses_subtexts:
            if subtexts is None:
                raise ValueError(f"fusion {self.config.fusion!r} needs sub-texts for every label")
            self.config.check_subtexts(labels, subtexts)
            subtexts = {label: list(subtexts[label]) for label in labels}

        names = [class_name_to_text(label) for label in labels]
        prompts = self.encode_text([self.config.prompt_template.format(n) for n in names], tokenizer, batch_size)
        text_embeds = F.normalize(prompts["embeds"], dim=-1)  # (C, D)
        if self.config.prompt_templates:  # prompt ensemble: mean of normalised embeddings over templates
            ensemble = [
                F.normalize(self.encode_text([t.format(n) for n in names], tokenizer, batch_size)["embeds"], dim=-1)
                for t in self.config.prompt_templates
            ]
            text_embeds = F.normalize(torch.stack(ensemble).mean(0), dim=-1)

        num_classes, num_subtexts = len(labels), self.config.num_subtexts
        if subtexts is not None:
            flat = [text for label in labels for text in subtexts[label]]
            sub = self.encode_text(flat, tokenizer, batch_size)
            subtext_length = sub["word_embeds"].shape[1]
        else:
            subtext_length = 0

        self.config.id2label = dict(enumerate(labels))
        self.config.label2id = {label: i for i, label in enumerate(labels)}
        self.config.subtexts = subtexts
        self.config.prompt_length = prompts["word_embeds"].shape[1]
        self.config.subtext_length = subtext_length
        self._register_text_buffers(num_classes, self.config.prompt_length, subtext_length)
        self.text_embeds.copy_(text_embeds)
        self.prompt_word_embeds.copy_(prompts["word_embeds"])
        self.prompt_word_mask.copy_(prompts["word_mask"])
        if subtexts is not None:
            shape = (num_classes, num_subtexts, subtext_length)
            self.subtext_embeds.copy_(sub["embeds"].view(num_classes, num_subtexts, -1))
            self.subtext_word_embeds.copy_(sub["word_embeds"].view(*shape, -1))
            self.subtext_word_mask.copy_(sub["word_mask"].view(*shape))
        self.has_text_features.fill_(True)

    def _check_text_features(self) -> None:
        if torch.compiler.is_compiling():  # checked in eager runs; a data-dependent branch would break the graph
            return
        if not bool(self.has_text_features):
            raise ValueError(
                "the model has no label set: call `set_label_set(labels, tokenizer, subtexts)` (or convert it from "
                "CLIP with labels) before classifying"
            )

    # -- video side --------------------------------------------------------------------------------------------

    def get_frame_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP frame embeddings: (B, T, 3, H, W) -> (B, T, D), before the temporal module."""
        batch_size, num_frames = pixel_values.shape[:2]
        frames = pixel_values.flatten(0, 1).to(self.visual_projection.weight.dtype)  # (B*T, 3, H, W), model dtype
        pooled = self.vision_model(pixel_values=frames).pooler_output  # (B*T, E)
        return self.visual_projection(pooled).view(batch_size, num_frames, -1)  # (B, T, D)

    def augmented_prompt_words(self) -> torch.Tensor:
        """T^_c = Attention(T_c W_q, [S_c] W_k, [S_c] W_v) + T_c (Eq. 4-6): (C, W, D), for all classes at once."""
        prompt = self.prompt_word_embeds  # (C, W, D)
        subtext_words = self.subtext_word_embeds.flatten(1, 2)  # (C, N*S, D): the concatenation of Eq. 5
        subtext_mask = self.subtext_word_mask.flatten(1, 2)  # (C, N*S)
        return self.subtext_attention(prompt, subtext_words, key_padding_mask=subtext_mask) + prompt

    def label_set_words(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """
        The word-side constants of the frame weights: the normalised augmented prompt words T^_c (Eq. 4-6), (C, W, D),
        and the normalised mean word of every sub-text (Eq. 9), (C, N, D); None for a branch the variant lacks.

        They depend on the label set and the trained cross-attention only, not on the video. Outside training (no
        gradient) they are computed once and reused until a parameter or buffer they depend on changes (an optimizer
        step, `load_state_dict`, `set_label_set`, a dtype or device move); with gradients they are always recomputed.
        (A change written through `.data`, which bypasses version counting, is not seen: call `clear_word_cache`.)
        """
        tensors = [self.prompt_word_embeds, self.subtext_word_embeds, self.prompt_word_mask, self.subtext_word_mask]
        if self.subtext_attention is not None:
            tensors += list(self.subtext_attention.parameters())
        cacheable = not torch.is_grad_enabled()
        key = tuple((id(t), t.data_ptr(), t._version, t.dtype, t.device) for t in tensors) if cacheable else None
        if cacheable and self._word_cache is not None and self._word_cache[0] == key:
            return self._word_cache[1]
        prompt_words = F.normalize(self.augmented_prompt_words(), dim=-1) if self.config.uses_coarse else None
        mean_words = None
        if self.config.uses_fine:
            # The mean over words of sim(s, v) is sim-weighted by normalised words, so it is one dot product with
            # the mean of the normalised word embeddings.
            words = F.normalize(self.subtext_word_embeds, dim=-1)  # (C, N, S, D)
            mean_words = _masked_mean(words, self.subtext_word_mask, dim=2)  # (C, N, D)
        if cacheable:
            self._word_cache = (key, (prompt_words, mean_words))
        return prompt_words, mean_words

    def clear_word_cache(self) -> None:
        """Forget the cached label-set words (see `label_set_words`)."""
        self._word_cache = None

    def coarse_frame_weights(self, frames: torch.Tensor) -> torch.Tensor:
        """a^coarse (Eq. 7): per word of T^_c a softmax over frames of sim / tau, averaged over words. (B, C, T)."""
        words = self.label_set_words()[0]  # (C, W, D), normalised
        sim = torch.einsum("cwd,btd->bcwt", words, F.normalize(frames, dim=-1))  # (B, C, W, T)
        per_word = (sim / self.config.frame_temperature).softmax(dim=-1)  # softmax over frames
        mask = self.prompt_word_mask.to(per_word.dtype)  # (C, W)
        return torch.einsum("bcwt,cw->bct", per_word, mask) / mask.sum(-1).clamp(min=1)[None, :, None]

    def fine_frame_weights(self, frames: torch.Tensor) -> torch.Tensor:
        """a^fine (Eq. 9): softmax over frames of max_n (mean over the words of S_{c,n} of sim) / tau. (B, C, T)."""
        mean_words = self.label_set_words()[1]  # (C, N, D)
        sim = torch.einsum("cnd,btd->bcnt", mean_words, F.normalize(frames, dim=-1))  # (B, C, N, T)
        return (sim.amax(dim=2) / self.config.frame_temperature).softmax(dim=-1)  # (B, C, T)

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> SfarModelOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, T, 3, H, W)` or `(B, V, T, 3, H, W)`):
                Normalised frames. With a view axis V (multi-view testing) the class probabilities are averaged
                over the views.
        """
        self._check_text_features()
        if pixel_values.ndim == 6:
            batch_size, num_views = pixel_values.shape[:2]
            output = self.forward(pixel_values.flatten(0, 1))
            probs = output.logits.softmax(-1).view(batch_size, num_views, -1).mean(1)  # (B, C)
            output.logits = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
            return output
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be (B, T, 3, H, W) or (B, V, T, 3, H, W), got {pixel_values.shape}")

        return self.head(self.get_frame_features(pixel_values))

    def head(self, frame_embeds: torch.Tensor) -> SfarModelOutput:
        """Everything after the vision tower (temporal module, text-guided poolings, logits) on (B, T, D) frames."""
        self._check_text_features()
        frames = self.temporal(frame_embeds) if self.temporal is not None else frame_embeds  # v_l, (B, T, D)
        num_classes = self.text_embeds.shape[0]

        coarse_weights = fine_weights = None
        if not self.config.uses_subtexts:  # "mean": no text guidance
            video_embeds = frames.mean(1, keepdim=True).expand(-1, num_classes, -1)  # (B, C, D)
        else:
            video_embeds = 0
            if self.config.uses_coarse:
                coarse_weights = self.coarse_frame_weights(frames)  # (B, C, T)
                video_embeds = video_embeds + self.coarse_ffn.pooled(coarse_weights, frames)  # FFN(o^coarse), Eq. 8
            if self.config.uses_fine:
                fine_weights = self.fine_frame_weights(frames)  # (B, C, T)
                video_embeds = video_embeds + self.fine_ffn.pooled(fine_weights, frames)  # FFN(o^fine), Eq. 10-11

        sim = torch.einsum("bcd,cd->bc", F.normalize(video_embeds, dim=-1), self.text_embeds)  # (B, C)
        logits = self.logit_scale.exp() * sim
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        return SfarModelOutput(
            logits=logits,
            video_embeds=video_embeds,
            frame_embeds=frames,
            coarse_frame_weights=coarse_weights,
            fine_frame_weights=fine_weights,
            text_embeds=self.text_embeds,
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

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs
    ) -> SfarVideoClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, T, 3, H, W)` or `(B, V, T, 3, H, W)`):
                Normalised frames; see [`SfarModel.forward`].
            labels (`torch.LongTensor` of shape `(B,)`, or `torch.FloatTensor` of shape `(B, C)` for multi-label):
                Ground-truth classes.
        """
        output = self.sfar(pixel_values)
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
        if not multi_label:
            if labels.ndim != 1:
                raise ValueError(f"single-label training needs labels of shape (B,), got {tuple(labels.shape)}")
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
