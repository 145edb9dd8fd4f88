"""Build ALT's text corpus of action-related entities from label names with local LLMs, and save (and push) it.

    python datasets_scripts/entity_corpus.py --classes data/kinetics400 \\
        --model meta-llama/Llama-2-7b-chat-hf --clip openai/clip-vit-base-patch16 \\
        --output corpus/actions --push_to_hub org/alt-entities

Every model lists, for every label, its identifying objects, body parts, scenes, roles and primitive motions (ALT's
appendix A, one question per kind); the units are merged across labels with the label names' content words and the
default body parts, every unit is described with the appendix's three prompts, and one description per unit is kept by
word sense (docs/entity_corpus.md). The back-ends, seeds, retries and the resumable answer log are the sub-text
generator's; a second run into the same `--output` asks only what is not answered yet, so a corpus grows with every
label set it serves.

The arguments and the run are `modeling_sfar.generation.entity_corpus`'s.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from transformers import HfArgumentParser

from modeling_sfar.generation.backends import BackendOptions
from modeling_sfar.generation.entity_corpus import EntityCorpusArguments, run_entity_corpus


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default shown, and this docstring's lines kept as written."""


def parse_args(argv: list[str] | None = None) -> tuple[EntityCorpusArguments, BackendOptions]:
    """The run's arguments and its back-end's from `argv` (default `sys.argv[1:]`); a refused value exits as a usage
    error naming the flag."""
    parser = HfArgumentParser(
        (EntityCorpusArguments, BackendOptions), description=__doc__, formatter_class=HelpFormatter
    )
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # a value the arguments refuse, or an unknown flag: a usage error, not a traceback
        parser.error(str(error))


def main(argv: list[str] | None = None) -> Path:
    args, backend = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_entity_corpus(args, backend)


if __name__ == "__main__":  # vLLM spawns its engine's processes, which import this file again
    main()
