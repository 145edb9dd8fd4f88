"""With `small_temporal_macs` set, the temporal module of a short batch runs on one intra-op thread in CPU inference
(issue 17): what it computes is unchanged, the thread count is restored afterwards (also when it fails), the head
keeps the threads as set, and the default, training, longer batches and a single-thread setting keep the threads as
set."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from modeling_sfar.remote_code import cpu_kernels
from tests.conftest import tiny_classifier


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def threads_seen(model) -> dict[str, list[int]]:
    """The intra-op threads set while the temporal module and the head's FFN run, recorded by forward hooks."""
    seen: dict[str, list[int]] = {"temporal": [], "head": []}
    for name, module in (("temporal", model.sfar.temporal), ("head", model.sfar.fine_ffn.fc2)):
        module.register_forward_pre_hook(lambda module, args, name=name: seen[name].append(torch.get_num_threads()))
    return seen


def test_short_batches_run_the_temporal_module_on_one_thread_and_restore_the_threads(two_threads):
    model = tiny_classifier("sfar").eval()
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        reference = model(pixel_values).logits  # the default: the threads as set
        model.sfar.small_temporal_macs = cpu_kernels.SMALL_TEMPORAL_MACS
        seen = threads_seen(model)
        logits = model(pixel_values).logits
        head = model.sfar.forward_head(model.sfar.get_frame_features(pixel_values)).logits
    assert seen == {"temporal": [1, 1], "head": [2, 2]}
    assert torch.get_num_threads() == 2
    torch.testing.assert_close(logits, reference)
    torch.testing.assert_close(head, reference)


def test_long_batches_training_and_one_thread_keep_the_threads(two_threads):
    model = tiny_classifier("sfar").eval()
    seen = threads_seen(model)
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        model(pixel_values)  # the default
    assert set(seen["temporal"]) == {2}
    seen["temporal"].clear()
    model.sfar.small_temporal_macs = cpu_kernels.SMALL_TEMPORAL_MACS
    model(pixel_values)  # gradients enabled: as in training
    assert set(seen["temporal"]) == {2}
    seen["temporal"].clear()
    width = model.config.projection_dim
    model.sfar.small_temporal_macs = 2 * 5 * width * 4 * width  # this batch's product is not below it
    with torch.no_grad():
        model(pixel_values)
    assert set(seen["temporal"]) == {2}
    seen["temporal"].clear()
    model.sfar.small_temporal_macs = cpu_kernels.SMALL_TEMPORAL_MACS
    torch.set_num_threads(1)
    with torch.no_grad():
        model(pixel_values)
    assert set(seen["temporal"]) == {1} and torch.get_num_threads() == 1


def test_the_threads_are_restored_when_the_temporal_module_fails(two_threads):
    model = tiny_classifier("sfar").eval()
    model.sfar.small_temporal_macs = cpu_kernels.SMALL_TEMPORAL_MACS

    def fail(module, args):
        assert torch.get_num_threads() == 1
        raise RuntimeError("temporal module failed")

    model.sfar.temporal.register_forward_pre_hook(fail)
    with torch.no_grad(), pytest.raises(RuntimeError, match="temporal module failed"):
        model(torch.randn(1, 5, 3, 16, 16))
    assert torch.get_num_threads() == 2


# -- the bfloat16 attention kernel is chosen by the CPU's features ---------------------------------------------


@pytest.mark.parametrize(
    ("features", "blocked"),
    [
        ({"avx2": True}, False),  # no bfloat16 dot products: bfloat16 matrix products are emulated
        ({"avx2": True, "avx512": True}, False),
        ({"avx2": True, "avx512": True, "avx512_bf16": True}, True),  # bfloat16 dot products, no AMX
        ({"avx2": True, "avx512": True, "avx512_bf16": True, "amx_bf16": True, "amx_int8": True}, False),  # AMX
        ({}, False),  # nothing known
    ],
    ids=["avx2", "avx512", "avx512-bf16", "amx", "unknown"],
)
def test_the_blocked_attention_is_chosen_where_the_cpu_has_bfloat16_dot_products_and_no_amx(features, blocked):
    assert cpu_kernels.blocked_attention_pays(features) is blocked


def test_this_cpus_features_are_read_and_decide_the_default():
    features = cpu_kernels.cpu_features()
    assert set(features) == {"avx2", "avx512", "avx512_bf16", "vnni", "amx_bf16", "amx_int8"}
    assert all(isinstance(value, bool) for value in features.values())
    # the choice of a fresh process, from its CPU (in this one the tests' fixture forces the blocked path); made at
    # the first call, not at import: importing a shipped file reads no file (tests/contract/test_security.py)
    code = ("from modeling_sfar.remote_code import cpu_kernels as k; "
            "print(k.BLOCKED_ATTENTION, k.use_blocked_attention())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert run.stdout.split() == ["None", str(cpu_kernels.blocked_attention_pays(features))]


def test_where_the_blocked_path_does_not_pay_sfar_sdpa_is_transformers_sdpa(monkeypatch):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    monkeypatch.setattr(cpu_kernels, "BLOCKED_ATTENTION", False)
    torch.manual_seed(0)
    module = torch.nn.Module()
    query, key, value = (torch.randn(2, 5, 7, 8).bfloat16() for _ in range(3))
    with torch.no_grad():
        expected = sdpa_attention_forward(module, query, key, value, None, scaling=0.3)[0]
        out = cpu_kernels.blocked_sdpa_attention(module, query, key, value, None, scaling=0.3)[0]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
