"""The built wheel, installed in a fresh virtual environment, carries everything the library reads at run time."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHECK = """
from pathlib import Path

import numpy as np
from huggingface_hub import ModelCard, ModelCardData

import datasets_scripts
import hub_cards
import modeling_sfar
from hub_cards import SFAR_MODEL_CARD, template_path
from modeling_sfar.generation.backends import SamplingOptions
from modeling_sfar.generation.subtexts import subtext_card
from modeling_sfar.evaluation.metrics import classification_metrics

for module in (datasets_scripts, hub_cards, modeling_sfar):
    assert "site-packages" in module.__file__, module.__file__  # the wheel's copy, not the clone
assert classification_metrics(np.array([[0.2, 0.8]]), np.array([1])) == {"top1": 100.0, "top5": 100.0}
rows = [{"label": "a", "tpp": 50.0, "selected": True, "generator": "org/llm"}]
card = subtext_card(rows, rows, [{"rejected": None, "generator": "org/llm"}], [{"model": "org/llm", "revision": "r"}],
                    SamplingOptions(), "org/clip", "This is a video about {}", 4)
assert "org/llm" in str(card)
card = ModelCard.from_template(ModelCardData(license="apache-2.0"), template_path=template_path(SFAR_MODEL_CARD),
                               repo_id="org/sfar", revision="abc", model_name="sfar")
assert 'model="org/sfar"' in str(card)
# the entity corpus: its card template and the stop words (the `stopwords` package's shipped list)
from modeling_sfar.generation.entity_prompts import parse_units
from hub_cards import ENTITY_DATASET_CARD
assert "{{ num_entities }}" in Path(template_path(ENTITY_DATASET_CARD)).read_text()
# ALT's model card template, and the corpus reader the training run imports from the library
from hub_cards import ALT_MODEL_CARD
from modeling_sfar.data.entities import entity_texts
assert "Align before Adapt" in Path(template_path(ALT_MODEL_CARD)).read_text()
assert parse_units("1. The barbell\\n2. Chalk and the floor") == ["barbell", "chalk", "floor"]
print("ok")
"""


@pytest.mark.slow
def test_wheel_in_a_fresh_venv(tmp_path):
    wheel_dir = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheel_dir, REPO],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheel_dir.glob("sfar_hf-*.whl")
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The heavy dependencies come from the test environment's site-packages as a plain path entry (its .pth files,
    # the editable install of this clone among them, are not read from there); the package itself from the wheel.
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # A PYTHONPATH of the caller (a clone run as `PYTHONPATH=$PWD pytest`) would put the clone, and its egg-info that
    # tells pip the package is already installed, before the wheel.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel], check=True, env=env)
    result = subprocess.run([python, "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
