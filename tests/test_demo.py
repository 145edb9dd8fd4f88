"""The main job end to end on its embedded default, as `make demo` runs it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_python_offline

REPO = Path(__file__).resolve().parents[1]


def test_demo_builds_saves_and_classifies(tmp_path):
    demo = [str(REPO / "scripts" / "demo.py"), "--output_dir", str(tmp_path / "demo")]
    run = run_python_offline(demo, cwd=REPO, tmp_path=tmp_path)
    folder = tmp_path / "demo" / "sfar-demo"
    for name in ("config.json", "model.safetensors", "modeling_sfar.py", "processor_config.json"):
        assert (folder / name).is_file(), name
    assert (tmp_path / "demo" / "frame_weights.png").stat().st_size > 1000
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["label", "score"])
    table = lines[header + 1 : header + 6]
    scores = [float(line.split()[-1]) for line in table]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True) and 0.99 < sum(scores) <= 1.001
