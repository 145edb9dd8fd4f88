"""Evaluate a trained model on a video dataset: its own label set, or another one (zero-shot; SFAR with
`--subtexts`, ALT with the entity corpus it holds or `--entities`).

    python scripts/eval.py --model runs/ucf101 --dataset data/ucf101 --split test --num_clips 4 --num_crops 3
    python scripts/eval.py --model runs/k400 --dataset data/hmdb51 --subtexts org/sfar-subtexts-hmdb51  # zero-shot
    python scripts/eval.py --model runs/alt-ucf101 --dataset data/hmdb51                    # ALT, zero-shot

Writes `<output_dir>/eval_results.json` and, for single-label sets of at most 50 classes, a confusion matrix picture.
The arguments (the model's family adds its own) and the evaluation are `modeling_sfar.evaluation.run`'s.
"""

from __future__ import annotations

import json
import logging

from accelerate import PartialState

from modeling_sfar.evaluation.run import parse_evaluation_args, run_evaluation


def main(argv: list[str] | None = None) -> dict[str, float]:
    args, family_args, family = parse_evaluation_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    metrics = run_evaluation(args, family_args, family)
    if PartialState().is_main_process:  # one report, also under `accelerate launch`
        print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
