"""Every card renders from `hub_cards/` and parses back with the metadata the Hub needs; staging writes exactly the
repo's files; a push sends exactly those files in one commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import DatasetCard, ModelCard, RepoCard

REPO = Path(__file__).resolve().parents[2]

from modeling_sfar.hub import cards, push  # noqa: E402
from modeling_sfar.hub.staging import STAGING_MARKER  # noqa: E402
from modeling_sfar.remote_code.modeling_sfar import SHIPPED_FILES  # noqa: E402

SAVED = {
    *SHIPPED_FILES,
    "config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


@pytest.fixture(scope="module")
def trained(converted, tmp_path_factory) -> Path:
    """A saved model folder as train.py leaves it: weights, code, processor, results, a checkpoint and pickles."""
    model, processor = converted
    folder = tmp_path_factory.mktemp("trained") / "run"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "all_results.json").write_text(json.dumps({"eval_top1": 71.25, "eval_top5": 93.5}))
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    torch.save({"a": 1}, folder / "training_args.bin")
    return folder


def test_model_card_renders_and_parses_back_with_widgets_from_the_model(trained, converted, video_path, tmp_path):
    examples = cards.widget_examples(trained, [video_path])
    model, processor = converted
    with torch.no_grad():
        scores = model.eval()(**processor(videos=video_path)).logits.softmax(-1)[0]
    expected = [model.config.id2label[i] for i in scores.topk(4).indices.tolist()]
    assert [p["label"] for p in examples[0]["output"]] == expected  # computed by the model at push time

    metrics = json.loads((trained / "all_results.json").read_text())
    card = cards.model_card(
        trained, "org/sfar-test", "openai/clip-vit-base-patch16", "org/ucf101-index", metrics,
        revision="0123abc", examples=examples, subtexts="org/sfar-subtexts-ucf101",
    )  # fmt: skip
    card.save(tmp_path / "README.md")
    data = ModelCard.load(tmp_path / "README.md").data
    assert data.library_name == "transformers" and data.pipeline_tag == "video-classification"
    assert data.license == "apache-2.0" and data.base_model == "openai/clip-vit-base-patch16"
    assert {"sfar", "video-classification", "custom_code"} <= set(data.tags)
    assert data.datasets == ["org/ucf101-index", "org/sfar-subtexts-ucf101"]
    by_name = {r.metric_name: r.metric_value for r in data.eval_results}
    assert by_name == {"top-1 accuracy": 71.25, "top-5 accuracy": 93.5}
    (widget,) = data.widget
    assert widget["src"].endswith("/org/sfar-test/resolve/0123abc/examples/clip.mp4")
    assert widget["output"] == examples[0]["output"]
    text = ModelCard.load(tmp_path / "README.md").text
    assert 'revision="0123abc"' in text and "trust_remote_code=True" in text
    assert "| test | top-1 accuracy | 71.2 |" in text or "| test | top-1 accuracy | 71.3 |" in text
    assert "| Kinetics-400 | top-1 / top-5 (8x224, 1 view) | 84.5 / 96.7 | Table 1 |" in text
    assert f"`examples/clip.mp4` | {expected[0]} (" in text
    assert "## Limitations" in text and "@inproceedings{sfar2025" in text


@pytest.mark.parametrize(
    "family, options, shown, not_shown",
    [
        ("sfar", {}, ["subtexts=subtexts", "return_frame_weights=True", "generate_subtexts.py"], ["return_entities"]),
        ("sfar", {"variant": "actionclip"}, ['candidate_labels=["surfing", "skateboarding"])'],
         ["subtexts=", "return_frame_weights", "generate_subtexts.py"]),
        ("alt", {}, ["return_entities=True", "entities="], ["subtexts", "return_frame_weights"]),
        ("alt", {"use_entity_corpus": False}, ['candidate_labels=["surfing", "skateboarding"])'],
         ["return_entities", "entities=", "subtexts"]),
    ],
)  # fmt: skip
def test_every_model_card_shows_the_zero_shot_snippet_its_model_takes(tiny_clip_dir, tmp_path, family, options, shown,
                                                                      not_shown):  # fmt: skip
    """The card's zero-shot section calls `pipeline("zero-shot-video-classification")` by the repo id and revision with
    what the model reads: sub-texts and frame weights for SFAR with a fusion that weighs frames, the labels alone for
    mean pooling; ALT's grounded entities when it has a corpus (`test_hub_offline.py` runs the snippets by repo id)."""
    from modeling_sfar import convert_clip_to_alt, convert_clip_to_sfar
    from tests.conftest import ENTITIES, LABELS, SUBTEXTS

    torch.manual_seed(0)
    if family == "sfar":
        texts = None if options else SUBTEXTS
        model, processor = convert_clip_to_sfar(tiny_clip_dir, LABELS, texts, num_frames=4, num_temporal_layers=1,
                                                **options)  # fmt: skip
    else:
        texts = None if options else ENTITIES
        model, processor = convert_clip_to_alt(tiny_clip_dir, LABELS, texts, num_frames=4, **options)
    model.save_pretrained(tmp_path / "run")
    text = str(cards.model_card(tmp_path / "run", "org/zero-shot", None, "x", {}, revision="0123abc"))
    section = text[text.index("### Zero-shot") : text.index("## Results")]
    assert 'pipeline(\n    "zero-shot-video-classification", model="org/zero-shot", revision="0123abc"' in section
    for snippet in shown:
        assert snippet in section, snippet
    for snippet in not_shown:
        assert snippet not in section, snippet


def test_the_card_takes_base_model_from_the_conversion_and_one_licence_for_the_project(trained, tmp_path):
    """The conversion records its source in the config; a local source is named in the text, not as `base_model`;
    the card, the Space and setup.cfg state one licence."""
    import configparser

    config = json.loads((trained / "config.json").read_text())
    assert Path(config["converted_from"]).is_dir()  # the fixture converts a local tiny CLIP
    card = cards.model_card(trained, "org/sfar-test", None, "x", {})
    assert card.data.base_model is None
    assert f"fine-tuned from\na local\ncheckpoint (`{config['converted_from']}`)" in card.text
    hub_source = tmp_path / "hub-source"
    hub_source.mkdir()
    (hub_source / "config.json").write_text(json.dumps({**config, "converted_from": "google/some-clip"}))
    card = cards.model_card(hub_source, "org/sfar-test", None, "x", {})
    assert card.data.base_model == "google/some-clip" and "(https://huggingface.co/google/some-clip)" in card.text

    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    project = setup["metadata"]["license"].lower()
    assert card.data.license == project == cards.LICENSE
    assert RepoCard.load(REPO / "space" / "README.md").data.license == project


def test_subtext_dataset_card_renders_and_parses_back(tmp_path):
    from modeling_sfar.generation.backends import SamplingOptions
    from modeling_sfar.generation.subtexts import subtext_card

    row = {"label": "jump", "subtexts": ["up", "down"], "tpp": 2.5, "generator": "m", "prompt": "table6-q1"}
    records = [{"generator": "m", "subtexts": None, "rejected": "empty answer"}]
    card = subtext_card(
        [row], [{**row, "selected": True, "answer": "a"}], records, [{"model": "m", "revision": "abc"}],
        SamplingOptions(), "openai/clip-vit-base-patch16", "This is a video about {}", 2, repo_id="org/subtexts",
    )  # fmt: skip
    card.save(tmp_path / "README.md")
    loaded = DatasetCard.load(tmp_path / "README.md")
    data = loaded.data.to_dict()
    assert data["task_categories"] == ["video-classification"] and data["license"] == "apache-2.0"
    assert [c["config_name"] for c in data["configs"]] == ["subtexts", "candidates"]
    assert data["configs"][0]["data_files"] == [{"split": "train", "path": "subtexts/*.parquet"}]
    assert 'load_dataset("org/subtexts", "subtexts", split="train")' in loaded.text
    assert "| `m` | `abc` | 1 |" in loaded.text and "| empty answer | 1 | `m` 1 |" in loaded.text
    assert "1 of 1 answers were refused" in loaded.text


@pytest.mark.parametrize("builder", ["ucf101", "charades"])
def test_video_dataset_card_renders_and_parses_back(builder, tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    from modeling_sfar.data.benchmarks import BuildReport, dataset_card

    names = ["ApplyEyeMakeup", "YoYo"]
    if builder == "charades":
        features = Features({"video": Value("string"), "video_id": Value("string"),
                             "labels": Sequence(ClassLabel(names=names))})  # fmt: skip
        row = {"video": ["a.mp4"], "video_id": ["a"], "labels": [[0, 1]]}
    else:
        features = Features({"video": Value("string"), "video_id": Value("string"), "label": ClassLabel(names=names)})
        row = {"video": ["a.mp4"], "video_id": ["a"], "label": [1]}
    dataset = DatasetDict(
        train=Dataset.from_dict(row, features=features), test=Dataset.from_dict(row, features=features)
    )
    report = BuildReport(kept={"train": 1, "test": 1}, missing={"train": ["b"], "test": []})
    dataset_card(builder, dataset, report, "data/x", split=1 if builder == "ucf101" else None).save(tmp_path / "c.md")
    card = DatasetCard.load(tmp_path / "c.md")
    data = card.data.to_dict()
    assert data["task_categories"] == ["video-classification"] and data["license"] == "other"
    assert data["license_link"].startswith("https://") and builder in data["tags"]
    assert ("multi-label" in data["tags"]) == (builder == "charades")
    assert "| train | 1 | 1 |" in card.text and "| test | 1 | 0 |" in card.text
    assert "The videos are not part of this dataset" in card.text
    assert ("`labels` (list of class labels)" in card.text) == (builder == "charades")


def test_the_space_card_declares_a_gradio_app():
    card = RepoCard.load(REPO / "space" / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    requirements = (REPO / "space" / "requirements.txt").read_text()
    for package in ("torch", "transformers", "gradio", "av", "matplotlib"):
        assert package in requirements


def test_staging_writes_exactly_the_repo_and_a_push_sends_it_in_one_commit(trained, video_path, tmp_path):
    card = cards.model_card(trained, "org/sfar-test", "openai/clip-vit-base-patch16", "x", {})
    staged = push.stage_model_repo(trained, tmp_path / "staged", card, [video_path])
    assert set(staged) == SAVED | {"README.md", "all_results.json", "examples/clip.mp4"}
    on_disk = {p.relative_to(tmp_path / "staged").as_posix() for p in (tmp_path / "staged").rglob("*") if p.is_file()}
    assert on_disk == set(staged) | {STAGING_MARKER}  # the marker that says the folder is the staging's own
    assert "auto_map" in json.loads((tmp_path / "staged" / "config.json").read_text())

    class Recorder:
        def __init__(self):
            self.calls = []

        def create_repo(self, repo_id, **kwargs):
            self.calls.append(("create_repo", repo_id, kwargs["repo_type"]))

        def create_commit(self, repo_id, operations, **kwargs):
            self.calls.append(("create_commit", repo_id, kwargs["repo_type"]))
            self.operations = operations

    api = Recorder()
    sent = push.push_model(trained, "org/sfar-test", card, api=api, widget_videos=[video_path],
                                  staging=tmp_path / "push")  # fmt: skip
    assert api.calls == [("create_repo", "org/sfar-test", "model"), ("create_commit", "org/sfar-test", "model")]
    assert sorted(op.path_in_repo for op in api.operations) == sent == staged
    for op in api.operations:  # every operation adds the staged bytes
        assert Path(op.path_or_fileobj).read_bytes() == (tmp_path / "staged" / op.path_in_repo).read_bytes()


def test_dry_run_from_the_command_line_lists_and_writes_the_dataset_repo(tmp_path, capsys, load_script):
    from modeling_sfar.data.subtexts import save_subtext_dataset

    row = {"label": "jump", "subtexts": ["up", "down"], "tpp": 1.0, "generator": "g", "prompt": "p"}
    save_subtext_dataset(tmp_path / "subtexts", [row], [{**row, "selected": True, "answer": ""}])
    files = load_script("push_to_hub").main(
        ["dataset", "--folder", str(tmp_path / "subtexts"), "--repo_id", "org/s", "--dry_run"]
    )
    assert files == ["README.md", "candidates/train-00000-of-00001.parquet", "subtexts/train-00000-of-00001.parquet"]
    assert capsys.readouterr().out.split() == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subtexts"]  # the dry run's staging folder is gone

    class Recorder:
        def create_repo(self, repo_id, **kwargs):
            self.repo = (repo_id, kwargs["repo_type"])

        def create_commit(self, repo_id, operations, **kwargs):
            self.commit = (repo_id, kwargs["repo_type"], [op.path_in_repo for op in operations])

    api = Recorder()
    assert push.push_dataset(tmp_path / "subtexts", "org/s", api=api, staging=tmp_path / "push") == files
    assert api.repo == ("org/s", "dataset") and api.commit == ("org/s", "dataset", files)


def test_widget_videos_of_one_name_keep_their_own_file_and_src(trained, tmp_path):
    from modeling_sfar.testing_utils import write_video

    videos = []
    for folder, seed in (("archery", 0), ("diving", 1)):
        (tmp_path / folder).mkdir()
        videos.append(str(write_video(tmp_path / folder / "clip.mp4", num_frames=12, seed=seed)))
    examples = cards.widget_examples(trained, videos)
    assert [e["file"] for e in examples] == ["examples/archery-clip.mp4", "examples/diving-clip.mp4"]
    assert [e["title"] for e in examples] == ["archery-clip", "diving-clip"]
    card = cards.model_card(trained, "org/sfar-test", None, "x", {}, examples=examples)
    card.save(tmp_path / "README.md")
    widgets = ModelCard.load(tmp_path / "README.md").data.widget
    assert [w["src"].rsplit("/", 1)[1] for w in widgets] == ["archery-clip.mp4", "diving-clip.mp4"]
    assert [w["output"] for w in widgets] == [e["output"] for e in examples]
    staged = push.stage_model_repo(trained, tmp_path / "staged", card, videos)
    assert {"examples/archery-clip.mp4", "examples/diving-clip.mp4"} <= set(staged)
    for video, example in zip(videos, examples, strict=True):  # each widget's file is its own video
        assert (tmp_path / "staged" / example["file"]).read_bytes() == Path(video).read_bytes()


def test_widget_file_names_are_unique_stable_and_readable():
    assert cards.widget_files(["/v/a.mp4", "/w/b.mp4"]) == ["examples/a.mp4", "examples/b.mp4"]
    # as few folders as tell videos of one name apart; the same file twice is numbered
    assert cards.widget_files(["/d/a/x/v.mp4", "/d/b/x/v.mp4", "/d/c/y/v.mp4", "/d/c/y/v.mp4"]) == [
        "examples/a-x-v.mp4", "examples/b-x-v.mp4", "examples/y-v.mp4", "examples/y-v-2.mp4",
    ]  # fmt: skip
    # a folder with a space gives a src the Hub can resolve
    assert cards.quote(cards.widget_files(["/my videos/v.mp4", "/d/v.mp4"])[0]) == "examples/my%20videos-v.mp4"


def test_pickled_weights_are_never_pushed(trained, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    torch.save({"w": torch.zeros(1)}, bare / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="no safetensors weights to push"):
        push.stage_model_repo(bare, tmp_path / "staged")
