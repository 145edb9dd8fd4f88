"""The paper's sub-text prompts (Tables 6 and 7, verbatim) and the parser that turns an LLM answer into N steps.

The back-ends (vLLM, transformers `generate`) and the TPP selection build on these; they share this code so that
every back-end asks the same questions and reads answers the same way. Chat models answer with more than the steps
(a preamble, a closing summary, a sign-off, notes; `chat.py`): the parser keeps the steps only, and refuses an answer
that declines.
"""

from __future__ import annotations

import re

from .chat import REFUSAL, has_letters, is_closing, is_note, is_preamble, is_refusal, is_sign_off, split_sentences

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
    """
    An LLM answer that does not give exactly N steps; `reason` says why, one of: "empty answer", "refusal" (the model
    declined or asked back), "found K steps, need N", "steps repeat each other".
    """

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


_LABELS = r"step|movement|phase|description|part|stage|perspective"
_NUMBER_WORDS = r"one|two|three|four|five|six|seven|eight|nine|ten|first|second|third|fourth|fifth"
# "1.", "1)", "Step 1:", "**Movement 2 -**", "Phase three:", "- ", "* ", "• " at the start of a line.
_ITEM = re.compile(
    rf"^\s*(?:[-*\u2022]\s+|(?:(?:{_LABELS})\s+)?(?:\d+|{_NUMBER_WORDS})\s*[.):\-\u2013]\s*"
    rf"|(?:{_LABELS})\s+(?:\d+|{_NUMBER_WORDS})\b\s*)",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^\s*[-*\u2022]\s+")
_MARKDOWN = re.compile(r"\*\*|__|^#+\s*", re.MULTILINE)
_ORDINALS = r"first|second|third|fourth|fifth|sixth"
# An ordinal step marker at the start of a sentence: "First, ", "Secondly: ", "In the third phase, ", "Finally, ".
_ORDINAL = re.compile(
    rf"^(?:(?:in )?the (?P<nth>{_ORDINALS}|final|last) (?:{_LABELS})|(?P<word>{_ORDINALS})(?:ly)?|finally|lastly)"
    r"\s*[,:\-\u2013]\s*",
    re.IGNORECASE,
)
_THIS_ACTION = re.compile(r"^[\"'\u2018\u201c]?this action is\b", re.IGNORECASE)
# A short heading before "This action is" on the same line: "Preparation: ", "The Approach - ", "(Physical): ".
_HEADING = re.compile(
    r"^(?P<heading>[^.!?]{1,60}?)\s*[:\-\u2013\u2014,]\s+(?=[\"'\u2018\u201c]?this action is\b)", re.IGNORECASE
)


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip("\"'\u2018\u2019\u201c\u201d ").strip()


def _step_text(text: str) -> str:
    """A step without what precedes its description: an ordinal ("First, ") or a short heading ("Preparation: ")."""
    text = _clean(text)
    stripped = text
    ordinal = _ORDINAL.match(stripped)
    if ordinal:
        stripped = stripped[ordinal.end() :]
    heading = _HEADING.match(stripped)
    if heading and len(heading.group("heading").split()) <= 8:
        stripped = stripped[heading.end() :]
    if stripped == text:
        return text
    stripped = _clean(stripped)
    return stripped[:1].upper() + stripped[1:]


def _is_heading(text: str) -> bool:
    """A line that only names a step ("Preparation", "Phase 1: The Grip", "Physical perspective:")."""
    text = _clean(text)
    return (
        bool(text)
        and len(text.split()) <= 8
        and not _THIS_ACTION.search(text)
        and (text.endswith(":") or not text.endswith((".", "!", "?")))
    )


def _without_chat(text: str, closing: bool) -> str:
    """`text` up to its first sign-off or note (or, with `closing`, closing summary) sentence after the first."""
    sentences = split_sentences(text)
    for i, sentence in enumerate(sentences):
        if i > 0 and (is_sign_off(sentence) or is_note(sentence) or (closing and is_closing(sentence))):
            sentences = sentences[:i]
            break
    if sentences and (is_sign_off(sentences[0]) or is_note(sentences[0])):
        return ""
    return " ".join(sentences)


def _item_text(lines: list[str]) -> str:
    """The description of one item: a short heading line ("Preparation:") before the description is dropped."""
    lines = [line for line in lines if line.strip()]
    heading = len(lines) > 1 and (lines[0].rstrip().endswith(":") or len(lines[0].split()) <= 4)
    if heading and not _THIS_ACTION.search(_clean(lines[0])):
        lines = lines[1:]
    first = lines[0] if lines else ""
    heading = re.match(r"^\s*[^.:]{1,40}:\s+(?=\S)", first)  # "Preparation: This action is ..." -> keep the text
    if heading and re.search(r"this action is", first, re.IGNORECASE):
        lines[0] = first[heading.end() :]
    return _clean(" ".join(lines))


def _list_steps(lines: list[str]) -> list[str] | None:
    """
    The steps of an answer written as a list (numbered, labelled or bulleted lines), or None when it has no list.

    Lines before the first item are the preamble. Bullets under numbered or labelled items are their details. A
    sign-off or note line is dropped where it stands; a closing summary, or an introduction after a blank line ("Here
    are some tips:"), ends its item's text until the next item (the last item's, in practice), and trailing items that
    are only a summary are dropped.
    """
    items: list[list[str]] = []
    numbered = None  # whether the top-level items are numbered or labelled (then bullets are their details)
    skipping = False  # inside a closing summary: its lines belong to no step
    for line in lines:
        match = _ITEM.match(line)
        bullet = bool(_BULLET.match(line))
        if match and not (numbered and bullet):
            numbered = (not bullet) if numbered is None else numbered
            items.append([line[match.end() :]])
            skipping = False
        elif items and has_letters(line):  # a line of emoji or a markdown rule ("---") counts as blank
            text = _BULLET.sub("", line)
            # an introduction after the item's text and a blank line: "Here are some tips to keep in mind:"
            introduction = not items[-1][-1].strip() and any(items[-1]) and text.rstrip().endswith(":")
            if is_closing(text) or (introduction and not bullet):
                skipping = True
            if not (skipping or is_sign_off(text) or is_note(text)):
                items[-1].append(text)
        elif items:
            items[-1].append("")
    if not items:
        return None
    texts = [_item_text(item) for item in items]
    while texts and is_closing(texts[-1]):  # "5. Summary: ...", "**In conclusion:** ..."
        texts.pop()
    # an item that only names its step, followed by an item holding it ("1. Preparation" then "- This action is ...")
    texts = [
        text
        for i, text in enumerate(texts)
        if not (_is_heading(text) and i + 1 < len(texts) and _THIS_ACTION.search(_step_text(texts[i + 1])))
    ]
    steps = [_without_chat(_step_text(text), closing=i == len(texts) - 1) for i, text in enumerate(texts)]
    return [step for step in steps if step]


def _prose_steps(lines: list[str]) -> list[str]:
    """
    The steps of an answer written as paragraphs: a step starts at a sentence that begins with "This action is"
    (after an ordinal or a short heading), or, when the answer counts its steps in words ("First, ... Second, ..."),
    at each of those ordinals. Sentences before the first step are the preamble; a closing summary ends the steps;
    sign-offs and notes are dropped, with what follows them until the next step.
    """
    sentences = [s for line in lines if not _is_heading(line) for s in split_sentences(line)]
    counted = {(m.group("nth") or m.group("word") or "").lower() for s in sentences if (m := _ORDINAL.match(s))}
    by_ordinal = len(counted - {""}) >= 2
    steps: list[list[str]] = []
    attached = False  # whether the sentence being read continues the current step
    for sentence in sentences:
        if is_closing(sentence):
            if steps:
                break
            continue  # an introduction that reads like a summary
        if is_sign_off(sentence) or is_note(sentence):
            attached = False
            continue
        text = _step_text(sentence)
        if _THIS_ACTION.match(text) or (by_ordinal and _ORDINAL.match(sentence)):
            steps.append([text])
            attached = True
        elif attached:
            steps[-1].append(sentence)
    return [_clean(" ".join(step)) for step in steps]


def parse_subtexts(answer: str, num_subtexts: int = 4) -> list[str]:
    """
    Turn an LLM answer into exactly `num_subtexts` step descriptions.

    A list (numbered, labelled, bulleted, with markdown headings or bold) gives one step per item; paragraphs give one
    step per sentence that starts with "This action is", or per ordinal ("First, ... Second, ...") when the answer
    counts its steps in words. Numbering, ordinals, bullets, markdown and per-step headings are removed; a leading
    "This action is" stays. The chat around the steps is never kept: the preamble ("Sure! Here are ..."), the closing
    summary the prompts ask for, sign-offs ("I hope this helps! Let me know ...") and notes ("Note: ...").

    Raises:
        SubtextParseError: the answer does not give exactly `num_subtexts` distinct non-empty steps; its `reason` says
            why (`SubtextParseError`'s reasons). It is never padded or truncated silently.
    """
    if not answer or not answer.strip():
        raise SubtextParseError("empty answer")
    lines = _MARKDOWN.sub("", answer).splitlines()
    steps = _list_steps(lines)
    if steps is None:
        steps = _prose_steps(lines)
    steps = [s for s in steps if s]
    if len(steps) != num_subtexts:
        sentences = split_sentences(_MARKDOWN.sub("", answer))
        opening = next((s for s in sentences if not is_preamble(s)), "")
        if is_refusal(opening) or (not steps and any(is_refusal(s) for s in sentences)):
            raise SubtextParseError(REFUSAL)
        raise SubtextParseError(f"found {len(steps)} steps, need {num_subtexts}")
    if len({s.lower() for s in steps}) != num_subtexts:
        raise SubtextParseError("steps repeat each other")
    return steps
