# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""CPU kernels of SFAR's inference: the CPU's matrix features, the bfloat16 attention registered as "sfar_sdpa" (a
blocked kernel where the CPU's features make it pay, torch's fused kernel elsewhere), and the intra-op thread policy of
the temporal module on short batches. Speed only: every path computes the same attention as transformers' SDPA
(docs/performance.md).

This file is shipped to the Hub as remote code: it imports only torch and transformers.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

__all__ = [
    "ATTENTION_BLOCK_BYTES",
    "BLOCKED_ATTENTION",
    "use_blocked_attention",
    "SMALL_TEMPORAL_MACS",
    "blocked_attention_pays",
    "blocked_sdpa_attention",
    "cpu_features",
    "intra_op_threads",
    "temporal_threads",
]

# The attention scores `blocked_sdpa_attention` holds at once: a block of heads whose scores stay in cache.
ATTENTION_BLOCK_BYTES = 2 * 1024 * 1024


@functools.lru_cache(maxsize=1)
def cpu_features() -> dict[str, bool]:
    """
    The matrix features of this process's CPU that decide its kernels: AVX2, AVX-512, bfloat16 dot products
    (AVX-512-BF16), int8 dot products (AVX-512 VNNI or AVX-VNNI) and AMX tiles for bfloat16 and int8. torch's own
    checks where it has them (what its kernels see), the kernel's flags in /proc/cpuinfo for the rest (Linux; absent
    elsewhere, where those features read False).
    """
    flags: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
                break

    def torch_check(name: str, flag: str) -> bool:
        check = getattr(torch.cpu, name, None)  # private helpers of torch.cpu; the flag where a version lacks one
        return bool(check()) if check is not None else flag in flags

    amx_tile = torch_check("_is_amx_tile_supported", "amx_tile")
    return {
        "avx2": torch_check("_is_avx2_supported", "avx2"),
        "avx512": torch_check("_is_avx512_supported", "avx512f"),
        "avx512_bf16": torch_check("_is_avx512_bf16_supported", "avx512_bf16"),
        "vnni": torch_check("_is_vnni_supported", "avx512_vnni") or "avx_vnni" in flags,
        "amx_bf16": amx_tile and ("amx_bf16" in flags or not flags),
        "amx_int8": amx_tile and ("amx_int8" in flags or not flags),
    }


def blocked_attention_pays(features: dict[str, bool]) -> bool:
    """
    Whether `blocked_sdpa_attention`'s blocked path beats torch's fused attention kernel in bfloat16 on a CPU with
    `features` (from `cpu_features`): where the CPU computes bfloat16 dot products itself (AVX-512-BF16) and the fused
    kernel does not use them, which it does only with AMX tiles. With AMX the fused kernel computes in bfloat16 on the
    tiles (1.06x the blocked path on a 2-core Xeon); without bfloat16 dot products a bfloat16 matrix product is
    emulated, and the blocked path's two are some 40x slower than the fused kernel, which computes in float32 (AVX2
    EPYC, 8 frames of ViT-B/16); with AVX-512-BF16 and no AMX the blocked path was 2.3x faster (2-core EPYC).
    """
    return features.get("avx512_bf16", False) and not features.get("amx_bf16", False)


# None: the choice is made from this CPU's features (`blocked_attention_pays`) at the first bfloat16 call, not at
# import (importing a shipped file reads no file); set it to True or False to force the blocked path or torch's fused
# kernel (the tests exercise the blocked path on every CPU this way).
BLOCKED_ATTENTION: bool | None = None


def use_blocked_attention() -> bool:
    """This process's choice: `BLOCKED_ATTENTION` when set, else what the CPU's features decide (read once)."""
    return blocked_attention_pays(cpu_features()) if BLOCKED_ATTENTION is None else BLOCKED_ATTENTION


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
        or not use_blocked_attention()  # last: the CPU's features are read at the first call that gets here
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


def temporal_threads(frame_embeds: torch.Tensor, small_macs: int) -> int | None:
    """
    The intra-op threads of SFAR's temporal module on (B, T, D) frames: 1 in CPU inference (no gradient, not
    compiling, more than one thread set) while its largest product (the MLP's first layer, B * T * D * 4D
    multiply-adds) is below `small_macs` (0: never; `SMALL_TEMPORAL_MACS` for a busy machine); None (the threads as
    set) otherwise.
    """
    if (
        frame_embeds.device.type != "cpu"
        or torch.is_grad_enabled()
        or torch.compiler.is_compiling()
        or torch.get_num_threads() == 1
    ):
        return None
    batch_size, num_frames, width = frame_embeds.shape
    return 1 if batch_size * num_frames * width * 4 * width < small_macs else None
