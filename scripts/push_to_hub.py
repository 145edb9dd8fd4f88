"""Push a trained SFAR folder as a model repo, or a sub-text set as a dataset repo, with our cards.

    python scripts/push_to_hub.py model --folder runs/ucf101 --repo_id org/sfar-vitb16-ucf101 \\
        --dataset_name ucf101 --widget_video examples/archery.mp4 --widget_video examples/diving.mp4 [--dry_run]
    python scripts/push_to_hub.py dataset --folder subtexts/k400 --repo_id org/sfar-subtexts-k400 [--dry_run]
    python scripts/push_to_hub.py space --folder space --repo_id org/sfar-demo [--dry_run]

The repo is first written to a staging folder (`--staging`, by default `<folder>-hub`) holding exactly what the repo
will hold: for a model, the config (with `auto_map`), safetensors weights, processor and tokenizer files, the
remote-code files, our card (`hub_cards/model_card.md`; the Trainer's drops `pipeline_tag`), the results and the
widget videos under `examples/` with the model's predictions for them, computed now; checkpoints, optimizer states
and pickled files (`*.bin`, `*.pt`, `*.pth`, `*.pkl`) never. `--dry_run` stops there and lists the files; otherwise
one commit adds every staged file. A Space gets the files of its folder and a copy of the library's `plots.py`, which
its app imports. The work is done by `modeling_sfar.hub.cards`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from modeling_sfar.hub.cards import LICENSE, model_card, widget_examples
from modeling_sfar.hub.push import push_dataset, push_model, push_space


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "kind", choices=["model", "dataset", "space"], help="A trained model folder, a sub-text set, or the Space."
    )
    parser.add_argument("--folder", required=True)
    parser.add_argument("--repo_id", required=True)
    parser.add_argument("--staging", default=None, help="Where the repo is written first (default <folder>-hub).")
    parser.add_argument("--dry_run", action="store_true", help="Write the staging folder and list it; send nothing.")
    parser.add_argument("--private", action="store_true")
    parser.add_argument(
        "--base_model", default=None, help="model: the model it came from (default: recorded in its config)."
    )
    parser.add_argument("--dataset_name", default="unknown", help="model: the dataset it was trained on.")
    parser.add_argument("--subtexts", default=None, help="model: the sub-text dataset repo it used.")
    parser.add_argument("--revision", default="main", help="model: the revision the card's snippets pin.")
    parser.add_argument("--license", default=LICENSE)
    parser.add_argument("--widget_video", action="append", default=[], help="model: a video for the widget.")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.kind == "dataset":
        files = push_dataset(args.folder, args.repo_id, args.dry_run, staging=args.staging, private=args.private)
    elif args.kind == "space":
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
