"""The loss over the global batch: 2 processes x B/2 videos give the loss and gradients of 1 x B (gloo, CPU)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import free_port


def build(variant):
    from tests.conftest import tiny_classifier

    return tiny_classifier(variant).train()


def batch():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(6, 5, 3, 16, 16, generator=generator), torch.tensor([0, 1, 0, 2, 1, 0])


def worker(rank, world_size, port, variant, queue):
    # a TCP store: the file store aborted now and then at teardown under load ("terminate called without an
    # active exception")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        model = build(variant)
        pixel_values, labels = batch()
        part = slice(rank * 3, rank * 3 + 3)
        loss = model(pixel_values[part], labels=labels[part]).loss
        loss.backward()
        grad = model.sfar.visual_projection.weight.grad.clone()
        dist.all_reduce(grad)
        grad /= world_size  # what DDP averages
        queue.put((rank, loss.item(), grad.tolist()))
        dist.barrier()  # neither process tears gloo down while the other still uses it
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("variant", ["sfar", "actionclip"])
def test_two_processes_give_the_single_process_loss_and_gradient(variant, tmp_path, monkeypatch):
    model = build(variant)
    pixel_values, labels = batch()
    loss = model(pixel_values, labels=labels).loss
    loss.backward()
    expected_grad = model.sfar.visual_projection.weight.grad

    context = mp.get_context("spawn")
    queue = context.Queue()
    # the spawned workers import this module; set for this test only (a leaked PYTHONPATH would make later
    # subprocesses, the wheel test among them, import the clone)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH") or os.getcwd())
    mp.start_processes(worker, args=(2, free_port(), variant, queue), nprocs=2, join=True, start_method="spawn")
    results = sorted(queue.get(timeout=60) for _ in range(2))
    for _, distributed_loss, grad in results:
        assert distributed_loss == pytest.approx(loss.item(), rel=1e-5)
        torch.testing.assert_close(torch.tensor(grad), expected_grad, rtol=1e-4, atol=1e-6)
