"""The temporal layers and the cross-attention as transformers layers: checkpoint keys, attention dispatch by
`attn_implementation` (eager, SDPA, SFAR's bfloat16 CPU attention chosen by name), attention weights, gradient
checkpointing."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AttentionInterface
from transformers.models.clip.modeling_clip import CLIPAttention, CLIPEncoderLayer

from modeling_sfar import SfarConfig, SfarForVideoClassification
from modeling_sfar.remote_code.label_set_sfar import SfarLabelSet
from modeling_sfar.remote_code.modeling_clip_video import ClipVideoAttention
from modeling_sfar.remote_code.modeling_sfar import SfarTemporalLayer, SfarTemporalModule
from tests.conftest import randomize_text_features, tiny_classifier, tiny_config

# Width 128: two heads of 64 (D/64), so that the attention functions split heads for real.
WIDE = {"projection_dim": 128}


def implementations(model: SfarForVideoClassification) -> dict[str, str]:
    """The attention implementation every attention-bearing part of the model reads at call time."""
    sfar = model.sfar
    return {
        "model": model.config._attn_implementation,
        "vision tower": sfar.vision_model.config._attn_implementation,
        "text tower": sfar.text_model.config._attn_implementation,
        "temporal layers": sfar.temporal.layers[0].self_attn.config._attn_implementation,
        "cross-attention": sfar.subtext_attention.config._attn_implementation,
    }


@pytest.fixture
def attention_spy(monkeypatch):
    """
    Record every call of the registered "sfar_sdpa" function, which still does the work, as (module class, query
    dtype, "blocked" or "sdpa"): whether it took its blocked path or handed the call to transformers' SDPA.
    """
    import modeling_sfar.remote_code.cpu_kernels as modeling

    blocked, fallback, calls, handed_over = (
        AttentionInterface._global_mapping["sfar_sdpa"],
        modeling.sdpa_attention_forward,
        [],
        [],
    )

    def counted_fallback(*args, **kwargs):
        handed_over.append(1)
        return fallback(*args, **kwargs)

    def spy(module, query, *args, **kwargs):
        before = len(handed_over)
        out = blocked(module, query, *args, **kwargs)
        calls.append((type(module).__name__, query.dtype, "sdpa" if len(handed_over) > before else "blocked"))
        return out

    monkeypatch.setattr(modeling, "sdpa_attention_forward", counted_fallback)
    monkeypatch.setitem(AttentionInterface._global_mapping, "sfar_sdpa", spy)
    return calls


# -- the layers are transformers' ----------------------------------------------------------------------------


def test_temporal_layers_are_clip_encoder_layers_of_the_configured_shape():
    config = tiny_config(**WIDE, temporal_layer_norm_eps=1e-6)
    module = SfarTemporalModule(config)
    assert len(module.layers) == config.num_temporal_layers
    for layer in module.layers:
        assert isinstance(layer, SfarTemporalLayer) and isinstance(layer, CLIPEncoderLayer)
        assert isinstance(layer.self_attn, CLIPAttention)
        assert layer.self_attn.num_heads == 2 and layer.self_attn.head_dim == 64
        assert layer.mlp.fc1.out_features == 4 * 128 and layer.mlp.activation_fn(torch.tensor(1.0)) == torch.sigmoid(
            torch.tensor(1.702)
        )  # QuickGELU
        assert layer.layer_norm1.eps == layer.layer_norm2.eps == 1e-6
        assert layer.self_attn.config is config  # the model's config: its attention implementation is read live


# The temporal module of the code before the layers became transformers' CLIPEncoderLayer (commit 187d9c0), kept
# here to prove that checkpoints saved by it load unchanged: same keys, same function.
class OldAttention(nn.Module):
    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def heads(t):  # (B, H, L, hd)
            return t.reshape(batch, length, self.num_heads, -1).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(
            heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class OldMLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        return self.fc2(x * torch.sigmoid(1.702 * x))


class OldLayer(nn.Module):
    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.layer_norm1, self.self_attn = nn.LayerNorm(width), OldAttention(width, num_heads)
        self.layer_norm2, self.mlp = nn.LayerNorm(width), OldMLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer_norm1(x)
        x = x + self.self_attn(h)
        return x + self.mlp(self.layer_norm2(x))


class OldTemporalModule(nn.Module):
    def __init__(self, config: SfarConfig):
        super().__init__()
        self.position_embedding = nn.Embedding(config.num_frames, config.projection_dim)
        self.layers = nn.ModuleList(
            [OldLayer(config.projection_dim, config.temporal_num_heads) for _ in range(config.num_temporal_layers)]
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames + self.position_embedding.weight[: frames.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return frames + x


def test_a_folder_saved_with_the_old_temporal_layers_loads_unchanged(tmp_path):
    """The temporal weights under the old code's key names load strictly and compute what the old module did."""
    config = tiny_config(**WIDE)
    torch.manual_seed(0)
    model = SfarForVideoClassification(config)
    randomize_text_features(model.sfar)
    model.save_pretrained(tmp_path)

    torch.manual_seed(1)
    old = OldTemporalModule(config)
    with torch.no_grad():
        for p in old.parameters():  # away from the default init, so that every tensor matters
            p.add_(torch.randn_like(p) * 0.1)
    weights = load_file(tmp_path / "model.safetensors")
    saved = {k.removeprefix("sfar.temporal."): v for k, v in weights.items() if k.startswith("sfar.temporal.")}
    assert set(saved) == set(old.state_dict())  # the new module writes exactly the old key names
    weights.update({f"sfar.temporal.{k}": v.contiguous() for k, v in old.state_dict().items()})
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})

    loaded, info = SfarForVideoClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    frames = torch.randn(3, config.num_frames, 128)
    with torch.no_grad():
        torch.testing.assert_close(loaded.sfar.temporal(frames), old(frames), rtol=1e-5, atol=1e-5)


# -- attention implementations ---------------------------------------------------------------------------------


def test_the_default_is_transformers_choice_and_sfar_sdpa_is_chosen_by_name(tmp_path, attention_spy):
    model = tiny_classifier("sfar", **WIDE).eval()
    assert set(implementations(model).values()) == {"sdpa"}  # no silent substitution
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        model(pixel_values)
    assert not attention_spy

    model.save_pretrained(tmp_path)
    chosen = SfarForVideoClassification.from_pretrained(tmp_path, attn_implementation="sfar_sdpa").eval()
    # the towers, the temporal layers and the cross-attention
    assert set(implementations(chosen).values()) == {"sfar_sdpa"}
    half = copy.deepcopy(chosen).to(torch.bfloat16)
    with torch.no_grad():
        half.sfar.clear_word_cache()
        logits = half(pixel_values).logits
    # the vision tower and the temporal layers take the blocked path; a loaded model reads the stored result of
    # Eq. 4-6, so the cross-attention does not run
    assert set(attention_spy) == {("CLIPAttention", torch.bfloat16, "blocked")}
    assert len(attention_spy) == 1 + 2  # one vision layer, two temporal layers
    attention_spy.clear()
    words = model.sfar.stored_label_set()  # the words, kept in memory by the model that stored them
    words = SfarLabelSet(**{k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in words.items()})
    with torch.no_grad():
        half.sfar.augmented_prompt_words(words)
    assert attention_spy == [("ClipVideoAttention", torch.bfloat16, "sdpa")]  # Eq. 4-6: a masked cross-attention

    plain = copy.deepcopy(half)
    plain.set_attn_implementation("sdpa")
    assert set(implementations(plain).values()) == {"sdpa"}
    with torch.no_grad():
        plain.sfar.clear_word_cache()
        torch.testing.assert_close(logits.float(), plain(pixel_values).logits.float(), rtol=0.05, atol=0.05)
    plain.set_attn_implementation("eager")
    assert set(implementations(plain).values()) == {"eager"}


@pytest.mark.parametrize("implementation", ["sdpa", "sfar_sdpa"])
def test_eager_and_sdpa_agree_on_the_temporal_module_cross_attention_and_logits(implementation):
    model = tiny_classifier("sfar", **WIDE).eval()
    with torch.no_grad():  # ragged key padding in the label set: the cross-attention's mask matters
        model.sfar.subtext_word_mask[:, :, 3:] = False
    frames, pixel_values = torch.randn(2, 5, 128), torch.randn(2, 5, 3, 16, 16)
    outputs = {}
    for name in ("eager", implementation):
        model.set_attn_implementation(name)
        model.sfar.clear_word_cache()
        with torch.no_grad():
            outputs[name] = (
                model.sfar.temporal(frames),
                model.sfar.augmented_prompt_words(),
                model(pixel_values).logits,
            )
    for eager, other in zip(outputs["eager"], outputs[implementation], strict=True):
        torch.testing.assert_close(other, eager, rtol=1e-5, atol=1e-5)


def test_cross_attention_ignores_padded_keys_under_every_implementation():
    """Changing a padded sub-text word changes nothing; changing a real one does."""
    config = tiny_config(**WIDE)
    torch.manual_seed(0)
    attention = ClipVideoAttention(config).eval()
    query, keys = torch.randn(3, 4, 128), torch.randn(3, 7, 128)
    mask = torch.arange(7) < torch.tensor([[2], [7], [5]])  # (3, 7): 2, 7 and 5 real keys
    changed = keys.clone()
    changed[0, 2:] += 10.0  # padding of the first class only
    for implementation in ("eager", "sdpa", "sfar_sdpa"):
        config._attn_implementation = implementation
        with torch.no_grad():
            torch.testing.assert_close(attention(query, changed, mask), attention(query, keys, mask))
            assert not torch.allclose(attention(query, changed, None)[0], attention(query, keys, None)[0])


def test_an_attention_function_without_a_mask_function_is_refused_by_name(monkeypatch):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    monkeypatch.setitem(AttentionInterface._global_mapping, "my_attention", sdpa_attention_forward)
    config = tiny_config(**WIDE)
    attention = ClipVideoAttention(config)
    config._attn_implementation = "my_attention"
    with pytest.raises(ValueError, match="'my_attention' has no mask function"):
        attention(torch.randn(1, 2, 128), torch.randn(1, 3, 128), torch.tensor([[True, True, False]]))
    attention(torch.randn(1, 2, 128), torch.randn(1, 3, 128))  # no mask to build: the function is used as it is


def test_blocked_attention_keeps_the_text_towers_causal_attention():
    """CLIP's text tower asks for causal attention through `is_causal`: "sfar_sdpa" must honour it."""
    from modeling_sfar.remote_code.cpu_kernels import blocked_sdpa_attention

    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 2, 6, 8).bfloat16() for _ in range(3))
    module = nn.Module()
    with torch.no_grad():
        out = blocked_sdpa_attention(module, query, key, value, None, scaling=0.5, is_causal=True)[0]
        first = blocked_sdpa_attention(module, query[:, :, :1], key[:, :, :1], value[:, :, :1], None, scaling=0.5)[0]
    torch.testing.assert_close(out[:, :1], first)  # the first position sees only itself


def test_eager_attention_returns_the_temporal_layers_weights():
    """Attention weights come from transformers' layers: (B, H, T, T), each row a distribution over frames."""
    model = tiny_classifier("sfar", **WIDE).eval()
    model.set_attn_implementation("eager")
    weights = []
    hooks = [
        layer.self_attn.register_forward_hook(lambda module, args, output: weights.append(output[1]))
        for layer in model.sfar.temporal.layers
    ]
    with torch.no_grad():
        model(torch.randn(2, 4, 3, 16, 16))
    for hook in hooks:
        hook.remove()
    assert len(weights) == model.config.num_temporal_layers
    for w in weights:
        assert w.shape == (2, 2, 4, 4)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 4))


# -- gradient checkpointing ------------------------------------------------------------------------------------


def test_gradient_checkpointing_recomputes_the_temporal_layers_with_the_same_gradients():
    model = tiny_classifier("sfar", **WIDE).train()
    pixel_values, labels = torch.randn(4, 5, 3, 16, 16), torch.tensor([0, 1, 2, 0])

    calls = []
    for layer in model.sfar.temporal.layers:  # count the runs of each layer's forward, recomputations included

        def counted(*args, forward=layer.forward, **kwargs):
            calls.append(1)
            return forward(*args, **kwargs)

        layer.forward = counted

    def gradients_and_calls():
        model.zero_grad(set_to_none=True)
        calls.clear()
        model(pixel_values, labels=labels).loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return grads, len(calls)

    plain, plain_calls = gradients_and_calls()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in model.sfar.temporal.layers)
    assert all(layer.gradient_checkpointing for layer in model.sfar.vision_model.encoder.layers)
    checkpointed, checkpointed_calls = gradients_and_calls()
    n = model.config.num_temporal_layers
    assert plain_calls == n and checkpointed_calls == 2 * n  # each temporal layer ran again in the backward pass
    assert set(checkpointed) == set(plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6, msg=name)


# -- the ActionCLIP preset's layer norm ------------------------------------------------------------------------


def test_temporal_layer_norm_epsilon_is_a_config_field_actionclip_uses_its_own():
    assert SfarConfig().temporal_layer_norm_eps == 1e-5
    assert SfarConfig.from_variant("actionclip").temporal_layer_norm_eps == 1e-12
    assert SfarConfig.from_variant("sfar").temporal_layer_norm_eps == 1e-5
    model = tiny_classifier("actionclip")
    assert {m.eps for m in model.sfar.temporal.modules() if isinstance(m, nn.LayerNorm)} == {1e-12}
    for bad in (0.0, -1e-5, 1.0, math.nan, "1e-5", True):
        # 5.19's strict config reports a value or type error of a field as a StrictDataclassError naming it
        with pytest.raises(StrictDataclassError, match="temporal_layer_norm_eps"):
            SfarConfig(temporal_layer_norm_eps=bad)
    again = SfarConfig.from_dict(SfarConfig.from_variant("actionclip").to_dict())
    assert again.temporal_layer_norm_eps == 1e-12
