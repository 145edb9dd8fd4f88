"""Throughput of token merging (ToMe, `token_merging_r`): CLIP's vision tower with merging against the bare tower, and
SFAR with merging against bare SFAR.

    python benchmarks/token_merging.py                       # ViT-B/16 size, random weights, 8 frames x batch 8
    python benchmarks/token_merging.py --rs 0 8 16 --dtypes float32 bfloat16 --repeats 5 --only tower
    python benchmarks/token_merging.py --tiny --repeats 1    # a tiny model, to test this script (figures meaningless)

Two sections, each per dtype (float32, bfloat16):
- tower: the bare tower (transformers' `CLIPVisionModel`, its pooled class token) and the merging tower at every r
  on the same B x T frames. Also reported: the tokens left after the last block, and the largest difference of the
  class token from the bare tower's at r = 0 (a check that the two compute the same thing).
- sfar: one ViT-B/16-size SFAR (coarse + fine, a stored label set of `--num_labels` classes, as
  `model_speed.py` builds it), its forward with `config.token_merging_r` = 0 (bare SFAR, CLIP's own tower) and = r
  (the same weights, the same label set: merging has no parameters).
The cases are interleaved round after round, the order rotated (`benchmarks/harness.py`). A figure is a throughput
ratio, the baseline's time over the case's time in the same round, the median over rounds, with the smallest and
largest per-round ratio beside it; r = 0 in the tower section measures the merging code's own overhead.

Attention: float32 runs transformers' SDPA. bfloat16 runs SFAR's "sfar_sdpa" (`--bf16_attn_implementation`), as
`eval.py --dtype bfloat16` does, in the bare and the merging cases alike: SFAR's blocked bfloat16 attention takes
merging's proportional attention (a bias per key) too, so like is compared with like. The report counts, for one
forward of each case, the attention calls that took the blocked bfloat16 path and those passed on to SDPA.
Random weights: speed does not depend on the values. Inference only (`torch.inference_mode`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.harness import interleaved, write_report  # noqa: E402
from benchmarks.model_speed import VIT_B16, sfar_model  # noqa: E402

# A model small enough for the test of this script; its figures mean nothing.
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 32, "patch_size": 8}  # fmt: skip
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
             "max_position_embeddings": 77, "vocab_size": 99, "bos_token_id": 0, "eos_token_id": 1,
             "pad_token_id": 1}  # fmt: skip
SECTIONS = ("tower", "sfar")


def vision_tower(config: dict, dtype: torch.dtype, attn_implementation: str):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    import modeling_sfar.remote_code.cpu_kernels  # noqa: F401  (registers "sfar_sdpa" with transformers)

    torch.manual_seed(0)
    tower = CLIPVisionModel(CLIPVisionConfig(**config)).eval().to(dtype)
    tower.set_attn_implementation(attn_implementation)
    return tower


@contextlib.contextmanager
def count_attention_paths():
    """
    Count the calls of SFAR's attention function "sfar_sdpa" that take its blocked bfloat16 path and those it passes
    on to transformers' SDPA, while the block runs: yields a dict {"blocked": n, "sdpa": m}.
    """
    import modeling_sfar.remote_code.cpu_kernels as modeling

    counts = {"blocked": 0, "sdpa": 0}
    interface = modeling.AttentionInterface._global_mapping
    blocked, fallback = interface["sfar_sdpa"], modeling.sdpa_attention_forward

    def counted_fallback(*args, **kwargs):
        counts["sdpa"] += 1
        return fallback(*args, **kwargs)

    def counted(*args, **kwargs):
        before = counts["sdpa"]
        out = blocked(*args, **kwargs)
        counts["blocked"] += counts["sdpa"] == before
        return out

    modeling.sdpa_attention_forward, interface["sfar_sdpa"] = counted_fallback, counted
    try:
        yield counts
    finally:
        modeling.sdpa_attention_forward, interface["sfar_sdpa"] = fallback, blocked


def attention_paths(run, implementation: str) -> str:
    """The calls of one `run()` under "sfar_sdpa" as "blocked / sdpa" counts; the implementation's name otherwise."""
    if implementation != "sfar_sdpa":
        return implementation
    with count_attention_paths() as counts:
        run()
    return f"sfar_sdpa: {counts['blocked']} blocked / {counts['sdpa']} sdpa"


def ratio_row(times: dict, case: str, base: str) -> dict:
    """Throughput of `case` over `base`: the median of the per-round ratios base time / case time, min and max."""
    ratios = [b / c for b, c in zip(times[base]["times_s"], times[case]["times_s"], strict=True)]
    return {"throughput_vs_bare": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def time_tower(tower, frames: torch.Tensor, rs: list[int], repeats: int) -> tuple[dict, dict, float, dict]:
    """Interleaved times of the bare tower and the merging tower at every r on (F, 3, H, W) frames; the tokens left
    at every r; the largest difference of the r = 0 class token from the bare tower's; the attention paths."""
    from modeling_sfar.remote_code.token_merging import token_merging_vision_forward

    implementation = tower.config._attn_implementation
    with torch.inference_mode():
        bare_pooled = tower(pixel_values=frames).pooler_output
        cases = {"bare": lambda: tower(pixel_values=frames).pooler_output}
        tokens_left = {}
        for r in rs:
            cases[f"r={r}"] = lambda r=r: token_merging_vision_forward(tower, frames, r).pooler_output
            tokens_left[r] = token_merging_vision_forward(tower, frames, r).last_hidden_state.shape[1]
        deviation = (token_merging_vision_forward(tower, frames, 0).pooler_output - bare_pooled).abs().max()
        paths = {name: attention_paths(case, implementation) for name, case in cases.items()}
        times = interleaved(cases, repeats=repeats, warmup=1)
    return times, tokens_left, float(deviation), paths


def tower_rows(args, vision: dict, dtype_name: str) -> list[dict]:
    """One row per r: the merging tower's throughput over the bare tower's, tokens left, attention paths."""
    dtype = getattr(torch, dtype_name)
    implementation = args.bf16_attn_implementation if dtype == torch.bfloat16 else "sdpa"
    tower = vision_tower(vision, dtype, implementation)
    size = vision["image_size"]
    frames = torch.randn(args.batch_size * args.num_frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    times, tokens_left, deviation, paths = time_tower(tower, frames.to(dtype), args.rs, args.repeats)  # (B*T, 3, H, W)
    rows = []
    for r in args.rs:
        rows.append({
            "section": "vision tower: merging against the bare tower", "dtype": dtype_name, "r": r,
            "tokens_left": tokens_left[r], **ratio_row(times, f"r={r}", "bare"),
            "frames_per_s": args.batch_size * args.num_frames / times[f"r={r}"]["median_s"],
            "bare_frames_per_s": args.batch_size * args.num_frames / times["bare"]["median_s"],
            "r0_max_abs_diff": deviation, "attention (merging)": paths[f"r={r}"], "attention (bare)": paths["bare"],
        })  # fmt: skip
    return rows


def sfar_rows(args, sizes: dict | None, dtype_name: str) -> list[dict]:
    """One row per r > 0: SFAR with `token_merging_r` = r against bare SFAR, the same model (weights, label set)."""
    dtype = getattr(torch, dtype_name)
    model = sfar_model(num_labels=args.num_labels, num_frames=args.num_frames, keep_words=False, sizes=sizes).eval()
    model.to(dtype)
    implementation = args.bf16_attn_implementation if dtype == torch.bfloat16 else "sdpa"
    model.set_attn_implementation(implementation)
    size = model.config.vision_config.image_size
    pixels = torch.randn(args.batch_size, args.num_frames, 3, size, size, generator=torch.Generator().manual_seed(1))

    def forward(r: int):
        model.config.token_merging_r = r  # read at every forward; the model's config is its SfarModel's
        return model(pixel_values=pixels).logits  # float32 pixels are cast by the model

    rs = sorted({0, *args.rs})
    cases = {f"r={r}": (lambda r=r: forward(r)) for r in rs}
    with torch.inference_mode():
        paths = {name: attention_paths(case, implementation) for name, case in cases.items()}
        reference = forward(0).float()
        agreement = {r: float((forward(r).float().argmax(-1) == reference.argmax(-1)).float().mean()) for r in rs}
        times = interleaved(cases, repeats=args.repeats, warmup=1)
    model.config.token_merging_r = 0
    rows = []
    for r in rs:
        if r == 0:
            continue
        rows.append({
            "section": f"SFAR (coarse + fine, {args.num_labels} labels): merging against bare SFAR",
            "dtype": dtype_name, "r": r, **ratio_row(times, f"r={r}", "r=0"),
            "videos_per_s": args.batch_size / times[f"r={r}"]["median_s"],
            "bare_videos_per_s": args.batch_size / times["r=0"]["median_s"],
            "top-1 agreement with bare (random weights)": agreement[r],
            "attention (merging)": paths[f"r={r}"], "attention (bare)": paths["r=0"],
        })  # fmt: skip
    return rows


def run(args) -> list[dict]:
    """The rows of every section in `args.only`, for every dtype."""
    vision = TINY if args.tiny else VIT_B16
    sizes = {"vision_config": TINY, "text_config": TINY_TEXT, "projection_dim": 16} if args.tiny else None
    rows = []
    for dtype_name in args.dtypes:
        for section in args.only:
            if section == "tower":
                new = tower_rows(args, vision, dtype_name)
            else:
                new = sfar_rows(args, sizes, dtype_name)
            rows += new
            print(json.dumps(new, indent=1), flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--only", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--rs", type=int, nargs="+", default=[0, 8, 16])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_labels", type=int, default=400, help="SFAR's stored label set (classes)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--bf16_attn_implementation",
        default="sfar_sdpa",
        help="attention of the bfloat16 cases, bare and merging alike: sfar_sdpa (the default) or sdpa",
    )
    parser.add_argument("--tiny", action="store_true", help="a tiny model, to test this script (figures meaningless)")
    args = parser.parse_args(argv)
    if any(r < 0 for r in args.rs):
        parser.error(f"--rs must be integers >= 0, got {args.rs}")
    if min(args.num_frames, args.batch_size, args.repeats, args.num_labels) < 1:
        parser.error("--num_frames, --batch_size, --repeats and --num_labels must be >= 1")
    start = time.perf_counter()
    rows = run(args)
    size = "tiny model (test run; figures meaningless)" if args.tiny else "ViT-B/16 size, random weights"
    notes = (
        f"{size}; {args.batch_size} videos x {args.num_frames} frames per call; throughput_vs_bare is the median of "
        f"{args.repeats} per-round ratios of the baseline's time over the case's (min and max beside it); "
        f"bfloat16 attention: {args.bf16_attn_implementation}, float32: sdpa; {time.perf_counter() - start:.0f} s "
        "in all."
    )
    path = write_report(args.output_dir, "token_merging", "Token merging: throughput", rows, notes)
    print(path.read_text())
    return rows


if __name__ == "__main__":
    main()
