"""scripts/train.py and scripts/eval.py on a tiny storyboard dataset: metrics, resume, data-parallel, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from modeling_sfar.data.storyboard import STORYBOARDS
from modeling_sfar.evaluation.run import parse_evaluation_args, run_evaluation
from modeling_sfar.training.arguments import parse_training_args
from modeling_sfar.training.run import run_training

REPO = Path(__file__).resolve().parents[2]


def run_train(argv: list[str], callbacks: list | None = None) -> dict:
    """What `scripts/train.py ARGV` runs, in this process."""
    return run_training(*parse_training_args(argv), callbacks=callbacks)


def run_eval(argv: list[str]) -> dict:
    """What `scripts/eval.py ARGV` runs, in this process."""
    return run_evaluation(*parse_evaluation_args(argv))


def train_args(storyboard, tiny_clip_dir, output_dir, *extra) -> list[str]:
    return [
        "--dataset",
        storyboard["dataset"],
        "--subtexts",
        storyboard["subtexts"],
        "--base",
        tiny_clip_dir,
        "--output_dir",
        str(output_dir),
        "--num_frames",
        "4",
        "--num_temporal_layers",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--vision_learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--report_to",
        "none",
        "--seed",
        "0",
        "--flip_probability",
        "0",
        *extra,
    ]


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(folder, "model.safetensors"))


@pytest.mark.slow
def test_train_evaluates_groups_and_saves_a_loadable_model(storyboard, tiny_clip_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    metrics = run_train(
        train_args(storyboard, tiny_clip_dir, out, "--max_steps", "3", "--group_columns", "ambiguous", "timing")
    )
    for key in ("eval_top1", "eval_top5", "eval_ambiguous_top1", "eval_timing=uniform_top1", "train_loss"):
        assert key in metrics, key
    assert 0 <= metrics["eval_top1"] <= metrics["eval_top5"] <= 100
    assert json.loads((out / "all_results.json").read_text())["eval_top1"] == metrics["eval_top1"]
    config = json.loads((out / "config.json").read_text())
    assert list(config["id2label"].values()) == list(STORYBOARDS)
    assert config["auto_map"]["AutoModelForVideoClassification"] == "modeling_sfar.SfarForVideoClassification"
    assert (out / "processor_config.json").is_file() and (out / "modeling_sfar.py").is_file()
    # trained with --flip_probability 0: the augmentation stayed in the training code, the processor ships without it
    for saved in out.glob("*processor*config.json"):
        assert "flip_probability" not in saved.read_text() and "crop_area_min" not in saved.read_text(), saved

    # scripts/eval.py from its command line, as a user runs it: the metrics printed as JSON
    command = ["--model", str(out), "--dataset", storyboard["dataset"], "--output_dir", str(tmp_path / "eval")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "eval.py"), *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    again = json.loads(run.stdout)
    assert again["eval_top1"] == metrics["eval_top1"]
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    from transformers import AttentionInterface

    blocked, calls = AttentionInterface._global_mapping["sfar_sdpa"], []

    def spy(module, query, *args, **kwargs):
        calls.append(query.dtype)
        return blocked(module, query, *args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, "sfar_sdpa", spy)
    half = run_eval(
        ["--model", str(out), "--dataset", storyboard["dataset"], "--output_dir", str(tmp_path / "eval-bf16"),
         "--dtype", "bfloat16"]
    )  # fmt: skip
    assert 0 <= half["eval_top1"] <= 100  # the bfloat16 path runs end to end (its accuracy: test_remote_code)
    assert calls and set(calls) == {torch.bfloat16}  # --dtype bfloat16 selects the blocked attention by name
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    compiled = run_eval(
        ["--model", str(out), "--dataset", storyboard["dataset"], "--output_dir", str(tmp_path / "eval-compiled"),
         "--compile"]
    )  # fmt: skip
    assert counters["stats"]["unique_graphs"] > graphs  # the model was compiled
    assert compiled["eval_top1"] == metrics["eval_top1"] and compiled["eval_top5"] == metrics["eval_top5"]


def test_training_moves_both_learning_rates(storyboard, tiny_clip_dir, tmp_path):
    """The vision tower and the new modules both train, at their own rates; the text tower stays frozen."""
    from modeling_sfar import convert_clip_to_sfar

    subtexts = json.loads(Path(storyboard["subtexts"]).read_text())
    start, _ = convert_clip_to_sfar(
        tiny_clip_dir, list(STORYBOARDS), subtexts, num_frames=4, num_temporal_layers=1, num_subtexts=3
    )
    start = start.state_dict()
    out = tmp_path / "run"
    run_train(
        train_args(
            storyboard, tiny_clip_dir, out, "--max_steps", "2", "--eval_split", "", "--vision_learning_rate", "0"
        )
    )
    end = weights(out)
    assert torch.equal(
        end["sfar.vision_model.embeddings.patch_embedding.weight"],
        start["sfar.vision_model.embeddings.patch_embedding.weight"],
    )
    assert not torch.equal(
        end["sfar.temporal.position_embedding.weight"], start["sfar.temporal.position_embedding.weight"]
    )
    text = [k for k in end if k.startswith("sfar.text_model.")]
    assert text and all(torch.equal(end[k], start[k]) for k in text)


class Interrupt(TrainerCallback):
    """Stop the run like a killed job, after `step` optimizer steps."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(storyboard, tiny_clip_dir, tmp_path):
    common = ("--max_steps", "6", "--eval_split", "")
    run_train(train_args(storyboard, tiny_clip_dir, tmp_path / "whole", *common))
    with pytest.raises(KeyboardInterrupt):
        run_train(train_args(storyboard, tiny_clip_dir, tmp_path / "cut", *common), callbacks=[Interrupt(3)])
    assert (tmp_path / "cut" / "checkpoint-2").is_dir() and not (tmp_path / "cut" / "checkpoint-4").exists()
    run_train(train_args(storyboard, tiny_clip_dir, tmp_path / "cut", *common, "--resume"))
    state = json.loads((tmp_path / "cut" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert whole.keys() == resumed.keys()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)
    # and the resumed part did train: the weights moved after its checkpoint at step 4
    assert not torch.equal(
        weights(tmp_path / "cut" / "checkpoint-4")["sfar.temporal.position_embedding.weight"],
        resumed["sfar.temporal.position_embedding.weight"],
    )


def launch(args: list[str], processes: int, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"), ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    if processes > 1:
        command.append("--multi_gpu")
    run = subprocess.run(
        [*command, str(REPO / "scripts" / "train.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return run


@pytest.mark.slow
def test_two_processes_train_data_parallel_with_the_global_batch_loss(storyboard, tiny_clip_dir, tmp_path):
    """2 x 4 videos per step under accelerate (gloo) = 1 x 8: same first loss, same weights after 2 steps."""
    common = ("--max_steps", "2", "--eval_split", "", "--augment", "false", "--save_strategy", "no")

    def no_saving(args: list[str]) -> list[str]:  # the base arguments save every 2 steps
        index = args.index("--save_steps")
        return args[:index] + args[index + 2 :]

    two = launch(no_saving(train_args(storyboard, tiny_clip_dir, tmp_path / "two", *common)), 2, tmp_path)
    assert "on 2 process(es)" in two.stderr
    one_args = no_saving(train_args(storyboard, tiny_clip_dir, tmp_path / "one", *common))
    one_args[one_args.index("--per_device_train_batch_size") + 1] = "8"
    launch(one_args, 1, tmp_path)

    def history(name):
        return json.loads((tmp_path / name / "trainer_state.json").read_text())["log_history"]

    first_two, first_one = history("two")[0], history("one")[0]
    assert first_two["step"] == first_one["step"] == 1
    assert first_two["loss"] == pytest.approx(first_one["loss"], rel=1e-4)
    one, two_w = weights(tmp_path / "one"), weights(tmp_path / "two")
    # Attention key biases get a zero gradient (softmax ignores a shift shared by all keys): Adam turns rounding noise
    # there into full-size steps of either sign, so they are left out.
    for key in (k for k in one if not k.endswith("k_proj.bias")):
        torch.testing.assert_close(two_w[key], one[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.fixture
def broken(storyboard, tmp_path) -> str:
    """The storyboard dataset with one training video missing and one corrupt."""
    from datasets import load_from_disk

    dataset = load_from_disk(storyboard["dataset"])
    videos = list(dataset["train"]["video"])
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(512))
    videos[0], videos[1] = str(tmp_path / "gone.mp4"), str(corrupt)
    dataset["train"] = dataset["train"].remove_columns("video").add_column("video", videos)
    dataset.save_to_disk(tmp_path / "broken")
    return str(tmp_path / "broken")


def test_bad_videos_are_skipped_and_counted_or_stop_the_run(storyboard, broken, tiny_clip_dir, tmp_path, caplog):
    args = train_args(storyboard, tiny_clip_dir, tmp_path / "run", "--max_steps", "1", "--eval_split", "")
    args[args.index("--dataset") + 1] = broken
    with caplog.at_level("WARNING"):
        run_train(args)
    text = caplog.text
    assert "gone.mp4: file not found" in text and "corrupt.mp4: cannot be decoded" in text
    assert "skipped 2 of 30 videos of split 'train'" in text
    with pytest.raises(ValueError, match=r"(?s)2 of 30 videos of split 'train' cannot be used.*gone.mp4"):
        run_train([*args, "--strict"])


def test_clear_errors_before_training(storyboard, tiny_clip_dir, tmp_path):
    subtexts = json.loads(Path(storyboard["subtexts"]).read_text())
    del subtexts["turn and climb"]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(subtexts))
    args = train_args(storyboard, tiny_clip_dir, tmp_path / "run", "--max_steps", "1")
    args[args.index("--subtexts") + 1] = str(partial)
    with pytest.raises(ValueError, match=r"1 of 10 classes have none \('turn and climb'\)"):
        run_train(args)

    no_subtexts = train_args(storyboard, tiny_clip_dir, tmp_path / "run", "--max_steps", "1")
    del no_subtexts[2:4]
    with pytest.raises(ValueError, match="needs sub-texts"):
        run_train(no_subtexts)

    from datasets import Dataset, load_from_disk

    from modeling_sfar.data.datasets import check_dataset

    test = load_from_disk(storyboard["dataset"])["test"]
    empty = Dataset.from_dict({name: [] for name in test.column_names}, features=test.features)
    with pytest.raises(ValueError, match="split 'test' is empty"):
        check_dataset(empty, "test", 10, multi_label=False)

    with pytest.raises(ValueError, match="--eval_split val: .* has no such split"):
        run_train([*train_args(storyboard, tiny_clip_dir, tmp_path / "run"), "--eval_split", "val"])


def test_label_outside_the_label_set_names_the_video(storyboard, tmp_path):
    from datasets import load_from_disk

    from modeling_sfar.data.datasets import check_dataset

    split = load_from_disk(storyboard["dataset"])["train"]
    split = split.cast_column("label", split.features["label"].__class__(num_classes=20))
    split = split.map(lambda row, i: {"label": 12 if i == 4 else row["label"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"split 'train', video .*\.mp4: label 12 is outside the label set of 10"):
        check_dataset(split, "train", 10, multi_label=False)


def test_few_shot_takes_k_per_class_reproducibly(storyboard):
    from datasets import load_from_disk

    from modeling_sfar.data.datasets import few_shot_subset

    train = load_from_disk(storyboard["dataset"])["train"]
    first, again = few_shot_subset(train, 2, seed=1, num_classes=10), few_shot_subset(train, 2, seed=1, num_classes=10)
    assert sorted(first["label"]) == sorted(list(range(10)) * 2)
    assert first["video"] == again["video"]
    assert first["video"] != few_shot_subset(train, 2, seed=2, num_classes=10)["video"]
    with pytest.raises(ValueError, match="class 'slide right then grow' has 3 training videos, fewer than 4 shots"):
        few_shot_subset(train, 4, seed=0, num_classes=10)


def test_zero_shot_evaluates_on_another_label_set(storyboard, tiny_clip_dir, tmp_path):
    """Train on the storyboard classes, evaluate on a dataset with other class names and its own sub-texts."""
    from datasets import ClassLabel, load_from_disk

    other = load_from_disk(storyboard["dataset"])
    names = [f"other {name}" for name in STORYBOARDS]
    other = other.cast_column("label", ClassLabel(names=names))
    other.save_to_disk(tmp_path / "other")
    subtexts = json.loads(Path(storyboard["subtexts"]).read_text())
    (tmp_path / "other.json").write_text(json.dumps({f"other {k}": v for k, v in subtexts.items()}))
    metrics = run_train(
        train_args(
            storyboard,
            tiny_clip_dir,
            tmp_path / "run",
            "--max_steps",
            "1",
            "--eval_split",
            "",
            "--zero_shot_dataset",
            str(tmp_path / "other"),
            "--zero_shot_subtexts",
            str(tmp_path / "other.json"),
        )
    )
    assert "zero_shot_top1" in metrics
    shutil.rmtree(tmp_path / "run" / "checkpoint-1", ignore_errors=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert list(config["id2label"].values()) == list(STORYBOARDS)  # the saved model keeps its own label set


def test_trained_folder_gets_our_card_and_pushes_only_what_users_need(storyboard, tiny_clip_dir, tmp_path):
    """The card keeps pipeline_tag and the measured results; checkpoints and pickles are never sent."""
    from huggingface_hub import ModelCard

    from modeling_sfar.hub import push

    out = tmp_path / "run"
    metrics = run_train(train_args(storyboard, tiny_clip_dir, out, "--max_steps", "2"))
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "video-classification" and card.data.library_name == "transformers"
    top1 = next(r for r in card.data.eval_results if r.metric_name == "top-1 accuracy")
    assert top1.metric_value == round(metrics["eval_top1"], 2)
    assert 'revision="main"' in card.text

    class Recorder:
        def __init__(self):
            self.calls = []

        def create_repo(self, repo_id, **kwargs):
            self.calls.append(("create_repo", repo_id, kwargs))

        def create_commit(self, repo_id, operations, **kwargs):
            self.calls.append(("create_commit", repo_id, [op.path_in_repo for op in operations]))

    api = Recorder()
    sent = push.push_model(out, "org/sfar-test", api=api, staging=tmp_path / "staged")
    assert [c[:2] for c in api.calls] == [("create_repo", "org/sfar-test"), ("create_commit", "org/sfar-test")]
    assert api.calls[1][2] == sent  # one commit adds exactly the staged files
    assert {"config.json", "model.safetensors", "modeling_sfar.py", "processor_config.json", "README.md"} <= set(sent)
    assert (out / "checkpoint-2").is_dir() and (out / "training_args.bin").is_file()
    assert not [f for f in sent if f.startswith("checkpoint-") or f.endswith((".bin", ".pt", ".pth"))]
    assert push.push_model(out, "org/sfar-test", dry_run=True, staging=tmp_path / "dry") == sent
