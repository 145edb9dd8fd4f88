"""ALT and token merging on the storyboard benchmark (issue 16): the storyboard's hand-written entity corpus in the
corpus generator's format, read by the library's loader and by `--entities`; the training arguments of the new rows of
scripts/ablation.py (and the old rows' recipe unchanged); one ALT run of the demo recipe on that corpus; and
`scripts/demo.py --model_type alt` drawing what ALT grounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeling_sfar import SFAR_VARIANTS, AltConfig
from modeling_sfar.data.entities import entity_text, entity_texts, load_entity_config
from modeling_sfar.data.storyboard import (
    ATOMIC_ACTIONS,
    STORYBOARD_UNITS,
    STORYBOARDS,
    save_storyboard_entities,
    storyboard_entities,
)
from modeling_sfar.demo import recipe as recipe
from modeling_sfar.families.alt import load_entities
from modeling_sfar.generation.entity_prompts import DEFAULT_BODY_PARTS, content_words
from tests.conftest import run_python_offline

REPO = Path(__file__).resolve().parents[2]
PATHS = {"dataset": "data/dataset", "base": "tiny-clip", "subtexts": "subtexts", "entities": "entities", "selected": []}
# The demo recipe as the README's ablation figures were measured with it: the old rows must keep it.
MEASURED_RECIPE = {
    "num_frames": 8,
    "num_temporal_layers": 2,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "learning_rate": 3e-3,
    "vision_learning_rate": 2e-3,
    "flip_probability": 0,
    "crop_area_min": 0.6,
    "dataloader_num_workers": 1,
}


def test_the_storyboard_entities_are_a_corpus_the_library_reads(tmp_path):
    rows = storyboard_entities()
    folder = save_storyboard_entities(tmp_path / "entities")
    texts = entity_texts(folder)
    assert texts == [row["text"] for row in rows] and len(texts) == 42
    assert [row["unit"] for row in rows] == sorted(row["unit"] for row in rows)  # the generator's order
    assert all(row["text"] == entity_text(row["unit"], row["description"]) for row in rows)
    # `--entities folder` reads it unchanged, also by kind
    assert load_entities(str(folder), []) == texts
    body = entity_texts(folder, ["body part"])
    assert {text.split(":")[0] for text in body} == set(DEFAULT_BODY_PARTS)  # the default parts, though none occurs
    by_unit = {row["unit"]: row for row in rows}
    assert all(by_unit[part]["default"] and by_unit[part]["labels"] == [] for part in DEFAULT_BODY_PARTS)
    assert sum(row["default"] for row in rows) == len(DEFAULT_BODY_PARTS)
    # the words of the class names, as the generator's stop-word removal finds them, each with its classes
    words = {row["unit"]: row["labels"] for row in rows if "label" in row["kinds"]}
    assert set(words) == {word for name in STORYBOARDS for word in content_words(name)}
    for word, labels in words.items():
        assert labels == [name for name in STORYBOARDS if word in content_words(name)], word
    # every atomic action is one primitive motion, listed for exactly the classes whose storyboard has that step
    motions = STORYBOARD_UNITS["motion"]
    assert sorted(action for _, (_, actions) in motions.items() for action in actions) == sorted(ATOMIC_ACTIONS)
    for unit, (_, (action,)) in motions.items():
        assert by_unit[unit]["labels"] == [name for name, steps in STORYBOARDS.items() if action in steps], unit
    assert by_unit["bar"]["labels"] == list(STORYBOARDS) and by_unit["bar"]["kinds"] == ["object"]
    assert {kind for row in rows for kind in row["kinds"]} == {"object", "scene", "motion", "label", "body part"}

    descriptions = load_entity_config(folder, "descriptions")
    assert descriptions.num_rows == 42 and all(descriptions["selected"])
    units = load_entity_config(folder, "units").to_list()
    spin = {row["kind"]: row["units"] for row in units if row["label"] == "shrink and spin"}
    assert spin == {"object": ["background", "bar"], "motion": ["shrinking", "staying still", "turning"]}  # no move
    assert all(row["answer"] == ", ".join(row["units"]) for row in units)


def test_every_row_of_the_ablation_builds_its_training_arguments(tmp_path, load_script):
    ablation = load_script("ablation")
    assert sorted(ablation.VARIANTS) == sorted([*SFAR_VARIANTS, *recipe.ROWS])
    assert ablation.AblationArguments().variants == list(ablation.VARIANTS)  # `make ablation` runs every row
    assert recipe.RECIPE == MEASURED_RECIPE
    for variant in ablation.VARIANTS:
        run = recipe.variant_arguments(PATHS, str(tmp_path / variant), variant, seed=1, epochs=40)
        model, own, data, training = run
        run.family.check_arguments(own, model)  # a combination the training run accepts
        # the same data, frames, batch, augmentation, epochs and optimiser for every row
        assert (model.base, data.dataset, model.num_frames, data.flip_probability, data.crop_area_min) == (
            "tiny-clip", "data/dataset", 8, 0, 0.6
        )  # fmt: skip
        assert (training.learning_rate, training.vision_learning_rate, training.weight_decay) == (3e-3, 2e-3, 0.2)
        assert (training.num_train_epochs, training.per_device_train_batch_size, training.seed) == (40, 16, 1)
        claimed = recipe.variant_recipe(PATHS, variant, seed=1, epochs=40)
        if variant in SFAR_VARIANTS:  # what the ablation's folders were claimed with before the new rows
            assert claimed == {"variant": variant, "seed": 1, "epochs": 40, "base": "tiny-clip",
                               "dataset": "data/dataset", **MEASURED_RECIPE}  # fmt: skip
            assert (model.model_type, own.variant, model.token_merging_r) == ("sfar", variant, None)
            assert own.subtexts == "subtexts"

    model, own, data, _ = recipe.variant_arguments(PATHS, str(tmp_path / "alt"), "alt", 0, 40)
    assert (model.model_type, own.entities, own.no_entity_corpus) == ("alt", "entities", False)
    assert (own.num_decoder_layers, model.token_merging_r) == (2, None)  # ALT: r 8
    assert recipe.variant_recipe(PATHS, "alt", 0, 40)["entities"] == "entities"
    model, own, data, _ = recipe.variant_arguments(PATHS, str(tmp_path / "alt0"), "alt_no_corpus", 0, 40)
    assert (model.model_type, own.entities, own.no_entity_corpus) == ("alt", None, True)
    assert own.num_decoder_layers == 2
    for variant, r in (("sfar_r8", 8), ("sfar_r16", 16)):
        model, own, data, _ = recipe.variant_arguments(PATHS, str(tmp_path / variant), variant, 0, 40)
        assert (model.model_type, own.variant, model.token_merging_r, own.subtexts) == (
            "sfar",
            "sfar",
            r,
            "subtexts",
        )
        assert own.num_temporal_layers == 2 and recipe.variant_recipe(PATHS, variant, 0, 40)["token_merging_r"] == r
    with pytest.raises(ValueError, match=r"unknown variant 'alt_r4'; choose from \['clip', .*'sfar_r16'\]"):
        recipe.variant_arguments(PATHS, str(tmp_path / "x"), "alt_r4", 0, 40)


def test_one_alt_run_of_the_demo_recipe_on_the_storyboard_entities(tmp_path, monkeypatch):
    out = tmp_path / "shared"
    paths = recipe.prepare(str(out), None, seed=0, train_per_class=1, test_per_class=1)  # 10 videos: one step
    assert entity_texts(paths["entities"]) == [row["text"] for row in storyboard_entities()]
    assert recipe.prepare(str(out), None, seed=0, train_per_class=1, test_per_class=1)["entities"] == paths["entities"]

    folder = tmp_path / "alt-seed0"
    metrics = recipe.train_variant(paths, str(folder), "alt", seed=0, epochs=1)
    assert 0 <= metrics["eval_top1"] <= metrics["eval_top5"] <= 100 and metrics["train_loss"] > 0
    config = AltConfig.from_pretrained(folder)
    assert config.entities == entity_texts(paths["entities"]) and config.use_entity_corpus
    assert (config.num_decoder_layers, config.token_merging_r) == (2, 8)
    claimed = json.loads((folder / recipe.RECIPE_FILE).read_text())
    assert claimed["model_type"] == "alt" and claimed["entities"] == paths["entities"]
    assert claimed["num_temporal_layers"] is None and claimed["learning_rate"] == 3e-3
    with pytest.raises(ValueError, match=r"another recipe \(.*variant 'alt' -> 'alt_no_corpus'"):
        recipe.train_variant(paths, str(folder), "alt_no_corpus", seed=0, epochs=1)

    # an edited corpus is refused, not silently replaced by (or mixed with) the folder's
    edited = [{**row, "description": "changed"} for row in storyboard_entities()]
    monkeypatch.setattr(recipe, "storyboard_entities", lambda: edited)
    with pytest.raises(ValueError, match=r"entities holds the entity corpus of another recipe \(sha256 "):
        recipe.prepare(str(out), None, seed=0, train_per_class=1, test_per_class=1)


@pytest.mark.slow
def test_demo_trains_alt_and_draws_its_grounding(tmp_path, load_script):
    out = tmp_path / "demo"
    demo = [str(REPO / "scripts" / "demo.py"), "--model_type", "alt", "--output_dir", str(out), "--epochs", "1",
            "--train_per_class", "1", "--test_per_class", "1"]  # fmt: skip
    run = run_python_offline(demo, cwd=REPO, tmp_path=tmp_path)

    folder = out / "alt-model"
    for name in ("config.json", "model.safetensors", "modeling_alt.py", "processor_config.json"):
        assert (folder / name).is_file(), name
    assert not (out / "model").exists() and not (out / "frame_weights.png").exists()  # SFAR's folder stays free
    assert (out / "entity_regions.png").stat().st_size > 1000
    results = json.loads((out / "alt_results.json").read_text())
    assert 0 <= results["eval_top1"] <= results["eval_top5"] <= 100
    texts = {row["text"] for row in storyboard_entities()}
    grounded = results["grounded_entities"]
    assert grounded and all(row["entity"] in texts for row in grounded)
    assert sum(row["share"] for row in grounded) == pytest.approx(1.0)
    lines = run.stdout.splitlines()
    assert any(line.startswith("ALT demo (tiny random CLIP") for line in lines)
    header = lines.index("regions of the held-out video aligned with (share of the patches):")
    assert lines[header + 1].strip().endswith(grounded[0]["entity"])

    with pytest.raises(ValueError, match="--variant clip is one of SFAR's variants; --model_type alt trains ALT"):
        load_script("demo").check_arguments(load_script("demo").DemoArguments(model_type="alt", variant="clip"))
    with pytest.raises(ValueError, match=r"--model_type must be one of \['sfar', 'alt'\], got 'vit'"):
        load_script("demo").check_arguments(load_script("demo").DemoArguments(model_type="vit"))


def test_the_ablation_refuses_to_mix_epochs_with_recorded_runs(tmp_path, load_script, monkeypatch):
    ablation = load_script("ablation")
    (tmp_path / "ablation.json").write_text(json.dumps({"sfar": {"0": {"eval_top1": 90.0}}}))
    (tmp_path / "sfar-seed0").mkdir()
    (tmp_path / "sfar-seed0" / recipe.RECIPE_FILE).write_text(json.dumps({"variant": "sfar", "epochs": 40}))
    argv = ["ablation.py", "--output_dir", str(tmp_path), "--variants", "alt", "sfar", "--seeds", "0"]
    monkeypatch.setattr("sys.argv", argv)  # refused before anything is built: the default is 60 epochs
    with pytest.raises(ValueError, match=r"sfar-seed0 was trained for 40 epochs .* pass --epochs 40, or another"):
        ablation.main()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ablation.json", "sfar-seed0"]
