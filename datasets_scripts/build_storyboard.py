"""Write the embedded storyboard dataset (`modeling_sfar.data.storyboard`) and its sub-text candidates to a folder.

python datasets_scripts/build_storyboard.py --output data/storyboard --seed 0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from modeling_sfar.data.storyboard import write_storyboard


@dataclass
class StoryboardArguments:
    """The command line: where, how many videos, which seed."""

    output: str = field(default="data/storyboard", metadata={"help": "Folder of the videos, dataset and candidates."})
    train_per_class: int = field(default=30, metadata={"help": "Training videos per class."})
    test_per_class: int = field(default=10, metadata={"help": "Test videos per class."})
    seed: int = field(default=0, metadata={"help": "Seed of the videos and candidates: a seed gives the same files."})


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser(StoryboardArguments, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    print(write_storyboard(args.output, args.train_per_class, args.test_per_class, seed=args.seed))


if __name__ == "__main__":
    main()
