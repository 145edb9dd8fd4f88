"""The parsers on chat-model answers (tests/library/chat_answers.py): every answer parses cleanly or is refused with its
reason, and nothing stored holds the chat around it."""

from __future__ import annotations

import pytest

from modeling_sfar.generation import chat
from modeling_sfar.generation.entity_prompts import EntityParseError, parse_descriptions, parse_units
from modeling_sfar.generation.subtext_prompts import SubtextParseError, parse_subtexts
from tests.library.chat_answers import CHAT, DESCRIPTION_ANSWERS, SUBTEXT_ANSWERS, UNIT_ANSWERS, ChatAnswer

PARSERS = {
    "table6": (lambda answer: parse_subtexts(answer, 4), SubtextParseError),
    "units": (parse_units, EntityParseError),
    "describe": (parse_descriptions, EntityParseError),
}
EVERY_ANSWER = SUBTEXT_ANSWERS + UNIT_ANSWERS + DESCRIPTION_ANSWERS


def parse(case: ChatAnswer) -> list[str]:
    parser, _ = PARSERS[case.question.split("-")[0].split("/")[0]]
    return parser(case.answer)


@pytest.mark.parametrize("case", EVERY_ANSWER, ids=lambda case: case.id)
def test_every_answer_parses_cleanly_or_is_refused_with_its_reason(case):
    _, error = PARSERS[case.question.split("-")[0].split("/")[0]]
    if case.refused:
        with pytest.raises(error) as info:
            parse(case)
        assert info.value.reason == case.refused
    else:
        assert parse(case) == list(case.parsed)


def test_nothing_stored_holds_the_chat_around_it():
    stored = [(case.id, text) for case in EVERY_ANSWER if not case.refused for text in parse(case)]
    assert len(stored) > 100
    leaked = [(where, text) for where, text in stored if CHAT.search(text)]
    assert not leaked


def test_the_corpus_holds_every_common_shape():
    shapes = " ".join(case.shape for case in EVERY_ANSWER)
    for shape in ("preamble", "numbered", "labels", "bullets", "bold", "heading", "ordinal", "summary", "sign-off",
                  "note", "refusal", "asks back", "too few", "too many", "cut off", "closing"):  # fmt: skip
        assert shape in shapes, shape
    assert {case.question for case in SUBTEXT_ANSWERS} == {f"table6-q{i}" for i in range(1, 5)}
    prompts = {case.question.split("/")[1] for case in DESCRIPTION_ANSWERS}
    assert prompts == {"looks-like", "explanations", "one-sentence"}
    assert {case.model for case in EVERY_ANSWER} == {"llama-2-chat", "llava-1.6"}
    assert all(case.parsed or case.refused for case in EVERY_ANSWER)


@pytest.mark.parametrize(
    "sentence, kind",
    [
        ("Sure!", "preamble"),
        ("Of course, I'd be happy to help!", "preamble"),
        ("Here\u2019s a concise description of what a gym floor looks like:", "preamble"),
        ("I hope this helps! Let me know if you have any other questions.", "sign-off"),
        ("Please let me know if you need anything else.", "sign-off"),
        ("Note: the movements may vary depending on the individual.", "note"),
        ("It's important to note that everyone's technique is different.", "note"),
        ("I apologize, but I cannot provide instructions on how to punch someone.", "refusal"),
        ("Could you please clarify what you mean?", "refusal"),
        ("In summary, these steps make up the lift.", "closing"),
        ("**Summary:** Each phase is essential.", "closing"),
        ("These four phases together form the action.", "closing"),
        ("This action is the lifter gripping the bar.", None),
        ("A guitar pick is a small, flat tool.", None),
        ("Hands, arms and shoulders.", None),
    ],
)
def test_chat_sentences_are_told_from_content(sentence, kind):
    kinds = {
        "preamble": chat.is_preamble(sentence),
        "sign-off": chat.is_sign_off(sentence),
        "note": chat.is_note(sentence),
        "refusal": chat.is_refusal(sentence),
        "closing": chat.is_closing(sentence),
    }
    assert [k for k, found in kinds.items() if found] == ([kind] if kind else [])


def test_after_preamble_keeps_what_follows_the_chat():
    assert chat.after_preamble("Sure, a pick is a small tool.") == "a pick is a small tool."
    assert chat.after_preamble("Sure, here are the body parts: hands, arms.") == "hands, arms."
    assert chat.after_preamble("Sure! Here are four steps that describe the action:") == ""
    assert chat.after_preamble("I'd be happy to help.") == ""
    assert chat.after_preamble("A bar is a pole.") == "A bar is a pole."
