"""Throughput of CLIP's vision tower with token merging (ToMe, `token_merging_r`) against the bare tower.

    python benchmarks/token_merging.py                       # ViT-B/16 size, random weights, 8 frames x batch 8
    python benchmarks/token_merging.py --rs 0 8 16 --dtypes float32 bfloat16 --repeats 5

For each dtype the bare tower (transformers' `CLIPVisionModel`, its pooled class token) and the merging tower at
every r run on the same B x T frames, interleaved round after round (`benchmarks/harness.py`). A figure is a
throughput ratio, bare time over merging time, the median of the per-round ratios, with their minimum and maximum
as the spread; r = 0 measures the merging code's own overhead. Also reported: the tokens left after the last block,
and the largest difference of the class token from the bare tower's at r = 0 (a check that the two compute the same
thing). Random weights: speed does not depend on the values. Inference only (`torch.inference_mode`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.harness import interleaved, write_report  # noqa: E402

VIT_B16 = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
           "image_size": 224, "patch_size": 16}  # fmt: skip
# A tower small enough for the test of this script; its figures mean nothing.
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 32, "patch_size": 8}  # fmt: skip


def vision_tower(config: dict, dtype: torch.dtype):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    return CLIPVisionModel(CLIPVisionConfig(**config)).eval().to(dtype)


def time_tower(tower, frames: torch.Tensor, rs: list[int], repeats: int) -> tuple[dict, dict, float]:
    """Interleaved times of the bare tower and the merging tower at every r on (F, 3, H, W) frames; the tokens left
    at every r; the largest difference of the r = 0 class token from the bare tower's."""
    from modeling_sfar.remote_code.token_merging import token_merging_vision_forward

    with torch.inference_mode():
        bare_pooled = tower(pixel_values=frames).pooler_output
        cases = {"bare": lambda: tower(pixel_values=frames).pooler_output}
        tokens_left = {}
        for r in rs:
            cases[f"r={r}"] = lambda r=r: token_merging_vision_forward(tower, frames, r).pooler_output
            tokens_left[r] = token_merging_vision_forward(tower, frames, r).last_hidden_state.shape[1]
        deviation = (token_merging_vision_forward(tower, frames, 0).pooler_output - bare_pooled).abs().max()
        times = interleaved(cases, repeats=repeats, warmup=1)
    return times, tokens_left, float(deviation)


def run(
    tower_config: dict, rs: list[int], dtypes: list[str], num_frames: int, batch_size: int, repeats: int
) -> list[dict]:
    """One row per (dtype, r): throughput ratio over the bare tower with its spread, tokens left."""
    rows = []
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        tower = vision_tower(tower_config, dtype)
        size = tower_config["image_size"]
        frames = torch.randn(batch_size * num_frames, 3, size, size, generator=torch.Generator().manual_seed(0))
        times, tokens_left, deviation = time_tower(tower, frames.to(dtype), rs, repeats)  # frames (B*T, 3, H, W)
        for r in rs:
            ratios = [b / m for b, m in zip(times["bare"]["times_s"], times[f"r={r}"]["times_s"], strict=True)]
            rows.append(
                {
                    "dtype": dtype_name,
                    "r": r,
                    "tokens_left": tokens_left[r],
                    "throughput_vs_bare": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                    "frames_per_s": batch_size * num_frames / times[f"r={r}"]["median_s"],
                    "bare_frames_per_s": batch_size * num_frames / times["bare"]["median_s"],
                    "r0_max_abs_diff": deviation,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--rs", type=int, nargs="+", default=[0, 8, 16])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="a tiny tower, to test this script (figures meaningless)")
    args = parser.parse_args(argv)
    if any(r < 0 for r in args.rs):
        parser.error(f"--rs must be integers >= 0, got {args.rs}")
    if min(args.num_frames, args.batch_size, args.repeats) < 1:
        parser.error("--num_frames, --batch_size and --repeats must be >= 1")
    rows = run(TINY if args.tiny else VIT_B16, args.rs, args.dtypes, args.num_frames, args.batch_size, args.repeats)
    size = "tiny tower (test run)" if args.tiny else "ViT-B/16 size, random weights"
    notes = (
        f"{size}; {args.batch_size} videos x {args.num_frames} frames per call; throughput_vs_bare is the median of "
        f"{args.repeats} per-round ratios of the bare tower's time over the merging tower's (min and max beside it)."
    )
    path = write_report(args.output_dir, "token_merging", "Token merging: vision-tower throughput", rows, notes)
    print(path.read_text())
    return rows


if __name__ == "__main__":
    main()
