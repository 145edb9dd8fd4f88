"""Token merging (ToMe) against a direct, loop-by-loop implementation of bipartite soft matching written from the ToMe
and ALT papers: which tokens merge, the merge counts, the sizes, the merged values, the region map, and proportional
attention."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from modeling_sfar.remote_code.token_merging import (
    bipartite_soft_matching,
    merge_tokens,
    proportional_attention,
    token_merging_vision_forward,
)


def reference_merge(x: torch.Tensor, sizes: torch.Tensor, metric: torch.Tensor, r: int):
    """One frame, plain Python: split alternately, best B match per A token, the r best edges (never the class token)
    merged as size-weighted averages. Returns tokens, sizes, and the new position of every old token."""
    n = len(x)
    a_pos, b_pos = list(range(0, n, 2)), list(range(1, n, 2))

    def cos(i, j):
        return float(torch.dot(metric[i], metric[j]) / (metric[i].norm() * metric[j].norm()))

    edges = []  # (score, A index within A, B index within B)
    for ia, i in enumerate(a_pos):
        if i == 0:
            continue  # the class token is protected
        scores = [cos(i, j) for j in b_pos]
        best = max(range(len(b_pos)), key=lambda jb: scores[jb])
        edges.append((scores[best], ia, best))
    edges.sort(key=lambda e: -e[0])
    merged = {ia: jb for _, ia, jb in edges[:r]}
    kept = [ia for ia in range(len(a_pos)) if ia not in merged]
    out, out_sizes, new_position = [], [], [None] * n
    for k, ia in enumerate(kept):
        out.append(x[a_pos[ia]])
        out_sizes.append(float(sizes[a_pos[ia]]))
        new_position[a_pos[ia]] = k
    for jb, j in enumerate(b_pos):
        members = [j] + [a_pos[ia] for ia, dst in merged.items() if dst == jb]
        total = sum(float(sizes[m]) for m in members)
        out.append(sum(x[m] * float(sizes[m]) for m in members) / total)
        out_sizes.append(total)
        for m in members:
            new_position[m] = len(kept) + jb
    return torch.stack(out), torch.tensor(out_sizes, dtype=x.dtype), new_position


@pytest.mark.parametrize("num_tokens,r", [(9, 3), (10, 4), (17, 8), (197, 8)])
def test_merge_matches_the_loop_reference(num_tokens, r):
    gen = torch.Generator().manual_seed(num_tokens)
    frames, width = 3, 6
    x = torch.randn(frames, num_tokens, width, generator=gen, dtype=torch.float64)
    sizes = torch.randint(1, 5, (frames, num_tokens), generator=gen).double()
    metric = torch.randn(frames, num_tokens, 4, generator=gen, dtype=torch.float64)
    plan = bipartite_soft_matching(metric, r)
    merged, new_sizes = merge_tokens(x, sizes, plan)
    assert merged.shape == (frames, num_tokens - r, width)
    for f in range(frames):
        ref_x, ref_sizes, _ = reference_merge(x[f], sizes[f], metric[f], r)
        torch.testing.assert_close(merged[f], ref_x)
        torch.testing.assert_close(new_sizes[f], ref_sizes)
    # merging conserves the total size and the size-weighted sum of the tokens
    torch.testing.assert_close(new_sizes.sum(1), sizes.sum(1))
    torch.testing.assert_close((merged * new_sizes[..., None]).sum(1), (x * sizes[..., None]).sum(1))
    # the class token is untouched and first
    torch.testing.assert_close(merged[:, 0], x[:, 0])
    assert (new_sizes[:, 0] == sizes[:, 0]).all()


def test_the_class_token_is_never_merged_even_when_it_is_the_best_match():
    metric = torch.ones(1, 7, 3)  # every pair identical: the class token would tie for first
    plan = bipartite_soft_matching(metric, 3)
    assert 0 not in plan.merged.tolist()[0]
    assert plan.unmerged[0, 0] == 0


def tiny_tower(layers: int = 3, image_size: int = 32, patch_size: int = 8, seed: int = 0) -> CLIPVisionModel:
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        image_size=image_size, patch_size=patch_size,
    )  # fmt: skip
    return CLIPVisionModel(config).eval()


def test_r_zero_is_clip_and_sizes_stay_one():
    tower = tiny_tower()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        clip = tower(pixel_values=pixels, output_hidden_states=True)
        tome = token_merging_vision_forward(tower, pixels, 0, output_hidden_states=True)
    torch.testing.assert_close(tome.last_hidden_state, clip.last_hidden_state)
    torch.testing.assert_close(tome.pooler_output, clip.pooler_output)
    assert (tome.token_sizes == 1).all()
    assert (tome.patch_to_token == torch.arange(17)).all()


def reference_tower(tower: CLIPVisionModel, pixels: torch.Tensor, r: int):
    """The whole merging tower frame by frame, attention head by head with explicit log sizes."""
    inner = tower
    outputs = []
    for frame in pixels:
        x = inner.pre_layrnorm(inner.embeddings(frame[None]))[0]  # (P + 1, E)
        sizes = torch.ones(len(x), dtype=torch.float64)
        where = list(range(len(x)))  # embedding token -> current token
        for layer in inner.encoder.layers:
            attn = layer.self_attn
            h = layer.layer_norm1(x)
            q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
            heads = []
            for head in range(attn.num_heads):
                cols = slice(head * attn.head_dim, (head + 1) * attn.head_dim)
                rows = []
                for i in range(len(x)):
                    scores = [float(q[i, cols] @ k[j, cols]) * attn.scale + math.log(sizes[j]) for j in range(len(x))]
                    weights = torch.tensor(scores, dtype=torch.float64).softmax(0)
                    rows.append((weights[:, None] * v[:, cols]).sum(0))
                heads.append(torch.stack(rows))
            x = x + attn.out_proj(torch.cat(heads, dim=1))
            metric = torch.stack([k[:, h_ * attn.head_dim : (h_ + 1) * attn.head_dim] for h_ in range(attn.num_heads)])
            step = min(r, (len(x) - 1) // 2)
            if step:
                x, sizes, new_position = reference_merge(x, sizes, metric.mean(0), step)
                where = [new_position[w] for w in where]
            x = x + layer.mlp(layer.layer_norm2(x))
        outputs.append((x, sizes, where))
    return outputs


@pytest.mark.parametrize("r", [2, 5, 30])
def test_the_merging_tower_matches_the_loop_reference(r):
    tower = tiny_tower().double()
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(r), dtype=torch.float64)
    with torch.no_grad():
        out = token_merging_vision_forward(tower, pixels, r, output_hidden_states=True)
        reference = reference_tower(tower, pixels, r)
    expected_tokens = 17
    for _ in range(3):
        expected_tokens -= min(r, (expected_tokens - 1) // 2)  # r clamps so that the class token and one more stay
    assert out.last_hidden_state.shape == (2, expected_tokens, 32)
    assert [h.shape[1] for h in out.hidden_states][0] == 17 and len(out.hidden_states) == 4
    for f, (x, sizes, where) in enumerate(reference):
        torch.testing.assert_close(out.last_hidden_state[f], x)
        torch.testing.assert_close(out.token_sizes[f], sizes)
        assert out.patch_to_token[f].tolist() == where
        # every output token holds exactly the patches the region map sends to it
        counts = torch.bincount(out.patch_to_token[f], minlength=expected_tokens).double()
        torch.testing.assert_close(out.token_sizes[f], counts)


def test_proportional_attention_adds_log_size_to_the_scores():
    tower = tiny_tower(layers=1)
    attn = tower.encoder.layers[0].self_attn
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 7, 32, generator=gen)
    sizes = torch.randint(1, 9, (2, 7), generator=gen).float()
    with torch.no_grad():
        out, weights, keys = proportional_attention(attn, hidden, sizes, output_attentions=True)
        q = attn.q_proj(hidden).view(2, 7, 4, 8).transpose(1, 2)
        k = attn.k_proj(hidden).view(2, 7, 4, 8).transpose(1, 2)
        expected = (q @ k.transpose(-1, -2) * attn.scale + sizes.log()[:, None, None, :]).softmax(-1)
        torch.testing.assert_close(weights, expected)
        torch.testing.assert_close(keys, k.mean(1))
        # SDPA gives the same output as the eager weights
        attn.config._attn_implementation = "sdpa"
        sdpa_out, _, _ = proportional_attention(attn, hidden, sizes)
    torch.testing.assert_close(sdpa_out, out, atol=1e-5, rtol=1e-5)
    # a token of size s weighs as s identical tokens of size 1 would
    duplicated = torch.cat([hidden[:1, :1].expand(1, 3, 32), hidden[:1, 1:]], dim=1)  # token 0 three times
    with torch.no_grad():
        dup_out, _, _ = proportional_attention(attn, duplicated, None)
        one = torch.ones(1, 7)
        one[0, 0] = 3
        merged_out, _, _ = proportional_attention(attn, hidden[:1], one)
    torch.testing.assert_close(merged_out[0, 1:], dup_out[0, 3:], atol=1e-5, rtol=1e-5)


def test_gradients_flow_through_merged_tokens():
    tower = tiny_tower(layers=2).train()
    pixels = torch.randn(2, 3, 32, 32, requires_grad=True)
    out = token_merging_vision_forward(tower, pixels, 4)
    out.last_hidden_state.sum().backward()
    assert pixels.grad is not None and torch.isfinite(pixels.grad).all()
    assert tower.encoder.layers[0].self_attn.k_proj.weight.grad is not None


def test_bad_r_is_refused():
    with pytest.raises(ValueError, match="r >= 0"):
        token_merging_vision_forward(tiny_tower(layers=1), torch.zeros(1, 3, 32, 32), -1)


def test_the_throughput_benchmark_runs_at_a_tiny_size(tmp_path):
    from benchmarks.token_merging import main

    rows = main(["--tiny", "--rs", "0", "2", "--dtypes", "float32", "bfloat16", "--num_frames", "2", "--batch_size",
                 "1", "--num_labels", "5", "--repeats", "1", "--output_dir", str(tmp_path)])  # fmt: skip
    tower = [row for row in rows if row["section"].startswith("vision tower")]
    sfar = [row for row in rows if row["section"].startswith("SFAR")]
    assert [(row["dtype"], row["r"], row["tokens_left"]) for row in tower] == [
        ("float32", 0, 17), ("float32", 2, 13), ("bfloat16", 0, 17), ("bfloat16", 2, 13)
    ]  # fmt: skip
    assert [(row["dtype"], row["r"]) for row in sfar] == [("float32", 2), ("bfloat16", 2)]
    assert tower[0]["r0_max_abs_diff"] < 1e-5  # r = 0 computes the bare tower's class token
    assert all(row["throughput_vs_bare"] > 0 and row["min"] <= row["max"] for row in rows)
    # bfloat16: the bare and the merging cases both run SFAR's blocked attention, never falling back to SDPA
    # (tower: 2 blocks; SFAR: the tower's 2 and its temporal module's layers)
    for row in (tower[2], tower[3], sfar[1]):
        assert row["attention (merging)"] == row["attention (bare)"], row
        assert row["attention (merging)"].startswith("sfar_sdpa: ") and row["attention (merging)"].endswith(
            " blocked / 0 sdpa"
        )
    assert tower[0]["attention (merging)"] == "sdpa"
    report = json.loads((tmp_path / "token_merging.json").read_text())
    assert report["rows"] == rows and (tmp_path / "token_merging.md").is_file()


@pytest.mark.parametrize("block_bytes", [1, 2**21], ids=["one-head", "default"])
def test_blocked_bfloat16_attention_takes_the_key_bias_of_proportional_attention(block_bytes, monkeypatch):
    """A (B, 1, 1, L) additive bias per key (log sizes) stays on SFAR's blocked bfloat16 path, against a
    head-by-head float64 reference of softmax(q k^T * scale + bias) v; a bias per query and key still goes to SDPA."""
    import modeling_sfar.remote_code.cpu_kernels as modeling

    monkeypatch.setattr(modeling, "ATTENTION_BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 7, 8).bfloat16() for _ in range(3))
    bias = torch.rand(2, 1, 1, 7).mul(4).add(1).log().bfloat16()  # log of sizes in [1, 5]
    expected = torch.empty(2, 3, 7, 8, dtype=torch.float64)
    for b in range(2):
        for h in range(3):
            q, k, v = (t[b, h].double() for t in (query, key, value))
            expected[b, h] = ((q @ k.T) * 0.3 + bias[b, 0, 0].double()).softmax(-1) @ v
    fallbacks = []
    monkeypatch.setattr(modeling, "sdpa_attention_forward", lambda *a, **k: fallbacks.append(a) or (None, None))
    module = torch.nn.Module()
    with torch.no_grad():
        out, _ = modeling.blocked_sdpa_attention(module, query, key, value, bias, scaling=0.3)
        assert not fallbacks
        torch.testing.assert_close(out.double(), expected.transpose(1, 2), rtol=0.02, atol=0.02)
        modeling.blocked_sdpa_attention(module, query, key, value, bias.expand(-1, -1, 7, -1), scaling=0.3)
    assert len(fallbacks) == 1


def test_gradient_checkpointing_gives_the_same_gradients():
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    grads = []
    for checkpointing in (False, True):
        tower = tiny_tower(layers=3).train()
        if checkpointing:
            tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        out = token_merging_vision_forward(tower, pixels, 3)
        (out.last_hidden_state.square().mean() + out.pooler_output.sum()).backward()
        grads.append({name: p.grad.clone() for name, p in tower.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
