"""The demo recipe (`modeling_sfar.demo.recipe`, run by scripts/demo.py and scripts/ablation.py) reuses and resumes
its output folder only for the same recipe (issue 13, part 7): a changed seed,
epochs, size or variant is refused with the differences named, never silently ignored or crashed into."""

from __future__ import annotations

import json

import pytest

from modeling_sfar.demo import recipe as demo


def test_a_changed_recipe_is_refused_and_the_same_one_resumes(tmp_path):
    out = tmp_path / "demo"
    paths = demo.prepare(str(out), None, seed=0, train_per_class=2, test_per_class=1)
    model = str(out / "model")
    first = demo.train_variant(paths, model, "sfar", seed=0, epochs=1)
    recorded = json.loads((out / "model" / demo.RECIPE_FILE).read_text())
    assert recorded["epochs"] == 1 and recorded["variant"] == "sfar" and recorded["learning_rate"] == 3e-3

    with pytest.raises(ValueError, match=rf"{model} holds the training run of another recipe \(epochs 1 -> 2\)"):
        demo.train_variant(paths, model, "sfar", seed=0, epochs=2)
    with pytest.raises(ValueError, match=r"another recipe \(seed 0 -> 1, variant 'sfar' -> 'clip'\).*--output_dir"):
        demo.train_variant(paths, model, "clip", seed=1, epochs=1)
    with pytest.raises(ValueError, match=r"data of another recipe \(seed 0 -> 1, train_per_class 2 -> 3\)"):
        demo.prepare(str(out), None, seed=1, train_per_class=3, test_per_class=1)

    again = demo.train_variant(paths, model, "sfar", seed=0, epochs=1)  # the same recipe: the finished run, resumed
    assert again["eval_top1"] == first["eval_top1"]

    old = tmp_path / "old-demo" / "model"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="holds files of an unknown recipe"):
        demo.train_variant(paths, str(old), "sfar", seed=0, epochs=1)
