"""The ablation on the embedded storyboard benchmark (the paper's Table 2e, plus its ambiguous / non-uniform subsets
of Tables 8-9): mean pooling, temporal, coarse only, fine only, coarse+fine and ActionCLIP; ALT with its entity
corpus and without (learnable queries, ALT's Table C3 baseline); SFAR with token merging (r = 8 and 16), over
several seeds.

    python scripts/ablation.py --output_dir outputs/ablation            # 10 rows x 3 seeds, the demo recipe
    python scripts/ablation.py --variants alt alt_no_corpus             # only these rows

Every row trains with the demo recipe (`modeling_sfar.demo.recipe.RECIPE`: the same epochs, batch, data and
learning rates for SFAR and ALT; `ROWS` says what ALT and the merging rows change and why).

Every run resumes where it stopped and a finished run is not repeated, so the command can be run again after an
interruption. Writes `ablation.json` (every run) and `ablation.md` (mean and standard deviation over seeds).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from modeling_sfar.demo.recipe import RECIPE_FILE, SUBSETS, prepare, train_variant
from modeling_sfar.evaluation.metrics import EVAL_PREFIX, TOP1, metric_key

VARIANTS = {
    "clip": "Baseline (CLIP): mean pooling",
    "temporal": "Baseline (Temporal)",
    "coarse": "coarse only",
    "fine": "fine only",
    "sfar": "SFAR (coarse + fine)",
    "actionclip": "ActionCLIP",
    "alt": "ALT (Align before Adapt)",
    "alt_no_corpus": "ALT without corpus (learnable queries)",
    "sfar_r8": "SFAR (coarse + fine), token merging r = 8",
    "sfar_r16": "SFAR (coarse + fine), token merging r = 16",
}
# The table's columns: top-1 on the test split and on the paper's subsets, as the run's metrics name them.
COLUMNS = {name: metric_key(EVAL_PREFIX, TOP1, subset) for name, subset in SUBSETS.items()}


@dataclass
class AblationArguments:
    output_dir: str = field(default="outputs/ablation")
    variants: list[str] = field(
        default_factory=lambda: list(VARIANTS), metadata={"help": f"Rows to train, of {', '.join(VARIANTS)}."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: float = field(default=60)
    data_seed: int = field(default=0, metadata={"help": "Seed of the generated dataset and CLIP (kept fixed)."})


def recorded(runs: dict[str, dict[str, dict]]) -> list[str]:
    """Every row with a finished run in the record, in the table's order: a run of some rows keeps the others."""
    return [variant for variant in VARIANTS if runs.get(variant)]


def table(runs: dict[str, dict[str, dict]], variants: list[str], seeds: list[int]) -> str:
    """Markdown: top-1 mean ± std over seeds per variant and subset."""
    lines = [
        "| variant | " + " | ".join(f"{name} top-1" for name in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for variant in variants:
        cells = []
        for key in COLUMNS.values():
            values = [runs[variant][str(seed)][key] for seed in seeds if str(seed) in runs.get(variant, {})]
            if not values:
                cells.append("-")
                continue
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
        lines.append(f"| {VARIANTS[variant]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nTop-1 (%) on the generated test split, mean ± std over seeds {seeds}.\n"


def check_recorded_epochs(args: AblationArguments, runs: dict[str, dict[str, dict]]) -> None:
    """
    A finished run is taken from `ablation.json` without training again, so one trained for other epochs would sit in
    the table beside this run's rows: refuse it, reading its epochs from its folder's claim (older records of
    `ablation.json` do not hold them).

    Raises:
        ValueError: a requested row and seed recorded with other epochs, naming its folder and the flag to give.
    """
    for variant in args.variants:
        for seed in args.seeds:
            folder = os.path.join(args.output_dir, f"{variant}-seed{seed}")
            claim = os.path.join(folder, RECIPE_FILE)
            if str(seed) not in runs.get(variant, {}) or not os.path.isfile(claim):
                continue
            with open(claim) as f:
                epochs = json.load(f).get("epochs")
            if epochs is not None and epochs != args.epochs:
                raise ValueError(
                    f"{folder} was trained for {epochs} epochs and is recorded as finished; this run asks for "
                    f"--epochs {args.epochs}, and one table holds one recipe: pass --epochs {epochs}, or another "
                    "--output_dir"
                )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (args,) = HfArgumentParser(AblationArguments).parse_args_into_dataclasses()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    os.makedirs(args.output_dir, exist_ok=True)
    record = os.path.join(args.output_dir, "ablation.json")
    runs: dict[str, dict[str, dict]] = {}
    if os.path.isfile(record):
        with open(record) as f:
            runs = json.load(f)
    check_recorded_epochs(args, runs)
    paths = prepare(os.path.join(args.output_dir, "shared"), None, args.data_seed, 30, 10)
    for seed in args.seeds:
        for variant in args.variants:
            if str(seed) in runs.get(variant, {}):
                continue  # finished earlier
            folder = os.path.join(args.output_dir, f"{variant}-seed{seed}")
            metrics = train_variant(paths, folder, variant, seed, args.epochs)
            runs.setdefault(variant, {})[str(seed)] = {
                k: v for k, v in metrics.items() if k.startswith(f"{EVAL_PREFIX}_")
            }
            with open(record, "w") as f:
                json.dump(runs, f, indent=2)
            with open(os.path.join(args.output_dir, "ablation.md"), "w") as f:
                f.write(table(runs, recorded(runs), args.seeds))
    print(table(runs, recorded(runs), args.seeds))


if __name__ == "__main__":
    main()
