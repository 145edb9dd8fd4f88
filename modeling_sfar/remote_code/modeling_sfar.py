# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""SFAR: Storyboard-guided Alignment for Fine-grained video Action Recognition.

The file follows the paper (docs/method.md sections 2-6): temporal module, coarse video embedding (Eq. 4-8),
fine-grained video embedding (Eq. 9-10), fusion (Eq. 11), logits and loss (Eq. 12-14), and the text prompt perplexity
used to select sub-texts (Eq. 1-3). What SFAR shares with ALT (CLIP's towers, the frozen text encoder, saving) is
`modeling_clip_video.py`; its label set (encoding, the store saved with the weights) is `label_set_sfar.py`; its CPU
kernels are `cpu_kernels.py`.

Shape letters: the table of `modeling_clip_video.py` (B videos, T frames, C classes, N sub-texts, W words of a class
prompt, S words of a sub-text, D joint width, E a tower's width).

This file is shipped to the Hub as remote code: it imports only torch, transformers and its sibling files.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.models.clip.configuration_clip import CLIPVisionConfig
from transformers.models.clip.modeling_clip import CLIPEncoderLayer
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, logging

from .configuration_clip_video import class_name_to_text
from .configuration_sfar import SfarConfig
from .cpu_kernels import intra_op_threads, temporal_threads
from .label_set_sfar import SfarLabelSet, SfarLabelSetMixin, _masked_mean
from .modeling_clip_video import (
    SHARED_SHIPPED_FILES,
    ClipVideoAttention,
    ClipVideoClassifierMixin,
    ClipVideoModel,
    ClipVideoPreTrainedModel,
    check_class_indices,
    check_soft_targets,
    family_auto_map,
    gather,
    gather_with_grad,
    is_distributed_training,
)
from .token_merging import token_merging_vision_forward

logger = logging.get_logger(__name__)

# Every auto class a saved SFAR folder answers to, and the remote-code files it ships.
AUTO_MAP = family_auto_map("sfar", "Sfar")
SHIPPED_FILES = (
    "configuration_sfar.py", "modeling_sfar.py", "label_set_sfar.py", "cpu_kernels.py", *SHARED_SHIPPED_FILES
)  # fmt: skip

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
class SfarModelOutput(ModelOutput):
    """
    Output of [`SfarModel`].

    Args:
        logits (`torch.FloatTensor` of shape `(B, C)`):
            `logit_scale * sim(t_c, o_{b,c})` (plus `logit_bias` for a multi-label model).
        video_embeds (`torch.FloatTensor` of shape `(B, C, D)`):
            The class-specific video embeddings o_{b,c} (Eq. 11).
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
            layer, each `(F, G, E)` (F = B * T frames, G = P + 1 tokens: the patches and the class token).
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            The vision tower's attention weights, each `(F, h, G, G)`.
        temporal_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The temporal module's hidden states: the input of its first layer (frames plus positions) and the
            output of each layer, each `(B, T, D)`; `None` without a temporal module.
        temporal_attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            The temporal module's attention weights, each `(B, h, T, T)`, where its attention returns them.
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


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32 when it is in a half-precision type (float16, bfloat16); as it is otherwise."""
    return x.float() if x.element_size() < 4 and x.is_floating_point() else x


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


# ----------------------------------------------------------------------------------------------------------------
# Text prompt perplexity (Eq. 1-3) and the losses (Eq. 12-14): pure functions
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class SfarPreTrainedModel(ClipVideoPreTrainedModel):
    config_class = SfarConfig
    config: SfarConfig
    base_model_prefix = "sfar"
    _no_split_modules = ["CLIPEncoderLayer", "SfarTemporalLayer", "SfarLabelSetCache"]
    shipped_auto_map = AUTO_MAP
    shipped_files = SHIPPED_FILES

    def _prepare_to_save(self) -> None:
        # before the config is written: the stored label set's layout is in it (`stored_prompt_words`)
        sfar = self.base_model
        sfar._convert_legacy_label_set()
        sfar._sync_stored_constants()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' `from_pretrained`; a label set saved in the legacy layout (the text tower's words, before
        `config.stored_prompt_words`) is then converted to the inference layout (see `SfarModel.store_label_set`)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(model, SfarPreTrainedModel):
            sfar = model.base_model
            if sfar._convert_legacy_label_set():
                logger.info("the stored label set was saved as words (legacy layout); converted to inference constants")
            sfar.label_set_cache.align_buffers()
        return loaded

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """What every family initialises (`ClipVideoPreTrainedModel._init_weights`), then SFAR's own: the fusion
        FFNs' output layers at zero, so that a new model's FFN is the identity (docs/method.md section 6). Keyed on
        the layer itself (`SfarZeroInitLinear`), so it holds on every construction path."""
        super()._init_weights(module)
        if isinstance(module, SfarZeroInitLinear):
            init.zeros_(module.weight)
            init.zeros_(module.bias)


class SfarModel(SfarLabelSetMixin, SfarPreTrainedModel, ClipVideoModel):
    """
    CLIP towers, temporal module and SFAR's text-guided poolings; returns logits over a label set.

    The label set is a value: the forward takes it as the class prompts' and sub-texts' token ids (`input_ids`,
    `subtext_input_ids`, as X-CLIP takes its text) or as an encoded [`SfarLabelSet`] (`label_set`). Without one it
    uses the stored label set: the cache that [`~SfarModel.set_label_set`] fills by encoding a label set once with
    the frozen text tower (`label_set_sfar.py`). A model built from a configuration has no stored label set until one
    is set or loaded.
    """

    label_set_class = SfarLabelSet
    label_set_inputs = ("subtext_input_ids", "subtext_attention_mask", "ensemble_input_ids", "ensemble_attention_mask")
    # Below this many multiply-adds in its largest product, CPU inference runs the temporal module on one intra-op
    # thread; 0 (the default) keeps the threads as set. `cpu_kernels.SMALL_TEMPORAL_MACS` is the value for a busy
    # machine.
    small_temporal_macs: int = 0

    def __init__(self, config: SfarConfig):
        super().__init__(config)
        width = config.projection_dim
        self._build_clip_towers(config)
        # A sigmoid objective needs a bias to start from low probabilities (SigLIP's -10); softmax ones do not.
        multi_label = config.problem_type == "multi_label_classification"
        self.logit_bias = nn.Parameter(torch.tensor(-10.0)) if multi_label else None

        self.temporal = SfarTemporalModule(config) if config.num_temporal_layers > 0 else None
        self.subtext_attention = ClipVideoAttention(config) if config.uses_coarse else None
        self.coarse_ffn = SfarResidualMLP(width) if config.uses_coarse else None
        self.fine_ffn = SfarResidualMLP(width) if config.uses_fine else None

        self._init_label_set_store(config.num_labels)
        self._freeze_text_encoder()
        self.post_init()

    # -- the text side: the word constants of the frame weights (Eq. 4-6, 9) -------------------------------------

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

    def _word_constants(self, label_set: SfarLabelSet) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The constants of `label_set_words`, computed (never cached) from the text tower's words of `label_set`:
        the normalised T^_c (C, W, D) and the mean of the normalised words of every sub-text (C, N, D)."""
        prompt_words = F.normalize(self.augmented_prompt_words(label_set), dim=-1) if self.config.uses_coarse else None
        mean_words = None
        if self.config.uses_fine:
            # The mean over words of sim(s, v) is sim-weighted by normalised words, so it is one dot product with
            # the mean of the normalised word embeddings.
            words = F.normalize(label_set.subtext_word_embeds, dim=-1)  # (C, N, S, D)
            mean_words = _masked_mean(words, label_set.subtext_word_mask, dim=2)  # (C, N, D)
        return prompt_words, mean_words

    # -- the video side: frame weights (Eq. 7, 9), poolings and fusion (Eq. 8, 10, 11), logits -------------------

    def _frame_softmax(self, similarity: torch.Tensor) -> torch.Tensor:
        """softmax over frames (the last axis) of sim / tau, in at least float32 as transformers' attention computes
        its softmax: at tau = 0.01 a half-precision similarity's rounding would be multiplied by 100 in the
        exponent."""
        similarity = _at_least_float32(similarity)
        return F.softmax(similarity / self.config.frame_temperature, dim=-1, dtype=similarity.dtype)

    def coarse_frame_weights(self, frames: torch.Tensor, label_set: SfarLabelSet | None = None) -> torch.Tensor:
        """a^coarse (Eq. 7): per word of T^_c a softmax over frames of sim / tau, averaged over words. (B, C, T)."""
        words, prompt_mask, _ = self._label_set_words(label_set)  # (C, W, D) normalised, (C, W)
        words, normed = _at_least_float32(words), F.normalize(_at_least_float32(frames), dim=-1)
        sim = torch.einsum("cwd,btd->bcwt", words, normed)  # (B, C, W, T)
        per_word = self._frame_softmax(sim)
        mask = prompt_mask.to(per_word.dtype)  # (C, W)
        weights = torch.einsum("bcwt,cw->bct", per_word, mask) / mask.sum(-1).clamp(min=1)[None, :, None]
        return weights.to(frames.dtype)

    def fine_frame_weights(self, frames: torch.Tensor, label_set: SfarLabelSet | None = None) -> torch.Tensor:
        """a^fine (Eq. 9): softmax over frames of max_n (mean over the words of S_{c,n} of sim) / tau. (B, C, T)."""
        mean_words = self.label_set_words(label_set)[1]  # (C, N, D)
        mean_words, normed = _at_least_float32(mean_words), F.normalize(_at_least_float32(frames), dim=-1)
        sim = torch.einsum("cnd,btd->bcnt", mean_words, normed)  # (B, C, N, T)
        return self._frame_softmax(sim.amax(dim=2)).to(frames.dtype)  # (B, C, T)

    def get_frame_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP frame embeddings: (B, T, 3, H, W) -> (B, T, D), before the temporal module."""
        return self.forward_features(pixel_values)[0]

    def forward_features(
        self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, Any]:
        """The backbone: (B, T, 3, H, W) -> frame embeddings (B, T, D) (the projected class tokens) and the vision
        tower's output (its hidden states and attentions when asked)."""
        batch_size, num_frames = pixel_values.shape[:2]
        frames = pixel_values.flatten(0, 1).to(self.visual_projection.weight.dtype)  # (F, 3, H, W), model dtype
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

    def forward_head(self, frame_embeds: torch.Tensor, label_set: SfarLabelSet | None = None) -> SfarModelOutput:
        """Everything after the vision tower (temporal module, text-guided poolings, logits) on (B, T, D) frames;
        `label_set` None: the stored one."""
        return self._classify_frames(self._temporal(frame_embeds, False, False)[0], label_set)

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
            with intra_op_threads(temporal_threads(frame_embeds, self.small_temporal_macs)):
                frames = self.temporal(frame_embeds)
        finally:
            for handle in handles:
                handle.remove()
        return (
            frames,
            tuple(hidden_states) if output_hidden_states else None,
            tuple(attentions) if output_attentions and attentions else None,
        )

    def _classify_frames(self, frames: torch.Tensor, label_set: SfarLabelSet | None) -> SfarModelOutput:
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

        # the cosine similarity in at least float32: the logit scale (up to 100) multiplies its rounding
        video, text = F.normalize(_at_least_float32(video_embeds), dim=-1), _at_least_float32(label_set.text_embeds)
        sim = torch.einsum("bcd,cd->bc", video, text.to(video.dtype))  # (B, C)
        return SfarModelOutput(
            logits=self._logits(sim).to(video_embeds.dtype),
            video_embeds=video_embeds,
            frame_embeds=frames,
            coarse_frame_weights=coarse_weights,
            fine_frame_weights=fine_weights,
            text_embeds=label_set.text_embeds,
        )

    def _forward_video(
        self,
        pixel_values: torch.Tensor,
        label_set: SfarLabelSet | None,
        output_hidden_states: Any,
        output_attentions: Any,
        **kwargs,
    ) -> SfarModelOutput:
        """
        The forward ([`ClipVideoModel.forward`]) after the label set is resolved: the vision tower, the temporal
        module and the text-guided poolings. SFAR's further label-set inputs (`label_set_inputs`) are
        `subtext_input_ids`, `subtext_attention_mask` (C, N, L), the sub-texts, N per class, required with
        `input_ids` by the `"coarse"` and `"fine"` fusions, and `ensemble_input_ids`, `ensemble_attention_mask`
        (C, R, L), a prompt ensemble of R prompts per class. `output_hidden_states` and `output_attentions` return
        the vision tower's and the temporal module's.
        """
        frame_embeds, vision = self.forward_features(
            pixel_values, output_hidden_states=output_hidden_states, output_attentions=output_attentions, **kwargs
        )
        frames, temporal_hidden_states, temporal_attentions = self._temporal(
            frame_embeds, bool(output_hidden_states), bool(output_attentions)
        )
        output = self._classify_frames(frames, label_set)
        output.hidden_states = vision.hidden_states
        output.attentions = vision.attentions
        output.temporal_hidden_states = temporal_hidden_states
        output.temporal_attentions = temporal_attentions
        return output


class SfarForVideoClassification(ClipVideoClassifierMixin, SfarPreTrainedModel):
    """
    [`SfarModel`] with the training loss (`loss`: Eq. 12-14, ActionCLIP's, or the multi-label sigmoid loss), for
    `AutoModelForVideoClassification` and the `video-classification` pipeline; its forward is
    [`ClipVideoClassifierMixin.forward`] (SFAR's `subtext_input_ids`, `ensemble_input_ids` and masks pass on to
    [`SfarModel.forward`]).

    When several processes train (DDP), the logits are gathered across processes with their gradient, so the
    text-to-video term contrasts each class over the global batch: 2 processes x 16 videos give the loss of 1 x 32.
    """

    base_model_class = SfarModel
    output_class = SfarVideoClassifierOutput

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The configured loss on `(B, C)` logits, over the global batch when several processes train."""
        labels = labels.to(logits.device)
        multi_label = self.config.problem_type == "multi_label_classification"
        if not multi_label and labels.is_floating_point():  # Mixup, CutMix, smoothing: a distribution per video
            check_soft_targets(logits, labels)
            if self.config.loss_type == "actionclip":
                raise ValueError("ActionCLIP's loss takes class indices (B,), not soft targets (Mixup, smoothing)")
        elif not multi_label:
            check_class_indices(labels, logits.shape[-1])
        if is_distributed_training(self):
            logits, labels = gather_with_grad(logits), gather(labels)
        if multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        if self.config.loss_type == "actionclip":
            return actionclip_loss(logits, labels)
        return sfar_loss(logits, labels, self.config.loss_lambda)


SfarForVideoClassification.register_for_auto_class("AutoModelForVideoClassification")
