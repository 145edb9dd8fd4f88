"""Loading by repo id, offline: a Hub-compatible read-only server (`olah`) on loopback serves the staged model and
sub-text repos as local git repositories, and a fresh process where `modeling_sfar` cannot be imported loads them
through `HF_ENDPOINT` with `AutoModel`, `pipeline("video-classification")` and `load_dataset`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import BLOCK_MODELING_SFAR, free_port, wait_for_server

REPO = Path(__file__).resolve().parents[2]

from modeling_sfar.data import subtexts  # noqa: E402
from modeling_sfar.hub import cards, push  # noqa: E402

pytest.importorskip("olah", reason="olah (the offline Hub server) is installed by `make test`")
if shutil.which("git") is None:
    pytest.skip("git is needed to serve local repositories", allow_module_level=True)


def git_repo(staged: Path, path: Path) -> str:
    """Copy `staged` to `path` as a git repository with one commit on `main`; returns the commit hash."""
    shutil.copytree(staged, path)
    identity = ["-c", "user.name=sfar-tests", "-c", "user.email=tests@localhost"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*identity, "commit", "-q", "-m", "Upload"]):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def hub(converted, video_path, tmp_path_factory):
    """The staged repos served by olah; yields the endpoint and the model repo's commit."""
    from modeling_sfar.data.subtexts import save_subtext_dataset

    root = tmp_path_factory.mktemp("hub")
    model, processor = converted
    model.save_pretrained(root / "run")
    processor.save_pretrained(root / "run")
    card = cards.model_card(root / "run", "org/sfar-test", "openai/clip-vit-base-patch16", "x", {})
    push.stage_model_repo(root / "run", root / "model-staged", card, [video_path])
    commit = git_repo(root / "model-staged", root / "mirrors" / "models" / "org" / "sfar-test")

    rows = [
        {"label": label, "subtexts": texts, "tpp": 1.0 + i, "generator": "g", "prompt": "p"}
        for i, (label, texts) in enumerate(model.config.subtexts.items())
    ]
    save_subtext_dataset(root / "subtexts", rows, [{**r, "selected": True, "answer": ""} for r in rows])
    subtexts.stage_dataset_repo(root / "subtexts", root / "subtexts-staged")
    git_repo(root / "subtexts-staged", root / "mirrors" / "datasets" / "org" / "sfar-subtexts-test")

    port = free_port()
    (root / "olah.toml").write_text(
        textwrap.dedent(
            f"""
            [basic]
            host = "127.0.0.1"
            port = {port}
            mirror-netloc = "127.0.0.1:{port}"
            mirror-lfs-netloc = "127.0.0.1:{port}"
            mirrors-path = ["{root / "mirrors"}"]
            repos-path = "{root / "cache"}"
            log-path = "{root / "logs"}"

            [accessibility]
            offline = true
            """
        )
    )
    log = open(root / "olah.log", "w")
    server = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "olah_server.py"), "-c", str(root / "olah.toml")],
        cwd=root,
        stdout=log,
        stderr=log,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        url = f"{endpoint}/api/models/org/sfar-test/revision/main"
        wait_for_server(url, server, root / "olah.log", "olah", 60)
        yield {"endpoint": endpoint, "commit": commit, "root": root}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


SCRIPT = BLOCK_MODELING_SFAR + textwrap.dedent(
    """
    import importlib.util, json, sys

    import torch
    from datasets import load_dataset
    from transformers import AutoModel, AutoModelForVideoClassification, AutoProcessor, pipeline

    video, commit, subtext_module = sys.argv[1], sys.argv[2], sys.argv[3]
    # the library's sub-text reader from its file (stdlib only at module level): the package stays blocked
    spec = importlib.util.spec_from_file_location("sfar_subtext_dataset", subtext_module)
    subtext_dataset = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(subtext_dataset)
    processor = AutoProcessor.from_pretrained("org/sfar-test", trust_remote_code=True)
    inputs = processor(videos=video)
    result = {}
    for auto, revision in ((AutoModel, None), (AutoModelForVideoClassification, commit)):
        model = auto.from_pretrained("org/sfar-test", revision=revision, trust_remote_code=True).eval()
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        with torch.no_grad():
            result[auto.__name__] = model(**inputs).logits.tolist()
    classifier = pipeline("video-classification", model="org/sfar-test", trust_remote_code=True)
    result["pipeline"] = classifier(video, top_k=2)
    rows = load_dataset("org/sfar-subtexts-test", "subtexts", split="train")
    result["dataset"] = {row["label"]: row["subtexts"] for row in rows}
    result["load_subtexts"] = subtext_dataset.load_subtexts("org/sfar-subtexts-test")
    print(json.dumps(result))
    """
)


def test_model_pipeline_and_subtexts_load_by_repo_id(hub, converted, video_path, tmp_path):
    model, processor = converted
    with torch.no_grad():
        expected = model.eval()(**processor(videos=video_path)).logits
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=hub["endpoint"], HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, video_path, hub["commit"], str(REPO / "modeling_sfar" / "data" / "subtexts.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for name in ("AutoModel", "AutoModelForVideoClassification"):
        torch.testing.assert_close(torch.tensor(result[name]), expected)
    top = expected.softmax(-1)[0].topk(2)
    assert [p["label"] for p in result["pipeline"]] == [model.config.id2label[int(i)] for i in top.indices]
    assert result["dataset"] == dict(model.config.subtexts) == result["load_subtexts"]
    # everything came through the server: the files are in the private cache, by repo id
    cached = {p.name for p in (tmp_path / "hf-home" / "hub").iterdir()}
    assert {"models--org--sfar-test", "datasets--org--sfar-subtexts-test"} <= cached
