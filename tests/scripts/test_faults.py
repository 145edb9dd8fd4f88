"""Real-world faults in training and evaluation (issue 13): bad videos met at any point, a stale check, a kill during a
save, inputs that name the wrong thing, and a launcher that starts fewer processes than asked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_sfar.data.bad_videos import BadVideoError, BadVideoLog, check_videos
from modeling_sfar.evaluation import run as evaluation
from modeling_sfar.remote_code.video_decoding import read_video_pyav
from modeling_sfar.training import run as training_run
from modeling_sfar.training.checkpoints import last_complete_checkpoint

REPO = Path(__file__).resolve().parents[2]
from tests.scripts.test_train import Interrupt, run_eval, run_train, train_args, weights  # noqa: E402


def copy_with_own_videos(storyboard, folder: Path) -> tuple[str, dict[str, list[str]]]:
    """The storyboard dataset saved under `folder` with its own copies of the videos (free to break)."""
    from datasets import load_from_disk

    dataset = load_from_disk(storyboard["dataset"])
    videos = {}
    for split in dataset:
        paths = []
        for i, source in enumerate(dataset[split]["video"]):
            target = folder / "videos" / split / f"{i:03d}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(source).read_bytes())
            paths.append(str(target))
        dataset[split] = dataset[split].remove_columns("video").add_column("video", paths)
        videos[split] = paths
    dataset.save_to_disk(folder / "dataset")
    return str(folder / "dataset"), videos


def break_videos(paths: list[str], seed: int, count: int) -> list[str]:
    """Break `count` videos at random rows, each another way: garbage bytes, empty, deleted, a text file."""
    rows = np.random.default_rng(seed).choice(len(paths), size=count, replace=False)
    broken = []
    for kind, row in enumerate(rows):
        path = Path(paths[row])
        if kind % 4 == 0:
            path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 2)
        elif kind % 4 == 1:
            path.write_bytes(b"")
        elif kind % 4 == 2:
            path.unlink()
        else:
            path.write_text("not a video\n" * 40)
        broken.append(str(path))
    return broken


def fail_during_run(monkeypatch, module, paths: dict[str, list[str]]) -> None:
    """Empty `paths[split]` right after `module`'s check of `split` passed them, as if another job truncated them."""
    real = module.check_videos

    def check_then_break(dataset, split, *args, **kwargs):
        out = real(dataset, split, *args, **kwargs)
        for path in paths.get(split, []):
            Path(path).write_bytes(b"")
        return out

    monkeypatch.setattr(module, "check_videos", check_then_break)


def test_bad_videos_met_in_training_are_replaced_counted_and_resume_is_bit_identical(
    storyboard, tiny_clip_dir, tmp_path, caplog
):
    """Videos broken at random rows, met mid-epoch (no check): the run finishes, reports them, and a run killed and
    resumed ends with the weights of the uninterrupted run."""
    dataset, videos = copy_with_own_videos(storyboard, tmp_path / "data")
    broken = break_videos(videos["train"], seed=7, count=4)
    # 30 rows in batches of 4: one epoch is 8 steps, so every row is met; read in a DataLoader worker, whose records
    # must reach the main process
    common = ("--num_train_epochs", "1", "--eval_split", "", "--check_videos", "false", "--dataloader_num_workers", "1")

    def args(name, *extra):
        out = train_args(storyboard, tiny_clip_dir, tmp_path / name, *common, *extra)
        out[out.index("--dataset") + 1] = dataset
        return out

    with caplog.at_level("WARNING"):
        whole = run_train(args("whole"))
    assert whole["train_bad_videos"] == 4 and whole["train_skipped_videos"] == 0
    results = json.loads((tmp_path / "whole" / "all_results.json").read_text())
    failed = results["bad_videos"]["failed_during_training"]
    assert sorted(failed) == sorted(broken)
    assert failed[broken[1]] == "empty file" and failed[broken[2]] == "file not found"
    # each failure is logged where it happens (here the worker's stderr); the main process sums them up at the end
    (summary,) = [r.getMessage() for r in caplog.records if "failed during training and were" in r.getMessage()]
    assert summary.startswith("4 video(s)") and all(path in summary for path in broken)

    with pytest.raises(KeyboardInterrupt):
        run_train(args("cut"), callbacks=[Interrupt(5)])
    assert (tmp_path / "cut" / "checkpoint-4").is_dir()
    resumed = run_train(args("cut", "--resume"))
    assert resumed["train_bad_videos"] == 4  # the killed part's records count, each video once
    end, expected = weights(tmp_path / "cut"), weights(tmp_path / "whole")
    assert end.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(end[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)

    with pytest.raises(BadVideoError, match=r"failed in training"):
        run_train(args("strict", "--strict"))


def test_videos_broken_after_the_check_do_not_stop_training_or_evaluation(
    storyboard, tiny_clip_dir, tmp_path, monkeypatch
):
    dataset, videos = copy_with_own_videos(storyboard, tmp_path / "data")
    bad_train = break_videos(videos["train"], seed=1, count=2)
    late_train, late_test = videos["train"][29], videos["test"][3]
    assert late_train not in bad_train
    fail_during_run(monkeypatch, training_run, {"train": [late_train], "test": [late_test]})
    args = train_args(storyboard, tiny_clip_dir, tmp_path / "run", "--num_train_epochs", "1")
    args[args.index("--dataset") + 1] = dataset
    metrics = run_train(args)
    assert metrics["train_skipped_videos"] == 2  # broken before: the check dropped them
    assert metrics["train_bad_videos"] == 1  # emptied after the check: replaced during training
    assert metrics["eval_bad_videos"] == 1 and metrics["eval_skipped_videos"] == 0
    results = json.loads((tmp_path / "run" / "all_results.json").read_text())["bad_videos"]
    assert sorted(results["skipped_before_training"]) == sorted(bad_train)
    assert results["failed_during_training"] == {late_train: "empty file"}
    assert results["failed_during_evaluation"] == {late_test: "empty file"}
    assert 0 <= metrics["eval_top1"] <= 100

    # eval.py: the same video emptied after its check; the other 9 are scored
    Path(late_test).write_bytes(Path(videos["test"][0]).read_bytes())
    monkeypatch.undo()
    fail_during_run(monkeypatch, evaluation, {"test": [late_test]})
    out = tmp_path / "eval"
    scores = run_eval(["--model", str(tmp_path / "run"), "--dataset", dataset, "--output_dir", str(out)])
    assert scores["eval_bad_videos"] == 1
    saved = json.loads((out / "eval_results.json").read_text())
    assert saved["bad_videos"]["failed_during_evaluation"] == {late_test: "empty file"}
    Path(late_test).write_bytes(Path(videos["test"][0]).read_bytes())
    with pytest.raises(BadVideoError, match=r"\d+\.mp4 .*failed in evaluation: empty file"):
        run_eval(["--model", str(tmp_path / "run"), "--dataset", dataset, "--output_dir", str(out), "--strict"])


def test_the_check_reads_the_files_as_they_are_now(storyboard, tmp_path):
    """Check, then delete and empty videos, check again: caught (no result cached inside the dataset folder)."""
    from datasets import load_from_disk

    dataset, videos = copy_with_own_videos(storyboard, tmp_path / "data")

    def check(strict=False):
        split = load_from_disk(dataset)["train"]
        return check_videos(split, "train", lambda video, index: read_video_pyav(video), strict=strict)

    kept, skipped = check(strict=True)
    assert len(kept) == 30 and skipped == []
    os.remove(videos["train"][3])
    Path(videos["train"][8]).write_bytes(b"")
    Image.new("RGB", (40, 40), "red").save(videos["train"][12], format="JPEG")  # a photo named like a video
    with pytest.raises(BadVideoError, match=r"(?s)3 of 30 videos of split 'train' cannot be used.*003\.mp4: file not"):
        check(strict=True)
    kept, skipped = check()
    reasons = [reason for _, reason in skipped]
    assert len(kept) == 27 and reasons[:2] == ["file not found", "empty file"] and "still image" in reasons[2]


KILL_IN_SAVE = """
import os, signal
from transformers.trainer_callback import TrainerState
from modeling_sfar.training.arguments import parse_training_args
from modeling_sfar.training.run import run_training

save = TrainerState.save_to_json

def killed_at_step_4(self, path):
    # inside the save of checkpoint-4: weights and optimizer are written, trainer_state.json is not
    if self.global_step == 4 and "checkpoint-4" in path:
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, path)

TrainerState.save_to_json = killed_at_step_4
run_training(*parse_training_args({argv!r}))
"""


def test_resume_after_a_kill_during_a_save_takes_the_last_complete_checkpoint(
    storyboard, tiny_clip_dir, tmp_path, caplog
):
    common = ("--max_steps", "6", "--eval_split", "", "--check_videos", "false")
    cut = train_args(storyboard, tiny_clip_dir, tmp_path / "cut", *common)
    script = tmp_path / "kill_in_save.py"
    script.write_text(KILL_IN_SAVE.format(argv=cut))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"), OMP_NUM_THREADS=str(torch.get_num_threads()))
    run = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    partial = tmp_path / "cut" / "checkpoint-4"
    assert (partial / "model.safetensors").is_file() and not (partial / "trainer_state.json").exists()

    with caplog.at_level("WARNING"):
        assert last_complete_checkpoint(str(tmp_path / "cut")) == str(tmp_path / "cut" / "checkpoint-2")
    assert f"not resuming from {partial}: it has no trainer_state.json" in caplog.text

    run_train([*cut, "--resume"])
    assert json.loads((tmp_path / "cut" / "trainer_state.json").read_text())["global_step"] == 6
    run_train(train_args(storyboard, tiny_clip_dir, tmp_path / "whole", *common))
    end, expected = weights(tmp_path / "cut"), weights(tmp_path / "whole")
    for key in expected:
        torch.testing.assert_close(end[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_a_checkpoint_with_a_cut_trainer_state_is_skipped(tmp_path, caplog):
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_st'), (6, None)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):  # written before the state
            (tmp_path / f"checkpoint-{step}" / name).write_bytes(b"")
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-9.tmp").mkdir()
    with caplog.at_level("WARNING"):
        assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    assert "checkpoint-6: it has no trainer_state.json" in caplog.text
    assert "checkpoint-4: its trainer_state.json is cut short" in caplog.text
    assert last_complete_checkpoint(str(tmp_path / "none")) is None


def test_bad_video_log_counts_each_video_once_across_writers(tmp_path):
    log = BadVideoLog(tmp_path / "run" / "bad_videos.jsonl")
    log.add("train", 3, "/v/a.mp4", "empty file")
    log.add("train", 3, "/v/a.mp4", "file not found")  # met again in a later epoch
    log.add("eval:test", 1, "/v/b.mp4", "empty file")
    with open(log.path, "a") as f:
        f.write('{"scope": "train", "ind')  # a line cut by a kill
    assert log.read("train") == {3: ("/v/a.mp4", "empty file")}
    assert log.read("eval:test") == {1: ("/v/b.mp4", "empty file")}
    log.reset()
    assert not os.path.exists(log.path) and log.read("train") == {}


def test_inputs_that_are_not_what_they_claim_are_named(storyboard, tiny_clip_dir, tmp_path):
    from modeling_sfar.data.datasets import load_video_dataset
    from modeling_sfar.hub.sources import check_model_source

    videos = tmp_path / "just-videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(Path(copy_with_own_videos(storyboard, tmp_path / "d")[1]["test"][0]).read_bytes())
    with pytest.raises(ValueError, match=f"--dataset {videos}: not a dataset saved with `save_to_disk`"):
        load_video_dataset(str(videos))
    with pytest.raises(FileNotFoundError, match=f"--dataset {tmp_path}/gone: no such folder"):
        load_video_dataset(str(tmp_path / "gone"))
    with pytest.raises(ValueError, match="a file, not a dataset folder"):
        load_video_dataset(str(videos / "a.mp4"))

    missing = str(tmp_path / "runs" / "model")
    with pytest.raises(FileNotFoundError, match=f"--model {missing}: no such folder"):
        run_eval(["--model", missing, "--dataset", storyboard["dataset"]])
    with pytest.raises(ValueError, match="the folder has no config.json"):
        check_model_source(str(videos))
    check_model_source("openai/clip-vit-base-patch16")  # a Hub id is left to from_pretrained
    args = train_args(storyboard, tiny_clip_dir, tmp_path / "run", "--max_steps", "1")
    args[args.index("--dataset") + 1] = str(videos)
    with pytest.raises(ValueError, match="not a dataset saved"):
        run_train(args)
    args = train_args(storyboard, tiny_clip_dir, tmp_path / "run", "--max_steps", "1", "--model", missing)
    with pytest.raises(FileNotFoundError, match=f"--model {missing}: no such folder"):
        run_train(args)


@pytest.mark.parametrize(
    "launcher",
    [["-c", "import time; time.sleep(60)", "/venv/bin/accelerate", "launch"], ["-m", "accelerate.commands.launch"]],
    ids=["accelerate launch", "python -m accelerate.commands.launch"],
)
def test_warns_when_the_launcher_starts_fewer_processes_than_asked(launcher, monkeypatch, caplog, tmp_path):
    # a stand-in parent process whose command line is the launcher's
    if launcher[0] == "-m":  # a module of that name that just waits
        package = tmp_path / "accelerate" / "commands"
        package.mkdir(parents=True)
        for folder in (package.parent, package):
            (folder / "__init__.py").write_text("")
        (package / "launch.py").write_text("import time\ntime.sleep(60)\n")
    command = [sys.executable, *launcher, "--num_processes", "2", "train.py", "--num_processes", "1"]
    parent = subprocess.Popen(command, cwd=tmp_path)
    try:
        for _ in range(100):  # until the child has exec'd: its command line is the stand-in's
            if b"launch" in Path(f"/proc/{parent.pid}/cmdline").read_bytes():
                break
            time.sleep(0.05)
        monkeypatch.setattr(training_run.os, "getppid", lambda: parent.pid)
        with caplog.at_level("WARNING"):
            training_run.warn_if_fewer_processes(1)
            assert "asked for 2 processes but 1 run" in caplog.text and "--multi_gpu" in caplog.text
            caplog.clear()
            training_run.warn_if_fewer_processes(2)
            assert caplog.text == ""
    finally:
        parent.kill()
        parent.wait()
