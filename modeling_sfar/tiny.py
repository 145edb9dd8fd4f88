"""Tiny random CLIP checkpoints, saved in the layout of a Hub CLIP repository, for tests and the offline demo."""

from __future__ import annotations

import os

import torch

__all__ = ["build_tiny_clip", "write_frames", "write_video"]


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


def build_tiny_clip(
    save_directory: str | os.PathLike,
    hidden_size: int = 32,
    projection_dim: int = 32,
    num_layers: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
    logit_scale_init_value: float = 2.6592,
) -> str:
    """
    Save a randomly initialised small `CLIPModel` and a character-level CLIP tokenizer to `save_directory`.

    The tokenizer is a real `CLIPTokenizer` whose vocabulary holds every byte character (with and without the
    end-of-word suffix) and no merges, so any text tokenizes. Returns the folder, loadable with `from_pretrained`.
    `logit_scale_init_value` is the log logit scale: CLIP's initial log(1/0.07) by default; trained CLIP checkpoints
    hold log(100) = 4.6052.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    alphabet = _byte_level_alphabet()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in alphabet:
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    text = {
        "vocab_size": len(vocab),
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": max(1, hidden_size // 16),
        "max_position_embeddings": 77,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
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
    tokenizer.save_pretrained(save_directory)
    crop = {"height": image_size, "width": image_size}
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=crop).save_pretrained(save_directory)
    return os.fspath(save_directory)


def write_frames(path: str | os.PathLike, frames, fps: int = 8) -> str:
    """Write `frames` (T, H, W, 3) uint8 as an mp4 (H.264 where available, else MPEG-4) with PyAV."""
    import av

    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}  # near-lossless: small shapes keep their edges
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return os.fspath(path)


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
