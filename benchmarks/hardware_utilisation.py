"""SFAR against the hardware itself: model FLOP utilisation, per component, and int8 inference of the vision tower.

    python benchmarks/hardware_utilisation.py                        # ViT-B/16 size, 8x224, batch 1, both sections
    python benchmarks/hardware_utilisation.py --only mfu --batch_size 8 --dtypes bfloat16
    python benchmarks/hardware_utilisation.py --tiny --repeats 1     # a tiny model, to test this script

- mfu: SFAR's forward in float32 and bfloat16, eager and `torch.compile`d. Its FLOPs are counted by
  `torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions and the attention kernel; element-wise
  work counts zero), once per dtype, per module. The figure is the model's FLOP rate (counted FLOPs over the time of
  one forward) over the rate of a large matrix product of the same dtype (`--matmul_size`^3, through `F.linear`, the
  layout of the model's linear layers) timed in the same rounds, interleaved: the per-round ratio, median (min /
  max). Eager cases are split into components, each timed by forward hooks (`time.perf_counter` before and after
  every call of the module; a few microseconds each): the tower's attention (its q, k, v and output projections,
  and the attention kernel: the rest of the attention modules' time), the tower's MLPs (their two linear layers),
  the tower's other work (LayerNorms, the GELU, residual adds, patch and position embeddings: the tower's time
  minus the above; its counted FLOPs are the patch convolution's), the temporal module, and the head (the rest of
  the forward: projection, Eq. 4-11, logits). A compiled forward is timed whole (its graph fuses across modules).
  bfloat16 runs `sfar_sdpa`, which picks its kernel by the CPU's features (`cpu_kernels.blocked_attention_pays`).
- int8: the vision tower's linear layers quantized by torchao (`modeling_sfar.evaluation.quantization`), dynamic
  (int8 activations and weights) and weight-only, against float32 and bfloat16 in the same rounds: throughput, and
  the agreement of top-1 and the largest logit difference with float32 on `--agreement_videos` random videos.

Every report names the CPU and its matrix features (AVX-512-BF16, VNNI, AMX), which bound every figure here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.harness import interleaved, paired_ratio, ratio_spread, round_ratios, write_report  # noqa: E402
from benchmarks.model_speed import frames, sfar_model  # noqa: E402
from benchmarks.token_merging import TINY, TINY_TEXT  # noqa: E402
from modeling_sfar.evaluation.quantization import INT8_MODES, quantize_vision_tower_int8  # noqa: E402

PARTS = ("tower", "attention", "projections", "MLP", "temporal module")  # the keys of `component_modules`
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def count_cpu_attention_flops() -> None:
    """Teach the FLOP counter torch's fused CPU attention kernel (it counts the CUDA ones only), with its formula."""
    from torch.utils.flop_counter import flop_registry, register_flop_formula, sdpa_flop_count

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op not in flop_registry and op.default not in flop_registry:

        @register_flop_formula(op)
        def _(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)


def component_modules(model) -> dict[str, list[torch.nn.Module]]:
    """The modules whose calls make up each measured part of SFAR's forward (the parts are derived from them)."""
    sfar = model.sfar
    layers = sfar.vision_model.encoder.layers
    attention = [layer.self_attn for layer in layers]
    return {
        "tower": [sfar.vision_model],
        "attention": attention,
        "projections": [getattr(a, n) for a in attention for n in ("q_proj", "k_proj", "v_proj", "out_proj")],
        "MLP": [m for layer in layers for m in (layer.mlp.fc1, layer.mlp.fc2)],
        "temporal module": [sfar.temporal] if sfar.temporal is not None else [],
    }


def split(measured: dict[str, float], total: float) -> dict[str, float]:
    """The components of `COMPONENTS` (and the attention's two halves) from the measured module sums and the total
    (seconds or FLOPs alike)."""
    attention, projections = measured["attention"], measured["projections"]
    return {
        "tower: attention": attention,
        "  of which q, k, v, out projections": projections,
        "  of which the attention kernel": attention - projections,
        "tower: MLP": measured["MLP"],
        "tower: norms, activation, residuals, embeddings": measured["tower"] - attention - measured["MLP"],
        "temporal module": measured["temporal module"],
        "head": total - measured["tower"] - measured["temporal module"],
    }


def counted_flops(model, x: torch.Tensor) -> tuple[float, dict[str, float]]:
    """The forward's FLOPs as FlopCounterMode counts them, in all and per component."""
    from torch.utils.flop_counter import FlopCounterMode

    count_cpu_attention_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(pixel_values=x)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    names = {module: name for name, module in model.named_modules()}
    root = type(model).__name__

    def flops(module) -> float:
        return float(per_module.get(f"{root}.{names[module]}", 0))

    measured = {part: sum(flops(m) for m in modules) for part, modules in component_modules(model).items()}
    total = float(counter.get_total_flops())
    return total, split(measured, total)


class ComponentTimer:
    """While entered: forward hooks that sum the time of every call of the modules of each part of
    `component_modules` (removed on exit, so that a compiled copy never sees them)."""

    def __init__(self, model):
        self.model = model
        self.seconds: dict[str, float] = defaultdict(float)
        self.starts: dict[int, float] = {}
        self.hooks: list = []

    def __enter__(self) -> ComponentTimer:
        self.seconds = defaultdict(float)
        for part, modules in component_modules(self.model).items():
            for module in modules:
                self.hooks.append(module.register_forward_pre_hook(self._start))
                self.hooks.append(module.register_forward_hook(lambda m, a, o, part=part: self._stop(m, part)))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()

    def _start(self, module, args) -> None:
        self.starts[id(module)] = time.perf_counter()

    def _stop(self, module, part: str) -> None:
        self.seconds[part] += time.perf_counter() - self.starts.pop(id(module))


def mfu(args, rows: list) -> None:
    from modeling_sfar.remote_code import cpu_kernels

    x = videos(args, args.batch_size)
    n = args.matmul_size
    cases, flops, component_flops, per_round = {}, {}, {}, defaultdict(list)

    def build(dtype):
        model = sfar_model(num_frames=args.num_frames, sizes=sizes(args), keep_words=False).eval().to(dtype)
        if dtype == torch.bfloat16:
            model.set_attn_implementation("sfar_sdpa")  # as `eval.py --dtype bfloat16`
        return model

    for dtype_name in args.dtypes:
        dtype = DTYPES[dtype_name]
        model = build(dtype)
        flops[dtype_name], component_flops[dtype_name] = counted_flops(model, x)
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        cases[f"{dtype_name} matmul"] = lambda a=a, b=b: torch.nn.functional.linear(a, b)

        def eager(model=model, name=dtype_name):
            with ComponentTimer(model) as timer:
                start = time.perf_counter()
                model(pixel_values=x)
                total = time.perf_counter() - start
            per_round[name].append((total, dict(timer.seconds)))

        cases[f"{dtype_name} eager"] = eager
        if args.compile:
            compiled = torch.compile(build(dtype))  # a copy of its own (the same weights): no hooks ever
            cases[f"{dtype_name} + compile"] = lambda c=compiled: c(pixel_values=x)
    with torch.no_grad():
        times = interleaved(cases, repeats=args.repeats)  # the first round (warm-up, compilation) is not kept
    attention = "blocked" if cpu_kernels.use_blocked_attention() else "torch's fused kernel"
    for dtype_name in args.dtypes:
        matmul = f"{dtype_name} matmul"
        rate = [2 * n**3 / t for t in times[matmul]["times_s"]]
        rows.append({
            "section": "the CPU's own rate: F.linear of n x n by n x n", "dtype": dtype_name, "n": n,
            "GFLOP/s, median": statistics.median(rate) / 1e9, "GFLOP/s, min / max": f"{min(rate) / 1e9:.1f} / "
            f"{max(rate) / 1e9:.1f}",
        })  # fmt: skip
        for mode in ("eager", "+ compile"):
            case = f"{dtype_name} {mode}"
            if case not in times:
                continue
            # utilisation per round: (FLOPs / model time) / (matmul FLOPs / matmul time) in the same round
            ratios = [flops[dtype_name] / 2 / n**3 / r for r in round_ratios(times, case, matmul)]
            model_rate = flops[dtype_name] / times[case]["median_s"]
            shape = f"{args.num_frames}x{image_size(args)}, batch {args.batch_size}"
            rows.append({
                "section": f"model FLOP utilisation, SFAR {shape}",
                "case": case, "attention": "sdpa" if dtype_name == "float32" else f"sfar_sdpa ({attention})",
                "GFLOP per forward (counted)": flops[dtype_name] / 1e9, "median s": times[case]["median_s"],
                "videos/s": args.batch_size / times[case]["median_s"], "GFLOP/s": model_rate / 1e9,
                "of the matmul rate, median": statistics.median(ratios),
                "min / max": f"{min(ratios):.3f} / {max(ratios):.3f}",
            })  # fmt: skip
        calls = per_round[dtype_name][-args.repeats :]
        for component, component_flop in component_flops[dtype_name].items():
            shares, fractions = [], []
            for (total, seconds), matmul_s in zip(calls, times[matmul]["times_s"], strict=True):
                part_s = split({k: seconds.get(k, 0.0) for k in PARTS}, total)[component]
                shares.append(part_s / total)
                fractions.append(component_flop / part_s / (2 * n**3 / matmul_s) if part_s > 0 else 0.0)
            rows.append({
                "section": f"eager {dtype_name}, per component (forward hooks), batch {args.batch_size}",
                "component": component, "GFLOP (counted)": component_flop / 1e9,
                "share of FLOPs": component_flop / flops[dtype_name], "share of time": statistics.median(shares),
                "of the matmul rate, median": statistics.median(fractions),
                "min / max": f"{min(fractions):.3f} / {max(fractions):.3f}",
            })  # fmt: skip
    for row in rows:
        print(json.dumps(row), flush=True)


def int8(args, rows: list) -> None:
    x = videos(args, args.batch_size)
    models = {"float32": sfar_model(num_frames=args.num_frames, sizes=sizes(args), keep_words=False).eval()}
    half = sfar_model(num_frames=args.num_frames, sizes=sizes(args), keep_words=False).eval().to(torch.bfloat16)
    half.set_attn_implementation("sfar_sdpa")
    models["bfloat16"] = half
    for mode in args.int8_modes:
        model = sfar_model(num_frames=args.num_frames, sizes=sizes(args), keep_words=False).eval()
        # measured on any CPU: where it lacks int8 dot products the figures say what the option would cost there
        models[f"int8 {mode} (tower)"] = quantize_vision_tower_int8(model, mode, require_cpu_support=False)
    check = videos(args, args.agreement_videos)
    with torch.no_grad():
        reference = models["float32"](pixel_values=check).logits
        agreement = {}
        for name, model in models.items():
            logits = model(pixel_values=check).logits.float()
            agreement[name] = (
                float((logits.argmax(-1) == reference.argmax(-1)).float().mean()),
                float((logits - reference).abs().max() / reference.abs().max()),
            )
        times = interleaved({name: (lambda m=m: m(pixel_values=x)) for name, m in models.items()}, args.repeats)
    for name in models:
        rows.append({
            "section": f"int8 vision tower, SFAR {args.num_frames}x{image_size(args)}, batch {args.batch_size}",
            "model": name, "median s": times[name]["median_s"],
            "throughput / bfloat16": paired_ratio(times, "bfloat16", name),
            "per round: min / median / max (time of bfloat16 / this)": ratio_spread(times, "bfloat16", name),
            "throughput / float32": paired_ratio(times, "float32", name),
            f"top-1 agreement with float32 ({args.agreement_videos} videos)": agreement[name][0],
            "max logit difference / max logit": agreement[name][1],
        })  # fmt: skip
    for row in rows[-len(models) :]:
        print(json.dumps(row), flush=True)


def sizes(args) -> dict | None:
    tiny_vision = {**TINY, "image_size": 32, "patch_size": 8}
    return {"vision_config": tiny_vision, "text_config": TINY_TEXT, "projection_dim": 16} if args.tiny else None


def image_size(args) -> int:
    return 32 if args.tiny else 224


def videos(args, count: int) -> torch.Tensor:
    """`count` random videos of `args.num_frames` frames at the model's image size, (B, T, 3, H, W)."""
    return frames(count, args.num_frames)[..., : image_size(args), : image_size(args)]


SECTIONS = {"mfu": mfu, "int8": int8}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--only", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--batch_size", type=int, default=1, help="videos per forward (1: a few minutes on 2 cores)")
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--matmul_size", type=int, default=2048, help="n of the n x n x n reference product")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no_compile", dest="compile", action="store_false", help="leave out the compiled cases")
    parser.add_argument("--int8_modes", nargs="*", default=list(INT8_MODES), choices=list(INT8_MODES))
    parser.add_argument("--agreement_videos", type=int, default=8, help="random videos of the int8 agreement check")
    parser.add_argument("--tiny", action="store_true", help="a tiny model, to test this script (figures meaningless)")
    args = parser.parse_args(argv)
    rows: list = []
    start = time.perf_counter()
    for name in args.only:
        SECTIONS[name](args, rows)
    size = "tiny model (test run; figures meaningless)" if args.tiny else "ViT-B/16 size, random weights, 400 labels"
    notes = (
        f"{size}; {args.num_frames} frames, batch {args.batch_size}; medians of {args.repeats} interleaved rounds "
        f"after a warm-up round; {time.perf_counter() - start:.0f} s in all. FLOPs: torch.utils.flop_counter "
        "(element-wise work counts zero)."
    )
    path = write_report(args.output_dir, "hardware_utilisation", "SFAR against the CPU's own matmul rate", rows, notes)
    print(path.read_text())
    return rows


if __name__ == "__main__":
    main()
