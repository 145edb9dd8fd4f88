"""ALT's equations (paper section 3, docs/alt.md) against loop-by-loop references written from the paper, on small
random tensors: the region-aware encoder (Eq. 1-3), the alignment (Eq. 4-6), the video decoder (Eq. 7-9), the
class embeddings and the loss (Eq. 10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modeling_sfar import AltConfig, AltForVideoClassification, AltLabelSet, AltModel
from modeling_sfar.remote_code.modeling_alt import AltDecoderLayer, AltEntityAlignment, entity_alignment

TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 99,
        "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}  # fmt: skip
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
          "image_size": 32, "patch_size": 8}  # fmt: skip


def alt_config(**kwargs) -> AltConfig:
    settings = {"projection_dim": 128, "num_frames": 4, "token_merging_r": 3, "num_decoder_layers": 2,
                "id2label": {0: "a", 1: "b", 2: "c"}, "entities": [f"entity {j}" for j in range(6)]}  # fmt: skip
    settings.update(kwargs)
    return AltConfig(text_config=TEXT, vision_config=VISION, **settings)


def random_label_set(config: AltConfig, seed: int = 0) -> AltLabelSet:
    gen = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(config.num_labels, config.projection_dim, generator=gen), dim=-1)
    entities = F.normalize(torch.randn(len(config.entities), config.projection_dim, generator=gen), dim=-1)
    return AltLabelSet(text_embeds=text, entity_embeds=entities if config.use_entity_corpus else None)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


# -- Eq. 1-3: the region-aware image encoder ----------------------------------------------------------------------


def test_frame_tokens_are_the_class_token_and_the_merged_regions():
    torch.manual_seed(0)
    model = AltModel(alt_config()).eval()
    pixels = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        tokens, merged = model.forward_features(pixels)
    # 16 patches + class token, r = 3 merged in each of the 2 blocks: N + 1 - L r = 11 (Eq. 2-3)
    assert tokens.shape == (2, 4, 17 - 2 * 3, 128)
    # the sizes of a frame's tokens add up to its patches and class token
    assert (merged.token_sizes.sum(-1) == 17).all()
    # without merging the class token is CLIP's image embedding
    model.config.token_merging_r = 0
    with torch.no_grad():
        tokens, _ = model.forward_features(pixels)
        clip = model.visual_projection(model.vision_model(pixel_values=pixels.flatten(0, 1)).pooler_output)
    torch.testing.assert_close(tokens[:, :, 0].flatten(0, 1), clip)
    assert tokens.shape[2] == 17


# -- Eq. 4-6: alignment with the entities --------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_gumbel_softmax_alignment_matches_the_loop(tau):
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 5, 8, generator=gen, dtype=torch.float64)  # (frames, N, d)
    entities = torch.randn(4, 8, generator=gen, dtype=torch.float64)  # (K, d)
    noise = -torch.log(-torch.log(torch.rand(2, 5, 4, generator=gen, dtype=torch.float64)))
    hard, soft, indices = entity_alignment(tokens, entities, tau, noise)
    for f in range(2):
        for i in range(5):
            logits = [cosine(tokens[f, i], entities[j]) / tau + float(noise[f, i, j]) for j in range(4)]
            denominator = sum(math.exp(v) for v in logits)
            expected = [math.exp(v) / denominator for v in logits]  # Eq. 4
            torch.testing.assert_close(soft[f, i], torch.tensor(expected, dtype=torch.float64))
            best = max(range(4), key=lambda j: expected[j])
            assert indices[f, i] == best
            one_hot = torch.zeros(4, dtype=torch.float64)
            one_hot[best] = 1
            torch.testing.assert_close(hard[f, i], one_hot)  # Eq. 5's forward value: the hard assignment


def test_straight_through_gradient_is_the_soft_assignments():
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randn(3, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    entities = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    weights = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    hard, soft, _ = entity_alignment(tokens, entities, 1.0)
    (grad_hard,) = torch.autograd.grad((hard * weights).sum(), tokens, retain_graph=True)
    (grad_soft,) = torch.autograd.grad((soft * weights).sum(), tokens)
    torch.testing.assert_close(grad_hard, grad_soft)  # Eq. 5: one-hot + A - sg(A)


def test_without_noise_the_alignment_is_the_nearest_entity():
    gen = torch.Generator().manual_seed(3)
    tokens, entities = torch.randn(7, 8, generator=gen), torch.randn(5, 8, generator=gen)
    _, _, indices = entity_alignment(tokens, entities, 1.0)
    for i in range(7):
        assert indices[i] == max(range(5), key=lambda j: cosine(tokens[i], entities[j]))


def test_aligned_query_is_the_mlp_of_the_mean_aligned_entity():
    torch.manual_seed(4)
    config = alt_config(projection_dim=16)
    module = AltEntityAlignment(config).double()
    tokens = torch.randn(2, 3, 5, 16, dtype=torch.float64)  # (B, T, N, d)
    entities = torch.randn(6, 16, dtype=torch.float64)
    queries, indices = module(tokens, entities)
    for b in range(2):
        for t in range(3):
            chosen = [max(range(6), key=lambda j: cosine(tokens[b, t, i], entities[j])) for i in range(5)]
            assert indices[b, t].tolist() == chosen
            mean_entity = sum(entities[j] for j in chosen) / 5  # (A^ S) averaged over the frame's tokens
            expected = module.mlp.fc2(F.gelu(module.mlp.fc1(mean_entity)))  # Eq. 6
            torch.testing.assert_close(queries[b, t], expected)


# -- Eq. 7-9: the multi-modal video decoder ------------------------------------------------------------------------


def reference_attention(attention, query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of one video, row by row and head by head."""
    q, k, v = attention.q_proj(query), attention.k_proj(key_value), attention.v_proj(key_value)
    head_dim = attention.head_dim
    out = torch.zeros_like(q)
    for h in range(attention.num_heads):
        cols = slice(h * head_dim, (h + 1) * head_dim)
        for i in range(len(q)):
            scores = torch.stack([q[i, cols] @ k[j, cols] * head_dim**-0.5 for j in range(len(k))])
            out[i, cols] = (scores.softmax(0)[:, None] * v[:, cols]).sum(0)
    return attention.out_proj(out)


def reference_decoder_layer(layer: AltDecoderLayer, queries: torch.Tensor, frames: torch.Tensor):
    """Eq. 8 for one video: the temporal convolution as a sum over kernel taps (zero padding), then SA, CA, MLP."""
    num_frames, width = frames.shape
    kernel = layer.temporal_conv.kernel_size[0]
    conv = torch.zeros_like(frames)
    for t in range(num_frames):
        total = layer.temporal_conv.bias.clone()
        for tap in range(kernel):
            source = t + tap - kernel // 2
            if 0 <= source < num_frames:
                total = total + layer.temporal_conv.weight[:, :, tap] @ frames[source]
        conv[t] = total
    frames = frames + conv
    normed = layer.self_attn_layer_norm(queries)
    queries = queries + reference_attention(layer.self_attn, normed, normed)
    queries = queries + reference_attention(
        layer.cross_attn, layer.cross_attn_layer_norm(queries), layer.frame_layer_norm(frames)
    )
    queries = queries + layer.mlp(layer.mlp_layer_norm(queries))
    return queries, frames


def test_decoder_matches_the_loop_reference():
    torch.manual_seed(5)
    config = alt_config(projection_dim=128, decoder_kernel_size=3)
    model = AltModel(config).double().eval()
    queries, frames = torch.randn(2, 4, 128, dtype=torch.float64), torch.randn(2, 4, 128, dtype=torch.float64)
    with torch.no_grad():
        z = model.decoder(queries, frames)
        for b in range(2):
            q, x = queries[b], frames[b]
            for layer in model.decoder.layers:  # X'_i chained, Q_i (Eq. 8)
                q, x = reference_decoder_layer(layer, q, x)
            expected = model.decoder.video_mlp(q.mean(0))  # z = MLP(AvgPool_t(Q_M)) (Eq. 9)
            torch.testing.assert_close(z[b], expected)


# -- class embeddings and Eq. 10 -----------------------------------------------------------------------------------


def test_class_embedding_is_the_normalised_mean_of_the_normalised_prompt_ensemble():
    torch.manual_seed(6)
    model = AltModel(alt_config()).eval()
    ids = torch.randint(2, 99, (3, 4, 6))
    ids[..., 0], ids[..., -1] = 0, 1  # BOS ... EOS
    entity_ids = torch.randint(2, 99, (6, 6))
    entity_ids[:, 0], entity_ids[:, -1] = 0, 1
    label_set = model.encode_label_set(ids, entity_input_ids=entity_ids)
    with torch.no_grad():
        for c in range(3):
            prompts = [
                F.normalize(model.text_projection(model.text_model(input_ids=ids[c, p][None]).pooler_output)[0], dim=0)
                for p in range(4)
            ]
            torch.testing.assert_close(label_set.text_embeds[c], F.normalize(sum(prompts) / 4, dim=0))


def test_logits_and_loss_are_eq_10():
    torch.manual_seed(7)
    config = alt_config()
    model = AltForVideoClassification(config).eval()
    label_set = random_label_set(config)
    pixels, labels = torch.randn(3, 4, 3, 32, 32), torch.tensor([2, 0, 1])
    with torch.no_grad():
        out = model(pixels, labels=labels, label_set=label_set)
    scale = model.alt.logit_scale.exp()
    total = 0.0
    for n in range(3):
        logits = [float(scale) * cosine(out.video_embeds[n], label_set.text_embeds[i]) for i in range(3)]
        torch.testing.assert_close(out.logits[n], torch.tensor(logits), rtol=1e-5, atol=1e-5)
        total -= logits[int(labels[n])] - math.log(sum(math.exp(v) for v in logits))
    torch.testing.assert_close(out.loss, torch.tensor(total / 3), rtol=1e-5, atol=1e-5)


def test_the_model_wires_the_equations_together():
    """The forward's queries, indices and z are Eq. 4-9 applied to its own frame tokens."""
    torch.manual_seed(8)
    config = alt_config()
    model = AltModel(config).eval()
    label_set = random_label_set(config)
    pixels = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        out = model(pixels, label_set=label_set)
        tokens, _ = model.forward_features(pixels)
        queries, indices = model.alignment(tokens, label_set.entity_embeds)
        z = model.decoder(queries, tokens[:, :, 0])
    torch.testing.assert_close(out.aligned_queries, queries)
    assert (out.entity_indices == indices).all()
    torch.testing.assert_close(out.frame_embeds, tokens[:, :, 0])
    torch.testing.assert_close(out.video_embeds, z)


def test_evaluation_is_deterministic_and_training_samples_gumbel_noise():
    torch.manual_seed(9)
    config = alt_config(entities=[f"e{j}" for j in range(64)])
    model = AltModel(config)
    gen = torch.Generator().manual_seed(0)
    label_set = AltLabelSet(
        text_embeds=F.normalize(torch.randn(3, 128, generator=gen), dim=-1),
        entity_embeds=F.normalize(torch.randn(64, 128, generator=gen), dim=-1) * 0.01,  # nearly tied: noise decides
    )
    pixels = torch.randn(1, 4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        first, second = model(pixels, label_set=label_set), model(pixels, label_set=label_set)
    assert (first.entity_indices == second.entity_indices).all()
    torch.testing.assert_close(first.logits, second.logits)
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        noisy_a = model(pixels, label_set=label_set).entity_indices
        torch.manual_seed(2)
        noisy_b = model(pixels, label_set=label_set).entity_indices
    assert (noisy_a != noisy_b).any()


def test_without_a_corpus_the_queries_are_learnable_parameters():
    torch.manual_seed(10)
    config = alt_config(use_entity_corpus=False, entities=None)
    model = AltModel(config).eval()
    label_set = random_label_set(alt_config())
    label_set.entity_embeds = None
    with torch.no_grad():
        out = model(torch.randn(2, 3, 3, 32, 32), label_set=label_set)
    assert out.entity_indices is None
    torch.testing.assert_close(out.aligned_queries, model.learnable_queries[:3].expand(2, -1, -1))
    assert model.alignment is None and model.learnable_queries.requires_grad
