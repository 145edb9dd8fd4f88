"""The ALT paper's corpus prompts (appendix A) and the parsers that turn an LLM answer into units and descriptions.

ALT (Align before Adapt, ICLR 2024) aligns region tokens with a text corpus of action-related entities, each a unit
(an object, a body part, a scene, a role, a primitive motion) with a description. The corpus generator
(`entity_corpus.py`) asks these questions with the sub-text generator's back-ends; every back-end asks the same
questions and reads the answers the same way, through this module. Chat models answer with more than the list or the
sentence asked for (a preamble, a sign-off, notes; `chat.py`): the parsers keep the units and descriptions only, and
refuse an answer that declines.

Stop words are the English list of the `stopwords` package (PyPI, shipped with it, read offline): function words only
(articles, pronouns, prepositions, auxiliaries), as NLTK's list that the paper uses; NLTK itself needs its word lists
downloaded at run time, which we cannot do.
"""

from __future__ import annotations

import functools
import re

from .chat import REFUSAL, after_preamble, has_letters, is_note, is_refusal, is_sign_off, split_sentences

__all__ = [
    "PROMPT_VERSION",
    "UNIT_KINDS",
    "UNIT_QUESTIONS",
    "DESCRIPTION_PROMPTS",
    "DEFAULT_BODY_PARTS",
    "EntityParseError",
    "stop_words",
    "content_words",
    "strip_stop_words",
    "unit_messages",
    "description_messages",
    "parse_units",
    "parse_descriptions",
]

# Bumped whenever the prompts, or the way a label or unit is put into them, change: recorded in the dataset card.
PROMPT_VERSION = "alt-appendix-a/v1"

# Appendix A asks "What are identifying object/body parts/scenes/roles of an action {label}? List them concisely.";
# we ask it once per kind (the slash list replaced by one kind, "object" made plural), so that every unit keeps its
# kind (Table C3 ablates the corpus by kind), and add the fifth kind that section 3.1 and Table C3 name, primitive
# motions, with the same question.
UNIT_KINDS = ("object", "body part", "scene", "role", "motion")
UNIT_QUESTIONS = {
    "object": "What are identifying objects of an action {label}? List them concisely.",
    "body part": "What are identifying body parts of an action {label}? List them concisely.",
    "scene": "What are identifying scenes of an action {label}? List them concisely.",
    "role": "What are identifying roles of an action {label}? List them concisely.",
    "motion": "What are identifying primitive motions of an action {label}? List them concisely.",
}

# Appendix A's three prompts for a phrase unit, verbatim (the paper gives them without a closing full stop). We ask
# them for single words too, where the paper reads WordNet's glosses (see docs/entity_corpus.md).
DESCRIPTION_PROMPTS = (
    "Concisely describe what an action {unit} looks like",
    "Concisely list potential explanations for {unit}",
    "Concisely explain {unit} in one sentence",
)
DESCRIPTION_PROMPT_NAMES = ("looks-like", "explanations", "one-sentence")

# "The body parts, such as head, hands, and feet are added to the corpus by default" (section 3.1); the paper does not
# print its full list. These are the parts a person's pose and gestures are read from.
DEFAULT_BODY_PARTS = (
    "head",
    "face",
    "eyes",
    "mouth",
    "neck",
    "shoulders",
    "arms",
    "elbows",
    "hands",
    "fingers",
    "torso",
    "hips",
    "legs",
    "knees",
    "feet",
)


class EntityParseError(ValueError):
    """
    An LLM answer that lists no unit, or gives no description; `reason` says why, one of: "empty answer", "refusal"
    (the model declined or asked back), "no units listed", "no description".
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@functools.cache
def stop_words() -> frozenset[str]:
    """The English stop words of the `stopwords` package (174 function words), lower case."""
    from stopwords import get_stopwords

    return frozenset(word.lower() for word in get_stopwords("english"))


_WORD = re.compile(r"[a-z0-9]+(?:['\u2019-][a-z0-9]+)*")


def content_words(text: str) -> list[str]:
    """The words of `text`, lower case, without stop words or punctuation: "the bar's weight" -> ["bar's", "weight"]."""
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    return [word for word in words if word not in stop_words()]


def strip_stop_words(phrase: str) -> str:
    """
    A unit without its leading and trailing stop words and punctuation, lower case; stop words inside it stay, so a
    phrase keeps its sense ("a pair of scissors" -> "pair of scissors", "the hands" -> "hands", "of the" -> "").
    """
    words = _WORD.findall(phrase.lower().replace("\u2019", "'"))
    while words and words[0] in stop_words():
        words.pop(0)
    while words and words[-1] in stop_words():
        words.pop()
    return " ".join(words)


def unit_messages(class_name: str, kind: str) -> list[dict[str, str]]:
    """The chat of the unit question of `kind` about the action `class_name` (no system prompt: the paper has none)."""
    if kind not in UNIT_QUESTIONS:
        raise ValueError(f"unknown unit kind {kind!r}; the kinds are {list(UNIT_KINDS)}")
    return [{"role": "user", "content": UNIT_QUESTIONS[kind].format(label=class_name)}]


def description_messages(unit: str, prompt_index: int) -> list[dict[str, str]]:
    """The chat of description prompt `prompt_index` about `unit`."""
    if not 0 <= prompt_index < len(DESCRIPTION_PROMPTS):
        raise ValueError(f"prompt_index must be in [0, {len(DESCRIPTION_PROMPTS)}), got {prompt_index}")
    return [{"role": "user", "content": DESCRIPTION_PROMPTS[prompt_index].format(unit=unit)}]


# "1.", "1)", "- ", "* ", "• " at the start of a line
_ITEM = re.compile(r"^\s*(?:[-*\u2022]\s+|\d+\s*[.):]\s*)")
_MARKDOWN = re.compile(r"\*\*|__|`|^#+\s*", re.MULTILINE)
# "Objects:", "Identifying body parts:", "Scenes -" before a list on the same line
_HEADING = re.compile(
    r"^\s*(?:(?:identifying|key|main|common|typical)\s+)?(?:objects?|body parts?|scenes?|roles?|primitive motions?|"
    r"motions?|units?|settings?)\s*[:\-\u2013]\s*",
    re.IGNORECASE,
)
# answers that say there is nothing to list
_NOTHING = {"none", "n/a", "na", "nothing", "not applicable", "unknown", "none needed", "no objects"}


def _split_unit_text(text: str, max_words: int) -> list[str]:
    """The units of one list item or one line of a comma-separated list (stop words still on)."""
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text)  # "hands (gripping)" -> "hands"
    text = re.split(r"\s+[\-\u2013\u2014]\s+|:\s|\.\s|\.$|;\s*$", text, maxsplit=1)[0]  # "mirror: to see" -> "mirror"
    if re.sub(r"[^\w/ ]", "", text).strip().lower() in _NOTHING:  # "N/A." before the slash splits it
        return []
    units = []
    for fragment in re.split(r",|;|/|&", text):
        parts = [part for part in re.split(r"\s+and\s+|\s+or\s+", fragment) if strip_stop_words(part)]
        # a fragment with a part longer than a unit is a sentence, and its "and" joins clauses, not units
        if all(len(strip_stop_words(part).split()) <= max_words for part in parts):
            units.extend(parts)
    return units


def _is_chat(text: str) -> bool:
    """A sentence or list item that is chat, not content: a sign-off, a note, a refusal, nothing but a preamble."""
    return is_sign_off(text) or is_note(text) or is_refusal(text) or not after_preamble(text)


def _without_chat(line: str) -> str:
    """A line without its chat sentences, and its content sentences without their preamble ("Sure, here are the
    parts: hands, arms. I hope this helps, let me know!" -> "hands, arms.")."""
    return " ".join(after_preamble(s) for s in split_sentences(line) if not _is_chat(s))


def _refused(answer: str) -> bool:
    """Whether the answer opens, after its preamble, by declining, apologising or asking back."""
    opening = next((after_preamble(s) for s in split_sentences(_MARKDOWN.sub("", answer)) if after_preamble(s)), "")
    return is_refusal(opening)


def _comma_lines(lines: list[str]) -> list[str]:
    """The lines of an answer without list markers that hold its units: "Sure, here are the parts: hands, arms." ->
    "hands, arms."; chat sentences, an introduction ending with a colon and a closing remark without commas are left
    out."""
    lines = [line for line in lines if not line.rstrip().endswith(":")]
    lines = [text for line in lines if (text := _without_chat(line))]
    lines = [re.split(r":\s", line, maxsplit=1)[-1] if not _HEADING.match(line) else line for line in lines]
    listing = [line for line in lines if "," in line or ";" in line]
    return listing or lines[:1]


def parse_units(answer: str, max_words: int = 4) -> list[str]:
    """
    Turn an LLM answer to a unit question into its units, in order, without repeats.

    A list (numbered or bulleted lines) gives one item per line, anything after the list (a closing remark) and
    before it (an introduction) left out, as are items that are chat ("- Note: these may vary ..."). An answer
    without list markers is read as comma-separated lines: the lines with a comma (or the first line, when none has
    one), each without its chat sentences ("I hope this helps, let me know ...") and without an introduction before
    a colon ("Sure, here are the parts: hands, arms" -> "hands, arms"). An item is cut at its explanation (" - ...",
    ": ...", "(...)", the end of its first sentence), split at commas, "and", "or" and slashes, and stripped of
    leading and trailing stop words (`strip_stop_words`). A fragment between commas with more than `max_words` words
    (a part of it, between "and"s) is a sentence, not a unit, and is left out, as are "none", "n/a" and the like. An
    answer without a list that opens (after its preamble) by declining, apologising or asking back is refused whole:
    what follows is its reasons.

    Raises:
        EntityParseError: the answer lists no unit: "empty answer", "refusal" (it declines, apologises or asks back),
            "no units listed" (only sentences, "none").
    """
    if not answer or not answer.strip():
        raise EntityParseError("empty answer")
    lines = [line for line in _MARKDOWN.sub("", answer).splitlines() if line.strip()]
    items = [line[m.end() :] for line in lines if (m := _ITEM.match(line))]
    items = [item for item in items if not _is_chat(item)]
    if not items and _refused(answer):  # what follows a refusal is its reasons, not units
        raise EntityParseError(REFUSAL)
    if not items:
        items = _comma_lines(lines)
    units: list[str] = []
    for item in items:
        for part in _split_unit_text(_HEADING.sub("", item), max_words):
            unit = strip_stop_words(part)
            if unit and unit not in _NOTHING and unit not in units:
                units.append(unit)
    if not units:
        raise EntityParseError(REFUSAL if _refused(answer) else "no units listed")
    return units


# "In one sentence, ", "Concisely, ", "Simply put: " before a description
_LEAD_IN = re.compile(
    r"^(?:in (?:one|a single|a) (?:sentence|word|nutshell)|concisely|simply put|put simply|in short|in brief|briefly|"
    r"in simple terms)\s*[,:]\s*",
    re.IGNORECASE,
)


def _clean_description(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"^[^\w\"'\u2018\u201c(]+", "", text)  # an emoji or a stray dash before the first word
    text = text.strip("\"'\u2018\u2019\u201c\u201d ").strip()
    lead_in = _LEAD_IN.match(text)
    if lead_in:
        text = text[lead_in.end() :]
        text = text[:1].upper() + text[1:]
    heading = re.match(r"^[^.:]{1,40}:\s+(?=\S)", text)  # "Literal meaning: a bar ..." -> "a bar ..."
    if heading and len(heading.group().split()) <= 4:
        text = text[heading.end() :]
    # one sentence (CLIP's text tower reads 77 tokens), its closing quote with it
    first = re.split(r"(?<=[.!?])[\"'\u2019\u201d]?\s+", text, maxsplit=1)[0]
    return first.strip("\"'\u2018\u2019\u201c\u201d ")


def _prose_description(lines: list[str]) -> str:
    """
    The description an answer without list markers gives: its first content sentence, after an introduction line
    ("Here's a concise description of ...:"), a heading line that only names the unit ("Mascara wand"), preamble
    sentences ("Sure!") and an interjection ("Sure, a pick is ..." -> "a pick is ...").
    """
    if len(lines) > 1:
        lines = [line for line in lines if not line.rstrip().endswith(":")] or lines
    if len(lines) > 1 and len(lines[0].split()) <= 4 and not lines[0].rstrip().endswith((".", "!", "?")):
        lines = lines[1:]
    sentences = [after_preamble(s) for line in lines for s in split_sentences(line)]
    return next((s for s in sentences if s and has_letters(s) and not _is_chat(s)), "")


def parse_descriptions(answer: str) -> list[str]:
    """
    Turn an LLM answer to a description prompt into candidate descriptions: one per list item when the answer is a
    list ("list potential explanations"), else the answer's first content sentence; each is its first sentence,
    without a short heading ("Literal meaning: ..."), a lead-in ("In one sentence, ...") or quotes. The chat around it
    (preambles, introductions, sign-offs, notes) is never a description, nor are "None", "n/a" and the like. An
    answer without a list that opens (after its preamble) by declining, apologising or asking back is refused whole.

    Raises:
        EntityParseError: no description in the answer: "empty answer", "refusal" (it declines, apologises or asks
            back), "no description".
    """
    if not answer or not answer.strip():
        raise EntityParseError("empty answer")
    lines = [line for line in _MARKDOWN.sub("", answer).splitlines() if line.strip()]
    items = [line[m.end() :] for line in lines if (m := _ITEM.match(line))]
    items = [item for item in items if not _is_chat(item)]
    if not items and _refused(answer):  # what follows a refusal is its reasons, not a description
        raise EntityParseError(REFUSAL)
    candidates = [_clean_description(text) for text in (items or [_prose_description(lines)])]
    candidates = list(dict.fromkeys(c for c in candidates if content_words(c) and strip_stop_words(c) not in _NOTHING))
    if not candidates:
        raise EntityParseError(REFUSAL if _refused(answer) else "no description")
    return candidates
