"""The ALT entity corpus end to end on tiny scripted Llama chat models built here, with the transformers back-end:
the appendix's questions, rejections and retries, deduplication across labels, the default body parts, word-sense
selection, the dataset and its card, resuming after an interruption, extending with new labels, and the errors.

The scripted model (`build_tiny_llama_chat` with a script of its own) answers every question, whatever it is, with a
one- or two-line list whose lines are drawn by the seed: "1. Barbell: a long bar ...", "2. Hands and arms: ...", or
"None." (no unit, no description) followed by an early stop. Unit questions parse it into units, description prompts
into candidate descriptions; "None." alone is rejected and asked again with the next seed.

The vLLM back-end's test is test_entity_corpus_vllm.py: it needs the generation environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets_scripts.entity_corpus import main, parse_args
from modeling_sfar.data.classes import read_classes
from modeling_sfar.data.entities import ENTITY_CONFIGS, entity_texts, load_entity_config
from modeling_sfar.generation.answers import read_log
from modeling_sfar.generation.backends import SamplingOptions, TransformersBackend, request_seed
from modeling_sfar.generation.entity_corpus import (
    BODY_CONTEXT,
    ChatRequest,
    generate_descriptions,
    generate_entity_corpus,
    generate_units,
    lesk_overlap,
    select_senses,
)
from modeling_sfar.generation.entity_prompts import (
    DESCRIPTION_PROMPTS,
    UNIT_KINDS,
    description_messages,
    unit_messages,
)
from modeling_sfar.generation.tpp import encode_texts
from modeling_sfar.testing_utils import build_tiny_llama_chat

SCRIPT = (
    (
        "1. Barbell: a long bar loaded with weight plates.\n",
        "1. Gym floor: a flat rubber surface of a gym.\n",
        "None.\n",
    ),
    ("2. Hands and arms: they grip and push the weight.\n", "2. Lifter: the person who lifts the weight.\n"),
)
CLOSING = "These identify the action."
UNITS = {"barbell", "gym floor", "hands", "arms", "lifter"}  # what the script can list
LABELS = ["clean_and_jerk", "PlayingDaf"]
BODY = ("head", "hands", "feet")
SAMPLING = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0, max_attempts=3)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> str:
    # after a first line, the answer ends there with probability 0.6: "None." alone (rejected) is then 20% of answers
    path = tmp_path_factory.mktemp("entity-llama")
    return build_tiny_llama_chat(path, steps=SCRIPT, closing=CLOSING, stop_early_probability=0.6)


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("\n".join(LABELS) + "\n")
    return read_classes(str(path))


@pytest.fixture(scope="module")
def generated(llama, tiny_clip_dir, tmp_path_factory) -> Path:
    """The command line, as a user runs it (default body parts, every flag at its default but the sampling's)."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    argv = ["--classes", str(folder / "labels.txt"), "--model", llama, "--clip", tiny_clip_dir]
    argv += ["--output", str(folder / "out"), "--backend", "transformers", "--temperature", "1", "--top_p", "1"]
    argv += ["--max_new_tokens", "8"]
    assert main(argv) == folder / "out"
    return folder / "out"


class Counting(TransformersBackend):
    """The transformers back-end, recording the requests it is asked, optionally interrupted at call `fail_at`."""

    def __init__(self, *args, fail_at: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked, self.calls, self.fail_at = [], 0, fail_at

    def generate(self, requests, sampling):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        self.asked.extend(requests)
        return super().generate(requests, sampling)


def asked_chats(backend: Counting) -> set[str]:
    return {json.dumps(r.messages) for r in backend.asked}


def asked(backend: Counting) -> set[tuple[str, int]]:
    """Every request asked: its chat and seed (the seed tells the attempts of one question apart)."""
    return {(json.dumps(r.messages), r.seed) for r in backend.asked}


def test_every_label_is_asked_every_kind_then_every_unit_every_description_prompt(llama, classes, tmp_path):
    backend = Counting(llama, batch_size=8)
    log = tmp_path / "answers.jsonl"
    records = generate_units("llama", backend, classes, SAMPLING, log)
    first = [r for r in backend.asked if isinstance(r, ChatRequest)]
    expected = {json.dumps(unit_messages(name, kind)) for name in classes.values() for kind in UNIT_KINDS}
    assert {json.dumps(r.messages) for r in first} == expected
    for record in records:
        kind = UNIT_KINDS.index(record["kind"])
        assert record["seed"] == request_seed(0, f"units/{record['label']}", kind, record["attempt"])
        assert record["class_name"] == classes[record["label"]] and record["stage"] == "units"
    answered = {(r["label"], r["kind"]) for r in records if r["units"]}
    failed = {(r["label"], r["kind"]) for r in records if r["attempt"] == SAMPLING.max_attempts - 1 and r["rejected"]}
    assert answered | failed == {(label, kind) for label in classes for kind in UNIT_KINDS} and answered
    assert all(set(r["units"]) <= UNITS for r in records if r["units"])

    backend.asked.clear()
    records = generate_descriptions("llama", backend, ["gym floor", "head"], SAMPLING, log)
    expected = {json.dumps(description_messages(u, p)) for u in ("gym floor", "head") for p in range(3)}
    assert asked_chats(backend) == expected
    for record in records:
        assert record["seed"] == request_seed(
            0, f"describe/{record['unit']}", record["prompt_index"], record["attempt"]
        )
    # both stages share one log, and each reads only its own records back
    assert len(read_log(log)) == len(records) + len(generate_units("llama", backend, classes, SAMPLING, log))


def test_rejected_answers_are_retried_with_the_next_seed_and_recorded(generated):
    records = read_log(generated / "answers.jsonl")
    rejected = [r for r in records if r["rejected"]]
    assert {(r["stage"], r["rejected"]) for r in rejected} == {
        ("units", "no units listed"),
        ("describe", "no description"),
    }
    assert all(r["answer"].strip() == "None." for r in rejected)
    by_question = {}
    for r in records:
        key = (r["stage"], r.get("label"), r.get("kind"), r.get("unit"), r.get("prompt_index"))
        by_question.setdefault(key, []).append(r)
    for answers in by_question.values():
        answers.sort(key=lambda r: r["attempt"])
        assert [r["attempt"] for r in answers] == list(range(len(answers)))
        assert all(r["rejected"] for r in answers[:-1]), "asked again only after a rejection"
        assert len(answers) == SAMPLING.max_attempts or not answers[-1]["rejected"]
    assert any(r["attempt"] > 0 and (r.get("units") or r.get("descriptions")) for r in records), "retries succeed"


def test_the_corpus_deduplicates_units_across_labels_and_keeps_their_labels_and_kinds(generated, classes):
    entities = load_entity_config(generated, "entities")
    units = load_entity_config(generated, "units")
    assert entities["unit"] == sorted(set(entities["unit"])), "one entity per unit, sorted"
    listed: dict[str, set] = {}
    for row in units:
        assert row["class_name"] == classes[row["label"]] and row["units"]
        for unit in row["units"]:
            listed.setdefault(unit, set()).add((row["label"], row["kind"]))
    label_words = {"clean": "clean_and_jerk", "jerk": "clean_and_jerk", "playing": "PlayingDaf", "daf": "PlayingDaf"}
    for row in entities:
        assert row["text"] == f"{row['unit']}: {row['description']}"
        expected_labels = {label for label, _ in listed.get(row["unit"], ())} | (
            {label_words[row["unit"]]} if row["unit"] in label_words else set()
        )
        assert set(row["labels"]) == expected_labels
        expected_kinds = {kind for _, kind in listed.get(row["unit"], ())} | (
            {"label"} if row["unit"] in label_words else set()
        )
        assert set(row["kinds"]) - {"body part"} == expected_kinds - {"body part"}
    # the label names' content words ("and" is a stop word) and every default body part are entities
    assert set(label_words) <= set(entities["unit"])
    defaults = {"head", "face", "eyes", "mouth", "neck", "shoulders", "arms", "elbows", "hands", "fingers", "torso"}
    assert defaults <= {row["unit"] for row in entities if row["default"] and "body part" in row["kinds"]}
    assert not [
        row for row in entities if row["default"] and row["unit"] not in defaults | {"hips", "legs", "knees", "feet"}
    ]


def test_every_unit_keeps_its_best_sense(generated):
    entities = {row["unit"]: row for row in load_entity_config(generated, "entities")}
    descriptions = load_entity_config(generated, "descriptions")
    by_unit: dict[str, list] = {}
    for row in descriptions:
        by_unit.setdefault(row["unit"], []).append(row)
    assert set(by_unit) == set(entities)
    for unit, rivals in by_unit.items():
        (chosen,) = [row for row in rivals if row["selected"]]
        assert max((r["lesk"], r["similarity"]) for r in rivals) == (chosen["lesk"], chosen["similarity"])
        entity = entities[unit]
        assert (entity["description"], entity["generator"], entity["prompt"]) == (
            chosen["description"],
            chosen["generator"],
            chosen["prompt"],
        )
        assert chosen["prompt"] in {"looks-like", "explanations", "one-sentence"}


def test_entity_texts_are_what_alt_encodes(generated):
    entities = load_entity_config(generated, "entities")
    assert entity_texts(generated) == entities["text"] == entity_texts(entities)
    objects = entity_texts(generated, kinds=["object"])
    assert objects == [row["text"] for row in entities if "object" in row["kinds"]] and objects
    with pytest.raises(ValueError, match=r"no entities of the kinds \['tool'\]"):
        entity_texts(generated, kinds=["tool"])
    with pytest.raises(ValueError, match="not the entities of an entity corpus"):
        entity_texts(load_entity_config(generated, "units"))
    with pytest.raises(ValueError, match=r"unknown configuration 'subtexts'; an entity corpus has"):
        load_entity_config(generated, "subtexts")


def test_the_card_records_provenance_prompts_and_counts(generated, llama, tiny_clip_dir):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(generated / "README.md")
    data = card.data.to_dict()
    assert [c["config_name"] for c in data["configs"]] == list(ENTITY_CONFIGS)
    assert "alt" in data["tags"] and "video-classification" in data["task_categories"]
    text = card.text
    entities = load_entity_config(generated, "entities")
    assert f"{entities.num_rows} entities" in text and "2 action labels" in text
    assert f"`{llama}`" in text and "temperature 1.0" in text and "seed 0" in text and "alt-appendix-a/v1" in text
    assert DESCRIPTION_PROMPTS[1] in text and "What are identifying primitive motions of an action {label}?" in text
    # the refused answers, counted from the answer log per kind of question
    records = read_log(generated / "answers.jsonl")
    stages = (("units", "Units", "no units listed"), ("describe", "Descriptions", "no description"))
    for stage, heading, reason in stages:
        asked = [r for r in records if r["stage"] == stage]
        refused = [r for r in asked if r["rejected"]]
        assert refused and {r["rejected"] for r in refused} == {reason}
        assert f"**{heading}.** {len(refused)} of {len(asked)} answers were" in text
        assert f"| {reason} | {len(refused)} | `{llama}` {len(refused)} | None. |" in text
    assert f"`{tiny_clip_dir}`" in text and "Lesk decided" in text and "- body part: " in text
    assert any(f"`{t}`" in text for t in entities["text"]), "examples"


def test_an_interrupted_run_resumes_without_asking_again(llama, classes, tiny_clip_dir, tmp_path):
    first = Counting(llama, batch_size=4, fail_at=4)  # 10 unit questions: 3 chunks of 4 are saved, then it stops
    with pytest.raises(KeyboardInterrupt):
        generate_entity_corpus(
            {"llama": first}, classes, tiny_clip_dir, tmp_path, SAMPLING, chunk_size=4, default_body_parts=BODY
        )
    saved = read_log(tmp_path / "answers.jsonl")
    assert saved and {r["stage"] for r in saved} == {"units"}
    again = Counting(llama, batch_size=4)
    generate_entity_corpus(
        {"llama": again}, classes, tiny_clip_dir, tmp_path, SAMPLING, chunk_size=4, default_body_parts=BODY
    )
    assert asked(first) and not asked(first) & asked(again), "nothing answered before is asked again"
    assert sum(r["stage"] == "units" for r in read_log(tmp_path / "answers.jsonl")) >= len(classes) * len(UNIT_KINDS)
    # a third run finds nothing to ask and does not load the model
    loads = []
    generate_entity_corpus(
        {"llama": lambda: loads.append(1) or again}, classes, tiny_clip_dir, tmp_path, SAMPLING, default_body_parts=BODY
    )
    assert not loads


def test_a_run_with_new_labels_asks_only_about_them_and_keeps_the_old_answers(llama, tiny_clip_dir, tmp_path):
    first = Counting(llama, batch_size=8)
    generate_entity_corpus(
        {"llama": first}, {"jump": "jump"}, tiny_clip_dir, tmp_path, SAMPLING, default_body_parts=BODY
    )
    before = read_log(tmp_path / "answers.jsonl")
    old_units = set(load_entity_config(tmp_path)["unit"])

    second = Counting(llama, batch_size=8)
    generate_entity_corpus(
        {"llama": second}, {"swim": "swim"}, tiny_clip_dir, tmp_path, SAMPLING, default_body_parts=BODY
    )
    after = read_log(tmp_path / "answers.jsonl")
    assert after[: len(before)] == before, "the old answers are kept as they were"
    unit_questions = [json.loads(chat)[0]["content"] for chat in asked_chats(second) if "identifying" in chat]
    assert unit_questions and all("of an action swim?" in q for q in unit_questions)
    described = {r["unit"] for r in after[len(before) :] if r["stage"] == "describe"}
    assert "swim" in described and described == set(load_entity_config(tmp_path)["unit"]) - old_units
    assert not described & old_units, "units described before are not asked again"
    entities = load_entity_config(tmp_path)
    assert {"jump", "swim"} <= set(entities["unit"])
    assert {label for labels in entities["labels"] for label in labels} == {"jump", "swim"}, "the corpus grows"


def test_an_empty_label_list_is_refused(llama, tiny_clip_dir, tmp_path):
    with pytest.raises(ValueError, match="no labels: the corpus is built from at least one action label"):
        generate_entity_corpus({"llama": llama}, {}, tiny_clip_dir, tmp_path)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="empty.txt: no class names"):
        main(["--classes", str(tmp_path / "empty.txt"), "--model", llama, "--output", str(tmp_path / "o")])


def test_a_label_without_any_unit_is_named(tiny_clip_dir, tmp_path):
    refusing = build_tiny_llama_chat(tmp_path / "refusing", steps=(("None.\n",),), closing=None)
    backend = TransformersBackend(refusing)
    sampling = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=4, max_attempts=2)
    with pytest.raises(
        ValueError, match=r"label 'PlayingDaf' has no units: every answer was rejected \('no units listed' x10\)"
    ):
        generate_entity_corpus(
            {"refusing": backend}, {"PlayingDaf": "Playing Daf"}, tiny_clip_dir, tmp_path / "o", sampling
        )
    assert len(read_log(tmp_path / "o" / "answers.jsonl")) == len(UNIT_KINDS) * 2, "every attempt was made and kept"


def test_lesk_counts_shared_content_words_without_the_units_own():
    # "bar" is the unit: it does not count; "weightlifting" does, "a"/"the" are stop words
    assert lesk_overlap("bar", "a metal bar lifted in weightlifting", "clean and jerk weightlifting") == 1
    assert lesk_overlap("bar", "a counter where drinks are served at the bar", "clean and jerk weightlifting") == 0
    assert lesk_overlap("bar", "the bar", "bar") == 0


def test_the_sense_that_shares_words_with_the_labels_wins_and_clip_breaks_ties(tiny_clip_dir):
    units = {
        "bar": {"labels": ["snatch"], "kinds": ["object"], "default": False},
        "neck": {"labels": [], "kinds": ["body part"], "default": True},
    }
    classes = {"snatch": "snatch weightlifting"}
    bar = [
        {"description": "a counter where drinks are served", "generator": "g", "prompt": "looks-like", "answer": "1"},
        {
            "description": "a metal rod lifted in weightlifting",
            "generator": "g",
            "prompt": "explanations",
            "answer": "2",
        },
    ]
    neck = [
        {"description": "the narrow end of a bottle", "generator": "g", "prompt": "looks-like", "answer": "3"},
        {"description": "it joins the head to the torso", "generator": "g", "prompt": "one-sentence", "answer": "4"},
    ]
    selected, rows = select_senses(units, {"bar": bar, "neck": neck}, classes, tiny_clip_dir)
    assert selected["bar"]["description"] == "a metal rod lifted in weightlifting" and selected["bar"]["lesk"] == 1
    # neither neck sense shares a word with its context: the CLIP similarity to "a part of the human body" decides
    assert [r["lesk"] for r in rows if r["unit"] == "neck"] == [0, 0]
    import torch

    embeds = torch.nn.functional.normalize(
        encode_texts(tiny_clip_dir, [f"neck: {c['description']}" for c in neck] + [BODY_CONTEXT]), dim=-1
    )
    similarities = (embeds[:2] @ embeds[2]).tolist()
    assert [r["similarity"] for r in rows if r["unit"] == "neck"] == pytest.approx(similarities, abs=1e-5)
    assert selected["neck"]["description"] == neck[similarities.index(max(similarities))]["description"]
    assert sum(r["selected"] for r in rows) == 2


def test_the_command_line_mirrors_generate_subtexts(llama, capsys):
    args, backend = parse_args(
        ["--classes", "c.txt", "--model", llama, "--model", "b@abc", "c", "--output", "o", "--backend", "vllm"]
    )
    assert args.model == [llama, "b@abc", "c"] and backend.backend == "vllm"
    assert args.clip == "openai/clip-vit-base-patch16"
    assert (backend.kv_cache_gib, backend.enforce_eager, backend.batch_size, args.max_attempts) == (None, False, 8, 3)
    with pytest.raises(SystemExit):
        parse_args(["--classes", "c.txt", "--model", llama, "--output", "out", "--backend", "openai"])
    with pytest.raises(SystemExit):
        parse_args(["--classes", "c.txt", "--model", llama, "--output", "out", "--max_unit_words", "0"])
    assert "--max_unit_words must be at least 1, got 0" in capsys.readouterr().err


def test_the_corpus_is_staged_and_pushed_in_one_commit_with_its_log(generated, tmp_path):
    from modeling_sfar.data.entities import push_entity_dataset, stage_entity_dataset

    files = stage_entity_dataset(generated, tmp_path / "staged")
    assert {"README.md", "answers.jsonl", *(f"{c}/train-00000-of-00001.parquet" for c in ENTITY_CONFIGS)} <= set(files)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: not an entity corpus"):
        stage_entity_dataset(tmp_path / "empty", tmp_path / "again")

    class Recorder:
        def create_repo(self, repo_id, **kwargs):
            self.repo = (repo_id, kwargs["repo_type"], kwargs["private"])

        def create_commit(self, repo_id, operations, **kwargs):
            self.commit = (repo_id, kwargs["repo_type"], sorted(op.path_in_repo for op in operations))

    api = Recorder()
    sent = push_entity_dataset(generated, "org/entities", private=True, api=api, staging=tmp_path / "push")
    assert sent == files
    assert api.repo == ("org/entities", "dataset", True) and api.commit == ("org/entities", "dataset", files)


def test_a_chat_models_answers_leave_no_chat_in_the_corpus_and_the_card_counts_its_refusals(tiny_clip_dir, tmp_path):
    """A tiny model that answers every question, as the seed draws, with answers of library/chat_answers.py (a list
    with a preamble and a sign-off, "Sure! A guitar pick is ...", senses with a note, a refusal): no stored unit or
    description holds the chat, and the card counts the log's refusals per kind of question."""
    from collections import Counter

    from huggingface_hub import DatasetCard

    from tests.library.chat_answers import CHAT, DESCRIPTION_ANSWERS, UNIT_ANSWERS

    shapes = (
        "numbered, preamble, sign-off",
        "refusal",
        "one sentence after Sure!",
        "numbered senses with bold headings, note",
    )
    chatty = [case for case in UNIT_ANSWERS + DESCRIPTION_ANSWERS if case.shape in shapes]
    model = build_tiny_llama_chat(tmp_path / "chatty", steps=(tuple(c.answer for c in chatty),), closing=None,
                                  stop_early_probability=0.0)  # fmt: skip
    output = generate_entity_corpus(
        {"chatty": TransformersBackend(model)}, {"clean_and_jerk": "clean and jerk"}, tiny_clip_dir, tmp_path / "out",
        SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=4, max_attempts=3), default_body_parts=("hands",),
    )  # fmt: skip
    records = read_log(output / "answers.jsonl")
    assert {r["answer"] for r in records} == {c.answer for c in chatty}, "the seeds drew every answer"
    refusal = next(c.answer for c in chatty if c.refused)
    assert all(r["rejected"] == "refusal" for r in records if r["answer"] == refusal)
    entities = load_entity_config(output, "entities")
    stored = list(entities["unit"]) + list(entities["description"])
    stored += [d for d in load_entity_config(output, "descriptions")["description"]]
    assert not [text for text in stored if CHAT.search(text)]
    assert "A guitar pick is a small, flat tool used to pluck or strum the strings of a guitar." in stored
    text = DatasetCard.load(output / "README.md").text
    for stage, heading in (("units", "Units"), ("describe", "Descriptions")):
        asked = [r for r in records if r["stage"] == stage]
        refused = Counter(r["rejected"] for r in asked if r["rejected"])
        assert f"**{heading}.** {sum(refused.values())} of {len(asked)} answers were" in text
        for reason, count in refused.items():
            assert f"| {reason} | {count} | `chatty` {count} |" in text
