"""The ALT corpus prompts and parsers (modeling_sfar/generation/entity_prompts.py) against hand-worked answers."""

from __future__ import annotations

import pytest

from modeling_sfar.generation.entity_prompts import (
    DESCRIPTION_PROMPTS,
    UNIT_KINDS,
    UNIT_QUESTIONS,
    EntityParseError,
    content_words,
    description_messages,
    parse_descriptions,
    parse_units,
    stop_words,
    strip_stop_words,
    unit_messages,
)


def test_the_appendix_prompts_are_asked_verbatim():
    assert DESCRIPTION_PROMPTS == (
        "Concisely describe what an action {unit} looks like",
        "Concisely list potential explanations for {unit}",
        "Concisely explain {unit} in one sentence",
    )
    assert unit_messages("apply eye makeup", "body part") == [
        {
            "role": "user",
            "content": "What are identifying body parts of an action apply eye makeup? List them concisely.",
        }
    ]
    assert set(UNIT_QUESTIONS) == set(UNIT_KINDS)
    assert all(q.endswith("of an action {label}? List them concisely.") for q in UNIT_QUESTIONS.values())
    assert description_messages("gym floor", 2)[0]["content"] == "Concisely explain gym floor in one sentence"
    with pytest.raises(ValueError, match="unknown unit kind 'tool'"):
        unit_messages("jump", "tool")
    with pytest.raises(ValueError, match=r"prompt_index must be in \[0, 3\), got 3"):
        description_messages("jump", 3)


def test_stop_words_are_function_words_only():
    words = stop_words()
    assert {"the", "a", "of", "and", "with", "their", "is", "up"} <= words
    # action words that longer lists (the `stop-words` package, scikit-learn's) remove stay
    assert not words & {"hand", "hands", "face", "back", "side", "move", "turn", "run", "open", "top", "front", "room"}


@pytest.mark.parametrize(
    "phrase, unit",
    [
        ("the hands", "hands"),
        ("A pair of scissors", "pair of scissors"),  # inner stop words keep the phrase's sense
        ("Their own yoga mat.", "yoga mat"),
        ("of the", ""),
        ("  Bar\u2019s weight!  ", "bar's weight"),
    ],
)
def test_strip_stop_words(phrase, unit):
    assert strip_stop_words(phrase) == unit


def test_content_words():
    assert content_words("The lifter raises the bar over his head.") == ["lifter", "raises", "bar", "head"]


def test_a_numbered_list_with_explanations_an_introduction_and_a_closing_remark():
    answer = """Here are the identifying objects of an action Apply Eye Makeup:

1. **Eyeliner pencil** - used to draw lines
2. Mascara (for the lashes)
3. A mirror: to see the face
- Eyeshadow palette and brushes
* The cotton pads/swabs
4. Mascara

These objects help identify the action."""
    assert parse_units(answer) == [
        "eyeliner pencil",
        "mascara",
        "mirror",
        "eyeshadow palette",
        "brushes",
        "cotton pads",
        "swabs",
    ]


@pytest.mark.parametrize(
    "answer, units",
    [
        ("Barbell, chalk, the gym floor and a bench.", ["barbell", "chalk", "gym floor", "bench"]),
        ("Objects: barbell, weight plates", ["barbell", "weight plates"]),
        ("Body parts - hands; arms; shoulders", ["hands", "arms", "shoulders"]),
        ("1) Weightlifter\n2) Coach or spotter", ["weightlifter", "coach", "spotter"]),
        ("Scenes: A gym, a stadium, or an outdoor platform.", ["gym", "stadium", "outdoor platform"]),
        # an introduction (on its own line or before a colon) and a closing remark are not units
        (
            "Sure! Here are the body parts of clean and jerk:\nhands, arms, shoulders\nThese are commonly seen.",
            ["hands", "arms", "shoulders"],
        ),
        ("Sure, here are some identifying body parts: hands, arms, shoulders.", ["hands", "arms", "shoulders"]),
        ("Barbell.\nIt is lifted overhead.", ["barbell"]),
        ("1. **Drumstick**: held in the right hand\n   - Frame drum (daf)", ["drumstick", "frame drum"]),
        # a sentence is no unit; the short item beside it is
        ("- a person stands at the bar and waits for the signal\n- platform", ["platform"]),
    ],
)
def test_unit_answers(answer, units):
    assert parse_units(answer) == units


def test_the_word_limit_tells_units_from_sentences():
    assert parse_units("- olympic weightlifting bar with collars", max_words=6) == [
        "olympic weightlifting bar with collars"
    ]
    with pytest.raises(EntityParseError, match="no units listed"):
        parse_units("- olympic weightlifting bar with collars", max_words=4)


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("", "empty answer"),
        ("   \n ", "empty answer"),
        ("None.", "no units listed"),
        ("1. N/A\n2. none", "no units listed"),
        ("There are many objects that people often use when they do this action.", "no units listed"),
    ],
)
def test_answers_without_units_are_rejected_with_their_reason(answer, reason):
    with pytest.raises(EntityParseError) as error:
        parse_units(answer)
    assert error.value.reason == reason


def test_descriptions_one_per_list_item_first_sentence_without_heading_or_quotes():
    answer = """1. Literal meaning: a long metal bar with weights at each end. It is heavy.
2. A bar where drinks are served.
3. A bar where drinks are served."""
    assert parse_descriptions(answer) == [
        "a long metal bar with weights at each end.",
        "A bar where drinks are served.",
    ]
    assert parse_descriptions('"A barbell is a long bar lifted in weight training." It has plates.') == [
        "A barbell is a long bar lifted in weight training."
    ]


@pytest.mark.parametrize(
    "answer, reason", [("", "empty answer"), ("None.", "no description"), ("- the", "no description")]
)
def test_answers_without_a_description_are_rejected(answer, reason):
    with pytest.raises(EntityParseError) as error:
        parse_descriptions(answer)
    assert error.value.reason == reason
