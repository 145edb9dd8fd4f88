"""Token merging (ToMe, Bolya et al. 2022) for CLIP's vision tower, as ALT's region-aware image encoder uses it.

In every encoder block, after the attention and its residual, the r most similar pairs of tokens are merged (Eq. 2 of
the ALT paper): the tokens are split alternately into two sets A (even positions, the class token among them) and B
(odd positions); every token of A is joined to its most similar token of B by the cosine similarity of the block's
attention keys (averaged over heads); the r best edges are merged, each a size-weighted average of the tokens it
joins, and the class token is never merged. Sizes (how many patches a token holds) are tracked, and the attention
adds the log of each key's size to its scores ("proportional attention"), so that a merged token weighs as the
tokens it replaces.

The functions work on the modules of a transformers `CLIPVisionModel` (nothing is copied or re-parameterised): a
model with merging has exactly CLIP's checkpoint keys, and merging is an option of the forward, not of the weights.

Shape letters: F frames (images), G tokens of a frame at the current block (the class token first), E the tower's
width, h heads, hd head width, P + 1 the tokens of the embedding layer (P patches and the class token).

This file is shipped to the Hub as remote code: it imports only torch and transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.modeling_clip import eager_attention_forward
from transformers.utils import ModelOutput

__all__ = [
    "MergePlan",
    "TokenMergingOutput",
    "bipartite_soft_matching",
    "merge_tokens",
    "proportional_attention",
    "token_merging_vision_forward",
]


@dataclass
class MergePlan:
    """
    Which tokens one merging step keeps and joins, for a batch of F frames of G tokens (A: even, B: odd positions).

    Args:
        unmerged (`torch.LongTensor` of shape `(F, |A| - r)`): positions within A of the tokens kept as they are, in
            ascending order (so the class token, A's first, stays first).
        merged (`torch.LongTensor` of shape `(F, r)`): positions within A of the tokens merged into B.
        destination (`torch.LongTensor` of shape `(F, r)`): for each merged token, its position within B.
    """

    unmerged: torch.Tensor
    merged: torch.Tensor
    destination: torch.Tensor

    @property
    def r(self) -> int:
        return self.merged.shape[1]


@dataclass
class TokenMergingOutput(ModelOutput):
    """
    Output of [`token_merging_vision_forward`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(F, G, E)`):
            The last block's tokens: the class token, then the region tokens (`G = P + 1 - sum of the r merged per
            block`). Like CLIP's, before the post-layernorm.
        pooler_output (`torch.FloatTensor` of shape `(F, E)`):
            The class token after the post-layernorm, as CLIP's `pooler_output`.
        token_sizes (`torch.FloatTensor` of shape `(F, G)`):
            How many of the embedding layer's tokens each output token holds (the class token holds 1).
        patch_to_token (`torch.LongTensor` of shape `(F, P + 1)`):
            For every token of the embedding layer (class token first, then the patches in row-major order), the
            index of the output token it was merged into: the regions, for drawing them.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            The embeddings (after the pre-layernorm) and every block's output, each `(F, G_i, E)`; G_i shrinks by r.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Every block's attention weights, each `(F, h, G_i, G_i)` (proportional attention included).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    token_sizes: torch.FloatTensor | None = None
    patch_to_token: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def bipartite_soft_matching(metric: torch.Tensor, r: int) -> MergePlan:
    """
    Choose the r token pairs to merge, the class token (position 0) excluded.

    Args:
        metric: `(F, G, c)` the tokens' matching features (the attention keys averaged over heads).
        r: how many tokens to remove; at most `(G - 1) // 2` (the class token is protected), checked by the caller.

    Returns:
        The [`MergePlan`]: A's tokens (even positions) sorted by the cosine similarity of their best match in B (odd
        positions); the r best are merged into that match, the rest kept.
    """
    # The choice is discrete: no gradient flows through it, and it is made in float32 (as transformers' models take
    # their softmaxes), because a bfloat16 or float16 cosine has 3 significant digits: ties are frequent, and which
    # token wins one then turns on the last bit of the keys (eager and SDPA attention merged different tokens).
    metric = F.normalize(metric.detach().float(), dim=-1)
    set_a, set_b = metric[:, ::2], metric[:, 1::2]  # (F, |A|, c), (F, |B|, c)
    scores = set_a @ set_b.transpose(1, 2)  # (F, |A|, |B|): cosine similarity of every edge A -> B
    scores[:, 0] = -torch.inf  # the class token is never merged: its best edge ranks last
    best_score, best_match = scores.max(dim=-1)  # (F, |A|)
    ranked = best_score.argsort(dim=-1, descending=True, stable=True)  # (F, |A|)
    merged, unmerged = ranked[:, :r], ranked[:, r:].sort(dim=-1).values
    return MergePlan(unmerged=unmerged, merged=merged, destination=best_match.gather(1, merged))


def merge_tokens(x: torch.Tensor, sizes: torch.Tensor, plan: MergePlan) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Apply a [`MergePlan`]: every merged token of A joins its B token as the size-weighted average of them all.

    x `(F, G, E)`, sizes `(F, G)` -> x `(F, G - r, E)`, sizes `(F, G - r)`: A's kept tokens (in order), then B's.
    """
    width = x.shape[-1]
    weighted = torch.cat([x * sizes[..., None], sizes[..., None]], dim=-1)  # (F, G, E + 1): sums of x*w and of w
    set_a, set_b = weighted[:, ::2], weighted[:, 1::2]
    kept = set_a.gather(1, plan.unmerged[..., None].expand(-1, -1, width + 1))  # (F, |A| - r, E + 1)
    moving = set_a.gather(1, plan.merged[..., None].expand(-1, -1, width + 1))  # (F, r, E + 1)
    set_b = set_b.scatter_add(1, plan.destination[..., None].expand(-1, -1, width + 1), moving)  # (F, |B|, E + 1)
    out = torch.cat([kept, set_b], dim=1)  # (F, G - r, E + 1)
    new_sizes = out[..., width]
    return out[..., :width] / new_sizes[..., None], new_sizes


def _new_positions(plan: MergePlan, num_tokens: int) -> torch.Tensor:
    """(F, G): the position after the merge of every token before it (`merge_tokens`' order)."""
    frames, num_a, num_b = plan.merged.shape[0], (num_tokens + 1) // 2, num_tokens // 2
    device = plan.merged.device
    num_kept = num_a - plan.r
    positions_a = torch.empty(frames, num_a, dtype=torch.long, device=device)
    positions_a.scatter_(1, plan.unmerged, torch.arange(num_kept, device=device).expand(frames, -1))
    positions_a.scatter_(1, plan.merged, num_kept + plan.destination)
    positions_b = (num_kept + torch.arange(num_b, device=device)).expand(frames, -1)
    positions = torch.empty(frames, num_tokens, dtype=torch.long, device=device)
    positions[:, ::2], positions[:, 1::2] = positions_a, positions_b
    return positions


def proportional_attention(
    attention: nn.Module,
    hidden_states: torch.Tensor,
    sizes: torch.Tensor | None,
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """
    A CLIP attention module (`q_proj`, `k_proj`, `v_proj`, `out_proj`) with log(size) of every key added to the scores.

    Dispatched through transformers' attention functions (`attention.config._attn_implementation`; eager when the
    weights are asked for), with the log sizes as an additive mask. hidden_states `(F, G, E)`, sizes `(F, G)` (None:
    every token holds one patch, no term is added) -> the output `(F, G, E)`, the weights `(F, h, G, G)` or None, and
    the keys averaged over heads `(F, G, hd)`, ToMe's matching metric.
    """
    frames, num_tokens, width = hidden_states.shape
    head_dim = attention.head_dim
    shape = (frames, num_tokens, -1, head_dim)
    queries = attention.q_proj(hidden_states).view(shape).transpose(1, 2)  # (F, h, G, hd)
    keys = attention.k_proj(hidden_states).view(shape).transpose(1, 2)
    values = attention.v_proj(hidden_states).view(shape).transpose(1, 2)
    mask = None if sizes is None else sizes.log().to(queries.dtype)[:, None, None, :]  # (F, 1, 1, G)
    implementation = "eager" if output_attentions else attention.config._attn_implementation
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
    dropout = attention.dropout if attention.training else 0.0
    out, weights = interface(attention, queries, keys, values, mask, scaling=attention.scale, dropout=dropout)
    out = attention.out_proj(out.reshape(frames, num_tokens, width))  # (F, G, E)
    return out, weights, keys.mean(1)


def _merging_block(
    layer: nn.Module, hidden: torch.Tensor, sizes: torch.Tensor | None, r: int, output_attentions: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """
    One CLIP encoder layer with ToMe (ALT Eq. 2). hidden `(F, G, E)`, sizes `(F, G)` (None: all 1) -> the block's
    output `(F, G - r', E)`, the new sizes and the new position of every input token `(F, G)` (both None when nothing
    was merged), and the attention weights (or None).
    """
    attended, weights, keys = proportional_attention(
        layer.self_attn, layer.layer_norm1(hidden), sizes, output_attentions
    )
    hidden = hidden + attended
    step = min(r, (hidden.shape[1] - 1) // 2)
    new_sizes = positions = None
    if step > 0:
        plan = bipartite_soft_matching(keys, step)
        positions = _new_positions(plan, hidden.shape[1])
        if sizes is None:
            sizes = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
        hidden, new_sizes = merge_tokens(hidden, sizes, plan)
    hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    return hidden, new_sizes, positions, weights


def token_merging_vision_forward(
    vision_model: nn.Module,
    pixel_values: torch.Tensor,
    r: int,
    output_hidden_states: bool | list[int] = False,
    output_attentions: bool = False,
) -> TokenMergingOutput:
    """
    Run a transformers `CLIPVisionModel` (or its inner `CLIPVisionTransformer`) with ToMe in every block.

    Each block (ALT Eq. 2): E' = E + MSA(LN(E), w) with proportional attention; E'' = ToMe(E', w), removing
    `min(r, (G - 1) // 2)` tokens; E = E'' + MLP(LN(E'')). With `r = 0` no token is merged and, all sizes being 1,
    the attention is CLIP's.

    Args:
        vision_model: the CLIP vision tower whose modules (embeddings, layer norms, encoder layers) are run.
        pixel_values: `(F, 3, H, W)` frames.
        r: tokens merged per block (ALT's default is 8).
        output_hidden_states: True for the embeddings and every block's output; a list of block indices (as
            transformers' `output_hidden_states=[...]`) for those blocks' outputs only, one entry per block, None at
            the others.
    """
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        raise ValueError(f"token merging needs an integer r >= 0 (tokens merged per block), got {r!r}")
    # transformers 5's CLIPVisionModel holds the tower's modules itself; older releases wrapped a CLIPVisionTransformer
    tower = getattr(vision_model, "vision_model", vision_model)
    hidden = tower.pre_layrnorm(tower.embeddings(pixel_values))  # (F, P + 1, E)
    frames, num_tokens = hidden.shape[:2]
    sizes = torch.ones(frames, num_tokens, dtype=hidden.dtype, device=hidden.device)
    patch_to_token = torch.arange(num_tokens, device=hidden.device).expand(frames, -1)  # (F, P + 1)
    merged_any = False
    selected = None if isinstance(output_hidden_states, bool) else set(output_hidden_states)
    all_hidden = [] if selected is not None else ([hidden] if output_hidden_states else None)
    all_attentions = [] if output_attentions else None
    for index, layer in enumerate(tower.encoder.layers):
        # (before any merge all sizes are 1 and log 1 = 0: no mask, so SDPA keeps its fastest kernel)
        block_sizes = sizes if merged_any else None
        if getattr(layer, "gradient_checkpointing", False) and layer.training and torch.is_grad_enabled():
            # transformers' checkpointing of the layer (`gradient_checkpointing_enable`), around the whole merging
            # block: the merge is recomputed identically in the backward pass (the matching is deterministic)
            hidden, new_sizes, positions, weights = layer._gradient_checkpointing_func(
                _merging_block, layer, hidden, block_sizes, r, output_attentions
            )
        else:
            hidden, new_sizes, positions, weights = _merging_block(layer, hidden, block_sizes, r, output_attentions)
        if positions is not None:
            patch_to_token = positions.gather(1, patch_to_token)
            sizes, merged_any = new_sizes, True
        if all_hidden is not None:
            all_hidden.append(hidden if selected is None or index in selected else None)
        if output_attentions:
            all_attentions.append(weights)
    return TokenMergingOutput(
        last_hidden_state=hidden,
        pooler_output=tower.post_layernorm(hidden[:, 0]),
        token_sizes=sizes,
        patch_to_token=patch_to_token,
        hidden_states=tuple(all_hidden) if all_hidden is not None else None,
        attentions=tuple(all_attentions) if output_attentions else None,
    )
