"""The main job on the embedded default (`make demo`): generate the storyboard dataset, select its sub-texts by TPP,
train a small SFAR from a random CLIP on the CPU, evaluate it, save a Hub-ready folder, classify a held-out video with
`pipeline("video-classification")`, and draw the coarse and fine frame weights over that video's frames.

`--model_type alt` trains ALT instead, aligned with the storyboard's entity corpus (written by hand, as the sub-text
candidates are), into `<output_dir>/alt-model`, and draws what it grounded: the held-out video's frames with every
merged region tinted by its aligned entity, titled with the top class (as the Space draws it).

Offline (the default) the CLIP is a tiny random one built locally; `--base openai/clip-vit-base-patch16` starts from
real CLIP weights wherever the Hub is reachable (much slower on a CPU). The recipe is `modeling_sfar.demo.recipe`'s.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, pipeline

from modeling_sfar.demo.explain import explain_video
from modeling_sfar.demo.recipe import DEMOS, SUBSETS, prepare, train_variant
from modeling_sfar.evaluation.metrics import EVAL_PREFIX, TOP1, TOP5, metric_key
from modeling_sfar.families import get_family


@dataclass
class DemoArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where data, model and pictures go."})
    base: str | None = field(
        default=None, metadata={"help": "CLIP checkpoint (Hub id or folder); default: a tiny random one."}
    )
    variant: str = field(default="sfar", metadata={"help": "SFAR's model variant (see SFAR_VARIANTS)."})
    model_type: str = field(
        default="sfar", metadata={"help": "sfar, or alt: ALT with the storyboard's entity corpus (draws its regions)."}
    )
    epochs: float = field(default=60, metadata={"help": "Training epochs."})
    train_per_class: int = field(default=30)
    test_per_class: int = field(default=10)
    seed: int = field(default=0, metadata={"help": "Seed of the data, the CLIP and the training."})


# How the printed table names the subsets of `SUBSETS`.
SUBSET_TITLES = {
    "all": "all",
    "ambiguous": "ambiguous classes",
    "non-uniform": "non-uniform timing",
    "uniform": "uniform timing",
}


def check_arguments(args: DemoArguments) -> dict:
    """The demo of `--model_type` (its row, folder, picture, results file). Refuses an unknown model type and an SFAR
    variant with a family whose demo trains a fixed row, naming the flag."""
    family = get_family(args.model_type)
    demo = DEMOS[family.name]
    if demo["row"] is not None and args.variant != "sfar":
        raise ValueError(
            f"--variant {args.variant} is one of SFAR's variants; --model_type {family.name} trains {family.title}"
        )
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses()
    demo = check_arguments(args)
    family = get_family(args.model_type)
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    paths = prepare(args.output_dir, args.base, args.seed, args.train_per_class, args.test_per_class)
    prepared = time.perf_counter()
    folder = os.path.join(args.output_dir, demo["folder"])
    metrics = train_variant(paths, folder, demo["row"] or args.variant, args.seed, args.epochs)
    trained = time.perf_counter()

    from datasets import load_from_disk

    test = load_from_disk(paths["dataset"])["test"]
    held_out = test[len(test) // 2]
    true_label = test.features["label"].names[held_out["label"]]
    classifier = pipeline(
        "video-classification", model=folder, trust_remote_code=True, model_kwargs={"use_safetensors": True}
    )
    predictions = classifier(held_out["video"], top_k=5)
    picture = os.path.join(args.output_dir, demo["picture"])
    _, grounded = explain_video(folder, held_out["video"], picture)
    total = time.perf_counter() - start

    own = sum(row["generator"] == "storyboard" for row in paths["selected"])
    mean_tpp = sum(row["tpp"] for row in paths["selected"]) / len(paths["selected"])
    results = {
        key: metrics[key]
        for subset in SUBSETS.values()
        for key in (metric_key(EVAL_PREFIX, TOP1, subset), metric_key(EVAL_PREFIX, TOP5, subset))
        if key in metrics
    }
    if grounded:
        results["grounded_entities"] = [{"entity": text, "share": share} for text, share in grounded]
    if demo["row"] is None:  # the model read the TPP-selected sub-texts
        results.update(mean_tpp=mean_tpp, tpp_kept_own_steps=own)
    results.update(prepare_s=prepared - start, train_s=trained - prepared, total_s=total)
    with open(os.path.join(args.output_dir, demo["results"]), "w") as f:
        json.dump(results, f, indent=2)

    clip = "tiny random CLIP" if args.base is None else args.base
    print(f"\n{family.title} demo ({clip}, {demo['about'].format(variant=args.variant, **paths)})")
    if demo["row"] is None:
        print(
            f"sub-texts: TPP kept the storyboard's own steps for {own} of {len(paths['selected'])} classes, "
            f"mean TPP {mean_tpp:.1f}"
        )
    print(f"\n{'test split':<22}{'top-1':>8}{'top-5':>8}")
    for name, subset in SUBSETS.items():
        top1, top5 = metric_key(EVAL_PREFIX, TOP1, subset), metric_key(EVAL_PREFIX, TOP5, subset)
        if top1 in metrics:  # a subset without videos has no line
            print(f"{SUBSET_TITLES[name]:<22}{metrics[top1]:>8.1f}{metrics[top5]:>8.1f}")
    print(f"\nheld-out video: {held_out['video']} (true class: {true_label})")
    print(f"{'label':<28}{'score':>8}")
    for p in predictions:
        print(f"{p['label']:<28}{p['score']:>8.3f}")
    if grounded:
        print("\nregions of the held-out video aligned with (share of the patches):")
        for text, share in grounded:
            print(f"  {100 * share:5.1f}%  {text}")
    print(f"\nmodel folder: {folder}\n{demo['picture_name']}: {picture}")
    print(f"time: {prepared - start:.0f} s data + sub-texts, {trained - prepared:.0f} s training, {total:.0f} s in all")


if __name__ == "__main__":
    main()
