"""
Checkpoints of a training run: which `checkpoint-N` `--resume` continues from, the same for every process.

Every process resumes from its own `--output_dir`. On machines that do not share a disk each machine has its own
folder, and by default only process 0 writes whole checkpoints there (the others write their RNG state only): a
decision taken on each machine's disk alone would differ between machines, and the processes would wait for each
other until the DDP timeout. So every process describes its folder (`CheckpointView`), the views are gathered over
`torch.distributed`, and every process takes the same decision from all of them (`agree_on_checkpoint`): the newest
checkpoint that every process can load, or one `ResumeError` raised on every process that names what each machine
lacks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from dataclasses import dataclass, field

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointView",
    "ResumeError",
    "agree_on_checkpoint",
    "checkpoint_files",
    "last_complete_checkpoint",
    "resume_checkpoint",
]

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"  # a sharded save holds this instead of WEIGHTS
TRAINER_STATE = "trainer_state.json"


class ResumeError(RuntimeError):
    """`--resume` found a checkpoint that some processes cannot load: raised on every process with the same text."""


def checkpoint_files(process: int, world_size: int = 2, save_only_model: bool = False) -> tuple[str, ...]:
    """
    The files that `process` reads from a checkpoint to resume exactly, in the order `Trainer._save_checkpoint`
    writes them: the weights, the optimizer and the scheduler, the process's RNG state (`rng_state_<process>.pth`
    when several processes run), and `trainer_state.json` last.
    """
    if save_only_model:
        return (WEIGHTS, TRAINER_STATE)
    rng = f"rng_state_{process}.pth" if world_size > 1 else "rng_state.pth"
    return (WEIGHTS, "optimizer.pt", "scheduler.pt", rng, TRAINER_STATE)


@dataclass
class CheckpointView:
    """
    What one process finds in its `output_dir`: for each `checkpoint-N` folder, the files of `files` it lacks
    (`missing[N]`, empty when whole). A step absent from `missing` has no folder. `unreadable[N]` says why a
    `trainer_state.json` that is there does not parse (it is then counted as missing).
    """

    process: int
    host: str
    output_dir: str
    missing: dict[int, list[str]]
    files: tuple[str, ...] | None = None  # `checkpoint_files(process)` when not given
    unreadable: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.files is None:
            self.files = checkpoint_files(self.process)

    @classmethod
    def scan(cls, output_dir: str, process: int, world_size: int, save_only_model: bool = False) -> CheckpointView:
        """This process's view of `output_dir` (which may not exist)."""
        files = checkpoint_files(process, world_size, save_only_model)
        missing, unreadable = {}, {}
        names = os.listdir(output_dir) if os.path.isdir(output_dir) else []
        for name in names:
            match = re.fullmatch(r"checkpoint-(\d+)", name)
            folder = os.path.join(output_dir, name)
            if not match or not os.path.isdir(folder):
                continue
            step = int(match.group(1))
            held = set(os.listdir(folder))
            if WEIGHTS_INDEX in held:
                held.add(WEIGHTS)
            if TRAINER_STATE in held:
                try:
                    with open(os.path.join(folder, TRAINER_STATE), encoding="utf-8") as f:
                        json.load(f)
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    held.discard(TRAINER_STATE)
                    unreadable[step] = str(error)
            missing[step] = [name for name in files if name not in held]
        return cls(process, socket.gethostname(), output_dir, missing, files, unreadable)

    def folder(self, step: int) -> str:
        return os.path.join(self.output_dir, f"checkpoint-{step}")

    def is_whole(self, step: int) -> bool:
        """
        This process can resume from `checkpoint-step`: it holds every file but perhaps its RNG state, which the
        Trainer, like us, does without (it logs that the run will not be exactly reproducible). So a run resumed with
        another number of processes (`rng_state_<i>.pth` against `rng_state.pth`) takes its checkpoints.
        """
        return step in self.missing and all(_is_rng_state(name) for name in self.missing[step])

    def was_cut(self, step: int) -> bool:
        """
        The save of `checkpoint-step` was stopped on this process: the files it lacks are the last ones the Trainer
        writes, `trainer_state.json` among them. A process that never held whole checkpoints lacks the weights but
        holds its RNG state: not a cut save.
        """
        held = [name not in self.missing[step] for name in self.files]
        return not held[-1] and held == sorted(held, reverse=True)


def _is_rng_state(name: str) -> bool:
    return name.startswith("rng_state")


def _where(view: CheckpointView, step: int, named: bool) -> str:
    return f"{view.folder(step)} (process {view.process} on {view.host})" if named else view.folder(step)


def _lacks(view: CheckpointView, step: int) -> str:
    if step not in view.missing:
        return "it does not exist"
    if view.was_cut(step):
        if step in view.unreadable:
            return f"its {TRAINER_STATE} is cut short ({view.unreadable[step]})"
        return f"it has no {TRAINER_STATE} (the run was stopped while saving it)"
    return "it has no " + ", ".join(sorted(view.missing[step]))


def agree_on_checkpoint(views: list[CheckpointView]) -> int | None:
    """
    The step of the newest checkpoint that every process holds whole, or None when there is none; from the views of
    every process, so every process takes the same decision.

    A checkpoint whose save was stopped on some process (`CheckpointView.was_cut`), or that no process finished
    (`trainer_state.json` is written last), is skipped with a warning naming each folder and why. A checkpoint that
    some process finished but another cannot load (it has no such folder, or lacks files a cut save would have
    written) is not skipped: going back to an older one would hide the cause and repeat it.

    Raises:
        ResumeError: naming the folder, process and host of each process that lacks the checkpoint, what it lacks,
            and the ways to fix it.
    """
    named = len(views) > 1  # one process: its folder says it all
    steps = sorted({step for view in views for step in view.missing}, reverse=True)
    for step in steps:
        whole = [view for view in views if view.is_whole(step)]
        broken = [view for view in views if not view.is_whole(step)]
        cut = [view for view in broken if step in view.missing and view.was_cut(step)]
        if not whole or cut:
            for view in cut or [view for view in broken if step in view.missing]:
                logger.warning("not resuming from %s: %s", _where(view, step, named), _lacks(view, step))
            continue
        if broken:
            lacking = "\n".join(f"  {_where(view, step, named)}: {_lacks(view, step)}" for view in broken)
            source = _where(whole[0], step, named)
            raise ResumeError(
                f"--resume: checkpoint-{step} is complete for process(es) "
                f"{', '.join(str(view.process) for view in whole)} but not for every process; each process resumes "
                f"from its own --output_dir:\n{lacking}\n"
                "Machines without a shared disk each keep their own --output_dir, and by default only process 0 "
                "saves whole checkpoints there (the others save their RNG state only). Put --output_dir on a disk "
                "that every machine shares, or train with --save_on_each_node so that every machine saves whole "
                f"checkpoints, or copy the files listed above from {source} into each folder named above; then "
                "run with --resume again."
            )
        for view in whole:
            if view.missing[step]:
                logger.warning("%s has no %s: resuming without it, the run is not exactly reproducible",
                               _where(view, step, named), view.missing[step][0])  # fmt: skip
        return step
    return None


def resume_checkpoint(output_dir: str, process: int, world_size: int, save_only_model: bool = False) -> str | None:
    """
    The folder this process resumes from (`output_dir/checkpoint-N`), or None to start over: every process's view is
    gathered (when the run has several) and every process applies `agree_on_checkpoint` to the same views.

    Raises:
        ResumeError: on every process at once, when some process cannot load the checkpoint the others would take.
    """
    views = [CheckpointView.scan(output_dir, process, world_size, save_only_model)]
    if world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered = [None] * world_size
        torch.distributed.all_gather_object(gathered, views[0])
        views = gathered
    step = agree_on_checkpoint(views)
    return None if step is None else os.path.join(output_dir, f"checkpoint-{step}")


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The checkpoint one process alone resumes from in `output_dir`, or None (`resume_checkpoint` of one process)."""
    return resume_checkpoint(output_dir, 0, 1)
