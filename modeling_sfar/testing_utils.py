"""Testing utilities: tiny checkpoints saved in the layout of Hub repositories, for the tests, the benchmarks and the
offline demo (a random CLIP; Llama and LLaVA chat models, random or with weights set so that they answer like a small
Markov chain), CLIP's real tokenizer built from its BPE merges file, and a generated test video. Nothing here is
downloaded."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import torch

from .data.video_io import write_frames

__all__ = [
    "CLIP_CONTEXT_LENGTH",
    "CLIP_NUM_MERGES",
    "CLIP_VOCAB_SIZE",
    "build_clip_tokenizer",
    "build_tiny_clip",
    "build_tiny_llama_chat",
    "build_tiny_llava_chat",
    "write_video",
    "STEP_CHOICES",
]


def _byte_level_alphabet() -> list[str]:
    """The 256 printable characters that byte-level BPE uses for bytes (GPT-2's table)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


# OpenAI's CLIP tokenizer (every OpenAI CLIP on the Hub, `openai/clip-vit-base-patch16` among them): a vocabulary of
# the 256 byte characters, the same with the end-of-word suffix `</w>`, one token per merge and the two special tokens.
CLIP_NUM_MERGES = 49152 - 256 - 2  # the first 48,894 lines of the merges file; the file holds 262,145
CLIP_VOCAB_SIZE = 2 * 256 + CLIP_NUM_MERGES + 2  # 49,408: <|startoftext|> is 49406, <|endoftext|> 49407
CLIP_CONTEXT_LENGTH = 77  # positions of the text tower, the start and end tokens included
_CLIP_SPECIAL_TOKENS = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
}


def build_clip_tokenizer(bpe_path: str | os.PathLike, save_directory: str | os.PathLike) -> str:
    """
    Save OpenAI CLIP's tokenizer, built from CLIP's BPE merges file, to `save_directory` in the layout of the Hub's
    `openai/clip-vit-base-patch16`: `vocab.json` and `merges.txt`, `tokenizer_config.json` (`CLIPTokenizer`, CLIP's
    special tokens, `model_max_length` 77, lower-casing) and `special_tokens_map.json`, and the `tokenizer.json` that
    transformers' `CLIPTokenizer` builds from them.

    Args:
        bpe_path: CLIP's merges file, `bpe_simple_vocab_16e6.txt.gz` (gzip, a header line then one merge per line, two
            symbols separated by a space), as openai/CLIP and the `open_clip_torch` package ship it.
        save_directory: the folder to write (created when missing); files of the same names are replaced.

    Returns:
        The folder, loadable with `AutoTokenizer.from_pretrained`: 49,408 tokens, `<|startoftext|>` = 49406,
        `<|endoftext|>` = 49407 (also the padding and unknown token).

    Raises:
        ValueError: `bpe_path` is not a gzip file of that layout or holds fewer than 48,894 merges (the message names
            the file).
    """
    from transformers import CLIPTokenizer

    bpe_path = Path(bpe_path)
    try:
        with gzip.open(bpe_path, "rt", encoding="utf-8") as file:
            lines = file.read().rstrip("\n").split("\n")
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise ValueError(f"{bpe_path}: not CLIP's gzip BPE merges file ({error})") from error
    if "#version" not in lines[0]:
        raise ValueError(f"{bpe_path}: the first line should be the merges file's `#version` header, got {lines[0]!r}")
    merges = lines[1 : 1 + CLIP_NUM_MERGES]
    if len(merges) < CLIP_NUM_MERGES:
        raise ValueError(f"{bpe_path}: {len(merges)} merges, CLIP's tokenizer uses the first {CLIP_NUM_MERGES}")
    for number, merge in enumerate(merges, start=2):
        if len(merge.split(" ")) != 2:
            raise ValueError(f"{bpe_path}, line {number}: a merge is two symbols separated by a space, got {merge!r}")
    # The byte characters in the order of the byte-to-character table's values: the printable bytes (which stand for
    # themselves) first, then the others (256 and up), i.e. by code point.
    characters = sorted(_byte_level_alphabet())
    tokens = characters + [c + "</w>" for c in characters] + [merge.replace(" ", "") for merge in merges]
    tokens += [_CLIP_SPECIAL_TOKENS["bos_token"], _CLIP_SPECIAL_TOKENS["eos_token"]]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"{bpe_path}: the merges give {len(vocab)} distinct tokens, CLIP has {CLIP_VOCAB_SIZE}")

    folder = Path(save_directory)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        **_CLIP_SPECIAL_TOKENS,
        "model_max_length": CLIP_CONTEXT_LENGTH,
        "do_lower_case": True,
        "add_prefix_space": False,
        "errors": "replace",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(_CLIP_SPECIAL_TOKENS, indent=2) + "\n", encoding="utf-8")
    (folder / "tokenizer.json").unlink(missing_ok=True)  # built from the files above, never from an older one
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    return os.fspath(save_directory)


def build_tiny_clip(
    save_directory: str | os.PathLike,
    hidden_size: int = 32,
    projection_dim: int = 32,
    num_layers: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
    logit_scale_init_value: float = 2.6592,
    bpe_path: str | os.PathLike | None = None,
) -> str:
    """
    Save a randomly initialised small `CLIPModel` and a CLIP tokenizer to `save_directory`.

    By default the tokenizer is a real `CLIPTokenizer` whose vocabulary holds every byte character (with and without
    the end-of-word suffix) and no merges, so any text tokenizes. With `bpe_path` (CLIP's merges file, see
    `build_clip_tokenizer`) it is OpenAI CLIP's own tokenizer, and the text tower has its 49,408 token embeddings and
    the token ids of the Hub's OpenAI CLIP configurations (start 0, end 2, padding 1: with the legacy end id 2,
    transformers pools each text at its largest token id, the end token). Returns the folder, loadable with
    `from_pretrained`. `logit_scale_init_value` is the log logit scale: CLIP's initial log(1/0.07) by default; trained
    CLIP checkpoints hold log(100) = 4.6052.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    if bpe_path is None:
        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
        for char in _byte_level_alphabet():
            vocab.setdefault(char, len(vocab))
            vocab.setdefault(char + "</w>", len(vocab))
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
        vocab_size, token_ids = len(vocab), {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    else:
        tokenizer = CLIPTokenizer.from_pretrained(build_clip_tokenizer(bpe_path, save_directory))
        vocab_size, token_ids = CLIP_VOCAB_SIZE, {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    text = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": max(1, hidden_size // 16),
        "max_position_embeddings": CLIP_CONTEXT_LENGTH,
        **token_ids,
        "projection_dim": projection_dim,
    }
    vision = {
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": max(1, hidden_size // 16),
        "image_size": image_size,
        "patch_size": patch_size,
        "projection_dim": projection_dim,
    }
    torch.manual_seed(seed)
    model = CLIPModel(
        CLIPConfig(
            text_config=text,
            vision_config=vision,
            projection_dim=projection_dim,
            logit_scale_init_value=logit_scale_init_value,
        )
    )
    model.save_pretrained(save_directory)
    if bpe_path is None:  # the real tokenizer's folder is already written, in the Hub's layout
        tokenizer.save_pretrained(save_directory)
    crop = {"height": image_size, "width": image_size}
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=crop).save_pretrained(save_directory)
    return os.fspath(save_directory)


def write_video(
    path: str | os.PathLike, num_frames: int = 16, height: int = 48, width: int = 64, fps: int = 8, seed: int = 0
) -> str:
    """Write an mp4 (H.264 where available) of a coloured square moving over a noisy background, with PyAV."""
    import numpy as np

    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    colour = rng.integers(120, 256, size=3, dtype=np.uint8)
    side = max(4, min(height, width) // 4)
    frames = np.repeat(background[None], num_frames, axis=0)
    for i in range(num_frames):
        x = int((width - side) * i / max(1, num_frames - 1))
        y = (height - side) // 2
        frames[i, y : y + side, x : x + side] = colour
    write_frames(path, frames, fps)
    return os.fspath(path)


# The answers of the scripted tiny Llama: step k says one of two things; after step 3 it stops early with the given
# probability (an answer of 3 steps, which the parser rejects); after step 4 comes a closing summary.
STEP_CHOICES = (
    ("This action is lifting the bar off the floor.", "This action is gripping the bar with both hands."),
    ("This action is pulling the bar up to the chest.", "This action is moving the bar quickly upwards."),
    ("This action is pushing the bar over the head.", "This action is holding the bar above the shoulders."),
    ("This action is lowering the bar back down.", "This action is dropping the bar to the ground."),
)
CHAT_TEMPLATE = (  # content as a string (chat models) or a list of text parts (vision-language processors)
    "{% for message in messages %}<|{{ message['role'] }}|> "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_llama_chat(
    save_directory: str | os.PathLike,
    scripted: bool = True,
    stop_early_probability: float = 0.3,
    hidden_size: int = 32,
    seed: int = 0,
    vocab_size: int | None = None,
    config_overrides: dict | None = None,
    save_weights: bool = True,
    steps: tuple[tuple[str, ...], ...] | None = None,
    closing: str | None = "In summary, these steps make up the action.",
) -> str:
    """
    Save a small `LlamaForCausalLM` chat model with a word-level tokenizer and a chat template to `save_directory`.

    With `scripted=False` the weights are random (its answers do not parse). With `scripted=True` the attention and
    MLP outputs are zero and the embeddings one-hot, so the next-token distribution depends on the last token only,
    and the output layer holds the log-probabilities of a chain that answers like an LLM asked for four steps:
    "1. This action is ..." (one of two phrasings per step, `STEP_CHOICES`), ..., "In summary, ...", end. After the
    third step it ends early with `stop_early_probability`. Sampling is real `generate` sampling: seeds matter.

    Other scripts: `steps` gives the alternatives of each line of the answer (each alternative a whole line, written
    as it is, newline included; one alternative of each line is drawn with equal probability), `closing` the line
    after the last (None: none). The early stop comes before the last line. An empty `steps` answers nothing at all.

    Benchmarks build a random model of a real size instead: `vocab_size` pads the vocabulary with filler tokens,
    `config_overrides` sets the `LlamaConfig` sizes, and `save_weights=False` writes only the config and tokenizer
    (for vLLM's `load_format="dummy"`, which makes random weights itself).
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
    if steps is None:
        steps = tuple(tuple(f"{k + 1}. {text}\n" for text in choices) for k, choices in enumerate(STEP_CHOICES))
    steps = [list(choices) for choices in steps]
    if any(not choices for choices in steps):
        raise ValueError("every line of `steps` needs at least one alternative")
    lines = list(dict.fromkeys([t for choices in steps for t in choices] + ([closing] if closing else [])))
    vocab = {token: i for i, token in enumerate(specials + lines)}
    if len(vocab) != len(specials) + len(lines):
        raise ValueError("a line of the script is also a special token")
    for i in range(len(vocab), vocab_size or 0):
        vocab[f"w{i}"] = i
    if scripted and hidden_size < len(vocab):
        raise ValueError(f"hidden_size must be at least the vocabulary size {len(vocab)}")
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=specials[4:],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        tie_word_embeddings=False,
    )
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    if not save_weights:
        config.save_pretrained(save_directory)
        tokenizer.save_pretrained(save_directory)
        return os.fspath(save_directory)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    if scripted:
        with torch.no_grad():
            layer = model.model.layers[0]
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
            model.model.embed_tokens.weight.zero_()
            model.model.embed_tokens.weight[:, : len(vocab)] = torch.eye(len(vocab))
            model.model.norm.weight.fill_(1.0)
            transitions = torch.full((len(vocab), len(vocab)), 1e-9)  # row: current token, column: next token
            eos = vocab["</s>"]
            transitions[:, eos] = 1.0  # every other token ends the answer
            if steps:
                transitions[vocab["<|assistant|>"]] = 1e-9
                for token in steps[0]:
                    transitions[vocab["<|assistant|>"], vocab[token]] = 1 / len(steps[0])
            for k in range(len(steps) - 1):
                for token in steps[k]:
                    transitions[vocab[token]] = 1e-9
                    stop = stop_early_probability if k == len(steps) - 2 else 0.0
                    for following in steps[k + 1]:
                        transitions[vocab[token], vocab[following]] = (1 - stop) / len(steps[k + 1])
                    transitions[vocab[token], eos] = max(stop, 1e-9)
            for token in steps[-1] if steps and closing else []:
                transitions[vocab[token]] = 1e-9
                transitions[vocab[token], vocab[closing]] = 1.0
            # after the final norm a one-hot embedding becomes sqrt(hidden_size) times the one-hot vector
            model.lm_head.weight.zero_()
            model.lm_head.weight[: len(vocab), : len(vocab)] = transitions.log().T / hidden_size**0.5
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(save_directory)
    tokenizer.save_pretrained(save_directory)
    return os.fspath(save_directory)


def build_tiny_llava_chat(save_directory: str | os.PathLike, seed: int = 0) -> str:
    """
    Save a small random `LlavaNextForConditionalGeneration` (the LLaVA-1.6 architecture) with a processor whose chat
    template takes text parts, as llava-hf checkpoints do: for testing the text-only use of a vision-language model.
    """
    import tempfile

    from transformers import (
        AutoTokenizer,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(build_tiny_llama_chat(tmp, scripted=False, save_weights=False))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=[[32, 32]],
    )
    torch.manual_seed(seed)
    LlavaNextForConditionalGeneration(config).save_pretrained(save_directory)
    images = LlavaNextImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=[[32, 32]]
    )
    processor = LlavaNextProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        patch_size=8,
        vision_feature_select_strategy="default",
    )
    processor.save_pretrained(save_directory)
    return os.fspath(save_directory)
