"""The model-FLOP-utilisation benchmark and the int8 option of the vision tower, at a tiny size: what is counted and
reported, how the components add up, and what int8 quantization changes. Nothing here times anything against a
limit (docs/performance.md holds the measurements)."""

from __future__ import annotations

import json

import pytest
import torch

from modeling_sfar.evaluation.quantization import cpu_has_int8_dot_products, quantize_vision_tower_int8


def tiny_args(*extra: str) -> list[str]:
    return ["--tiny", "--num_frames", "2", "--repeats", "1", "--matmul_size", "64", *extra]


def test_the_flop_count_splits_into_components_that_add_up_and_counts_the_attention_kernel():
    from benchmarks.hardware_utilisation import counted_flops, sizes
    from benchmarks.model_speed import sfar_model

    class Tiny:
        tiny = True

    model = sfar_model(num_labels=5, num_frames=2, sizes=sizes(Tiny), keep_words=False).eval()
    total, parts = counted_flops(model, torch.randn(1, 2, 3, 32, 32))
    top = ("tower: attention", "tower: MLP", "tower: norms, activation, residuals, embeddings", "temporal module",
           "head")  # fmt: skip
    assert sum(parts[name] for name in top) == pytest.approx(total)
    kernel, projections = parts["  of which the attention kernel"], parts["  of which q, k, v, out projections"]
    assert kernel > 0 and kernel + projections == pytest.approx(parts["tower: attention"])
    # 2 layers x 2 frames, ViT at 32 px, patch 8: 17 tokens, width 32, MLP 64; two products each (q k^T and the
    # weights times v; fc1 and fc2), 2 FLOPs a multiply-add
    layers_frames = 2 * 2
    assert kernel == layers_frames * 2 * (2 * 17 * 17 * 32)
    assert parts["tower: MLP"] == layers_frames * 2 * (2 * 17 * 32 * 64)


def test_the_benchmark_reports_utilisation_per_dtype_mode_and_component(tmp_path):
    from benchmarks.hardware_utilisation import main

    rows = main(tiny_args("--only", "mfu", "--no_compile", "--output_dir", str(tmp_path)))
    cases = [row["case"] for row in rows if row["section"].startswith("model FLOP utilisation")]
    assert cases == ["float32 eager", "bfloat16 eager"]
    assert all(row["of the matmul rate, median"] > 0 for row in rows if "case" in row)
    per_component = [row for row in rows if row["section"].startswith("eager float32, per component")]
    assert len(per_component) == 7 and all(0 <= row["share of time"] <= 1 for row in per_component)
    report = json.loads((tmp_path / "hardware_utilisation.json").read_text())
    assert {"cpu_capability", "cpu_features"} <= set(report["machine"])


def test_int8_is_offered_only_where_the_cpu_has_int8_dot_products():
    assert cpu_has_int8_dot_products({"avx2": True, "vnni": True})
    assert cpu_has_int8_dot_products({"avx2": True, "amx_int8": True})
    assert not cpu_has_int8_dot_products({"avx2": True, "avx512": True, "avx512_bf16": True})


@pytest.mark.parametrize("mode", ["dynamic", "weight_only"])
def test_int8_quantizes_the_vision_towers_linear_layers_and_keeps_the_top_class(mode):
    pytest.importorskip("torchao", reason="torchao (the `bench` extra) quantizes the tower")
    from benchmarks.hardware_utilisation import sizes
    from benchmarks.model_speed import sfar_model

    class Tiny:
        tiny = True

    reference = sfar_model(num_labels=5, num_frames=2, sizes=sizes(Tiny), keep_words=False).eval()
    model = sfar_model(num_labels=5, num_frames=2, sizes=sizes(Tiny), keep_words=False).eval()
    quantize_vision_tower_int8(model, mode, require_cpu_support=False)
    fc1 = model.sfar.vision_model.encoder.layers[0].mlp.fc1
    assert type(fc1.weight).__name__ == "Int8Tensor"  # torchao's int8 weight
    assert type(model.sfar.temporal.layers[0].mlp.fc1.weight) is torch.nn.Parameter  # outside the tower: as it was
    x = torch.randn(3, 2, 3, 32, 32)
    with torch.no_grad():
        expected, got = reference(pixel_values=x).logits, model(pixel_values=x).logits
    assert got.shape == expected.shape and torch.isfinite(got).all()
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()


def test_int8_refuses_a_cpu_without_int8_dot_products_unless_asked(monkeypatch):
    from modeling_sfar.evaluation import quantization

    monkeypatch.setattr(quantization, "cpu_has_int8_dot_products", lambda features=None: False)
    with pytest.raises(ValueError, match="no int8 dot products"):
        quantize_vision_tower_int8(torch.nn.Module())
    with pytest.raises(ValueError, match="mode must be"):
        quantize_vision_tower_int8(torch.nn.Module(), "int4")


def test_the_int8_section_reports_throughput_and_agreement(tmp_path):
    pytest.importorskip("torchao", reason="torchao (the `bench` extra) quantizes the tower")
    from benchmarks.hardware_utilisation import main

    args = ("--only", "int8", "--int8_modes", "weight_only", "--agreement_videos", "2", "--dtypes", "float32")
    rows = main(tiny_args(*args, "--output_dir", str(tmp_path)))
    assert [row["model"] for row in rows] == ["float32", "bfloat16", "int8 weight_only (tower)"]
    assert rows[0]["top-1 agreement with float32 (2 videos)"] == 1 and rows[0]["max logit difference / max logit"] == 0
    assert all(row["throughput / bfloat16"] > 0 for row in rows)
