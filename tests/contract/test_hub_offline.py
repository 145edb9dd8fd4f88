"""Loading by repo id, offline: a Hub-compatible read-only server (`olah`) on loopback serves the staged model (SFAR
and ALT) and sub-text repos as local git repositories, and a fresh process where `modeling_sfar` cannot be imported
loads them through `HF_ENDPOINT` with `AutoModel`, `pipeline("video-classification")`,
`pipeline("zero-shot-video-classification")` on real videos (SFAR's sub-texts read from the dataset repo) and
`load_dataset`."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import BLOCK_MODELING_SFAR, free_port, run_snippet, wait_for_server

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
def hub(converted, alt_converted, video_path, tmp_path_factory):
    """The staged repos served by olah; yields the endpoint and the SFAR model repo's commit."""
    from modeling_sfar.data.subtexts import save_subtext_dataset

    root = tmp_path_factory.mktemp("hub")
    commits = {}
    for name, (model, processor) in (("sfar-test", converted), ("alt-test", alt_converted)):
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
        card = cards.model_card(root / name, f"org/{name}", "openai/clip-vit-base-patch16", "x", {})
        push.stage_model_repo(root / name, root / f"{name}-staged", card, [video_path])
        commits[name] = git_repo(root / f"{name}-staged", root / "mirrors" / "models" / "org" / name)
    commit = commits["sfar-test"]
    model = converted[0]

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

    video, commit, subtext_module, real_videos = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    # the shipped sub-text reader from its file (stdlib only at module level): the package stays blocked
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
    for repo, texts in (("org/sfar-test", {"subtexts": "org/sfar-subtexts-test"}), ("org/alt-test", {})):
        zero_shot = pipeline("zero-shot-video-classification", model=repo, trust_remote_code=True)
        result[repo] = zero_shot(real_videos, candidate_labels=["PlayingDaf", "jump"], **texts)
    print(json.dumps(result))
    """
)


def run_through_hub(hub: dict, tmp_path: Path, script: str, *args: str) -> dict:
    """Run `script` with `args` in a fresh process that reaches the Hub only through the server (a private cache, no
    PYTHONPATH, online); the JSON object its last line prints."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=hub["endpoint"], HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    run = subprocess.run([sys.executable, "-c", script, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_model_pipeline_and_subtexts_load_by_repo_id(hub, converted, alt_converted, video_path, real_videos, tmp_path):
    model, processor = converted
    with torch.no_grad():
        expected = model.eval()(**processor(videos=video_path)).logits
    result = run_through_hub(
        hub,
        tmp_path,
        SCRIPT,
        video_path,
        hub["commit"],
        str(REPO / "modeling_sfar" / "remote_code" / "label_set_texts.py"),
        json.dumps(real_videos),
    )
    for name in ("AutoModel", "AutoModelForVideoClassification"):
        torch.testing.assert_close(torch.tensor(result[name]), expected)
    top = expected.softmax(-1)[0].topk(2)
    assert [p["label"] for p in result["pipeline"]] == [model.config.id2label[int(i)] for i in top.indices]
    assert result["dataset"] == dict(model.config.subtexts) == result["load_subtexts"]
    # zero-shot by repo id: SFAR with the sub-texts of the dataset repo, ALT with its stored corpus
    subtexts = {label: model.config.subtexts[label] for label in ("PlayingDaf", "jump")}
    for repo, (family_model, family_processor), texts in (
        ("org/sfar-test", converted, subtexts),
        ("org/alt-test", alt_converted, None),
    ):
        label_set = family_model.base_model.build_label_set(["PlayingDaf", "jump"], family_processor.tokenizer, texts)
        for video, ranked in zip(real_videos, result[repo], strict=True):
            with torch.no_grad():
                scores = family_model(**family_processor(videos=video), label_set=label_set).logits[0].softmax(-1)
            assert {item["label"]: item["score"] for item in ranked} == pytest.approx(
                {"PlayingDaf": float(scores[0]), "jump": float(scores[1])}, abs=1e-5
            )
    # everything came through the server: the files are in the private cache, by repo id
    cached = {p.name for p in (tmp_path / "hf-home" / "hub").iterdir()}
    assert {"models--org--sfar-test", "models--org--alt-test", "datasets--org--sfar-subtexts-test"} <= cached


CARD_SNIPPETS = (
    BLOCK_MODELING_SFAR
    + inspect.getsource(run_snippet)
    + textwrap.dedent(
        """
        import json, re, sys
        from pathlib import Path

        from huggingface_hub import hf_hub_download

        video, result = sys.argv[1], {}
        for repo in sys.argv[2:]:
            card = Path(hf_hub_download(repo, "README.md")).read_text()
            section = card[card.index("### Zero-shot"):]
            code = re.search(r"```python\\n(.*?)```", section, re.S).group(1).replace('"video.mp4"', json.dumps(video))
            ranked, scope = run_snippet(code, repo)
            result[repo] = {"ranked": ranked, "subtexts": scope.get("subtexts")}
        print(json.dumps(result))
        """
    )
)


def test_the_zero_shot_snippet_of_each_model_card_runs_by_repo_id(hub, converted, alt_converted, real_videos,
                                                                   tmp_path):  # fmt: skip
    """The zero-shot code of the staged SFAR and ALT cards, read from the server and run as written (on a real video)
    in a process without the package, scores its labels as the model does with that label set, with SFAR's frame
    weights and ALT's grounded entities."""
    video = real_videos[0]
    result = run_through_hub(hub, tmp_path, CARD_SNIPPETS, video, "org/sfar-test", "org/alt-test")
    for repo, (model, processor) in (("org/sfar-test", converted), ("org/alt-test", alt_converted)):
        ranked, subtexts = result[repo]["ranked"], result[repo]["subtexts"]
        labels = sorted(item["label"] for item in ranked)
        label_set = model.base_model.build_label_set(labels, processor.tokenizer, subtexts)
        with torch.no_grad():
            out = model.eval()(**processor(videos=video), label_set=label_set)
        scores = out.logits[0].softmax(-1)
        assert [item["score"] for item in ranked] == sorted((item["score"] for item in ranked), reverse=True)
        assert {item["label"]: item["score"] for item in ranked} == pytest.approx(
            {label: float(scores[i]) for i, label in enumerate(labels)}, abs=1e-5
        )
        for item in ranked:
            if repo == "org/sfar-test":
                weights = out.fine_frame_weights[0, labels.index(item["label"])]
                assert item["fine_frame_weights"] == pytest.approx(weights.tolist(), abs=1e-5)
            else:
                assert {e["entity"] for e in item["entities"]} <= set(model.config.entities)
