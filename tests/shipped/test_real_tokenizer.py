"""The label-set path with CLIP's real tokenizer, the one of `openai/clip-vit-base-patch16`, built from CLIP's own BPE
vocabulary (`modeling_sfar.testing_utils.build_clip_tokenizer`).

The vocabulary is not in this repository: `make setup` installs the pinned `open_clip_torch` wheel, with the two
packages its text cleaning imports (ftfy, wcwidth), into the git-ignored `.cache/open_clip-3.3.0/site` (`--target`,
outside the venv). The tokenizer built from it is checked against open_clip's pure-Python `SimpleTokenizer`, loaded
from that wheel's `open_clip/tokenizer.py` (a port of OpenAI's CLIP tokenizer that others wrote; the `open_clip`
package itself is never imported, its `__init__` loads the model code), on standard-library docstrings, every
assigned Unicode code point and hand-written edge cases. Then the label set goes through tiny random CLIP towers
whose text side has the real 49,408-token vocabulary and 77 positions: token lengths, truncation of long sub-texts,
pooling at the end token (the Hub's legacy `eos_token_id: 2` and the converter's real end id), TPP selection.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoProcessor, AutoTokenizer, CLIPModel, CLIPTextModel, CLIPTokenizer, CLIPTokenizerFast

from modeling_sfar import SfarForVideoClassification, class_name_to_text, convert_clip_to_sfar, text_prompt_perplexity
from modeling_sfar.generation.tpp import encode_texts, select_candidates
from modeling_sfar.testing_utils import (
    CLIP_CONTEXT_LENGTH,
    CLIP_VOCAB_SIZE,
    build_clip_tokenizer,
    build_tiny_clip,
)

OPEN_CLIP = Path(
    os.environ.get("SFAR_OPEN_CLIP", Path(__file__).parents[2] / ".cache" / "open_clip-3.3.0" / "site")
).resolve()
BPE = OPEN_CLIP / "open_clip" / "bpe_simple_vocab_16e6.txt.gz"

if not BPE.is_file():
    if os.environ.get("CI"):
        raise RuntimeError(f"CLIP's BPE vocabulary is missing ({BPE}): run `make setup`")
    pytest.skip(f"CLIP's BPE vocabulary is not fetched ({BPE}): run `make setup`", allow_module_level=True)

START, END = 49406, 49407
# open_clip's (and OpenAI's) pattern splits words case-insensitively: U+0345 COMBINING GREEK YPOGEGRAMMENI, whose
# case fold is a letter, then matches neither letters nor other symbols and is dropped; transformers keeps its bytes.
# The one code point of planes 0-2 on which the two tokenizers differ after CLIP's text cleaning.
DROPPED_BY_OPEN_CLIP = {"\u0345"}


def _load_open_clip_tokenizer():
    """open_clip's `tokenizer` module, loaded from its file; ftfy and wcwidth are importable while it loads (appended
    to `sys.path`, so nothing of the venv is shadowed, and removed again)."""
    sys.path.append(str(OPEN_CLIP))
    try:
        path = OPEN_CLIP / "open_clip" / "tokenizer.py"
        spec = importlib.util.spec_from_file_location("open_clip_reference_tokenizer", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(OPEN_CLIP))
    return module


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    """open_clip's tokenizer module (`SimpleTokenizer`, `basic_clean`)."""
    return _load_open_clip_tokenizer()


@pytest.fixture(scope="module")
def reference(open_clip_tokenizer):
    """open_clip's `SimpleTokenizer` on the same vocabulary file (the one next to its module)."""
    return open_clip_tokenizer.SimpleTokenizer(str(BPE))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    return Path(build_clip_tokenizer(BPE, tmp_path_factory.mktemp("clip-tokenizer")))


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


# --------------------------------------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------------------------------------

EDGE_CASES = [
    # accents, composed and decomposed (NFC makes them one), and other scripts
    "café naïve Zürich São Paulo Ångström Øresund Łódź",
    "cafe\u0301 nai\u0308ve",
    "Straße, ĳssel, ǅemal",
    "打篮球 踢足球 跳绳",
    "ジャンプする ひらがな カタカナ",
    "농구를 하다",
    "игра на балалайке",
    "Καλημέρα, ΑΘΗΝΑ",
    "يرمي الكرة",
    "לזרוק כדור",
    "योग करना, नमस्ते",
    "เล่นฟุตบอล",
    # emoji: single, skin tones, ZWJ sequences, flags, keycaps, variation selectors
    "👍 🏃 ⚽",
    "👍🏽 a thumbs up",
    "🏃‍♀️ woman running, 👨‍👩‍👧 family",
    "🇫🇷🇯🇵 flags",
    "1️⃣ #️⃣ keycaps",
    "❤️ ☺︎",
    # digits and numbers
    "1,234.56 and 3rd and 2x and 10°C",
    "½ ¾ ² ³ Ⅻ ٣ १२",
    "5'11\" tall, 12:30pm, 2024-01-31",
    "the 100m sprint in 9.58 s",
    # punctuation and symbols
    "?!?! !!! ... … — – -- ---",
    "« guillemets » „low“ 'single'",
    "x = f(y) + 2 * z[3] / {a: b}",
    "**bold** _italic_ `code` ~strike~",
    "https://example.com/path?q=1&r=2#frag user@example.org",
    "#yoga @coach $19.99 €5 £3 ¥100 ₹20 50%",
    "a<b>c, 3 < 4 > 2, A&B",
    "(parenthesised) [bracketed] {braced} <angled>",
    # contractions and case (CLIP lower-cases before splitting them off)
    "don't can't I'm we've they'll he'd it's",
    "DON'T STOP, I'M HERE, WE'LL GO",
    "James' bag, rock'n'roll, o'clock",
    "ThIs Is MiXeD CaSe",
    # whitespace
    "  leading and trailing  ",
    "tabs\tand\nnew\r\nlines",
    "many     spaces",
    "nbsp\u00a0here\u2003em space\u3000ideographic",
    "zero\u200bwidth soft\u00adhyphen",
    # texts CLIP's cleaning (ftfy, html.unescape) changes, which transformers' tokenizer does not do
    "“Step 1” the person’s left hand",
    "&amp; &lt;b&gt; &quot;quoted&quot;",
    "ﬁne ﬂow",
    "１２３ ＡＢＣ",
    "cafÃ© mojibake",
    "\ufeffa byte order mark",
    "bell\x07 and escape\x1b[31m",
    # sub-texts as LLMs write them
    "This action is lifting the bar off the floor.",
    "First, the person grips the bar with both hands (shoulder-width apart).",
    "Step 2: the athlete pulls the 20-kg bar up to the chest; elbows stay high!",
    "The dancer performs a pirouette en dehors — spinning on one foot.",
    "Finally, the bar is lowered back down... slowly.",
]


def docstring_paragraphs() -> list[str]:
    """The paragraphs of some standard-library module docstrings: English prose and code that others wrote, many
    paragraphs longer than CLIP's 77 positions."""
    import argparse
    import csv
    import datetime
    import decimal
    import difflib
    import email
    import fractions
    import functools
    import heapq
    import inspect
    import logging
    import pickle
    import random
    import statistics
    import string
    import subprocess
    import textwrap
    import typing
    import unittest
    import zipfile

    modules = [argparse, csv, datetime, decimal, difflib, email, fractions, functools, heapq, inspect, json, logging]
    modules += [pickle, random, statistics, string, subprocess, textwrap, typing, unittest, zipfile]
    paragraphs = []
    for module in modules:
        paragraphs += [p for p in re.split(r"\n\s*\n", module.__doc__ or "") if p.strip()]
    return paragraphs


def code_point_texts(stride: int = 1, per_text: int = 8) -> list[str]:
    """Every `stride`-th assigned code point of Unicode planes 0-2 (no surrogates or private use), `per_text` to a
    text, glued to a letter before them and a word after."""
    points = [chr(cp) for cp in range(0x21, 0x30000, stride) if unicodedata.category(chr(cp)) not in ("Cn", "Cs", "Co")]
    return ["a" + "".join(points[i : i + per_text]) + " b" for i in range(0, len(points), per_text)]


def corpus() -> list[str]:
    return EDGE_CASES + docstring_paragraphs() + code_point_texts(stride=89, per_text=5)


def reference_ids(reference, text: str) -> list[int]:
    """open_clip's tokenization of `text` as CLIP reads it: start, words, end, truncated to 77 with the end token
    kept last (its `__call__`, whose zero padding is cut off at the length its own rule gives)."""
    length = min(len(reference.encode(text)) + 2, CLIP_CONTEXT_LENGTH)
    row = reference([text])[0]
    assert not row[length:].any()
    return row[:length].tolist()


# --------------------------------------------------------------------------------------------------------------------
# The tokenizer
# --------------------------------------------------------------------------------------------------------------------


def test_the_tokenizer_has_openai_clip_published_facts(tokenizer, tokenizer_dir):
    assert isinstance(tokenizer, CLIPTokenizer)
    assert len(tokenizer) == tokenizer.vocab_size == CLIP_VOCAB_SIZE == 49408
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<|startoftext|>", START)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|endoftext|>", END)
    assert tokenizer.pad_token_id == tokenizer.unk_token_id == END
    assert tokenizer.model_max_length == CLIP_CONTEXT_LENGTH == 77
    ids = tokenizer("a photo of a cat").input_ids
    assert ids == [START, 320, 1125, 539, 320, 2368, END]
    assert tokenizer("A PHOTO OF A CAT").input_ids == ids  # lower-cased
    # the end-of-word suffix marks a word's last piece; the pieces before it have none
    assert tokenizer.tokenize("a photo") == ["a</w>", "photo</w>"]
    assert tokenizer.tokenize("pirouette") == ["pir", "ou", "ette</w>"]
    assert sorted(p.name for p in tokenizer_dir.iterdir()) == [
        "merges.txt",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]


def test_the_vocabulary_is_open_clip_s(tokenizer, reference):
    """Token for token, the same 49,408 entries (open_clip names its two special tokens differently)."""
    assert (reference.vocab_size, reference.sot_token_id, reference.eot_token_id) == (49408, START, END)
    theirs = dict(reference.encoder)
    theirs["<|startoftext|>"], theirs["<|endoftext|>"] = theirs.pop("<start_of_text>"), theirs.pop("<end_of_text>")
    assert tokenizer.get_vocab() == theirs


def test_ids_equal_open_clip_s_on_a_corpus(tokenizer, reference, open_clip_tokenizer):
    """Start and end tokens and truncation at 77 included. CLIP's own tokenizer first cleans the text (ftfy's
    `fix_text`, `html.unescape` twice), transformers' only normalises it (NFC): where the cleaning changes nothing
    else the ids are the same as they are; everywhere they are the same on the cleaned text."""
    texts = corpus()
    clean = [open_clip_tokenizer.basic_clean(text) for text in texts]
    unchanged = [c == unicodedata.normalize("NFC", t).strip() for t, c in zip(texts, clean, strict=True)]
    ids = tokenizer(texts, truncation=True, max_length=CLIP_CONTEXT_LENGTH).input_ids
    clean_ids = tokenizer(clean, truncation=True, max_length=CLIP_CONTEXT_LENGTH).input_ids
    mismatched, truncated = [], 0
    for text, same, got, got_clean in zip(texts, unchanged, ids, clean_ids, strict=True):
        expected = reference_ids(reference, text)
        truncated += len(expected) == CLIP_CONTEXT_LENGTH
        if got_clean != expected or (same and got != expected):
            mismatched.append(text)
    assert not mismatched
    # the corpus is what it claims: mostly texts the cleaning leaves alone, some it changes, long ones truncated
    assert len(texts) > 300 and sum(unchanged) > 0.9 * len(texts) and not all(unchanged)
    assert truncated >= 10


def test_every_code_point_tokenizes_as_in_open_clip(tokenizer, reference, open_clip_tokenizer):
    texts = code_point_texts()
    clean = [open_clip_tokenizer.basic_clean(text) for text in texts]
    got = tokenizer(clean, add_special_tokens=False).input_ids
    differ = {c for text, ids in zip(texts, got, strict=True) if ids != reference.encode(text) for c in text}
    assert len(texts) > 15000
    assert differ & DROPPED_BY_OPEN_CLIP == DROPPED_BY_OPEN_CLIP
    # only the texts holding that code point differ, and without it they agree
    for text, ids in zip(texts, got, strict=True):
        if ids != reference.encode(text):
            assert set(text) & DROPPED_BY_OPEN_CLIP, text
            stripped = "".join(c for c in text if c not in DROPPED_BY_OPEN_CLIP)
            cleaned = open_clip_tokenizer.basic_clean(stripped)
            assert tokenizer(cleaned, add_special_tokens=False).input_ids == reference.encode(stripped)


def test_decoding_matches_open_clip_s(tokenizer, reference):
    for text in EDGE_CASES + docstring_paragraphs()[:40]:
        ids = reference.encode(text)
        assert tokenizer.decode(ids) == reference.decode(ids).strip(), text


def test_every_way_transformers_loads_it_gives_the_same_ids(tokenizer_dir, tmp_path):
    """From the Hub layout's `vocab.json` and `merges.txt` alone (transformers builds the tokenizer from them), from
    `tokenizer.json`, by either class name, and after a save."""
    slow_files = tmp_path / "slow-files"
    shutil.copytree(tokenizer_dir, slow_files)
    (slow_files / "tokenizer.json").unlink()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.save_pretrained(tmp_path / "saved")
    loaded = [
        AutoTokenizer.from_pretrained(slow_files),
        CLIPTokenizer.from_pretrained(slow_files),
        CLIPTokenizerFast.from_pretrained(tokenizer_dir),
        AutoTokenizer.from_pretrained(tmp_path / "saved"),
    ]
    texts = corpus()
    expected = tokenizer(texts, truncation=True, max_length=CLIP_CONTEXT_LENGTH).input_ids
    for other in loaded:
        assert len(other) == CLIP_VOCAB_SIZE and other.model_max_length == CLIP_CONTEXT_LENGTH
        assert other(texts, truncation=True, max_length=CLIP_CONTEXT_LENGTH).input_ids == expected


def test_a_bad_merges_file_is_an_error_naming_it(tmp_path):
    import gzip

    not_gzip = tmp_path / "plain.txt.gz"
    not_gzip.write_text("#version: 0.2\ni n\n")
    with pytest.raises(ValueError, match=r"plain\.txt\.gz: not CLIP's gzip BPE merges file"):
        build_clip_tokenizer(not_gzip, tmp_path / "out")
    short = tmp_path / "short.txt.gz"
    with gzip.open(short, "wt") as file:
        file.write("#version: 0.2\ni n\nt h\n")
    with pytest.raises(ValueError, match=r"short\.txt\.gz: 2 merges, CLIP's tokenizer uses the first 48894"):
        build_clip_tokenizer(short, tmp_path / "out")
    headless = tmp_path / "headless.txt.gz"
    with gzip.open(headless, "wt") as file:
        file.write("i n\n")
    with pytest.raises(ValueError, match=r"headless\.txt\.gz: the first line should be"):
        build_clip_tokenizer(headless, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------------------------
# The label set through tiny CLIP towers with the real vocabulary
# --------------------------------------------------------------------------------------------------------------------

# Class names in the four benchmarks' conventions, and sub-texts as LLMs write them: short and long, punctuation,
# digits, accents, emoji, and one far longer than 77 tokens.
LABELS = ["ApplyEyeMakeup", "brush_hair", "playing ukulele", "Holding some clothes", "YoYo"]
LONG_SUBTEXT = (
    "This action is a long sequence in which the person first stands with both feet shoulder-width apart, then "
    "bends the knees slightly, reaches down with the right hand to grip the handle, lifts the object off the floor "
    "while keeping the back straight, turns the torso to the left, raises both arms above the head, holds the pose "
    "for about 3 seconds, lowers the arms again, steps forward with the left foot, and finally returns to the "
    "starting position, breathing out slowly as the movement ends."
)
SUBTEXTS = {
    "ApplyEyeMakeup": [
        "This action is opening the eyeliner.",
        "The person leans toward the mirror.",
        "A thin line is drawn along the upper lid.",
        "The other eye is done the same way.",
    ],
    "brush_hair": [
        "First, the brush is picked up.",
        "Step 2: strokes go from the roots to the tips — 20 times!",
        "Tangles are worked out (gently).",
        LONG_SUBTEXT,
    ],
    "playing ukulele": [
        "The ukulele is held against the chest.",
        "The left hand presses the strings at the 3rd fret.",
        "The right hand strums: down, down-up, up-down.",
        "Une mélodie très douce, jouée au café.",
    ],
    "Holding some clothes": ["A shirt is lifted.", "🧺 clothes are gathered in the arms.", "They are held.", "Done."],
    "YoYo": [
        "This action is winding the string around the axle.",
        "The yo-yo is thrown down.",
        "It spins at the bottom (a 'sleeper') for 2-3 s.",
        LONG_SUBTEXT + " Then the yo-yo climbs back up the string into the hand.",
    ],
}


@pytest.fixture(scope="module")
def real_clip_dir(tmp_path_factory) -> str:
    """A tiny random `CLIPModel` with OpenAI CLIP's tokenizer, 49,408 token embeddings, 77 positions and the Hub's
    legacy end id 2."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip-real-tokenizer"), bpe_path=BPE, num_layers=2)


@pytest.fixture(scope="module")
def converted(real_clip_dir):
    torch.manual_seed(0)
    return convert_clip_to_sfar(real_clip_dir, LABELS, SUBTEXTS, num_frames=4, num_temporal_layers=1)


def alone(text_model: CLIPTextModel, ids: list[int]) -> torch.Tensor:
    """The final-layer state of one text, run alone without padding, at its last position: where CLIP pools."""
    with torch.no_grad():
        return text_model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]


def test_the_tiny_clip_has_the_real_vocabulary_and_hub_token_ids(real_clip_dir, converted):
    clip = CLIPModel.from_pretrained(real_clip_dir)
    text_config = clip.config.text_config
    assert (text_config.vocab_size, text_config.max_position_embeddings) == (49408, 77)
    assert (text_config.bos_token_id, text_config.eos_token_id, text_config.pad_token_id) == (0, 2, 1)
    model, processor = converted
    assert model.config.text_config.eos_token_id == END  # the converter writes the tokenizer's end token
    assert isinstance(processor.tokenizer, CLIPTokenizer) and len(processor.tokenizer) == CLIP_VOCAB_SIZE


def test_label_set_token_lengths_are_clip_s(converted, reference):
    """Class prompts (C, W) padded to the longest, sub-texts (C, N, S) to the longest, which the long sub-text makes
    77; every row holds open_clip's ids, then the end token as padding, masked."""
    model, processor = converted
    tokens = model.sfar.tokenize_label_set(LABELS, processor.tokenizer, SUBTEXTS)
    prompts = [model.config.prompt_template.format(class_name_to_text(label)) for label in LABELS]
    subtexts = [text for label in LABELS for text in SUBTEXTS[label]]
    expected_prompts = [reference_ids(reference, text) for text in prompts]
    expected_subtexts = [reference_ids(reference, text) for text in subtexts]
    width = max(map(len, expected_prompts))
    assert tokens["input_ids"].shape == (len(LABELS), width) and width < CLIP_CONTEXT_LENGTH
    assert tokens["subtext_input_ids"].shape == (len(LABELS), 4, CLIP_CONTEXT_LENGTH)
    rows = list(zip(tokens["input_ids"], tokens["attention_mask"], expected_prompts, strict=True))
    subtext_ids = tokens["subtext_input_ids"].flatten(0, 1)  # (C*N, S)
    subtext_mask = tokens["subtext_attention_mask"].flatten(0, 1)
    rows += list(zip(subtext_ids, subtext_mask, expected_subtexts, strict=True))
    for ids, mask, expected in rows:
        n = len(expected)
        assert ids[:n].tolist() == expected and (ids[n:] == END).all()
        assert mask.tolist() == [1] * n + [0] * (len(ids) - n)
    lengths = sorted({len(e) for e in expected_prompts + expected_subtexts})
    assert len(lengths) >= 8  # the label set has texts of many lengths
    prompt_lengths = {text: len(e) for text, e in zip(prompts, expected_prompts, strict=True)}
    assert prompt_lengths["This is a video about Apply Eye Makeup"] == 2 + 8


def test_a_long_subtext_is_cut_at_77_with_the_end_token_last(converted, reference):
    model, processor = converted
    tokens = model.sfar.tokenize_label_set(LABELS, processor.tokenizer, SUBTEXTS)
    words = reference.encode(LONG_SUBTEXT)
    assert len(words) > 90  # far past the context: 75 word tokens are kept
    ids = tokens["subtext_input_ids"][LABELS.index("brush_hair"), 3]
    assert ids.tolist() == [START, *words[:75], END]
    assert tokens["subtext_attention_mask"][LABELS.index("brush_hair"), 3].all()
    # the two long sub-texts differ only after the cut: the model sees the same text
    yoyo = tokens["subtext_input_ids"][LABELS.index("YoYo"), 3]
    assert torch.equal(yoyo, ids)


@pytest.mark.parametrize("word_tokens", ["words", "all"])
def test_the_end_token_is_pooled_where_clip_pools_it(real_clip_dir, word_tokens):
    """The Hub's configs carry the legacy end id 2, for which transformers pools at the largest id; the converter
    writes the tokenizer's end token, pooled at its first occurrence. Both pool the label set's texts at their end
    token, padding (end tokens, to the longest or to 77 with `word_tokens="all"`) and truncation included: the
    embedding of each text run alone."""
    torch.manual_seed(0)
    model, processor = convert_clip_to_sfar(
        real_clip_dir, LABELS, SUBTEXTS, num_frames=4, num_temporal_layers=1, word_tokens=word_tokens
    )
    legacy = CLIPTextModel.from_pretrained(real_clip_dir).eval()
    assert legacy.config.eos_token_id == 2 and model.sfar.text_model.config.eos_token_id == END
    tokens = model.sfar.tokenize_label_set(LABELS, processor.tokenizer, SUBTEXTS)
    for key in ("input_ids", "subtext_input_ids"):
        ids = tokens[key].flatten(0, -2)
        lengths = tokens[key.replace("input_ids", "attention_mask")].flatten(0, -2).sum(-1)
        if word_tokens == "all":
            assert ids.shape[-1] == CLIP_CONTEXT_LENGTH
        with torch.no_grad():
            converted_out = model.sfar.text_model(input_ids=ids)
            legacy_out = legacy(input_ids=ids)
        torch.testing.assert_close(converted_out.pooler_output, legacy_out.pooler_output, rtol=0, atol=0)
        padded = 0
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(converted_out.pooler_output[i], alone(legacy, ids[i, :n].tolist()))
            if n < ids.shape[-1]:  # not vacuous: a pooling at the last padding token would differ
                padded += 1
                assert not torch.allclose(converted_out.pooler_output[i], converted_out.last_hidden_state[i, -1])
        assert padded > 0


def test_the_label_set_embeddings_are_clip_s(real_clip_dir, converted):
    """What `encode_label_set` keeps (class embeddings, sub-text embeddings, word masks) against the CLIP checkpoint's
    own text features (`get_text_features`, the Hub's legacy pooling) of each text."""
    model, processor = converted
    tokens = model.sfar.tokenize_label_set(LABELS, processor.tokenizer, SUBTEXTS)
    label_set = model.sfar.encode_label_set(**tokens)
    prompts = [model.config.prompt_template.format(class_name_to_text(label)) for label in LABELS]
    subtexts = [text for label in LABELS for text in SUBTEXTS[label]]
    clip = CLIPModel.from_pretrained(real_clip_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(real_clip_dir)

    def features(texts: list[str]) -> torch.Tensor:
        out = []
        for text in texts:  # one at a time: no padding at all
            with torch.no_grad():
                feature = clip.get_text_features(**tokenizer([text], truncation=True, return_tensors="pt"))
            out.append(getattr(feature, "pooler_output", feature)[0])
        return torch.stack(out)

    torch.testing.assert_close(label_set.text_embeds, F.normalize(features(prompts), dim=-1))
    torch.testing.assert_close(label_set.subtext_embeds, features(subtexts).view(len(LABELS), 4, -1))
    # the words: every token after the start one, the end token included
    lengths = tokens["subtext_attention_mask"].sum(-1)
    assert torch.equal(label_set.subtext_word_mask.sum(-1), lengths - 1)
    assert label_set.subtext_word_embeds.shape[2] == CLIP_CONTEXT_LENGTH - 1  # the long sub-text's 76 words
    assert torch.equal(label_set.prompt_word_mask.sum(-1), tokens["attention_mask"].sum(-1) - 1)


def test_the_stored_label_set_classifies_as_the_token_ids_do(converted, tmp_path, reference):
    """The label set stored by the converter (`set_label_set`), the same label set given to the forward as token
    ids, and the stored one of the saved and reloaded model give the same logits; the saved processor keeps the
    real tokenizer."""
    model, processor = converted
    tokens = model.sfar.tokenize_label_set(LABELS, processor.tokenizer, SUBTEXTS)
    frames = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # (B, T, C, H, W)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = SfarForVideoClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        stored = model(frames).logits
        torch.testing.assert_close(model(frames, **tokens).logits, stored)
        torch.testing.assert_close(loaded(frames).logits, stored)
    tokenizer = AutoProcessor.from_pretrained(tmp_path).tokenizer
    assert len(tokenizer) == CLIP_VOCAB_SIZE and tokenizer.model_max_length == CLIP_CONTEXT_LENGTH
    texts = [text for label in LABELS for text in SUBTEXTS[label]]
    expected = [reference_ids(reference, text) for text in texts]
    assert tokenizer(texts, truncation=True, max_length=CLIP_CONTEXT_LENGTH).input_ids == expected
    assert json.loads((tmp_path / "config.json").read_text())["text_config"]["eos_token_id"] == END


def test_tpp_selection_on_real_token_counts(real_clip_dir, converted, reference):
    """Sub-text sets of varied lengths, truncated ones among them: the scores of the batched, padded selection are
    the TPP of each text's embedding computed alone from open_clip's ids, and equal the TPP of SFAR's own label-set
    embeddings (the converter's end id); a set that did not parse scores NaN."""
    model, processor = converted
    long_rest = [" Then the person rests.", " Then the person jumps.", " Then the person sits down."]
    candidates = {
        label: [
            {"subtexts": SUBTEXTS[label], "generator": "a", "prompt": "p0"},
            {"subtexts": [LONG_SUBTEXT + rest for rest in long_rest] + [SUBTEXTS[label][0]], "generator": "b"},
            {"subtexts": None, "generator": "c"},  # did not parse
            {"subtexts": [f"{label} step {i}: " + "very " * (25 * i) + "slowly." for i in range(4)], "generator": "d"},
        ]
        for label in LABELS
    }
    template = model.config.prompt_template
    selected, rows = select_candidates(real_clip_dir, candidates, prompt_template=template)

    clip = CLIPModel.from_pretrained(real_clip_dir).eval()

    def embed(text: str) -> torch.Tensor:
        with torch.no_grad():
            feature = clip.get_text_features(input_ids=torch.tensor([reference_ids(reference, text)]))
        return getattr(feature, "pooler_output", feature)[0]

    for c, label in enumerate(LABELS):
        class_embed = embed(template.format(class_name_to_text(label)))[None]
        label_rows = [row for row in rows if row["label"] == label]
        scores = []
        for k, candidate in enumerate(candidates[label]):
            if candidate["subtexts"] is None:
                assert label_rows[k]["tpp"] != label_rows[k]["tpp"]  # NaN
                scores.append(float("-inf"))
                continue
            subtext_embeds = torch.stack([embed(text) for text in candidate["subtexts"]])[None]
            expected = float(text_prompt_perplexity(class_embed, subtext_embeds))
            assert label_rows[k]["tpp"] == pytest.approx(expected, rel=1e-5)
            scores.append(expected)
        best = max(range(len(scores)), key=scores.__getitem__)
        assert [row["selected"] for row in label_rows] == [k == best for k in range(len(scores))]
        assert selected[c]["subtexts"] == candidates[label][best]["subtexts"]

    # the three long sub-texts differ only past the cut: one text to CLIP, so their embeddings are equal
    truncated = encode_texts(real_clip_dir, [LONG_SUBTEXT + rest for rest in long_rest])
    torch.testing.assert_close(truncated[1:], truncated[:1].expand(2, -1))
    # SFAR's label set (end id 49407, padded to 77) gives the selection's scores for the first candidates
    label_set = model.sfar.encode_label_set(**model.sfar.tokenize_label_set(LABELS, processor.tokenizer, SUBTEXTS))
    sfar_tpp = text_prompt_perplexity(label_set.text_embeds, label_set.subtext_embeds)
    first = torch.tensor([[row["tpp"] for row in rows if row["label"] == label][0] for label in LABELS])
    torch.testing.assert_close(sfar_tpp, first.to(sfar_tpp.dtype), rtol=1e-5, atol=0)


def test_label_set_ids_are_clip_s_for_chat_model_punctuation(converted, reference):
    model, processor = converted
    subtexts = {label: list(texts) for label, texts in SUBTEXTS.items()}
    subtexts["YoYo"] = [
        "The person’s right hand holds the yo-yo.",
        "“Step 2” it’s thrown down.",
        "It spins &amp; sleeps.",
        "It ﬁnally climbs back.",
    ]
    tokens = model.sfar.tokenize_label_set(LABELS, processor.tokenizer, subtexts)
    yoyo = LABELS.index("YoYo")
    for text, ids, mask in zip(
        subtexts["YoYo"], tokens["subtext_input_ids"][yoyo], tokens["subtext_attention_mask"][yoyo], strict=True
    ):
        assert ids[: int(mask.sum())].tolist() == reference_ids(reference, text), text
    given = processor(text=subtexts["YoYo"])  # the ids a user gives the model: the same cleaning
    for text, ids, mask in zip(subtexts["YoYo"], given["input_ids"], given["attention_mask"], strict=True):
        assert ids[: int(mask.sum())].tolist() == reference_ids(reference, text), text


@pytest.fixture(scope="module")
def ftfy_module():
    """ftfy from the same folder as open_clip's tokenizer (appended to `sys.path` while it loads, then removed)."""
    sys.path.append(str(OPEN_CLIP))
    try:
        import ftfy
    finally:
        sys.path.remove(str(OPEN_CLIP))
    return ftfy


CHAT_MODEL_TEXTS = [
    "The person’s right hand holds the yo-yo.",
    "“Step 2” it’s thrown down – fast…",
    "It spins &amp; sleeps; &lt;fast&gt; &rsquo;round&rsquo; &#8220;up&#8221;",
    "&amp;rsquo;twice escaped&amp;rsquo; and <b>tagged &rsquo;</b>",
    "It ﬁnally ﬂies back, ĳ and ǅ",
    "Ｆｕｌｌ　ｗｉｄｔｈ ｔｅｘｔ！",
    "a\u200bzero\u00a0width\ufeff \x07bell \x92quote\x85 \x1b[31mred\x1b[0m\r\nnext\u2028line",
]


def test_label_set_cleaning_is_clip_s_but_for_mojibake(open_clip_tokenizer, ftfy_module):
    """`clean_clip_text` against open_clip's own cleaning (ftfy's `fix_text`, `html.unescape` twice, whitespace) on
    the corpus, every assigned code point and chat-model punctuation: the same text everywhere but where ftfy repairs
    mojibake (`fix_encoding`), which the standard library cannot."""
    from modeling_sfar.remote_code.configuration_clip_video import clean_clip_text

    texts = corpus() + code_point_texts() + CHAT_MODEL_TEXTS + ["cafÃ© â€™ mojibake"]
    differ = [
        text
        for text in texts
        if clean_clip_text(text) != open_clip_tokenizer.whitespace_clean(open_clip_tokenizer.basic_clean(text))
    ]
    assert differ and all(ftfy_module.fix_encoding(text) != text for text in differ)
    assert len(differ) < 0.001 * len(texts)


def test_plain_ascii_keeps_its_ids(tokenizer):
    """Cleaning changes no id of plain ASCII text without HTML entities or control characters (saved label sets and
    stored TPP of such texts stay what they were); the docstrings' paragraphs hold some entities."""
    from modeling_sfar.remote_code.configuration_clip_video import clean_clip_text

    texts = [t for t in docstring_paragraphs() + EDGE_CASES if t.isascii()]
    texts += [f"a{chr(c)}b {chr(c)} {chr(c)}{chr(c)}" for c in range(0x20, 0x7F)]  # every printable character

    def ids(batch: list[str]) -> list[list[int]]:
        return tokenizer(batch, truncation=True, max_length=CLIP_CONTEXT_LENGTH).input_ids

    changed = [t for t, a, b in zip(texts, ids([clean_clip_text(t) for t in texts]), ids(texts), strict=True) if a != b]
    assert len(texts) > 200
    assert all(re.search(r"&#?\w+;?|[\x00-\x08\x0b\x0e-\x1f\x7f]", t) for t in changed), changed[:3]
