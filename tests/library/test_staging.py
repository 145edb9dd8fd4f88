"""scripts/push_to_hub.py never deletes what it did not create (issue 13, part 5): a staging folder that is, contains or
lies inside the model folder, or that holds files no staging wrote, is refused; a dry run stages in the folder it is
given, or in one of its own that it removes; a name that is not a Hub repo id is refused, in a dry run too."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from modeling_sfar.hub.staging import STAGING_MARKER, prepare_staging, staged_files

REPO = Path(__file__).resolve().parents[2]

from modeling_sfar.hub import push  # noqa: E402


@pytest.fixture
def model_folder(tmp_path) -> Path:
    """A folder shaped like a trained run (the staging reads only names and bytes)."""
    folder = tmp_path / "runs" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "sfar", "id2label": {"0": "a"}}))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "README.md").write_text("card")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def stage(load_script):
    return functools.partial(_stage, load_script("push_to_hub"))


def _stage(push_to_hub, folder, staging, *extra) -> list[str]:
    """Stage from the command line; without --dry_run only staging is run (it is what deletes), nothing is sent."""
    if "--dry_run" not in extra:
        return push.stage_model_repo(folder, staging)
    return push_to_hub.main(["model", "--folder", str(folder), "--repo_id", "org/m", "--staging", str(staging), *extra])


@pytest.mark.parametrize("where", ["the folder itself", "inside the folder", "a parent of the folder"])
def test_staging_over_the_model_folder_is_refused_and_nothing_is_deleted(model_folder, where, tmp_path, stage):
    staging = {
        "the folder itself": model_folder,
        "inside the folder": model_folder / "hub",
        "a parent of the folder": model_folder.parent,
    }[where]
    before = snapshot(tmp_path)
    relation = {"the folder itself": "is", "inside the folder": "lies inside", "a parent of the folder": "contains"}
    for dry_run in ([], ["--dry_run"]):
        with pytest.raises(ValueError, match=f"--staging {staging} {relation[where]} --folder {model_folder}"):
            stage(model_folder, staging, *dry_run)
    assert snapshot(tmp_path) == before


def test_a_folder_of_someone_else_is_refused(model_folder, tmp_path, stage):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    for dry_run in ([], ["--dry_run"]):
        with pytest.raises(ValueError, match=rf"--staging {other}: the folder holds files that no earlier staging"):
            stage(model_folder, other, *dry_run)
    assert (other / "thesis.tex").read_text() == "years of work"
    with pytest.raises(ValueError, match="a file, not a folder"):
        stage(model_folder, other / "thesis.tex")


def test_an_earlier_staging_is_replaced_but_files_added_to_it_are_not(model_folder, tmp_path, stage):
    staging = tmp_path / "staged"
    first = stage(model_folder, staging)
    assert first == ["README.md", "config.json", "model.safetensors"]
    assert (staging / STAGING_MARKER).is_file()

    (model_folder / "README.md").unlink()  # the repo changes: the next staging holds exactly the new files
    (model_folder / "all_results.json").write_text("{}")
    assert stage(model_folder, staging) == ["all_results.json", "config.json", "model.safetensors"]
    assert not (staging / "README.md").exists()

    (staging / "mine.txt").write_text("added by hand")
    with pytest.raises(ValueError, match=r"holds files that no earlier staging wrote \(mine.txt\)"):
        stage(model_folder, staging)
    assert (staging / "mine.txt").is_file() and (staging / "config.json").is_file()


def test_a_dry_run_reuses_the_staging_it_is_given(model_folder, tmp_path, caplog, stage):
    staging = tmp_path / "staged"
    stage(model_folder, staging)
    (model_folder / "all_results.json").write_text("{}")
    with caplog.at_level("INFO"):
        files = stage(model_folder, staging, "--dry_run")
    assert files == ["README.md", "all_results.json", "config.json", "model.safetensors"]
    assert staged_files(staging) == files  # kept, to be read: the earlier staging's own files replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "staged"]  # no other folder
    assert f"the repo is staged in {staging}" in caplog.text


@pytest.mark.parametrize("kind", ["model", "dataset", "space"])
def test_dry_runs_without_a_staging_folder_leave_nothing_behind(model_folder, tmp_path, load_script, kind):
    source = {"model": model_folder, "dataset": tmp_path / "subtexts", "space": tmp_path / "space"}[kind]
    if kind == "dataset":
        from modeling_sfar.data.subtexts import save_subtext_dataset

        row = {"label": "jump", "subtexts": ["up", "down"], "tpp": 1.0, "generator": "g", "prompt": "p"}
        save_subtext_dataset(source, [row], [{**row, "selected": True, "answer": ""}])
    elif kind == "space":
        source.mkdir()
        (source / "app.py").write_text("import plots\n")
    before, beside = snapshot(tmp_path), sorted(p.name for p in source.parent.iterdir())
    for _ in range(2):
        files = load_script("push_to_hub").main([kind, "--folder", str(source), "--repo_id", "org/m", "--dry_run"])
        assert files
    assert snapshot(tmp_path) == before and sorted(p.name for p in source.parent.iterdir()) == beside


@pytest.mark.parametrize("repo_id", ["not a repo id", "org/sub/name", "org/a--b"])
def test_a_bad_repo_id_is_refused_in_a_dry_run_too(model_folder, tmp_path, load_script, repo_id):
    before = snapshot(tmp_path)
    for kind in ("model", "dataset", "space"):
        with pytest.raises(ValueError, match=rf"--repo_id '{repo_id}': not a Hub repo id"):
            load_script("push_to_hub").main([kind, "--folder", str(model_folder), "--repo_id", repo_id, "--dry_run"])
    assert snapshot(tmp_path) == before


def test_a_bad_push_to_hub_stops_training_before_it_starts(tmp_path):
    from modeling_sfar.training.arguments import VideoTrainingArguments

    with pytest.raises(ValueError, match="--push_to_hub 'not a repo id': not a Hub repo id"):
        VideoTrainingArguments(output_dir=str(tmp_path), push_to_hub="not a repo id")


def test_a_bad_push_to_hub_stops_a_generator_before_it_asks_the_language_model():
    """The generators' --push_to_hub is checked when their arguments are read, not after hours of generation."""
    from modeling_sfar.generation.entity_corpus import EntityCorpusArguments
    from modeling_sfar.generation.subtexts import SubtextGenerationArguments

    for arguments in (SubtextGenerationArguments, EntityCorpusArguments):
        with pytest.raises(ValueError, match="--push_to_hub 'not a repo id': not a Hub repo id"):
            arguments(classes="classes.txt", model="org/llm", output="out", push_to_hub="not a repo id")


def test_a_dataset_staging_is_guarded_the_same_way(tmp_path, load_script):
    from modeling_sfar.data.subtexts import save_subtext_dataset

    row = {"label": "jump", "subtexts": ["up", "down"], "tpp": 1.0, "generator": "g", "prompt": "p"}
    save_subtext_dataset(tmp_path / "subtexts", [row], [{**row, "selected": True, "answer": ""}])
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="contains --folder"):
        load_script("push_to_hub").main(["dataset", "--folder", str(tmp_path / "subtexts"), "--repo_id", "o/s",
                                         "--staging",
                          str(tmp_path), "--dry_run"])  # fmt: skip
    assert snapshot(tmp_path) == before


def test_an_empty_or_new_folder_is_taken_over(model_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_staging(model_folder, empty) == empty.resolve()
    assert prepare_staging(model_folder, tmp_path / "new" / "deep") == (tmp_path / "new" / "deep").resolve()
