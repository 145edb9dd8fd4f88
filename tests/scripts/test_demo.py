"""The main job end to end, as `make demo` runs it, on a few videos and one epoch (the figures: the full run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modeling_sfar.data.subtexts import load_subtext_config
from tests.conftest import run_python_offline, run_snippet

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_generates_selects_trains_saves_and_classifies(tmp_path):
    out = tmp_path / "demo"
    demo = [str(REPO / "scripts" / "demo.py"), "--output_dir", str(out), "--epochs", "1",
            "--train_per_class", "2", "--test_per_class", "1"]  # fmt: skip
    run = run_python_offline(demo, cwd=REPO, tmp_path=tmp_path)

    folder = out / "model"
    for name in ("config.json", "model.safetensors", "modeling_sfar.py", "processor_config.json"):
        assert (folder / name).is_file(), name
    assert (out / "frame_weights.png").stat().st_size > 1000
    assert len(list((out / "data" / "videos" / "train").glob("*.mp4"))) == 20

    subtexts = load_subtext_config(out / "subtexts", "subtexts")
    candidates = load_subtext_config(out / "subtexts", "candidates")
    assert subtexts.num_rows == 10 and candidates.num_rows == 30
    assert sum(candidates["selected"]) == 10
    for row in subtexts:  # the selected candidate is the one with the highest TPP of its class
        best = max((c for c in candidates if c["label"] == row["label"]), key=lambda c: c["tpp"])
        assert row["subtexts"] == best["subtexts"] and row["tpp"] == best["tpp"]

    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["eval_top1"] <= results["eval_top5"] <= 100
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["label", "score"])
    scores = [float(line.split()[-1]) for line in lines[header + 1 : header + 6]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True) and sum(scores) <= 1.001
    assert any(line.startswith("non-uniform timing") for line in lines)

    # the README's zero-shot snippet, as written, on this run's model and test video
    readme = (REPO / "README.md").read_text()
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "zero-shot-video" in block]
    ranked, scope = run_snippet(code.replace('"outputs/demo/', f'"{out}/'), "README.md")
    labels = ["fall, wait and rise", "grow then slide left"]
    assert [item["label"] for item in ranked] in (labels, labels[::-1])
    assert ranked[0]["score"] >= ranked[1]["score"] and sum(item["score"] for item in ranked) == pytest.approx(1)
    assert scope["classifier"].model.config.custom_pipelines  # the folder's own pipeline, by its registration
