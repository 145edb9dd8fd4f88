"""The demo's recipe, shared by `scripts/demo.py` and `scripts/ablation.py`: the storyboard dataset, a tiny random
CLIP, TPP-selected sub-texts and the storyboard's entity corpus for ALT (`prepare`), and one training run of a row of
the benchmark with the recipe's settings (`train_variant`: one of SFAR's variants, or one of `ROWS`: ALT with and
without its corpus, SFAR with token merging), each folder claimed for its recipe (`claim_folder`) so that a run
resumes only what the same recipe made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import fields

from ..data.storyboard import (
    build_storyboard_dataset,
    save_storyboard_entities,
    storyboard_candidates,
    storyboard_entities,
)
from ..data.subtexts import save_subtext_dataset
from ..families import FAMILIES, get_family
from ..generation.tpp import select_candidates
from ..remote_code.configuration_sfar import SFAR_VARIANTS
from ..testing_utils import build_tiny_clip
from ..training.arguments import DataArguments, ModelArguments, TrainingRun, VideoTrainingArguments
from ..training.run import run_training

logger = logging.getLogger(__name__)

__all__ = [
    "TINY_CLIP",
    "DEMOS",
    "RECIPE",
    "RECIPE_FILE",
    "ROWS",
    "GROUP_COLUMNS",
    "SUBSETS",
    "claim_folder",
    "prepare",
    "row_settings",
    "variant_arguments",
    "variant_recipe",
    "train_variant",
]

# The recipe that the README's figures come from: a small CLIP (width 64, 2 layers, 32 px frames in 4 px patches)
# trained from scratch, so both learning rates are far above the fine-tuning ones of docs/method.md (section 7).
TINY_CLIP = {"hidden_size": 64, "projection_dim": 64, "num_layers": 2, "image_size": 32, "patch_size": 4}
RECIPE = {
    "num_frames": 8,
    "num_temporal_layers": 2,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "learning_rate": 3e-3,
    "vision_learning_rate": 2e-3,
    "flip_probability": 0,  # left and right are different classes here
    "crop_area_min": 0.6,
    "dataloader_num_workers": 1,
}

# The benchmark's rows that are not one of SFAR's variants (SFAR_VARIANTS): the training arguments each one changes in
# the recipe (and records in its claim). Every row trains with the same epochs, batch, data, frames, augmentation and
# optimiser settings, RECIPE's learning rates included: ALT_RECIPE's 8e-5 / 8e-6 are, like SFAR's own 5e-5 / 5e-6,
# rates for fine-tuning a trained CLIP, and the storyboard's CLIP is random and trained from scratch, so the rates
# RECIPE chose for that hold for ALT as well. ALT's video decoder gets RECIPE's temporal depth (2 blocks, where the
# paper's ViT-B has 4, as SFAR's 6 temporal layers become 2); its own setting, `num_temporal_layers`, is ALT's None.
# ALT keeps its default token merging (r = 8 per block: the tiny CLIP's 65 tokens become 49 after its 2 blocks) and
# reads the storyboard's entity corpus (`prepare`'s `entities`), or none (the paper's Table C3 baseline). SFAR with
# token merging is the "sfar" variant with r tokens merged in each block (r = 16 leaves 33 of 65).
ROWS = {
    "alt": {"model_type": "alt", "num_temporal_layers": None, "num_decoder_layers": 2, "subtexts": None,
            "entities": "{entities}"},
    "alt_no_corpus": {"model_type": "alt", "num_temporal_layers": None, "num_decoder_layers": 2, "subtexts": None,
                      "no_entity_corpus": True},
    "sfar_r8": {"token_merging_r": 8},
    "sfar_r16": {"token_merging_r": 16},
}  # fmt: skip


# The storyboard dataset's columns that define the paper's subsets (Tables 8-9), and the subsets as the run's metrics
# name them (`metric_key(EVAL_PREFIX, TOP1, subset)`; None: the whole test split), as the demo prints them and the
# ablation tabulates them.
GROUP_COLUMNS = ("ambiguous", "timing")
SUBSETS = {"all": None, "ambiguous": "ambiguous", "non-uniform": "timing=non-uniform", "uniform": "timing=uniform"}

RECIPE_FILE = "sfar_recipe.json"

# What `scripts/demo.py --model_type <family>` trains and writes: the benchmark row (None: `--variant`), the model
# folder (each family its own, so that one demo's folder, claimed for its recipe, stays resumable beside the other's),
# the picture and the results file, and what its headline says of the model.
DEMOS = {
    "sfar": {"row": None, "folder": "model", "picture": "frame_weights.png", "results": "results.json",
             "about": "variant {variant}", "picture_name": "frame weights"},
    "alt": {"row": "alt", "folder": "alt-model", "picture": "entity_regions.png", "results": "alt_results.json",
            "about": "the storyboard's entity corpus: {entities}", "picture_name": "entity regions"},
}  # fmt: skip


def claim_folder(folder: str, recipe: dict, what: str) -> None:
    """
    Make `folder` the home of `what` made with `recipe`, or refuse: runs resume and data are reused from the folder,
    so one made with another recipe (another seed, epochs, variant ...) would be silently reused or crash. The
    recipe is recorded in `folder/sfar_recipe.json`.

    Raises:
        ValueError: `folder` holds `what` of another recipe, or files whose recipe is unknown; the message names the
            folder and the differences.
    """
    path = os.path.join(folder, RECIPE_FILE)
    recipe = json.loads(json.dumps(recipe))  # as it reads back (tuples become lists)
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        if old == recipe:
            return
        changes = ", ".join(
            f"{key} {old.get(key)!r} -> {recipe.get(key)!r}"
            for key in sorted(set(old) | set(recipe))
            if old.get(key) != recipe.get(key)
        )
        raise ValueError(
            f"{folder} holds the {what} of another recipe ({changes}); it is reused and resumed, not replaced: pass "
            "another --output_dir for a fresh run, or remove that folder"
        )
    if os.path.isdir(folder) and os.listdir(folder):
        raise ValueError(
            f"{folder} holds files of an unknown recipe (no {RECIPE_FILE}, written by an older version?): pass "
            "another --output_dir for a fresh run, or remove that folder"
        )
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(recipe, f, indent=2)


def prepare(output_dir: str, base: str | None, seed: int, train_per_class: int, test_per_class: int) -> dict:
    """Dataset, CLIP and TPP-selected sub-text dataset (each built once, reused when present and of this recipe)."""
    data = os.path.join(output_dir, "data")
    claim_folder(data, {"seed": seed, "train_per_class": train_per_class, "test_per_class": test_per_class}, "data")
    if not os.path.isdir(os.path.join(data, "dataset")):
        build_storyboard_dataset(data, train_per_class, test_per_class, seed=seed)
    if base is None:
        base = os.path.join(output_dir, "tiny-clip")
        claim_folder(base, {"seed": seed, **TINY_CLIP}, "tiny CLIP")
        if not os.path.isfile(os.path.join(base, "config.json")):
            build_tiny_clip(base, seed=seed, logit_scale_init_value=math.log(100), **TINY_CLIP)
    subtexts = os.path.join(output_dir, "subtexts")
    selected, rows = select_candidates(base, storyboard_candidates(seed))
    save_subtext_dataset(subtexts, selected, rows)
    # ALT's corpus is the same for every seed; its digest makes a folder of an edited corpus refused, not reused.
    entities = os.path.join(output_dir, "entities")
    digest = hashlib.sha256(json.dumps(storyboard_entities(), sort_keys=True).encode()).hexdigest()[:16]
    claim_folder(entities, {"corpus": "storyboard_entities", "sha256": digest}, "entity corpus")
    if not os.path.isfile(os.path.join(entities, "README.md")):  # the card is written last: a whole corpus
        save_storyboard_entities(entities)
    return {
        "dataset": os.path.join(data, "dataset"),
        "base": base,
        "subtexts": subtexts,
        "selected": selected,
        "entities": entities,
    }


def row_settings(variant: str, paths: dict) -> dict:
    """
    The training arguments that the row `variant` changes in RECIPE: the model variant of one of SFAR's variants;
    for a `ROWS` name, its entry on SFAR's "sfar" variant, a "{name}" in it replaced by `paths[name]` (ALT's corpus).

    Raises:
        ValueError: a name that is neither, naming the choices.
    """
    if variant in SFAR_VARIANTS:
        return {"variant": variant}
    if variant not in ROWS:
        raise ValueError(f"unknown variant {variant!r}; choose from {[*SFAR_VARIANTS, *ROWS]}")
    row = {"variant": "sfar", **ROWS[variant]}
    return {key: value.format(**paths) if isinstance(value, str) else value for key, value in row.items()}


def variant_arguments(
    paths: dict, output_dir: str, variant: str, seed: int, epochs: float
) -> TrainingRun:
    """
    The training arguments of one row of the benchmark (see `train_variant`) with the demo recipe, as `run_training`
    takes them.

    Raises:
        ValueError: an unknown variant, or a recipe setting that no training argument takes.
    """
    settings = {
        "dataset": paths["dataset"],
        "subtexts": paths["subtexts"],
        "base": paths["base"],
        "output_dir": output_dir,
        "seed": seed,
        "num_train_epochs": epochs,
        "group_columns": list(GROUP_COLUMNS),
        "save_strategy": "epoch",
        "save_total_limit": 1,
        "logging_steps": 20,
        "report_to": "none",
        "resume": True,
        "disable_tqdm": True,
        **RECIPE,
        **row_settings(variant, paths),
    }
    family = get_family(settings.get("model_type", "sfar"))
    arguments = []
    for cls in (ModelArguments, family.arguments, DataArguments, VideoTrainingArguments):
        names = {f.name for f in fields(cls) if f.init}
        arguments.append(cls(**{key: settings.pop(key) for key in list(settings) if key in names}))
    # another family's flag at its default (SFAR's variant for an ALT row) is no setting of this run
    defaults = {f.name: f.default for other in FAMILIES.values() for f in fields(other.arguments)}
    settings = {key: value for key, value in settings.items() if key not in defaults or value != defaults[key]}
    if settings:  # a recipe key that no argument takes would otherwise be dropped silently
        raise ValueError(f"the demo recipe has settings no training argument takes: {sorted(settings)}")
    return TrainingRun(family, *arguments)


def variant_recipe(paths: dict, variant: str, seed: int, epochs: float) -> dict:
    """
    What a run of the row `variant` records in its folder's claim (`claim_folder`): the row, seed, epochs, CLIP and
    dataset, RECIPE, and what a `ROWS` row changes in it. SFAR's variants record exactly what they recorded before the
    other rows existed, so that their folders (and the ablation's figures) stay resumable and comparable.
    """
    recipe = {"variant": variant, "seed": seed, "epochs": epochs, "base": paths["base"], "dataset": paths["dataset"]}
    changes = (
        {} if variant in SFAR_VARIANTS else {k: v for k, v in row_settings(variant, paths).items() if k != "variant"}
    )
    return {**recipe, **RECIPE, **changes}


def train_variant(paths: dict, output_dir: str, variant: str, seed: int, epochs: float) -> dict:
    """
    Train one row of the benchmark (one of SFAR's variants, or a `ROWS` name) with the demo recipe, resuming a run of
    the same recipe in `output_dir` (a run of another recipe there is refused: see `claim_folder`); returns the run's
    metrics (see `run_training`: top-1/top-5, and on the `GROUP_COLUMNS` subsets).
    """
    arguments = variant_arguments(paths, output_dir, variant, seed, epochs)
    claim_folder(output_dir, variant_recipe(paths, variant, seed, epochs), "training run")
    return run_training(arguments)
