"""The command lines of the dataset and generator leaves and of `push_to_hub.py`: HfArgumentParser over argument
dataclasses, every option with a help text and its default, and the documented command lines (README.md, docs/)
still parsed as they were written."""

from __future__ import annotations

import importlib
import re

import pytest

from modeling_sfar.generation.backends import SamplingOptions

LEAVES = [
    "datasets_scripts.generate_subtexts",
    "datasets_scripts.entity_corpus",
    "datasets_scripts.build_dataset",
    "datasets_scripts.build_storyboard",
    "scripts.push_to_hub",
]


def leaf(name: str, load_script):
    folder, _, module = name.partition(".")
    return load_script(module) if folder == "scripts" else importlib.import_module(name)


def help_entries(text: str) -> dict[str, str]:
    """Option -> its help text, from argparse's --help (an entry starts with a line "  -x" or "  --flag ...")."""
    entries, current = {}, None
    for line in text.split("options:", 1)[1].splitlines():
        match = re.match(r"^  (--?[\w-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = re.sub(r"^  \S.*?(\s{2,}|$)", "", line, count=1)
        elif current and line.startswith(" " * 6):
            entries[current] += " " + line.strip()
    return entries


@pytest.mark.parametrize("name", LEAVES)
def test_every_option_has_a_help_text_with_its_default(name, load_script, capsys):
    with pytest.raises(SystemExit) as exit_:
        leaf(name, load_script).main(["--help"])
    assert exit_.value.code == 0
    entries = help_entries(capsys.readouterr().out)
    entries.pop("-h")
    assert len(entries) >= 4, entries
    for option, text in entries.items():
        assert "(default:" in text, f"{name} {option}: no default in its help ({text!r})"
        assert text.split("(default:")[0].strip(), f"{name} {option}: no help text"


def test_the_generators_documented_command_lines_parse(load_script):
    from datasets_scripts.entity_corpus import parse_args as entity_args
    from datasets_scripts.generate_subtexts import parse_args as subtext_args

    # README.md and docs/subtexts.md: --model repeated; docs/subtext_generation.md: the vLLM flags
    args, backend = subtext_args(
        ["--classes", "data/kinetics400", "--model", "llava-hf/llava-v1.6-34b-hf", "--model",
         "meta-llama/Llama-2-7b-chat-hf", "--clip", "openai/clip-vit-base-patch16", "--output", "subtexts/k400",
         "--push_to_hub", "org/sfar-subtexts-k400", "--kv_cache_gib", "4", "--enforce_eager", "--private"]
    )  # fmt: skip
    assert args.model == ["llava-hf/llava-v1.6-34b-hf", "meta-llama/Llama-2-7b-chat-hf"]
    assert (args.push_to_hub, args.private) == ("org/sfar-subtexts-k400", True)
    assert (backend.kv_cache_gib, backend.enforce_eager) == (4.0, True)
    # the defaults the docs state: temperature 0.7, top-p 0.95, 512 new tokens, seed 0, 3 attempts, 4 steps
    assert args.sampling() == SamplingOptions() and args.num_subtexts == 4 and args.chunk_size == 256
    assert (backend.backend, backend.batch_size, backend.dtype) == ("auto", 8, "auto")
    args, backend = entity_args(
        ["--classes", "data/kinetics400", "--model", "meta-llama/Llama-2-7b-chat-hf", "--output", "corpus/actions",
         "--push_to_hub", "org/alt-entities", "--no_default_body_parts", "--backend", "transformers"]
    )  # fmt: skip
    assert args.no_default_body_parts and backend.backend == "transformers" and args.max_new_tokens == 256


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max_attempts", "0"], "--max_attempts must be at least 1, got 0"),
        (["--num_subtexts", "0"], "--num_subtexts must be at least 1, got 0"),
        (["--backend", "openai"], "argument --backend: invalid choice: 'openai'"),
        (["--temprature", "1"], "Some specified arguments are not used by the HfArgumentParser: ['--temprature', '1']"),
    ],
)
def test_a_refused_value_is_a_usage_error_naming_the_flag(argv, message, capsys):
    from datasets_scripts.generate_subtexts import parse_args

    with pytest.raises(SystemExit) as exit_:
        parse_args(["--classes", "c.txt", "--model", "m", "--output", "o", *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_build_dataset_reads_the_benchmark_first(tmp_path, capsys):
    from datasets_scripts.build_dataset import main

    with pytest.raises(SystemExit):
        main(["ucf100", "--root", str(tmp_path), "--output", str(tmp_path / "o")])
    assert "argument benchmark: invalid choice: 'ucf100'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ucf101", "--output", str(tmp_path / "o")])
    assert "the following arguments are required: --root" in capsys.readouterr().err


def test_push_to_hub_keeps_its_command_line(load_script, monkeypatch, tmp_path):
    push_to_hub = load_script("push_to_hub")
    seen = {}

    def fake_push_model(folder, repo_id, card, dry_run, widget_videos, staging, private):
        seen.update(folder=folder, repo_id=repo_id, dry_run=dry_run, videos=widget_videos, private=private)
        return ["README.md"]

    monkeypatch.setattr(push_to_hub, "push_model", fake_push_model)
    monkeypatch.setattr(push_to_hub, "widget_examples", lambda folder, videos: [])
    monkeypatch.setattr(push_to_hub, "model_card", lambda *args, **kwargs: "card")
    # docs/hub.md's command: the widget videos repeated, --dry_run last
    push_to_hub.main(
        ["model", "--folder", str(tmp_path), "--repo_id", "org/sfar-vitb16-ucf101", "--dataset_name", "ucf101",
         "--widget_video", "examples/archery.mp4", "--widget_video", "examples/diving.mp4", "--dry_run"]
    )  # fmt: skip
    assert seen == {
        "folder": str(tmp_path),
        "repo_id": "org/sfar-vitb16-ucf101",
        "dry_run": True,
        "videos": ["examples/archery.mp4", "examples/diving.mp4"],
        "private": False,
    }
