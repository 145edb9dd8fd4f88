"""Train SFAR (or ALT: `--model_type alt`) with the Trainer, on one process or many (`accelerate launch ...`).

    python datasets_scripts/build_dataset.py ucf101 --root /data/UCF101 --split 1 --output data/ucf101
    accelerate launch scripts/train.py --dataset data/ucf101 --subtexts org/sfar-subtexts-ucf101 \\
        --base openai/clip-vit-base-patch16 --output_dir runs/ucf101 --push_to_hub org/sfar-vitb16-ucf101
    python scripts/train.py --model_type alt --entities org/alt-entities --dataset data/ucf101 \\
        --output_dir runs/alt-ucf101          # ALT's recipe: lr 8e-6 / 8e-5, weight decay 0.001, 30 epochs, 5 warm-up

`--no_entity_corpus` trains ALT without a corpus (learnable queries). Supervised by default; `--few_shot K` trains on
K videos per class (seeded); `--zero_shot_dataset` (with `--zero_shot_subtexts` for SFAR) evaluates the trained model
on another dataset's label set after training. `--resume` continues a killed run from its last checkpoint. The
arguments are `modeling_sfar.training.arguments`'s (the family adds its own), the run `modeling_sfar.training.run`'s;
a single `.json` argument is read as the arguments.
"""

from __future__ import annotations

import logging

import torch

from modeling_sfar.training.arguments import parse_training_args
from modeling_sfar.training.run import run_training


def main(argv: list[str] | None = None) -> dict:
    run = parse_training_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return run_training(run)


if __name__ == "__main__":
    try:
        main()
    finally:
        # Tear the process group of a multi-process run down before the interpreter exits: left to exit, gloo's
        # threads can abort a process that has finished its work ("terminate called without an active exception").
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
