"""With `small_temporal_macs` set, the temporal module of a short batch runs on one intra-op thread in CPU inference
(issue 17): what it computes is unchanged, the thread count is restored afterwards (also when it fails), the head
keeps the threads as set, and the default, training, longer batches and a single-thread setting keep the threads as
set."""

from __future__ import annotations

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
