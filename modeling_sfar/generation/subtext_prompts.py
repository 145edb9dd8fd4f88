"""The paper's sub-text prompts (Tables 6 and 7, verbatim) and the parser that turns an LLM answer into N steps.

The back-ends (vLLM, transformers `generate`) and the TPP selection build on these; they share this code so that
every back-end asks the same questions and reads answers the same way.
"""

from __future__ import annotations

import re

__all__ = [
    "PROMPT_VERSION",
    "SYSTEM_PROMPT",
    "QUESTION_PROMPTS",
    "SubtextParseError",
    "build_messages",
    "parse_subtexts",
]

# Bumped whenever the prompts or the way the class name is put into them change: recorded with every answer.
PROMPT_VERSION = "sfar-table6-7/v1"

# Table 7 of the SFAR paper, verbatim; the PDF's line breaks joined with spaces.
SYSTEM_PROMPT = (
    "You are an expert assistant in action recognition. Respond to the user\u2019s input by providing accurate, "
    "concise, and informative descriptions of the actions in a structured manner."
)

# Table 6 of the SFAR paper, verbatim, in its order.
QUESTION_PROMPTS = (
    "This action is a sequence of four steps. For each step, describe it in detail with \u2019This action is\u2019 "
    "followed by a specific description of that step. Ensure each step is distinct and crucial to the action.",
    "This action is defined by four unique movements. Start each movement with \u2019This action is\u2019 and "
    "emphasize the diversity and significance of each movement. Conclude with a brief summary that ties all "
    "movements together.",
    "This action is composed of four critical phases. Each phase should start with \u2019This action is\u2019 and "
    "focus on different aspects of the action. Highlight the importance of each phase and avoid repetition.",
    "This action is best understood by breaking it down into four concise descriptions. Begin each description "
    "with \u2019This action is\u2019 and make sure each one covers a different perspective of the action. End with "
    "a summarizing statement.",
)


class SubtextParseError(ValueError):
    """An LLM answer that does not give exactly N steps; `reason` says what was found."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def build_messages(class_name: str, prompt_index: int) -> list[dict[str, str]]:
    """Chat messages for one class and one question prompt: the system prompt, then the action and the question.

    The paper does not print how the class name is joined to the question; it is given on its own line first.
    """
    if not 0 <= prompt_index < len(QUESTION_PROMPTS):
        raise ValueError(f"prompt_index must be in [0, {len(QUESTION_PROMPTS)}), got {prompt_index}")
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Action: {class_name}\n{QUESTION_PROMPTS[prompt_index]}"},
    ]


# "1.", "1)", "Step 1:", "**Movement 2 -**", "Phase three:", "- ", "* ", "• " at the start of a line.
_NUMBER_WORDS = r"one|two|three|four|five|six|seven|eight|nine|ten|first|second|third|fourth|fifth"
_ITEM = re.compile(
    rf"^\s*(?:[-*\u2022]\s+|(?:(?:step|movement|phase|description|part|stage)\s+)?(?:\d+|{_NUMBER_WORDS})\s*[.):\-\u2013]\s*"
    rf"|(?:step|movement|phase|description|part|stage)\s+(?:\d+|{_NUMBER_WORDS})\b\s*)",
    re.IGNORECASE,
)
_SUMMARY = re.compile(
    r"^\s*(?:in summary|to summarize|summary|overall|in conclusion|together|these (?:four|steps|movements|phases|"
    r"descriptions)|by combining|this sequence|all four|each of these)\b",
    re.IGNORECASE,
)
_MARKDOWN = re.compile(r"\*\*|__|^#+\s*", re.MULTILINE)


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip("\"'\u2018\u2019\u201c\u201d ").strip()


def _item_text(lines: list[str]) -> str:
    """The description of one item: a short heading line ("Preparation:") before the description is dropped."""
    lines = [line for line in lines if line.strip()]
    if len(lines) > 1 and (lines[0].rstrip().endswith(":") or len(lines[0].split()) <= 4):
        lines = lines[1:]
    first = lines[0] if lines else ""
    heading = re.match(r"^\s*[^.:]{1,40}:\s+(?=\S)", first)  # "Preparation: This action is ..." -> keep the text
    if heading and re.search(r"this action is", first, re.IGNORECASE):
        lines[0] = first[heading.end() :]
    return _clean(" ".join(lines))


def parse_subtexts(answer: str, num_subtexts: int = 4) -> list[str]:
    """
    Turn an LLM answer into exactly `num_subtexts` step descriptions.

    Numbering, bullets, markdown and per-step headings are removed, as is a closing summary; a leading "This action
    is" stays. Answers without list markers are split at each "This action is".

    Raises:
        SubtextParseError: the answer does not give exactly `num_subtexts` non-empty steps (the reason says what it
            gave). It is never padded or truncated silently.
    """
    if not answer or not answer.strip():
        raise SubtextParseError("empty answer")
    text = _MARKDOWN.sub("", answer)
    items: list[list[str]] = []
    preamble: list[str] = []
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            items.append([line[match.end() :]])
        elif items:
            items[-1].append(line)
        else:
            preamble.append(line)
    if items:
        # the last item ends at its first blank line followed by a summary paragraph
        last = items[-1]
        for i, line in enumerate(last):
            if i > 0 and _SUMMARY.match(line):
                items[-1] = last[:i]
                break
        steps = [_item_text(item) for item in items]
        steps = [s for s in steps if s and not _SUMMARY.match(s)]
    else:
        sentences = re.split(r"(?=\bthis action is\b)", " ".join(preamble), flags=re.IGNORECASE)
        steps = [_clean(s) for s in sentences if re.match(r"this action is", s.strip(), re.IGNORECASE)]
    steps = [s for s in steps if s]
    if steps:  # a closing summary written on the last step's own line
        sentences = re.split(r"(?<=[.!?])\s+", steps[-1])
        keep = next((i for i, sentence in enumerate(sentences) if i > 0 and _SUMMARY.match(sentence)), None)
        steps[-1] = " ".join(sentences[:keep])
    if len(steps) != num_subtexts:
        raise SubtextParseError(f"found {len(steps)} steps, need {num_subtexts}")
    if len({s.lower() for s in steps}) != num_subtexts:
        raise SubtextParseError("steps repeat each other")
    return steps
