"""scripts/train.py --model_type alt and scripts/eval.py on an ALT folder, on the tiny storyboard dataset: ALT's
recipe as the command line's defaults, the entity corpus read from a corpus folder, the saved folder loaded by the
auto classes and with remote code, its card, and the corpus-free baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForVideoClassification

from modeling_sfar.data.entities import entity_text, save_entity_dataset
from modeling_sfar.data.storyboard import STORYBOARDS
from modeling_sfar.families.alt import ALT_RECIPE
from modeling_sfar.training.arguments import parse_training_args
from modeling_sfar.training.run import run_training
from modeling_sfar.training.trainer import parameter_groups
from tests.conftest import BLOCK_MODELING_SFAR, run_python_offline
from tests.scripts.test_train import run_eval

REPO = Path(__file__).resolve().parents[2]
UNITS = {
    "hands": ("the hands of a person", ["body part"]),
    "ball": ("a round object thrown or kicked", ["object"]),
    "field": ("an open area of grass", ["scene"]),
    "walking": ("moving on foot step by step", ["motion"]),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """An entity corpus folder as `datasets_scripts/entity_corpus.py` writes it (the `entities` configuration)."""
    rows = [
        {"unit": unit, "description": text, "text": entity_text(unit, text), "kinds": kinds, "labels": [],
         "default": kinds == ["body part"], "generator": "test", "prompt": "", "lesk": 0, "similarity": 0.0}
        for unit, (text, kinds) in sorted(UNITS.items())
    ]  # fmt: skip
    return save_entity_dataset(tmp_path_factory.mktemp("corpus") / "entities", rows, [], [])


def alt_args(storyboard, tiny_clip_dir, output_dir, *extra) -> list[str]:
    return [
        "--model_type", "alt", "--dataset", storyboard["dataset"], "--base", tiny_clip_dir,
        "--output_dir", str(output_dir), "--num_frames", "4", "--token_merging_r", "3", "--num_decoder_layers", "1",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8", "--learning_rate", "1e-3",
        "--vision_learning_rate", "1e-3", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
        "--seed", "0", "--flip_probability", "0", *extra,
    ]  # fmt: skip


def test_alt_recipe_is_the_default_and_given_flags_win(tmp_path):
    common = ["--dataset", "d", "--output_dir", str(tmp_path / "run")]
    sfar = parse_training_args(common).training
    assert (sfar.learning_rate, sfar.vision_learning_rate, sfar.weight_decay) == (5e-5, 5e-6, 0.2)
    for flag in (["--model_type", "alt"], ["--model_type=alt"]):
        run = parse_training_args([*common, *flag])
        model_args, args = run.model, run.training
        assert model_args.model_type == "alt"
        for name, value in ALT_RECIPE.items():
            assert getattr(args, name) == value, name  # section 3.4: 8e-6 / 8e-5, 0.001, 30 epochs, 5 warm-up
    given = ["--model_type", "alt", "--learning_rate", "1e-3", "--weight_decay", "0"]
    args = parse_training_args([*common, *given]).training
    assert (args.learning_rate, args.weight_decay, args.vision_learning_rate) == (1e-3, 0.0, 8e-6)
    # `--model` (a checkpoint) is not an abbreviation of `--model_type`: SFAR's defaults stay
    run = parse_training_args([*common, "--model", "alt"])
    model_args, args = run.model, run.training
    assert model_args.model_type == "sfar" and args.learning_rate == 5e-5
    # a JSON file of arguments gets the recipe where it sets nothing
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"dataset": "d", "output_dir": str(tmp_path / "run"), "model_type": "alt",
                                "num_train_epochs": 2}))  # fmt: skip
    args = parse_training_args([str(path)]).training
    assert (args.num_train_epochs, args.learning_rate, args.weight_decay) == (2, 8e-5, 0.001)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model_type", "vit"], "--model_type must be one of"),
        (["--model_type", "alt"], "give --entities"),
        (["--model_type", "alt", "--entities", "c", "--no_entity_corpus"], "exclude each other"),
        (["--model_type", "alt", "--no_entity_corpus", "--subtexts", "s.json"], "--subtexts: SFAR's"),
        (["--model_type", "alt", "--no_entity_corpus", "--variant", "fine"], "--variant: SFAR's"),
        (["--model_type", "alt", "--no_entity_corpus", "--entity_kinds", "object"], "--entity_kinds selects"),
        (["--entities", "c"], "--entities: ALT's, not SFAR's"),
        (["--model_type", "alt", "--entities", "/nowhere/corpus"], "--entities /nowhere/corpus: no such folder"),
    ],
)
def test_alt_flags_are_checked_before_any_model_is_built(storyboard, tiny_clip_dir, tmp_path, extra, message):
    argv = ["--dataset", storyboard["dataset"], "--base", tiny_clip_dir, "--output_dir", str(tmp_path), *extra]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run_training(*parse_training_args(argv))
    assert not (tmp_path / "model.safetensors").exists()


def test_an_sfar_folder_is_refused_as_an_alt_checkpoint(storyboard, tiny_clip_dir, converted, tmp_path):
    model, processor = converted
    model.save_pretrained(tmp_path / "sfar")
    processor.save_pretrained(tmp_path / "sfar")
    argv = ["--model_type", "alt", "--no_entity_corpus", "--model", str(tmp_path / "sfar"), "--dataset",
            storyboard["dataset"], "--output_dir", str(tmp_path / "run")]  # fmt: skip
    with pytest.raises(ValueError, match=r"is a 'sfar' checkpoint; --model_type alt trains 'alt_video' models"):
        run_training(*parse_training_args(argv))


@pytest.mark.slow
def test_train_alt_with_a_corpus_saves_a_folder_the_auto_classes_load(
    storyboard, tiny_clip_dir, corpus, video_path, tmp_path
):
    out = tmp_path / "alt"
    metrics = run_training(*parse_training_args(alt_args(storyboard, tiny_clip_dir, out, "--entities", str(corpus),
                                                         "--max_steps", "2")))  # fmt: skip
    assert 0 <= metrics["eval_top1"] <= metrics["eval_top5"] <= 100 and "train_loss" in metrics
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "alt_video" and config["use_entity_corpus"] is True
    assert config["auto_map"]["AutoModelForVideoClassification"] == "modeling_alt.AltForVideoClassification"
    assert config["entities"] == [entity_text(unit, text) for unit, (text, _) in sorted(UNITS.items())]
    assert list(config["id2label"].values()) == list(STORYBOARDS)
    assert config["token_merging_r"] == 3 and config["num_decoder_layers"] == 1
    assert {"modeling_alt.py", "token_merging.py", "processor_config.json"} <= {p.name for p in out.iterdir()}
    card = (out / "README.md").read_text()
    assert "ALT (Align before Adapt" in card and "4 text entities" in card and "- alt" in card
    assert "sub-texts" not in card  # not SFAR's card

    # the vision tower has its own learning rate (the "alt." prefix is read like SFAR's "sfar.")
    model = AutoModelForVideoClassification.from_pretrained(out, use_safetensors=True)
    assert type(model).__name__ == "AltForVideoClassification"
    groups = parameter_groups(model, 8e-5, 8e-6, 0.001)
    vision = {id(p) for g in groups if g["lr"] == 8e-6 for p in g["params"]}
    assert id(model.alt.vision_model.embeddings.patch_embedding.weight) in vision
    assert not any(id(p) in vision for p in [*model.alt.decoder.parameters(), *model.alt.alignment.parameters()])

    # scripts/eval.py on the folder, from its command line: the same top-1 as the run's evaluation
    command = ["--model", str(out), "--dataset", storyboard["dataset"], "--output_dir", str(tmp_path / "eval")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "eval.py"), *command], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["eval_top1"] == metrics["eval_top1"]
    with pytest.raises(ValueError, match="--subtexts: SFAR's, not ALT's"):
        run_eval(["--model", str(out), "--dataset", storyboard["dataset"], "--subtexts", storyboard["subtexts"]])

    # a trained ALT continues on the same classes with `--model`, keeping its entities; its shape flags are refused
    again = tmp_path / "again"
    argv = ["--model_type", "alt", "--model", str(out), "--dataset", storyboard["dataset"], "--output_dir",
            str(again), "--max_steps", "1", "--eval_split", "", "--report_to", "none",
            "--save_strategy", "no"]  # fmt: skip
    with pytest.raises(ValueError, match=r"--token_merging_r shape a new model; --model .* brings its own"):
        run_training(*parse_training_args([*argv, "--token_merging_r", "2"]))
    run_training(*parse_training_args(argv))
    continued = json.loads((again / "config.json").read_text())
    assert continued["entities"] == config["entities"] and continued["token_merging_r"] == 3

    # the folder loads with remote code in a process without this package, and grounds regions in the corpus
    script = BLOCK_MODELING_SFAR + (
        "import sys, torch\n"
        "from transformers import AutoModelForVideoClassification, AutoProcessor\n"
        "folder, video = sys.argv[1], sys.argv[2]\n"
        "model = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True).eval()\n"
        "processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)\n"
        "with torch.no_grad():\n"
        "    out = model(**processor(videos=video))\n"
        "assert type(model).__name__ == 'AltForVideoClassification', type(model)\n"
        "print(model.config.entities[int(out.entity_indices[0, 0, 1])])\n"
    )
    (tmp_path / "check.py").write_text(script)
    run = run_python_offline(["check.py", str(out), video_path], tmp_path, tmp_path)
    assert run.stdout.strip().splitlines()[-1] in config["entities"]


def test_train_alt_without_a_corpus_and_zero_shot_keeps_the_corpus_choice(storyboard, tiny_clip_dir, tmp_path):
    out = tmp_path / "alt-free"
    metrics = run_training(*parse_training_args(alt_args(
        storyboard, tiny_clip_dir, out, "--no_entity_corpus", "--max_steps", "1", "--eval_split", "",
        "--zero_shot_dataset", storyboard["dataset"],
    )))  # fmt: skip
    assert 0 <= metrics["zero_shot_top1"] <= 100
    config = json.loads((out / "config.json").read_text())
    assert config["use_entity_corpus"] is False and not config.get("entities")
    card = (out / "README.md").read_text()
    assert "without an entity corpus" in card
    assert "alt.learnable_queries" in load_file(out / "model.safetensors")


def test_a_multi_label_dataset_is_refused_for_alt(corpus, tiny_clip_dir, video_path, tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    features = Features({"video": Value("string"), "labels": Sequence(ClassLabel(names=["a", "b"]))})
    split = Dataset.from_dict({"video": [video_path], "labels": [[0, 1]]}, features=features)
    DatasetDict(train=split, test=split).save_to_disk(tmp_path / "charades")
    argv = ["--model_type", "alt", "--entities", str(corpus), "--dataset", str(tmp_path / "charades"), "--base",
            tiny_clip_dir, "--output_dir", str(tmp_path / "run")]  # fmt: skip
    with pytest.raises(ValueError, match="is multi-label; ALT is trained on single-label datasets"):
        run_training(*parse_training_args(argv))
