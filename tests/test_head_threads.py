"""The parts after the vision tower run on one intra-op thread in small CPU inference (issue 17): what they compute
is unchanged, the thread count is restored after the forward (also when it fails), and training, large heads and
a single-thread setting keep the threads as set."""

from __future__ import annotations

import pytest
import torch

from modeling_sfar.remote_code import modeling_sfar
from modeling_sfar.remote_code.modeling_sfar import intra_op_threads
from tests.conftest import tiny_classifier


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def threads_seen(model) -> list[int]:
    """The intra-op threads set while the temporal module and the head's FFN run, recorded by forward hooks."""
    seen: list[int] = []
    for module in (model.sfar.temporal, model.sfar.fine_ffn.fc2):
        module.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    return seen


def test_small_inference_runs_the_head_on_one_thread_and_restores_the_threads(two_threads):
    model = tiny_classifier("sfar").eval()
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    with torch.no_grad():
        with intra_op_threads(None):  # None leaves the threads as set
            reference = model.sfar.head(model.sfar.get_frame_features(pixel_values), None).logits
        seen = threads_seen(model)
        logits = model(pixel_values).logits
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2
    torch.testing.assert_close(logits, reference)


def test_large_heads_training_and_one_thread_keep_the_threads(two_threads):
    model = tiny_classifier("sfar").eval()
    seen = threads_seen(model)
    pixel_values = torch.randn(2, 5, 3, 16, 16)
    model(pixel_values)  # gradients enabled: as in training
    assert set(seen) == {2}
    seen.clear()
    model.sfar.small_head_macs = 0  # every head is "large": the threads as set
    with torch.no_grad():
        model(pixel_values)
    assert set(seen) == {2}
    seen.clear()
    model.sfar.small_head_macs = modeling_sfar.SMALL_HEAD_MACS
    torch.set_num_threads(1)
    with torch.no_grad():
        model(pixel_values)
    assert set(seen) == {1} and torch.get_num_threads() == 1


def test_the_threads_are_restored_when_the_head_fails(two_threads):
    model = tiny_classifier("sfar").eval()

    def fail(module, args):
        assert torch.get_num_threads() == 1
        raise RuntimeError("head failed")

    model.sfar.temporal.register_forward_pre_hook(fail)
    with torch.no_grad(), pytest.raises(RuntimeError, match="head failed"):
        model(torch.randn(1, 5, 3, 16, 16))
    assert torch.get_num_threads() == 2
