"""The main job on the embedded default (`make demo`): generate the storyboard dataset, select its sub-texts by TPP,
train a small SFAR from a random CLIP on the CPU, evaluate it, save a Hub-ready folder, classify a held-out video with
`pipeline("video-classification")`, and draw the coarse and fine frame weights over that video's frames.

Offline (the default) the CLIP is a tiny random one built locally; `--base openai/clip-vit-base-patch16` starts from
real CLIP weights wherever the Hub is reachable (much slower on a CPU).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, pipeline

from datasets_scripts.storyboard import build_storyboard_dataset, storyboard_candidates
from datasets_scripts.subtext_dataset import save_subtext_dataset
from datasets_scripts.tpp_selection import select_candidates
from modeling_sfar import SfarForVideoClassification, SfarProcessor
from modeling_sfar.testing_utils import build_tiny_clip

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as train_script  # noqa: E402

logger = logging.getLogger("sfar.demo")

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


@dataclass
class DemoArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where data, model and pictures go."})
    base: str | None = field(
        default=None, metadata={"help": "CLIP checkpoint (Hub id or folder); default: a tiny random one."}
    )
    variant: str = field(default="sfar", metadata={"help": "Model variant (see SFAR_VARIANTS)."})
    epochs: float = field(default=60, metadata={"help": "Training epochs."})
    train_per_class: int = field(default=30)
    test_per_class: int = field(default=10)
    seed: int = field(default=0, metadata={"help": "Seed of the data, the CLIP and the training."})


RECIPE_FILE = "sfar_recipe.json"


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
    return {"dataset": os.path.join(data, "dataset"), "base": base, "subtexts": subtexts, "selected": selected}


def train(paths: dict, output_dir: str, variant: str, seed: int, epochs: float) -> dict:
    """
    Train one variant with the demo recipe, resuming a run of the same recipe in `output_dir` (a run of another
    recipe there is refused: see `claim_folder`); returns train.py's metrics (top-1/top-5, ambiguous, timing).
    """
    recipe = {"variant": variant, "seed": seed, "epochs": epochs, "base": paths["base"], "dataset": paths["dataset"]}
    claim_folder(output_dir, {**recipe, **RECIPE}, "training run")
    argv = [
        "--dataset",
        paths["dataset"],
        "--subtexts",
        paths["subtexts"],
        "--base",
        paths["base"],
        "--output_dir",
        output_dir,
        "--variant",
        variant,
        "--seed",
        str(seed),
        "--num_train_epochs",
        str(epochs),
        "--group_columns",
        "ambiguous",
        "timing",
        "--save_strategy",
        "epoch",
        "--save_total_limit",
        "1",
        "--logging_steps",
        "20",
        "--report_to",
        "none",
        "--resume",
        "--disable_tqdm",
        "true",
    ]
    for key, value in RECIPE.items():
        argv += [f"--{key}", str(value)]
    return train_script.main(argv)


def plot_frame_weights(coarse, fine, label: str, path: str) -> None:
    """Coarse and fine frame weights of one class over the sampled frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    frames = range(1, len(coarse) + 1)
    if coarse is not None:
        ax.plot(frames, coarse, marker="o", label="coarse a$^{coarse}$")
    if fine is not None:
        ax.plot(frames, fine, marker="s", label="fine a$^{fine}$")
    ax.set_xlabel("sampled frame")
    ax.set_ylabel("weight")
    ax.set_title(f"frame weights for '{label}'")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses()
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    paths = prepare(args.output_dir, args.base, args.seed, args.train_per_class, args.test_per_class)
    prepared = time.perf_counter()
    folder = os.path.join(args.output_dir, "model")
    metrics = train(paths, folder, args.variant, args.seed, args.epochs)
    trained = time.perf_counter()

    from datasets import load_from_disk

    test = load_from_disk(paths["dataset"])["test"]
    held_out = test[len(test) // 2]
    true_label = test.features["label"].names[held_out["label"]]
    classifier = pipeline(
        "video-classification", model=folder, trust_remote_code=True, model_kwargs={"use_safetensors": True}
    )
    predictions = classifier(held_out["video"], top_k=5)

    model = SfarForVideoClassification.from_pretrained(folder, use_safetensors=True).eval()
    processor = SfarProcessor.from_pretrained(folder)
    with torch.no_grad():
        out = model(**processor(videos=held_out["video"]))
    top = int(out.logits[0].argmax())
    picture = os.path.join(args.output_dir, "frame_weights.png")

    def weights(tensor):
        return None if tensor is None else tensor[0, top].tolist()

    label = model.config.id2label[top]
    plot_frame_weights(weights(out.coarse_frame_weights), weights(out.fine_frame_weights), label, picture)
    total = time.perf_counter() - start

    own = sum(row["generator"] == "storyboard" for row in paths["selected"])
    mean_tpp = sum(row["tpp"] for row in paths["selected"]) / len(paths["selected"])
    results = {
        **{k: v for k, v in metrics.items() if k.startswith("eval_") and k.endswith(("top1", "top5"))},
        "mean_tpp": mean_tpp,
        "tpp_kept_own_steps": own,
        "prepare_s": prepared - start,
        "train_s": trained - prepared,
        "total_s": total,
    }
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)

    print(f"\nSFAR demo ({'tiny random CLIP' if args.base is None else args.base}, variant {args.variant})")
    print(
        f"sub-texts: TPP kept the storyboard's own steps for {own} of {len(paths['selected'])} classes, "
        f"mean TPP {mean_tpp:.1f}"
    )
    print(f"\n{'test split':<22}{'top-1':>8}{'top-5':>8}")
    for name, key in (
        ("all", "eval"),
        ("ambiguous classes", "eval_ambiguous"),
        ("non-uniform timing", "eval_timing=non-uniform"),
        ("uniform timing", "eval_timing=uniform"),
    ):
        if key + "_top1" in metrics:  # a subset without videos has no line
            print(f"{name:<22}{metrics[key + '_top1']:>8.1f}{metrics[key + '_top5']:>8.1f}")
    print(f"\nheld-out video: {held_out['video']} (true class: {true_label})")
    print(f"{'label':<28}{'score':>8}")
    for p in predictions:
        print(f"{p['label']:<28}{p['score']:>8.3f}")
    print(f"\nmodel folder: {folder}\nframe weights: {picture}")
    print(f"time: {prepared - start:.0f} s data + sub-texts, {trained - prepared:.0f} s training, {total:.0f} s in all")


if __name__ == "__main__":
    main()
