"""The chat around an answer: what instruction-tuned models write before, after and between what they were asked for.

Chat models wrap their answers. Llama-2-chat opens with "Sure! Here are four steps ..." or "Of course! I'd be happy to
help.", closes with "I hope this helps! Let me know if you have any other questions.", adds "Note: the movements may
vary ...", and declines some actions outright ("I apologize, but I cannot provide instructions on how to punch
someone ..."). LLaVA-1.6 writes markdown headings and a closing "**Summary:** ...". The parsers of the prompts
(`subtext_prompts`, `entity_prompts`) read an answer sentence by sentence and use this module to tell the chat from
the content: a stored sub-text or description never holds the chat, and an answer that is only chat is refused with
the reason `REFUSAL`.

Every pattern matches at the start of a sentence (after markdown emphasis, quotes or an opening parenthesis), so the
same words inside a description do not count.
"""

from __future__ import annotations

import re

__all__ = [
    "REFUSAL",
    "split_sentences",
    "is_preamble",
    "is_sign_off",
    "is_note",
    "is_refusal",
    "is_closing",
    "after_preamble",
    "has_letters",
]

# The rejection reason of an answer that declines, apologises or asks back instead of answering.
REFUSAL = "refusal"

# Markdown emphasis, quotes, bullets and brackets before a sentence's first word.
_LEAD = r"^[\s\"'\u2018\u2019\u201c\u201d(\[*_#>\-\u2022]*"

# "Sure!", "Certainly, ...", "Of course!", "Absolutely." before what follows in the same sentence
_INTERJECTION = re.compile(
    _LEAD + r"(?:sure(?: thing)?|certainly|of course|absolutely|okay|ok|yes|gladly|great|no problem|with pleasure|"
    r"definitely|alright|hello|hi)\s*[!,.:]\s*",
    re.IGNORECASE,
)
# "Great question!", "I'd be happy to help!", "Here are four steps that describe ...", "Thank you for asking."
_PREAMBLE = re.compile(
    _LEAD + r"(?:(?:great|good|excellent|interesting|what a great|what a good|that'?s a great) question\b"
    r"|(?:i'?d|i would|i'?m|i am|i'?ll|i will) (?:be )?(?:happy|glad|delighted|more than happy|pleased)\b"
    r"|(?:happy|glad) to help\b"
    r"|(?:here(?:'s| is| are)|below (?:is|are)|the following (?:is|are))\b"
    r"|(?:thank you|thanks) (?:for|so much)\b)",
    re.IGNORECASE,
)
# "I hope this helps!", "Let me know if you have any other questions.", "Feel free to ask ...", "Good luck!"
_SIGN_OFF = re.compile(
    _LEAD + r"(?:i hope (?:this|that|these|it|my|the above)\b|hope (?:this|that) helps\b|(?:please )?(?:do )?let me "
    r"know\b|(?:please )?feel free\b|if you have any (?:other|more|further|additional|follow-up)\b|if you (?:need|"
    r"want|would like) (?:any )?(?:more|further|additional)\b|is there anything else\b|do you have any (?:other|more|"
    r"further)\b|happy \w+ing\b|good luck\b|"
    r"have fun\b|enjoy\b|thank you\b|thanks\b|cheers\b|best (?:wishes|regards)\b|i(?:'ll| will) do my best\b|"
    r"i(?:'m| am) (?:here|happy|glad|always happy) to (?:help|answer|assist)\b)",
    re.IGNORECASE,
)
# "Note: ...", "Please note that ...", "Keep in mind ...", "It's important to note ...", "(Note: ...)"
_NOTE = re.compile(
    _LEAD + r"(?:(?:note|n\.?b\.?|disclaimer|important|caution|warning|tip|remember)\s*[:\-\u2013]"
    r"|(?:please )?note that\b|please note\b|(?:please )?keep in mind\b|bear in mind\b|remember,|remember that\b"
    r"|please be aware\b|(?:it'?s|it is) (?:important|worth|essential|crucial|vital) (?:to (?:note|mention|remember|"
    r"keep in mind|recognize|recognise|understand|consider|emphasi[sz]e)|noting|mentioning)\b"
    r"|(?:additionally|also|however), (?:it'?s|it is) (?:important|worth) (?:to note|noting)\b)",
    re.IGNORECASE,
)
# "I apologize, but I cannot ...", "I'm just an AI ...", "As a responsible AI ...", "Could you please clarify ...?"
_REFUSAL = re.compile(
    _LEAD + r"(?:i(?:'m| am) (?:so |very |really )?sorry\b|i apologi[sz]e\b|my apologies\b|apologies\b"
    r"|i can(?:not|'t|\s+not)\b|i(?:'m| am) (?:just |only )?an? (?:ai|artificial|language model|assistant)\b"
    r"|as an? (?:ai|artificial|language model|responsible|ethical)\b|i(?:'m| am) (?:not able|unable)\b"
    r"|i(?:'m| am) afraid\b|i (?:will|must) not\b|i won'?t\b|i must (?:politely )?(?:decline|point out|inform)\b"
    r"|unfortunately,? (?:i|it(?:'s| is) not|there is no)\b|i(?:'m| am) not (?:sure|familiar|aware|certain)\b"
    r"|i (?:don'?t|do not) (?:think|understand|have|know|feel)\b|i(?:'m| am) not comfortable\b"
    r"|(?:could|can|would) you (?:please )?(?:clarify|provide|explain|specify|rephrase|elaborate|tell me)\b"
    r"|it(?:'s| is) not (?:appropriate|possible|clear|ethical|safe)\b|this (?:question|request) (?:is|seems|"
    r"contains|may)\b)",
    re.IGNORECASE,
)
# The closing summary that Table 6's prompts 2 and 4 ask for: "In summary, ...", "**Summary:** ...", "Overall, ...",
# "These four phases together ...", "By combining these movements, ..."
_CLOSING = re.compile(
    _LEAD + r"(?:in summary|to summari[sz]e|summary|summari[sz]ing(?: statement)?|in conclusion|conclusion|to "
    r"conclude|to sum (?:it )?up|in short|all in all|overall|altogether|collectively|taken together|together|"
    r"in essence|in a nutshell|by \w+ing (?:these|the|all|each|this)\b|this sequence|all four|all of these|"
    r"each (?:of these|phase|movement|description|perspective|stage)\b|"
    r"(?:these|the (?:four|above|preceding))(?:\s+[\w-]+){0,3}?\s+(?:steps|movements|phases|descriptions|"
    r"perspectives|stages|aspects|components|elements|parts|actions|motions)\b)\b",
    re.IGNORECASE,
)
# A sentence ends at ., ! or ? (with its closing quote or bracket) followed by space, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u2019\u201d)\]*_]*\s+|\n+")
_LETTER = re.compile(r"[^\W\d_]")


def _plain(sentence: str) -> str:
    """Typographic apostrophes as ASCII ones, so that "Here\u2019s" reads as "Here's"."""
    return sentence.replace("\u2019", "'").replace("\u2018", "'")


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, each stripped, empty ones left out; a line break also ends a sentence."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def is_preamble(sentence: str) -> bool:
    """Whether `sentence` opens a chat answer ("Sure!", "Here are four steps ...:", "I'd be happy to help!")."""
    sentence = _plain(sentence)
    return bool(_INTERJECTION.match(sentence) or _PREAMBLE.match(sentence))


def is_sign_off(sentence: str) -> bool:
    """Whether `sentence` closes a chat answer ("I hope this helps!", "Let me know if you have any questions.")."""
    return bool(_SIGN_OFF.match(_plain(sentence)))


def is_note(sentence: str) -> bool:
    """Whether `sentence` is an aside ("Note: the movements may vary ...", "It's important to note that ...")."""
    return bool(_NOTE.match(_plain(sentence)))


def is_refusal(sentence: str) -> bool:
    """Whether `sentence` declines, apologises or asks back ("I apologize, but I cannot ...", "Could you clarify?")."""
    return bool(_REFUSAL.match(_plain(sentence)))


def is_closing(sentence: str) -> bool:
    """Whether `sentence` starts a closing summary ("In summary, ...", "Overall, ...", "These four phases ...")."""
    return bool(_CLOSING.match(_plain(sentence)))


def after_preamble(sentence: str) -> str:
    """
    What a sentence holds after its preamble: "Sure, a pick is a small tool." -> "a pick is a small tool."; "Sure,
    here are the body parts: hands, arms." -> "hands, arms."; a preamble with nothing after its colon ("Here are four
    steps:"), or without one ("Sure!", "I'd be happy to help."), -> "". Other sentences are returned as they are.
    """
    interjection = _INTERJECTION.match(_plain(sentence))
    if interjection:
        return after_preamble(sentence[interjection.end() :])
    if not _PREAMBLE.match(_plain(sentence)):
        return sentence.strip()
    _, colon, rest = sentence.partition(":")
    return rest.strip() if colon else ""


def has_letters(text: str) -> bool:
    """Whether `text` holds a letter (a line of emoji, dashes or markdown rules does not)."""
    return bool(_LETTER.search(text))
