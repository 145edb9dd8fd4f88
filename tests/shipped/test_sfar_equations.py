"""Every equation of docs/method.md against a plain loop-by-loop reference written from the paper, on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modeling_sfar import SfarModel, actionclip_loss, sfar_loss, text_prompt_perplexity
from tests.conftest import randomize_text_features, tiny_config


@pytest.fixture(autouse=True)
def double_precision():
    """References and model are compared in double precision."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a @ b / (a.norm() * b.norm())).detach())


@pytest.fixture
def model() -> SfarModel:
    torch.manual_seed(0)
    model = SfarModel(tiny_config()).double().eval()
    randomize_text_features(model)
    return model


def reference_attention(attn, query, keys, key_mask):
    """Multi-head attention, one class, one head and one query at a time."""
    heads = attn.num_heads
    width = query.shape[-1]
    hd = width // heads
    q = query @ attn.q_proj.weight.T + attn.q_proj.bias
    k = keys @ attn.k_proj.weight.T + attn.k_proj.bias
    v = keys @ attn.v_proj.weight.T + attn.v_proj.bias
    out = torch.zeros_like(q)
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        for i in range(q.shape[0]):
            scores = [(q[i, sl] @ k[j, sl]).item() / math.sqrt(hd) if key_mask[j] else -math.inf for j in range(len(k))]
            weights = torch.tensor(scores).softmax(0)
            out[i, sl] = sum(weights[j] * v[j, sl] for j in range(len(k)))
    return out @ attn.out_proj.weight.T + attn.out_proj.bias


def reference_temporal(module, frames):
    """BIKE's Transf for one video: x + transformer(x + positions), blocks written out."""

    def block(layer, x):
        h = F.layer_norm(x, x.shape[-1:], layer.layer_norm1.weight, layer.layer_norm1.bias)
        x = x + reference_attention(layer.self_attn, h, h, torch.ones(len(h), dtype=torch.bool))
        h = F.layer_norm(x, x.shape[-1:], layer.layer_norm2.weight, layer.layer_norm2.bias)
        h = h @ layer.mlp.fc1.weight.T + layer.mlp.fc1.bias
        h = h * torch.sigmoid(1.702 * h)
        return x + h @ layer.mlp.fc2.weight.T + layer.mlp.fc2.bias

    x = frames + module.position_embedding.weight[: len(frames)]
    for layer in module.layers:
        x = block(layer, x)
    return frames + x


def reference_video_embeddings(model: SfarModel, frames: torch.Tensor):
    """Eq. 4-11 for one video `frames` (T, D), class by class, word by word, frame by frame."""
    cfg = model.config
    tau = cfg.frame_temperature
    num_classes, num_subtexts = model.subtext_word_mask.shape[:2]
    coarse_w, fine_w, embeds = [], [], []
    for c in range(num_classes):
        # Eq. 4-6: augment the prompt's words with all of the class's sub-text words.
        keys = model.subtext_word_embeds[c].reshape(-1, frames.shape[-1])
        key_mask = model.subtext_word_mask[c].reshape(-1)
        prompt = model.prompt_word_embeds[c]
        augmented = reference_attention(model.subtext_attention, prompt, keys, key_mask) + prompt
        # Eq. 7 (tau, mean over words as docs/method.md)
        words = [augmented[w] for w in range(len(prompt)) if model.prompt_word_mask[c, w]]
        a_coarse = torch.zeros(len(frames))
        for word in words:
            sims = torch.tensor([cos(word, frames[l]) / tau for l in range(len(frames))])
            a_coarse += sims.softmax(0) / len(words)
        # Eq. 9
        scores = []
        for l in range(len(frames)):
            best = -math.inf
            for n in range(num_subtexts):
                sub_words = [
                    model.subtext_word_embeds[c, n, s]
                    for s in range(keys.shape[0] // num_subtexts)
                    if model.subtext_word_mask[c, n, s]
                ]
                best = max(best, sum(cos(s, frames[l]) for s in sub_words) / len(sub_words))
            scores.append(best / tau)
        a_fine = torch.tensor(scores).softmax(0)
        # Eq. 8, 10, 11
        o_coarse = sum(a_coarse[l] * frames[l] for l in range(len(frames)))
        o_fine = sum(a_fine[l] * frames[l] for l in range(len(frames)))
        ffn_c = o_coarse + model.coarse_ffn.fc2(F.gelu(model.coarse_ffn.fc1(o_coarse)))
        ffn_f = o_fine + model.fine_ffn.fc2(F.gelu(model.fine_ffn.fc1(o_fine)))
        coarse_w.append(a_coarse)
        fine_w.append(a_fine)
        embeds.append(ffn_c + ffn_f)
    return torch.stack(coarse_w), torch.stack(fine_w), torch.stack(embeds)


def test_temporal_module_matches_reference(model):
    frames = torch.randn(2, 5, 16)
    out = model.temporal(frames)
    for b in range(2):
        torch.testing.assert_close(out[b], reference_temporal(model.temporal, frames[b]))


def test_cross_attention_eq4_6_matches_reference(model):
    augmented = model.augmented_prompt_words()
    for c in range(augmented.shape[0]):
        keys = model.subtext_word_embeds[c].reshape(-1, 16)
        mask = model.subtext_word_mask[c].reshape(-1)
        prompt = model.prompt_word_embeds[c]
        torch.testing.assert_close(
            augmented[c], reference_attention(model.subtext_attention, prompt, keys, mask) + prompt
        )


def test_forward_eq4_to_eq11_and_logits_match_reference(model):
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        out = model(pixel_values)
        frames = model.temporal(model.get_frame_features(pixel_values))
    torch.testing.assert_close(out.frame_embeds, frames)
    scale = model.logit_scale.exp()
    for b in range(2):
        coarse, fine, embeds = reference_video_embeddings(model, frames[b])
        torch.testing.assert_close(out.coarse_frame_weights[b], coarse)
        torch.testing.assert_close(out.fine_frame_weights[b], fine)
        torch.testing.assert_close(out.video_embeds[b], embeds)
        for c in range(embeds.shape[0]):
            torch.testing.assert_close(out.logits[b, c], scale * cos(model.text_embeds[c], embeds[c]))


def test_frame_weights_sum_to_one_over_frames(model):
    out = model(torch.randn(3, 5, 3, 16, 16))
    assert out.coarse_frame_weights.shape == out.fine_frame_weights.shape == (3, 3, 5)
    torch.testing.assert_close(out.coarse_frame_weights.sum(-1), torch.ones(3, 3))
    torch.testing.assert_close(out.fine_frame_weights.sum(-1), torch.ones(3, 3))


def test_mean_fusion_is_plain_mean_of_frames():
    torch.manual_seed(0)
    model = SfarModel(tiny_config(fusion="mean", num_temporal_layers=0)).double().eval()
    randomize_text_features(model)
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    out = model(pixel_values)
    frames = model.get_frame_features(pixel_values)
    assert out.coarse_frame_weights is None and out.fine_frame_weights is None
    for b in range(2):
        mean = sum(frames[b, l] for l in range(5)) / 5
        for c in range(3):
            torch.testing.assert_close(out.logits[b, c], model.logit_scale.exp() * cos(model.text_embeds[c], mean))


def reference_tpp(t, s):
    """Eq. 1-3 with alpha(x) = 1 - x^2, beta(x) = x, loop by loop."""
    num_classes, num_sub = s.shape[:2]
    out = []
    for c in range(num_classes):
        total = 0.0
        for n in range(num_sub):
            sigma = (cos(t[c], s[c, n]) + 1) / 2
            delta = 1 - sum((cos(s[c, n], s[c, m]) + 1) / 2 for m in range(num_sub) if m != n) / (num_sub - 1)
            total += math.log((1 - sigma**2) * delta)
        out.append(math.exp(-total / num_sub))
    return torch.tensor(out)


def test_tpp_eq1_3_matches_reference():
    t, s = torch.randn(5, 8), torch.randn(5, 4, 8)
    torch.testing.assert_close(text_prompt_perplexity(t, s), reference_tpp(t, s))


def test_tpp_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected class_embeds"):
        text_prompt_perplexity(torch.randn(5, 8), torch.randn(4, 4, 8))
    with pytest.raises(ValueError, match="at least 2"):
        text_prompt_perplexity(torch.randn(5, 8), torch.randn(5, 1, 8))


def reference_sfar_loss(y, labels, lam):
    """Eq. 12-14 (with their minus signs), loop by loop."""
    batch = len(labels)
    t2v = v2t = 0.0
    for b in range(batch):
        c = int(labels[b])
        k_b = [bp for bp in range(batch) if labels[bp] == c]
        denominator = sum(math.exp(y[bpp, c]) for bpp in range(batch))
        t2v += sum(-math.log(math.exp(y[bp, c]) / denominator) for bp in k_b) / len(k_b)
        v2t += -math.log(math.exp(y[b, c]) / sum(math.exp(y[b, cc]) for cc in range(y.shape[1])))
    return (t2v + lam * v2t) / batch


def reference_actionclip_loss(y, labels):
    """
    ActionCLIP's published training loss, written from its code (sallymmx/ActionCLIP, utils/tools.py `gen_label`,
    utils/KLLoss.py, train.py): gt[i][k] = 1 if labels[k] == labels[i]; KLLoss(pred, gt) =
    KLDivLoss(log_softmax(pred), softmax(10 gt)) with the mean over all B x B entries, times B; the loss is the mean
    of KLLoss(logits_per_image, gt) and KLLoss(logits_per_text, gt), logits_per_text the transpose.
    """
    batch = len(labels)
    gt = [[1.0 if labels[k] == labels[i] else 0.0 for k in range(batch)] for i in range(batch)]
    per_image = [[float(y[i, labels[k]]) for k in range(batch)] for i in range(batch)]
    per_text = [[per_image[k][i] for k in range(batch)] for i in range(batch)]

    def kl_loss(prediction, label):
        total = 0.0
        for i in range(batch):
            log_z = math.log(sum(math.exp(v) for v in prediction[i]))
            target_z = sum(math.exp(10 * v) for v in label[i])
            for k in range(batch):
                p = math.exp(10 * label[i][k]) / target_z
                total += p * (math.log(p) - (prediction[i][k] - log_z))
        return total / (batch * batch) * batch

    return (kl_loss(per_image, gt) + kl_loss(per_text, gt)) / 2


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_sfar_loss_eq12_14_matches_reference(lam):
    y = torch.randn(6, 4) * 3
    labels = torch.tensor([0, 2, 0, 1, 2, 0])
    torch.testing.assert_close(sfar_loss(y, labels, lam), torch.tensor(reference_sfar_loss(y, labels, lam)))


def test_actionclip_loss_matches_reference():
    y = torch.randn(6, 4) * 3
    labels = torch.tensor([0, 2, 0, 1, 2, 0])
    torch.testing.assert_close(actionclip_loss(y, labels), torch.tensor(reference_actionclip_loss(y, labels)))
    y.requires_grad_()
    actionclip_loss(y, labels).backward()
    eps = 1e-6
    for i, c in [(0, 0), (1, 2), (3, 3)]:  # the gradient too, by central differences of the reference
        up, down = y.detach().clone(), y.detach().clone()
        up[i, c] += eps
        down[i, c] -= eps
        numeric = (reference_actionclip_loss(up, labels) - reference_actionclip_loss(down, labels)) / (2 * eps)
        assert abs(float(y.grad[i, c]) - numeric) < 1e-6


def test_actionclip_loss_hand_checked_example():
    """
    Two videos of two classes, every logit 0. Every row of softmax(logits) is (1/2, 1/2); the target row is
    softmax(10, 0) = (p, q) with p = 1 / (1 + e^-10) = 0.9999546, q = 1 - p = 4.5398e-5. Each row's KL is
    p log(2p) + q log(2q) = log 2 + p log p + q log q = 0.6931472 - 0.0000454 - 0.0004540 = 0.6926478, and so is
    the mean of the rows and of the two directions. The old loss (targets 1 and 0) gave log 2 = 0.6931472.
    """
    p = 1 / (1 + math.exp(-10))
    q = 1 - p
    expected = math.log(2) + p * math.log(p) + q * math.log(q)
    assert abs(expected - 0.6926478) < 1e-7
    loss = actionclip_loss(torch.zeros(2, 2), torch.tensor([0, 1]))
    assert abs(float(loss) - expected) < 1e-12
    # and one class for both videos: the target row is (1/2, 1/2), the same as the prediction, so the loss is 0
    assert abs(float(actionclip_loss(torch.zeros(2, 2), torch.tensor([1, 1])))) < 1e-12
