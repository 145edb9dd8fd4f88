"""Sub-text generation speed: seconds per class (four prompts answered) for a chat model.

    python benchmarks/subtext_generation.py                      # CPU: transformers back-end, batched vs one by one
    python benchmarks/subtext_generation.py --vllm               # GPU: vLLM, random weights of Llama-2-7B's size

Every answer is exactly `--tokens` tokens long (end-of-sequence ignored), so that random weights cost what a real
model's answers would. The paper reports 2.0-7.5 s per class; the goal with vLLM batching is under 0.1 s per class
for a 7B model on one GPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness import interleaved, write_report  # noqa: E402
from datasets_scripts.generate_subtexts import (  # noqa: E402
    Request,
    SamplingOptions,
    TransformersBackend,
    VLLMBackend,
)
from datasets_scripts.subtext_prompts import QUESTION_PROMPTS  # noqa: E402
from modeling_sfar.tiny import build_tiny_llama_chat  # noqa: E402

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
    return [
        Request(f"class{c}", f"action number {c}", p, 0, 0)
        for c in range(num_classes)
        for p in range(len(QUESTION_PROMPTS))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--classes", type=int, default=4, help="Classes per measurement (CPU).")
    parser.add_argument("--tokens", type=int, default=48, help="Tokens per answer.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vllm", action="store_true", help="Also measure vLLM on a GPU at Llama-2-7B size.")
    parser.add_argument("--vllm_classes", type=int, default=400)
    parser.add_argument("--vllm_tokens", type=int, default=256)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    sampling = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=args.tokens, ignore_eos=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small = build_tiny_llama_chat(
            os.path.join(tmp, "small"),
            scripted=False,
            hidden_size=SMALL["hidden_size"],
            vocab_size=4000,
            config_overrides=SMALL,
        )
        batch = requests(args.classes)
        one_by_one, batched = TransformersBackend(small, batch_size=1), TransformersBackend(small, batch_size=16)
        times = interleaved(
            {
                "one by one": lambda: one_by_one.generate(batch, sampling),
                "batched (16)": lambda: batched.generate(batch, sampling),
            },
            repeats=args.repeats,
        )
        base = times["one by one"]["median_s"]
        params = sum(p.numel() for p in batched.model.parameters()) / 1e6
        for name, measured in times.items():
            rows.append(
                {
                    "back-end": f"transformers, {name}",
                    "model": f"Llama, {params:.1f}M params, random",
                    "device": "cpu",
                    "answers": len(batch),
                    "tokens/answer": args.tokens,
                    "s/class": measured["median_s"] / args.classes,
                    "speed-up vs one by one": base / measured["median_s"],
                }
            )
        if args.vllm:
            import torch

            if not torch.cuda.is_available():
                print("--vllm: skipped, no CUDA GPU on this machine")
            else:
                big = build_tiny_llama_chat(
                    os.path.join(tmp, "llama-7b"),
                    scripted=False,
                    vocab_size=32000,
                    config_overrides=LLAMA_7B,
                    save_weights=False,
                )
                engine = VLLMBackend(big, load_format="dummy", dtype="bfloat16", max_model_len=2048)
                work = requests(args.vllm_classes)
                long = SamplingOptions(temperature=1.0, top_p=1.0, max_new_tokens=args.vllm_tokens, ignore_eos=True)
                measured = interleaved({"vllm": lambda: engine.generate(work, long)}, repeats=args.repeats)["vllm"]
                rows.append(
                    {
                        "back-end": "vLLM, one batched call",
                        "model": "Llama-2-7B shape, random (dummy) weights",
                        "device": torch.cuda.get_device_name(),
                        "answers": len(work),
                        "tokens/answer": args.vllm_tokens,
                        "s/class": measured["median_s"] / args.vllm_classes,
                        "speed-up vs one by one": None,
                    }
                )
    path = write_report(
        args.output_dir,
        "subtext_generation",
        "Sub-text generation: seconds per class (4 answers)",
        rows,
        notes="Medians of interleaved repeats. The paper reports 2.0-7.5 s per class; goal with vLLM: < 0.1 s.",
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
