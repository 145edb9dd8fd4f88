"""The answer log and the retry loop that both generators (sub-texts and the entity corpus) ask their questions with.

Every answer, accepted or rejected with its reason, is appended to a JSON-lines log as soon as its chunk finishes, so
an interrupted run restarts without asking again what was already answered (`read_log` reads it back). A rejected
answer is asked again with the next attempt, and so the next seed (`backends.request_seed`), up to
`SamplingOptions.max_attempts` times (`ask_until_parsed`). `generate_answers` asks the sub-text questions (the four
prompts of the SFAR paper's Table 6 for every class) through that loop. `refusal_report` counts, from the log's
records, how many answers were refused and why, for the dataset cards.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

from .backends import Backend, Request, SamplingOptions, request_seed
from .subtext_prompts import QUESTION_PROMPTS, SubtextParseError, parse_subtexts

__all__ = ["read_log", "ask_until_parsed", "generate_answers", "refusal_report"]

logger = logging.getLogger(__name__)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The answers recorded so far (a line cut short by an interruption is dropped)."""
    records = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("%s: dropping an incomplete line (the run was interrupted while writing)", path)
    return records


def ask_until_parsed(
    name: str,
    backend: Backend | Callable[[], Backend],
    questions: list[dict[str, Any]],
    make_request: Callable[[dict[str, Any], int], Any],
    parse: Callable[[dict[str, Any], str], Any],
    sampling: SamplingOptions,
    log_path: str | os.PathLike,
    result_field: str,
    rejections: tuple[type[Exception], ...],
    chunk_size: int = 256,
) -> list[dict[str, Any]]:
    """
    Ask model `name` every question, retrying a rejected answer with the next attempt (and so the next seed), up to
    `sampling.max_attempts` times, and append every answer (accepted or rejected, with the reason) to `log_path` as
    each chunk finishes. The loop behind the sub-text and the entity-corpus generators.

    Requests already in the log for this generator (accepted, or rejected at that attempt) are not asked again;
    `backend` may be a function that loads the model, called only when something is left to ask. A back-end loaded
    here is closed (`close()`, when it has one) at the end; one given ready is left open for the caller.

    Args:
        questions: the fields that identify each question in the log (JSON values, the same keys for all), e.g.
            `{"label": ..., "prompt_index": ...}`; a record holding all of these keys belongs to this loop.
        make_request: (question, attempt) -> what the back-end is asked: an object with `messages` (the chat) and
            `seed` (its sampling seed), recorded.
        parse: (question, answer) -> the parsed result (truthy), or raises one of `rejections` to reject the answer.
        result_field: the record field that holds the parsed result (None when rejected).
        rejections: the exceptions of `parse` that reject an answer (recorded with their `reason`, else their text);
            any other exception stops the run.

    Returns:
        This generator's records in the log for questions with these keys (also those of earlier runs not asked now):
        `generator, revision, <question fields>, attempt, seed, answer, <result_field>, rejected` (the reason, or None).
    """
    from tqdm.auto import tqdm

    if not questions:
        return []
    fields = list(questions[0])

    def key(entry: dict[str, Any]) -> tuple:
        return tuple(json.dumps(entry[f]) for f in fields)  # lists (JSON) become hashable

    loaded = False
    records = [r for r in read_log(log_path) if r["generator"] == name and all(f in r for f in fields)]
    done = {(*key(r), r["attempt"]) for r in records}
    accepted = {key(r) for r in records if r[result_field]}
    if records:
        logger.info("%s: %d answers found in %s, not asked again", name, len(records), log_path)
    for attempt in range(sampling.max_attempts):
        pending = [
            (question, make_request(question, attempt))
            for question in questions
            if key(question) not in accepted and (*key(question), attempt) not in done
        ]
        if not pending:
            continue
        if callable(backend) and not hasattr(backend, "generate"):
            backend, loaded = backend(), True  # load the model only now
        progress = tqdm(total=len(pending), desc=f"{name} attempt {attempt + 1}", unit="answer")
        for start in range(0, len(pending), chunk_size):
            chunk = pending[start : start + chunk_size]
            answers = backend.generate([request for _, request in chunk], sampling)
            with open(log_path, "a") as f:
                for (question, request), answer in zip(chunk, answers, strict=True):
                    try:
                        result, rejected = parse(question, answer), None
                        accepted.add(key(question))
                    except rejections as error:
                        result, rejected = None, getattr(error, "reason", str(error))
                    record = {
                        "generator": name,
                        "revision": backend.revision,
                        **question,
                        "attempt": attempt,
                        "seed": request.seed,
                        "answer": answer,
                        result_field: result,
                        "rejected": rejected,
                    }
                    records.append(record)
                    f.write(json.dumps(record) + "\n")
            progress.update(len(chunk))
        progress.close()
    if loaded and hasattr(backend, "close"):
        backend.close()
    return records


def generate_answers(
    name: str,
    backend: Backend | Callable[[], Backend],
    classes: dict[str, str],
    sampling: SamplingOptions,
    log_path: str | os.PathLike,
    num_subtexts: int = 4,
    chunk_size: int = 256,
) -> list[dict[str, Any]]:
    """
    Ask model `name` every prompt for every class, retrying rejected answers with the next seed, and append every
    answer (accepted or rejected, with the reason) to `log_path` as each chunk finishes (`ask_until_parsed`).

    Requests already in the log for this generator (accepted, or rejected at that attempt) are not asked again;
    `backend` may be a function that loads the model, called only when something is left to ask. A back-end loaded
    here is closed (`close()`, when it has one) at the end; one given ready is left open for the caller.

    Args:
        classes: label -> the class name written into the prompt.

    Returns:
        This generator's records in the log: `generator, revision, label, prompt_index, attempt, seed, answer,
        subtexts` (None when rejected) and `rejected` (the reason, or None).
    """
    questions = [{"label": label, "prompt_index": p} for label in classes for p in range(len(QUESTION_PROMPTS))]

    def make_request(question: dict[str, Any], attempt: int) -> Request:
        label, p = question["label"], question["prompt_index"]
        return Request(label, classes[label], p, attempt, request_seed(sampling.seed, label, p, attempt))

    return ask_until_parsed(
        name,
        backend,
        questions,
        make_request,
        lambda question, answer: parse_subtexts(answer, num_subtexts),
        sampling,
        log_path,
        "subtexts",
        (SubtextParseError,),
        chunk_size,
    )


# What a log record holds besides the fields that identify its question.
_ANSWER_FIELDS = {"generator", "revision", "attempt", "seed", "answer", "rejected"}


def refusal_report(records: list[dict[str, Any]], result_field: str, example_chars: int = 100) -> dict[str, Any]:
    """
    How many of `records` (answer-log records whose parsed result is `result_field`) were refused, and why.

    Returns:
        `answers` (records), `refused` (records with a rejection reason), `questions` (a model asked one question:
        the generator and the record's question fields), `unanswered` (questions refused at every attempt made), and
        `reasons`: one row per reason, most frequent first, `{"reason", "count", "by_generator": {model: count},
        "example": the first such answer on one line, cut to `example_chars` characters, with "|" escaped for a
        markdown table}`.
    """
    question_fields = sorted({k for r in records for k in r} - _ANSWER_FIELDS - {result_field})

    def question(record: dict[str, Any]) -> tuple:
        return (record["generator"], *(json.dumps(record.get(f)) for f in question_fields))

    accepted = {question(r) for r in records if not r["rejected"]}
    asked = {question(r) for r in records}
    counts = Counter(r["rejected"] for r in records if r["rejected"])
    reasons = []
    for reason, count in counts.most_common():
        refused = [r for r in records if r["rejected"] == reason]
        example = " ".join((refused[0].get("answer") or "").split())
        if len(example) > example_chars:
            example = example[: example_chars - 3].rstrip() + "..."
        reasons.append(
            {
                "reason": reason,
                "count": count,
                "by_generator": dict(Counter(r["generator"] for r in refused).most_common()),
                "example": example.replace("|", "\\|"),
            }
        )
    return {
        "answers": len(records),
        "refused": sum(counts.values()),
        "questions": len(asked),
        "unanswered": len(asked - accepted),
        "reasons": reasons,
    }
