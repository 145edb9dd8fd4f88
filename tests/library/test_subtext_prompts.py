"""The paper's prompts verbatim and the parsing of LLM answers into exactly N sub-texts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modeling_sfar.generation.subtext_prompts import (
    QUESTION_PROMPTS,
    SYSTEM_PROMPT,
    SubtextParseError,
    build_messages,
    parse_subtexts,
)

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "001_df3a9fdadd3487be.txt"


def bracketed_prompts() -> list[str]:
    """The bracketed prompts of Tables 6 and 7 as printed in the paper, line breaks joined."""
    text = SEED.read_text(encoding="utf-8")
    return [re.sub(r"\s+", " ", m) for m in re.findall(r"\[(This action is[^\]]+|You are an expert[^\]]+)\]", text)]


@pytest.mark.skipif(not SEED.is_file(), reason="the paper is in ../shared/seeds, beside the repository")
def test_prompts_are_the_papers_verbatim():
    printed = bracketed_prompts()
    assert printed[:4] == list(QUESTION_PROMPTS)
    assert printed[4] == SYSTEM_PROMPT


def test_messages_hold_system_prompt_class_and_question():
    messages = build_messages("clean and jerk", 2)
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[1]["role"] == "user"
    assert "clean and jerk" in messages[1]["content"] and QUESTION_PROMPTS[2] in messages[1]["content"]
    with pytest.raises(ValueError, match="prompt_index"):
        build_messages("x", 4)


STEPS = [
    "This action is gripping the barbell with both hands.",
    "This action is pulling the barbell up to the shoulders.",
    "This action is driving the barbell overhead.",
    "This action is lowering the barbell back down to the ground.",
]


@pytest.mark.parametrize(
    "answer",
    [
        "\n".join(f"{i + 1}. {s}" for i, s in enumerate(STEPS)),
        "Sure! Here are the steps:\n\n" + "\n".join(f"{i + 1}) {s}" for i, s in enumerate(STEPS)),
        "\n\n".join(f"**Step {i + 1}:** {s}" for i, s in enumerate(STEPS)),
        "\n".join(f"Movement {i + 1} - {s}" for i, s in enumerate(STEPS))
        + "\n\nIn summary, these movements together form the clean and jerk.",
        "\n\n".join(f"Phase {i + 1}: Heading {i}\n{s}" for i, s in enumerate(STEPS))
        + "\n\nOverall, each phase matters.",
        "\n".join(f"- {s}" for s in STEPS),
        " ".join(STEPS) + " Together these steps make the lift.",
        "\n".join(f"{i + 1}. Part {i}: {s}" for i, s in enumerate(STEPS)),
    ],
    ids=["numbered", "preamble", "markdown-steps", "movements-summary", "headings", "bullets", "prose", "labels"],
)
def test_answers_in_every_layout_give_the_same_steps(answer):
    parsed = parse_subtexts(answer, 4)
    assert [p.rstrip(".") for p in parsed] == [s.rstrip(".") for s in STEPS]


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("", "empty answer"),
        ("1. This action is one.\n2. This action is two.\n3. This action is three.", "found 3 steps, need 4"),
        ("\n".join(f"{i}. This action is step {i}." for i in range(1, 6)), "found 5 steps, need 4"),
        ("\n".join("1. This action is the same." for _ in range(4)), "steps repeat each other"),
        ("The clean and jerk is a two-part weightlifting lift.", "found 0 steps, need 4"),
        ("I cannot help with that.", "refusal"),  # library/chat_answers.py holds refusals as chat models write them
    ],
)
def test_answers_without_n_steps_are_rejected_with_the_reason(answer, reason):
    with pytest.raises(SubtextParseError, match=reason) as info:
        parse_subtexts(answer, 4)
    assert info.value.reason == reason
