"""Push a trained SFAR folder as a model repo, or a sub-text set as a dataset repo, with our cards.

    python scripts/push_to_hub.py model --folder runs/ucf101 --repo_id org/sfar-vitb16-ucf101 \\
        --dataset_name ucf101 --widget_video examples/archery.mp4 --widget_video examples/diving.mp4 [--dry_run]
    python scripts/push_to_hub.py dataset --folder subtexts/k400 --repo_id org/sfar-subtexts-k400 [--dry_run]
    python scripts/push_to_hub.py space --folder space --repo_id org/sfar-demo [--dry_run]

`--repo_id` is checked with huggingface_hub's validator first, in a dry run too. The repo is then written to a
staging folder (`--staging`, by default `<folder>-hub`) holding exactly what the repo will hold: for a model, the
config (with `auto_map`), safetensors weights, processor and tokenizer files, the remote-code files, our card
(`hub_cards/{sfar,alt}_model_card.md`; the Trainer's drops `pipeline_tag`), the results and the widget videos under
`examples/` (videos of one file name told apart by their folders: `examples/archery-v1.mp4`) with the model's
predictions for them, computed now; checkpoints, optimizer states and pickled files (`*.bin`, `*.pt`, `*.pth`,
`*.pkl`) never. `--dry_run` stops there and lists the files: it stages in `--staging` when given (kept, to be read),
otherwise in a temporary folder that it removes. Otherwise one commit adds every staged file. A Space gets the files
of its folder and a copy of the library's `plots.py`, which its app imports. The work is done by
`modeling_sfar.hub.push`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from modeling_sfar.hub.cards import LICENSE, model_card, widget_examples
from modeling_sfar.hub.push import push_dataset, push_model, push_space


@dataclass
class PushArguments:
    """The command line after the kind of repo (`model`, `dataset` or `space`)."""

    folder: str = field(metadata={"help": "The folder to push: a trained model, a sub-text set, or the Space."})
    repo_id: str = field(metadata={"help": "The Hub repo, ORG/NAME."})
    staging: str | None = field(
        default=None,
        metadata={"help": "Where the repo is written first; unset, <folder>-hub (a dry run: a folder it removes)."},
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "Stage and list the files; send nothing (the staging is kept only with --staging)."},
    )
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    base_model: str | None = field(
        default=None, metadata={"help": "model: the model it came from; unset, the one its config records."}
    )
    dataset_name: str = field(default="unknown", metadata={"help": "model: the dataset it was trained on."})
    subtexts: str | None = field(default=None, metadata={"help": "model: the sub-text dataset repo it used."})
    revision: str = field(default="main", metadata={"help": "model: the revision the card's snippets pin."})
    license: str = field(default=LICENSE, metadata={"help": "The licence the card declares."})
    widget_video: list[str] = field(
        default_factory=list,
        metadata={"help": "model: a video for the widget; repeat for several.", "action": "extend"},
    )


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default shown, and this docstring's lines kept as written."""


def main(argv: list[str] | None = None) -> list[str]:
    parser = HfArgumentParser(PushArguments, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "kind", choices=["model", "dataset", "space"], help="A trained model folder, a sub-text set, or the Space."
    )
    try:
        args, command = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # an unknown flag: a usage error, not a traceback
        parser.error(str(error))
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if command.kind == "dataset":
        files = push_dataset(args.folder, args.repo_id, args.dry_run, staging=args.staging, private=args.private)
    elif command.kind == "space":
        files = push_space(args.folder, args.repo_id, args.dry_run, staging=args.staging, private=args.private)
    else:
        results = Path(args.folder) / "all_results.json"
        metrics = json.loads(results.read_text()) if results.is_file() else {}
        examples = widget_examples(args.folder, args.widget_video) if args.widget_video else []
        card = model_card(
            args.folder,
            args.repo_id,
            args.base_model,
            args.dataset_name,
            metrics,
            revision=args.revision,
            license=args.license,
            examples=examples,
            subtexts=args.subtexts,
        )
        files = push_model(
            args.folder, args.repo_id, card, args.dry_run, widget_videos=args.widget_video, staging=args.staging,
            private=args.private,
        )  # fmt: skip
    print("\n".join(files))
    return files


if __name__ == "__main__":
    main()
