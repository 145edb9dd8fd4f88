"""`--resume` on two machines without a shared disk, on loopback: two `accelerate launch` of one process each
(`--num_machines 2`, `--machine_rank 0/1`, gloo on the CPU), each with its own `--output_dir`. Trained the default
way, only machine 0 holds whole checkpoints: both machines stop at once with the same error naming what machine 1
lacks (no hang until the DDP timeout). With `--save_on_each_node` both resume and end with the weights of an
uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modeling_sfar.training.checkpoints import (
    CheckpointView,
    ResumeError,
    agree_on_checkpoint,
    last_complete_checkpoint,
)
from tests.conftest import free_port
from tests.scripts.test_train import train_args, weights

REPO = Path(__file__).resolve().parents[2]

# scripts/train.py, stopped cleanly after step 3 on every process: what it did after checkpoint-2 is lost, as in a
# run killed at step 3, and every process leaves the process group together.
STOPPED_RUN = """
import sys

import torch
from transformers import TrainerCallback

from modeling_sfar.training.arguments import parse_training_args
from modeling_sfar.training.run import run_training


class StopAfter(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            control.should_training_stop = True


try:
    run_training(*parse_training_args(sys.argv[1:]), callbacks=[StopAfter()])
finally:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
"""

# Longer than a test may wait: a process that waits for the other one fails the test by the timeout below instead of
# ending with a DDP timeout error that could pass for the clear error.
DDP_TIMEOUT = "900"
WAIT = 600


def launch_two_machines(script: str, argv: list[list[str]], tmp_path: Path) -> list[subprocess.CompletedProcess]:
    """Run `script` as two machines of one process each on loopback, machine i with `argv[i]`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(REPO),  # the code under test, not another checkout installed in the environment
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
        ACCELERATE_USE_CPU="true",
        OMP_NUM_THREADS="1",
    )
    port = str(free_port())
    processes = []
    for rank, args in enumerate(argv):
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
            "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
            "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no", script, *args,
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )  # fmt: skip
        )
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=WAIT)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in processes:  # only the launchers this test started, and their children
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return results


def machine_args(storyboard, tiny_clip_dir, output_dir: Path, *extra) -> list[str]:
    return train_args(
        storyboard, tiny_clip_dir, output_dir, "--max_steps", "6", "--eval_split", "", "--check_videos", "false",
        "--ddp_timeout", DDP_TIMEOUT, *extra,
    )  # fmt: skip


def run_stopped_and_resumed(storyboard, tiny_clip_dir, tmp_path, name: str, *extra):
    """Train on two machines (folders NAME-0 and NAME-1) until step 3, then resume: the resumed runs' results."""
    script = tmp_path / "stopped_run.py"
    script.write_text(STOPPED_RUN)
    folders = [tmp_path / f"{name}-{rank}" for rank in range(2)]
    stopped = launch_two_machines(
        str(script), [machine_args(storyboard, tiny_clip_dir, folder, *extra) for folder in folders], tmp_path
    )
    for run in stopped:
        assert run.returncode == 0, run.stderr[-4000:]
    resumed = launch_two_machines(
        str(REPO / "scripts" / "train.py"),
        [machine_args(storyboard, tiny_clip_dir, folder, *extra, "--resume") for folder in folders],
        tmp_path,
    )
    return folders, resumed


@pytest.mark.slow
def test_resume_without_shared_disk_stops_every_machine_with_the_missing_files(storyboard, tiny_clip_dir, tmp_path):
    folders, resumed = run_stopped_and_resumed(storyboard, tiny_clip_dir, tmp_path, "default")
    # what the Trainer leaves on machine 1 by default: its RNG state, nothing it could resume from
    assert sorted(os.listdir(folders[1] / "checkpoint-2")) == ["rng_state_1.pth"]
    assert (folders[0] / "checkpoint-2" / "trainer_state.json").is_file()
    for run in resumed:
        assert run.returncode != 0
        assert "ResumeError: --resume: checkpoint-2 is complete for process(es) 0" in run.stderr, run.stderr[-4000:]
        missing = "model.safetensors, optimizer.pt, scheduler.pt, trainer_state.json"
        assert f"{folders[1] / 'checkpoint-2'} (process 1 on " in run.stderr and missing in run.stderr
        assert "--save_on_each_node" in run.stderr
        assert "stopped while saving" not in run.stderr and "imeout" not in run.stderr
        assert "on 2 process(es)" not in run.stderr  # it stopped before the data and the model


@pytest.mark.slow
def test_resume_on_each_machine_with_save_on_each_node_matches_an_uninterrupted_run(
    storyboard, tiny_clip_dir, tmp_path
):
    folders, resumed = run_stopped_and_resumed(storyboard, tiny_clip_dir, tmp_path, "each", "--save_on_each_node")
    for run in resumed:
        assert run.returncode == 0, run.stderr[-4000:]
        assert "resuming from" in run.stderr and "checkpoint-2" in run.stderr
    whole = [tmp_path / f"whole-{rank}" for rank in range(2)]
    for run in launch_two_machines(
        str(REPO / "scripts" / "train.py"), [machine_args(storyboard, tiny_clip_dir, f) for f in whole], tmp_path
    ):
        assert run.returncode == 0, run.stderr[-4000:]
    assert json.loads((folders[0] / "trainer_state.json").read_text())["global_step"] == 6
    expected = weights(whole[0])
    for folder in folders:  # both machines saved the final model: the same weights as the run that was not stopped
        end = weights(folder)
        for key in expected:
            torch.testing.assert_close(end[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def view(process: int, output_dir: str, **missing: list[str]) -> CheckpointView:
    """A process's view with `checkpoint-N` lacking the files `missing["cN"]`."""
    return CheckpointView(process, f"host{process}", output_dir, {int(k[1:]): v for k, v in missing.items()})


def test_every_process_takes_the_newest_checkpoint_complete_for_all(caplog):
    shared = [view(0, "/out", c2=[], c4=[]), view(1, "/out", c2=[], c4=[])]
    assert agree_on_checkpoint(shared) == 4
    # machine 1 was stopped while saving checkpoint-4: every process goes back to checkpoint-2
    with caplog.at_level("WARNING"):
        assert agree_on_checkpoint([view(0, "/a", c2=[], c4=[]), view(1, "/b", c2=[], c4=["trainer_state.json"])]) == 2
    assert "not resuming from /b/checkpoint-4 (process 1 on host1): it has no trainer_state.json" in caplog.text
    # a checkpoint cut on every machine is skipped; none complete anywhere: every process starts over
    assert agree_on_checkpoint([view(0, "/a", c2=["trainer_state.json"]), view(1, "/b")]) is None


def test_a_checkpoint_only_some_processes_can_load_is_the_same_error_for_all():
    views = [view(0, "/a", c3=[]), view(1, "/b", c3=["model.safetensors", "trainer_state.json"])]
    with pytest.raises(ResumeError, match=r"/b/checkpoint-3 \(process 1 on host1\): it has no model.safetensors"):
        agree_on_checkpoint(views)
    # a machine with no checkpoint folder at all is named too
    with pytest.raises(ResumeError, match=r"/b/checkpoint-3 \(process 1 on host1\): it does not exist"):
        agree_on_checkpoint([view(0, "/a", c3=[]), view(1, "/b")])


def test_a_folder_is_read_as_the_trainer_leaves_it(tmp_path):
    def folder(name: str, *files: str) -> str:
        (tmp_path / name / "checkpoint-2").mkdir(parents=True)
        for file in files:
            (tmp_path / name / "checkpoint-2" / file).write_text("{}")
        return str(tmp_path / name)

    whole = folder("whole", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state_0.pth",
                   "trainer_state.json", "config.json")  # fmt: skip
    rng_only = folder("rng-only", "rng_state_1.pth")  # a process that does not save checkpoints
    cut = folder("cut", "model.safetensors", "optimizer.pt")  # a save stopped after the optimizer
    views = [CheckpointView.scan(whole, 0, 2), CheckpointView.scan(rng_only, 1, 2)]
    assert views[0].missing == {2: []} and not views[1].was_cut(2)
    with pytest.raises(ResumeError, match="model.safetensors, optimizer.pt, scheduler.pt, trainer_state.json"):
        agree_on_checkpoint(views)
    assert CheckpointView.scan(cut, 1, 2).was_cut(2)
    assert agree_on_checkpoint([views[0], CheckpointView.scan(cut, 1, 2)]) is None
    # one process: the Trainer names its RNG state rng_state.pth
    assert CheckpointView.scan(whole, 0, 1).missing == {2: ["rng_state.pth"]}


def test_a_run_resumed_with_another_number_of_processes_takes_its_checkpoints(tmp_path, caplog):
    """The RNG states are named by process count (`rng_state.pth` for one, `rng_state_<i>.pth` for several): a
    checkpoint of 2 processes resumed by 1, 4 or 1 resumed by 2 is taken without them, as the Trainer does, with a
    warning, never a silent start over that would write new checkpoints over the old run's."""
    folder = tmp_path / "out" / "checkpoint-10"
    folder.mkdir(parents=True)
    for file in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state_0.pth", "rng_state_1.pth",
                 "trainer_state.json"):  # fmt: skip
        (folder / file).write_text("{}")
    output_dir = str(tmp_path / "out")
    with caplog.at_level("WARNING"):
        assert last_complete_checkpoint(output_dir) == str(folder)  # 2 processes -> 1
    assert "has no rng_state.pth: resuming without it" in caplog.text
    for world_size in (2, 4):  # 2 -> 2, 2 -> 4 (on a shared disk every process sees the one folder)
        views = [CheckpointView.scan(output_dir, process, world_size) for process in range(world_size)]
        assert agree_on_checkpoint(views) == 10
    (folder / "rng_state_1.pth").unlink()
    (folder / "rng_state_0.pth").rename(folder / "rng_state.pth")  # 1 -> 2
    assert agree_on_checkpoint([CheckpointView.scan(output_dir, process, 2) for process in range(2)]) == 10
