"""ALT's text corpus of action-related entities, built from label names with local LLMs and saved (and pushed) as a
dataset: what `datasets_scripts/entity_corpus.py` runs.

ALT (Align before Adapt, ICLR 2024, section 3.1 and appendix A) aligns every region token of a frame with an entity of
a text corpus: a unit (an object, a body part, a scene, a role, a primitive motion) with its description. This
module builds that corpus, step by step as the appendix does:

1. Units. Every model is asked, for every label and every kind of unit, "What are identifying {kind} of an action
   {label}? List them concisely." (`entity_prompts.UNIT_QUESTIONS`); the answer is parsed into units with stop words
   removed (`parse_units`). The content words of the label name are units too (kind "label"), as the paper takes units
   from text by stop-word removal, and the default body parts are added (kind "body part").
2. Descriptions. Every unit, deduplicated across labels, is described by every model with the appendix's three
   prompts ("Concisely describe what an action {unit} looks like", "Concisely list potential explanations for
   {unit}", "Concisely explain {unit} in one sentence"); every list item or answer is a candidate description.
3. Word sense. Of a unit's candidates, the one that fits the actions it came from is kept: the most words shared with
   the names of its labels (the simplified Lesk algorithm), ties broken by the CLIP text tower's cosine similarity of
   "unit: description" to the labels' class prompts (our stand-in for the paper's T5 disambiguation model).

Questions follow the sub-text generator (`subtexts.py`): the same back-ends (`backends.py`: vLLM, transformers), the
same per-question seeds, an answer that parses to nothing rejected with its reason and asked again with the next seed,
every answer appended to `<output>/answers.jsonl` as its chunk finishes (`answers.py`). A second run into the same
output folder asks only what is not answered yet: an interrupted run resumes, and a run with more labels asks only
about the new labels and the new units. The corpus holds every label answered in the folder so far: it grows with
every dataset it serves.

`EntityCorpusArguments` (with `backends.BackendOptions`) is the command line; `run_entity_corpus` the run.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hub_cards import ENTITY_DATASET_CARD, template_path

from ..conversion.sfar import CLIP_VIT_B16
from ..data.classes import read_classes
from ..data.entities import entity_text, save_entity_dataset
from ..remote_code.configuration_sfar import DEFAULT_PROMPT_TEMPLATE
from .answers import ask_until_parsed, read_log, refusal_report
from .backends import Backend, BackendOptions, GenerationArguments, SamplingOptions, model_loaders, request_seed
from .entity_prompts import (
    DEFAULT_BODY_PARTS,
    DESCRIPTION_PROMPT_NAMES,
    DESCRIPTION_PROMPTS,
    PROMPT_VERSION,
    UNIT_KINDS,
    UNIT_QUESTIONS,
    EntityParseError,
    content_words,
    description_messages,
    parse_descriptions,
    parse_units,
    unit_messages,
)

__all__ = [
    "ChatRequest",
    "EntityCorpusArguments",
    "generate_units",
    "pool_units",
    "generate_descriptions",
    "select_senses",
    "lesk_overlap",
    "generate_entity_corpus",
    "run_entity_corpus",
]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLING = SamplingOptions()

# The context of a default body part that no label listed: the sense wanted is the body's.
BODY_CONTEXT = "a part of the human body"


@dataclass(frozen=True)
class ChatRequest:
    """One question to one model as the back-ends take it: the chat and its sampling seed."""

    messages: list[dict[str, str]]
    seed: int


# ----------------------------------------------------------------------------------------------------------------
# Step 1: units per label and kind
# ----------------------------------------------------------------------------------------------------------------


def generate_units(
    name: str,
    backend: Backend | Callable[[], Backend],
    classes: dict[str, str],
    sampling: SamplingOptions,
    log_path: str | os.PathLike,
    max_unit_words: int = 4,
    chunk_size: int = 256,
) -> list[dict[str, Any]]:
    """
    Ask model `name` every unit question (`UNIT_QUESTIONS`, one per kind) for every label, resumable and with retries
    (`answers.ask_until_parsed`). Attempt k of (label, kind) is sampled with `request_seed(seed,
    "units/<label>", kind index, k)`.

    Returns:
        This generator's unit records in the log: `generator, revision, stage, label, class_name, kind, attempt, seed,
        answer, units` (None when rejected) and `rejected`.
    """
    questions = [
        {"stage": "units", "label": label, "class_name": class_name, "kind": kind}
        for label, class_name in classes.items()
        for kind in UNIT_KINDS
    ]

    def make_request(question: dict[str, Any], attempt: int) -> ChatRequest:
        seed = request_seed(sampling.seed, f"units/{question['label']}", UNIT_KINDS.index(question["kind"]), attempt)
        return ChatRequest(unit_messages(question["class_name"], question["kind"]), seed)

    def parse(question: dict[str, Any], answer: str) -> list[str]:
        return parse_units(answer, max_unit_words)

    return ask_until_parsed(
        name, backend, questions, make_request, parse, sampling, log_path, "units", (EntityParseError,), chunk_size
    )


def pool_units(
    records: list[dict[str, Any]], classes: dict[str, str], default_body_parts: tuple[str, ...] = DEFAULT_BODY_PARTS
) -> dict[str, dict[str, Any]]:
    """
    The units of all generators, deduplicated across labels: unit -> `{"labels": [...], "kinds": [...], "default":
    bool}` (sorted lists), with the content words of every label name (kind "label") and the default body parts.

    Raises:
        ValueError: a label none of whose answers listed a unit, named, with the reasons its answers were rejected.
    """
    units: dict[str, dict[str, set]] = {}

    def add(unit: str, label: str | None, kind: str) -> None:
        entry = units.setdefault(unit, {"labels": set(), "kinds": set(), "default": False})
        if label is not None:
            entry["labels"].add(label)
        entry["kinds"].add(kind)

    reasons: dict[str, Counter] = {label: Counter() for label in classes}
    found = set()
    for record in records:
        if record["label"] not in classes:
            continue
        if record["units"]:
            found.add(record["label"])
            for unit in record["units"]:
                add(unit, record["label"], record["kind"])
        else:
            reasons[record["label"]][record["rejected"]] += 1
    for label, class_name in classes.items():
        if label not in found:
            why = ", ".join(f"{reason!r} x{n}" for reason, n in reasons[label].most_common()) or "no answers"
            raise ValueError(
                f"label {label!r} has no units: every answer was rejected ({why}); its answers stay in the log, "
                "a run with a larger --max_attempts asks it again"
            )
        for word in content_words(class_name):
            add(word, label, "label")
    for part in default_body_parts:
        add(part, None, "body part")
        units[part]["default"] = True
    return {
        unit: {"labels": sorted(entry["labels"]), "kinds": sorted(entry["kinds"]), "default": entry["default"]}
        for unit, entry in sorted(units.items())
    }


# ----------------------------------------------------------------------------------------------------------------
# Step 2: descriptions per unit
# ----------------------------------------------------------------------------------------------------------------


def generate_descriptions(
    name: str,
    backend: Backend | Callable[[], Backend],
    units: list[str],
    sampling: SamplingOptions,
    log_path: str | os.PathLike,
    chunk_size: int = 256,
) -> list[dict[str, Any]]:
    """
    Ask model `name` the three description prompts (`DESCRIPTION_PROMPTS`) for every unit, resumable and with
    retries. Attempt k of (unit, prompt) is sampled with `request_seed(seed, "describe/<unit>", prompt index, k)`.

    Returns:
        This generator's description records in the log: `generator, revision, stage, unit, prompt_index, attempt,
        seed, answer, descriptions` (the candidates; None when rejected) and `rejected`.
    """
    questions = [
        {"stage": "describe", "unit": unit, "prompt_index": p}
        for unit in units
        for p in range(len(DESCRIPTION_PROMPTS))
    ]

    def make_request(question: dict[str, Any], attempt: int) -> ChatRequest:
        seed = request_seed(sampling.seed, f"describe/{question['unit']}", question["prompt_index"], attempt)
        return ChatRequest(description_messages(question["unit"], question["prompt_index"]), seed)

    def parse(question: dict[str, Any], answer: str) -> list[str]:
        return parse_descriptions(answer)

    return ask_until_parsed(
        name,
        backend,
        questions,
        make_request,
        parse,
        sampling,
        log_path,
        "descriptions",
        (EntityParseError,),
        chunk_size,
    )


# ----------------------------------------------------------------------------------------------------------------
# Step 3: word sense
# ----------------------------------------------------------------------------------------------------------------


def lesk_overlap(unit: str, description: str, context: str) -> int:
    """
    The simplified Lesk score of a description (a gloss) of `unit` in `context`: how many distinct content words
    (stop words removed) the description shares with the context, the unit's own words not counted (every gloss of
    a unit repeats them, whichever sense it gives).
    """
    own = set(content_words(unit))
    return len((set(content_words(description)) - own) & set(content_words(context)))


def select_senses(
    units: dict[str, dict[str, Any]],
    candidates: dict[str, list[dict[str, Any]]],
    classes: dict[str, str],
    clip: str,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    clip_revision: str | None = None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """
    Choose every unit's description among its candidates, by the sense that fits the actions the unit came from.

    The context of a unit is the names of its labels (for a default body part no label listed: "a part of the human
    body"). A candidate's score is its Lesk overlap with that context (`lesk_overlap`), then, to break ties, the
    cosine similarity under the CLIP text tower `clip` of its entity text ("unit: description") to the mean of the
    normalised class prompts (`prompt_template`) of the unit's labels. The first of equal candidates (generator,
    prompt and attempt order) wins.

    Args:
        candidates: unit -> its candidates, each `{"description", "generator", "prompt", "answer"}`.

    Returns:
        `selected` (unit -> its chosen candidate with `lesk` and `similarity`) and every candidate row (with `unit`,
        `lesk`, `similarity`, `selected`). Units without a candidate are left out of `selected`.
    """
    import torch

    from .tpp import encode_texts

    contexts = {
        unit: [classes[label] for label in info["labels"] if label in classes] or [BODY_CONTEXT]
        for unit, info in units.items()
    }
    rows = [{"unit": unit, **c} for unit in units for c in candidates.get(unit, [])]
    prompts = sorted({text for names in contexts.values() for text in names})
    if not rows:
        return {}, []
    texts = [entity_text(r["unit"], r["description"]) for r in rows]
    texts += [prompt_template.format(p) if p != BODY_CONTEXT else p for p in prompts]
    embeds = torch.nn.functional.normalize(encode_texts(clip, texts, revision=clip_revision).float(), dim=-1)
    candidate_embeds, prompt_embeds = embeds[: len(rows)], dict(zip(prompts, embeds[len(rows) :], strict=True))
    selected: dict[str, dict[str, Any]] = {}
    for row, embed in zip(rows, candidate_embeds, strict=True):
        names = contexts[row["unit"]]
        context = torch.nn.functional.normalize(torch.stack([prompt_embeds[n] for n in names]).mean(0), dim=-1)
        row["lesk"] = lesk_overlap(row["unit"], row["description"], " ".join(names))
        row["similarity"] = float(embed @ context)
        best = selected.get(row["unit"])
        if best is None or (row["lesk"], row["similarity"]) > (best["lesk"], best["similarity"]):
            selected[row["unit"]] = row
    for row in rows:
        row["selected"] = selected[row["unit"]] is row
    return selected, rows


# ----------------------------------------------------------------------------------------------------------------
# The corpus, its card and the command line
# ----------------------------------------------------------------------------------------------------------------

CARD_TEMPLATE = template_path(ENTITY_DATASET_CARD)


def labels_in_log(log_path: str | os.PathLike) -> dict[str, str]:
    """Label -> class name of every label a unit question was asked about in the log (earlier runs)."""
    return {r["label"]: r["class_name"] for r in read_log(log_path) if r.get("stage") == "units"}


def entity_card(
    entities: list[dict],
    descriptions: list[dict],
    unit_rows: list[dict],
    records: list[dict],
    generators: list[dict[str, Any]],
    sampling: SamplingOptions,
    clip: str,
    prompt_template: str,
    num_labels: int,
    dropped: list[str],
    num_earlier: int = 0,
    pretty_name: str = "ALT entity corpus",
    source: str = "",
    license: str = "apache-2.0",
    repo_id: str | None = None,
):
    """
    The dataset card of an entity corpus, from `hub_cards/entity_dataset_card.md`: the corpus, provenance, and the
    refused answers of `records` (the answer log's records of the generators, unit and description questions counted
    apart, by reason, with `refusal_report`).
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from ..data.entities import config_metadata

    data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        language=["en"],
        task_categories=["video-classification"],
        tags=["alt", "entity-corpus", "action-recognition"],
        configs=config_metadata(),
    )
    kinds = Counter(kind for row in entities for kind in row["kinds"])
    per_generator = Counter(row["generator"] for row in entities)
    examples = [row for row in entities if not row["default"]][:5] or entities[:5]
    refused = [
        (stage, refusal_report([r for r in records if r.get("stage") == stage], result))
        for stage, result in (("units", "units"), ("describe", "descriptions"))
    ]
    return DatasetCard.from_template(
        data,
        template_path=os.fspath(CARD_TEMPLATE),
        pretty_name=pretty_name,
        source=source,
        num_entities=len(entities),
        num_labels=num_labels,
        num_earlier=num_earlier,
        num_descriptions=len(descriptions),
        num_unit_answers=len(unit_rows),
        kinds=[(kind, kinds.get(kind, 0)) for kind in (*UNIT_KINDS, "label")],
        num_default=sum(row["default"] for row in entities),
        default_body_parts=", ".join(DEFAULT_BODY_PARTS),
        generators=[{**g, "selected": per_generator.get(g["model"], 0)} for g in generators],
        sampling=asdict(sampling),
        prompt_version=PROMPT_VERSION,
        unit_questions=[(kind, UNIT_QUESTIONS[kind]) for kind in UNIT_KINDS],
        description_prompts=list(zip(DESCRIPTION_PROMPT_NAMES, DESCRIPTION_PROMPTS, strict=True)),
        clip=clip,
        prompt_template=prompt_template,
        num_answers=len(records),
        refused=refused,
        num_refused=sum(report["refused"] for _, report in refused),
        lesk_decided=sum(row["lesk"] > 0 for row in entities),
        dropped=dropped,
        examples=examples,
        repo_id=repo_id or "<this repo>",
    )


def generate_entity_corpus(
    models: dict[str, Backend | Callable[[], Backend]],
    classes: dict[str, str],
    clip: str,
    output: str | os.PathLike,
    sampling: SamplingOptions = DEFAULT_SAMPLING,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    max_unit_words: int = 4,
    chunk_size: int = 256,
    default_body_parts: tuple[str, ...] = DEFAULT_BODY_PARTS,
    source: str = "",
    clip_revision: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """
    Build the entity corpus of `classes` and of every label already answered in `output` (steps 1-3 of the module
    docstring) and write the dataset (`entities`, `descriptions`, `units` configurations) and its card to `output`.

    Every model is asked in turn, resuming from `output/answers.jsonl`; a model is loaded (once per step) only if
    something is left to ask it.

    Args:
        models: model id -> its back-end, or a function that loads it.
        classes: label -> the class name written into the unit questions.

    Raises:
        ValueError: no labels; a label without any unit (named).
    """
    if not classes:
        raise ValueError("no labels: the corpus is built from at least one action label")
    if not models:
        raise ValueError("no models: give at least one chat model")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / "answers.jsonl"
    earlier = {label: name for label, name in labels_in_log(log_path).items() if label not in classes}
    if earlier:
        logger.info("%d labels of earlier runs in %s stay in the corpus", len(earlier), log_path)
    classes = {**earlier, **classes}

    unit_records, revisions = [], {}
    for name, backend in models.items():
        got = generate_units(name, backend, classes, sampling, log_path, max_unit_words, chunk_size)
        unit_records.extend(got)
        revisions[name] = next((r["revision"] for r in got if r["revision"]), None)
        logger.info("%s: %d unit answers, %d accepted", name, len(got), sum(1 for r in got if r["units"]))
    units = pool_units(unit_records, classes, default_body_parts)
    logger.info("%d units from %d labels (%d default body parts)", len(units), len(classes), len(default_body_parts))

    describe_records = []
    for name, backend in models.items():
        got = generate_descriptions(name, backend, list(units), sampling, log_path, chunk_size)
        describe_records.extend(got)
        revisions[name] = revisions[name] or next((r["revision"] for r in got if r["revision"]), None)
        logger.info("%s: %d description answers, %d accepted", name, len(got), sum(1 for r in got if r["descriptions"]))
    candidates: dict[str, list[dict[str, Any]]] = {}
    for record in describe_records:
        if record["unit"] in units and record["descriptions"]:
            for description in record["descriptions"]:
                candidates.setdefault(record["unit"], []).append(
                    {
                        "description": description,
                        "generator": record["generator"],
                        "prompt": DESCRIPTION_PROMPT_NAMES[record["prompt_index"]],
                        "answer": record["answer"],
                    }
                )
    selected, description_rows = select_senses(units, candidates, classes, clip, prompt_template, clip_revision)
    dropped = [unit for unit in units if unit not in selected]
    if dropped:
        logger.warning(
            "%d units left out of the corpus: every description answer was rejected: %s", len(dropped), dropped
        )
    entities = [
        {
            "unit": unit,
            "description": selected[unit]["description"],
            "text": entity_text(unit, selected[unit]["description"]),
            **info,
            "generator": selected[unit]["generator"],
            "prompt": selected[unit]["prompt"],
            "lesk": selected[unit]["lesk"],
            "similarity": selected[unit]["similarity"],
        }
        for unit, info in units.items()
        if unit in selected
    ]
    if not entities:
        raise ValueError("no entities: every description answer of every unit was rejected")
    unit_rows = [
        {k: r[k] for k in ("label", "class_name", "kind", "units", "generator", "answer")}
        for r in unit_records
        if r["units"] and r["label"] in classes
    ]
    records = unit_records + describe_records
    generators = [{"model": name, "revision": revisions[name] or "unknown"} for name in models]
    card = entity_card(
        entities,
        description_rows,
        unit_rows,
        records,
        generators,
        sampling,
        clip,
        prompt_template,
        len(classes),
        dropped,
        num_earlier=len(earlier),
        source=source,
        repo_id=repo_id,
    )
    save_entity_dataset(output, entities, description_rows, unit_rows, card=card)
    logger.info("%d entities (%d labels) saved to %s", len(entities), len(classes), output)
    return output


@dataclass
class EntityCorpusArguments(GenerationArguments):
    """The command line of `datasets_scripts/entity_corpus.py`: the flags of `generate_subtexts.py` where they mean the
    same (the back-end's are `BackendOptions`)."""

    output: str = field(metadata={"help": "Folder of the corpus (and the resume log); a later run extends it."})
    clip: str = field(default=CLIP_VIT_B16, metadata={"help": "CLIP whose text tower breaks word-sense ties."})
    max_new_tokens: int = field(default=256, metadata={"help": "Per answer: lists and descriptions are short."})
    prompt_template: str = field(
        default=DEFAULT_PROMPT_TEMPLATE, metadata={"help": "The class prompt of the word-sense tie-break."}
    )
    max_unit_words: int = field(default=4, metadata={"help": "A listed item of more words is a sentence, not a unit."})
    no_default_body_parts: bool = field(default=False, metadata={"help": "Do not add the default body parts."})

    positive_flags = (*GenerationArguments.positive_flags, "max_unit_words")


def run_entity_corpus(args: EntityCorpusArguments, backend: BackendOptions | None = None) -> Path:
    """
    `datasets_scripts/entity_corpus.py`: read the labels of `args.classes`, build the corpus with every model of
    `args.model` on the back-end `backend` (`generate_entity_corpus`), and push it when `args.push_to_hub` names a repo.

    Returns:
        The output folder.
    """
    classes = read_classes(args.classes)
    logger.info("%d labels from %s, %d model(s)", len(classes), args.classes, len(args.model))
    output = generate_entity_corpus(
        model_loaders(args.model, backend),
        classes,
        args.clip,
        args.output,
        args.sampling(),
        args.prompt_template,
        args.max_unit_words,
        args.chunk_size,
        () if args.no_default_body_parts else DEFAULT_BODY_PARTS,
        source=args.classes,
        repo_id=args.push_to_hub,
    )
    if args.push_to_hub:
        from ..data.entities import push_entity_dataset

        files = push_entity_dataset(output, args.push_to_hub, private=args.private)
        logger.info("pushed %d files to the dataset repo %s", len(files), args.push_to_hub)
    return output
