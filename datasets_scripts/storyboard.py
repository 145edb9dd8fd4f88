"""Write the embedded storyboard dataset (`modeling_sfar.data.storyboard`) and its sub-text candidates to a folder.

python datasets_scripts/storyboard.py --output data/storyboard --seed 0
"""

from __future__ import annotations

import argparse
import json
import os

from modeling_sfar.data.storyboard import build_storyboard_dataset, storyboard_candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="data/storyboard")
    parser.add_argument("--train_per_class", type=int, default=30)
    parser.add_argument("--test_per_class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = build_storyboard_dataset(args.output, args.train_per_class, args.test_per_class, seed=args.seed)
    with open(os.path.join(args.output, "candidates.json"), "w") as f:
        json.dump(storyboard_candidates(args.seed), f, indent=1)
    print(dataset)


if __name__ == "__main__":
    main()
