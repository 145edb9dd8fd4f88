"""SFAR at the speed of its backbone: inference, reduced precision, a training step, and scaling with the labels.

    python benchmarks/model_speed.py                       # everything, ViT-B/16 size, random weights
    python benchmarks/model_speed.py --only inference --batch_sizes 1

Every figure is a ratio against a baseline timed in the same run, interleaved, the median of `--repeats` per-round
ratios:
- inference: SFAR's forward over the bare CLIP vision tower (+ projection) on the same 8 frames, 400 labels; and
  transformers' `XCLIPModel` at the same size (its video side, with the 400 text embeddings computed beforehand,
  as SFAR's are);
- precision: bfloat16 and bfloat16 + `torch.compile` (what `eval.py --dtype bfloat16 --compile` does: the
  bfloat16 model with `attn_implementation="sfar_sdpa"`, `--bf16_attn_implementation` to change it) over float32
  throughput, with the largest relative logit difference (`--no_compile` leaves compilation out), and the
  CPU's own bfloat16 / float32 ratio on a 4096^3 matmul;
- training: one optimizer step of SFAR (coarse + fine) over the mean-pooling model with the same temporal layers;
- labels: the head's share of the forward time (everything after the vision tower) for C in {100, 400, 1000, 4000}.
Peak memory is the peak resident set of a fresh process running the case once more after a first run (steady
state: caches filled, optimizer states allocated), minus that process's resident set before it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.harness import interleaved, paired_ratio, write_report  # noqa: E402

VIT_B16 = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
           "image_size": 224, "patch_size": 16}  # fmt: skip
TEXT_B = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8,
          "max_position_embeddings": 77, "vocab_size": 49408}  # fmt: skip
PROMPT_WORDS, SUBTEXT_WORDS, NUM_SUBTEXTS = 16, 32, 4


def sfar_model(variant: str = "sfar", num_labels: int = 400, num_frames: int = 8):
    """A ViT-B/16-size SFAR classifier with random weights and a random label set of `num_labels` classes."""
    from modeling_sfar import SFAR_VARIANTS, SfarConfig, SfarForVideoClassification

    settings = dict(SFAR_VARIANTS[variant])
    settings.pop("prompt_templates", None)
    if variant == "temporal":
        settings["num_temporal_layers"] = 6
    config = SfarConfig(
        text_config=TEXT_B,
        vision_config=VIT_B16,
        projection_dim=512,
        num_frames=num_frames,
        num_subtexts=NUM_SUBTEXTS,
        id2label={i: f"class {i}" for i in range(num_labels)},
        **settings,
    )
    torch.manual_seed(0)
    model = SfarForVideoClassification(config)
    sfar, gen = model.sfar, torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in ("text_embeds", "prompt_word_embeds", "subtext_embeds", "subtext_word_embeds"):
            getattr(sfar, name).normal_(generator=gen)
        sfar.text_embeds.copy_(torch.nn.functional.normalize(sfar.text_embeds, dim=-1))
        sfar.prompt_word_mask[:, :10] = True  # ten words per prompt, 24 per sub-text: typical lengths
        sfar.subtext_word_mask[..., :24] = True
        sfar.has_text_features.fill_(True)
    return model


def xclip_model(num_frames: int = 8):
    from transformers import XCLIPConfig, XCLIPModel

    torch.manual_seed(0)
    vision = {**VIT_B16, "num_frames": num_frames}
    config = XCLIPConfig(text_config=TEXT_B, vision_config=vision, projection_dim=512)
    return XCLIPModel(config).eval()


def xclip_video_side(model, pixel_values: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """`XCLIPModel.forward` with the text tower's output given (C, D): vision with cross-frame tokens, MIT, the
    video-specific prompt generator, logits. The same steps as transformers' forward, minus the text tower."""
    batch_size, num_frames = pixel_values.shape[:2]
    vision = model.vision_model(pixel_values=pixel_values.flatten(0, 1))
    cls = model.visual_projection(vision[1]).view(batch_size, num_frames, -1)
    video_embeds = model.mit(cls)[1]
    img = model.prompts_visual_layernorm(vision[0][:, 1:, :]) @ model.prompts_visual_projection
    img = img.view(batch_size, num_frames, -1, video_embeds.shape[-1]).mean(dim=1)
    texts = text_embeds.unsqueeze(0).expand(batch_size, -1, -1)
    texts = texts + model.prompts_generator(texts, img)
    video_embeds = torch.nn.functional.normalize(video_embeds, dim=-1)
    texts = torch.nn.functional.normalize(texts, dim=-1)
    return torch.einsum("bd,bkd->bk", video_embeds, model.logit_scale.exp() * texts)


def frames(batch_size: int, num_frames: int = 8) -> torch.Tensor:
    return torch.randn(batch_size, num_frames, 3, 224, 224, generator=torch.Generator().manual_seed(1))


# -- peak memory: one case in a fresh process ----------------------------------------------------------------


def peak_memory_mb(case: str, batch_size: int) -> float:
    """Run `case` once in a fresh process; its peak RSS minus its RSS just before the case (MB)."""
    run = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory_case", case, "--batch_sizes", str(batch_size)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])["peak_mb"]


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: peak), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
        f.write("5")


def memory_case(case: str, batch_size: int) -> None:
    x = frames(batch_size)
    if case.startswith("train"):  # train-sfar, train-mean
        model = sfar_model("sfar" if case == "train-sfar" else "temporal").train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
        labels = torch.arange(batch_size) % 400

        def run():
            model(pixel_values=x, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        grad = True
    elif case == "xclip":
        model = xclip_model()
        text = torch.randn(400, 512)
        run, grad = (lambda: xclip_video_side(model, x, text)), False
    else:  # vision, sfar
        model = sfar_model().eval()
        run = (lambda: model.sfar.get_frame_features(x)) if case == "vision" else (lambda: model(pixel_values=x))
        grad = False
    with torch.set_grad_enabled(grad):
        run()  # steady state: optimizer states allocated, SFAR's label-set cache filled (as from the second video on)
    before = _status_mb("VmRSS")
    _reset_peak()
    with torch.set_grad_enabled(grad):
        run()
    print(json.dumps({"peak_mb": _status_mb("VmHWM") - before}))


# -- the sections ------------------------------------------------------------------------------------------------


def inference(args, rows: list) -> None:
    sfar = sfar_model().eval()
    xclip = xclip_model()
    text = torch.randn(400, 512)
    for batch_size in args.batch_sizes:
        x = frames(batch_size)
        with torch.no_grad():
            times = interleaved(
                {
                    "CLIP vision tower": lambda x=x: sfar.sfar.get_frame_features(x),
                    "SFAR": lambda x=x: sfar(pixel_values=x),
                    "X-CLIP": lambda x=x: xclip_video_side(xclip, x, text),
                },
                repeats=args.repeats,
            )
        for name, measured in times.items():
            case = {"CLIP vision tower": "vision", "SFAR": "sfar", "X-CLIP": "xclip"}[name]
            rows.append({
                "section": "inference, 8x224, 400 labels", "batch": batch_size, "model": name,
                "median s": measured["median_s"], "videos/s": batch_size / measured["median_s"],
                "time / vision tower": paired_ratio(times, name, "CLIP vision tower"),
                "peak MB": peak_memory_mb(case, batch_size) if args.memory else None,
            })  # fmt: skip
        print(json.dumps(rows[-3:], indent=1), flush=True)


def precision(args, rows: list) -> None:
    model32 = sfar_model().eval()
    model16 = sfar_model().eval().to(torch.bfloat16)
    # SFAR's bfloat16 CPU attention, chosen by name as `evaluate.py --dtype bfloat16` chooses it
    model16.set_attn_implementation(args.bf16_attn_implementation)
    cases = {"float32": lambda x: model32(pixel_values=x), "bfloat16": lambda x: model16(pixel_values=x)}
    if args.compile:
        compiled = torch.compile(model16)
        cases["bfloat16 + torch.compile"] = lambda x: compiled(pixel_values=x)
    batch_size = max(args.batch_sizes)
    x = frames(batch_size)
    # The machine's own ratio: a 4096^3 matmul in bfloat16 over float32 (the model's time is ~80 % matmuls)
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    a16, b16 = a.bfloat16(), b.bfloat16()
    matmuls = interleaved({"float32": lambda: a @ b, "bfloat16": lambda: a16 @ b16}, repeats=args.repeats)
    for name, measured in matmuls.items():
        rows.append({
            "section": "precision, matmul 4096^3 (the CPU's ratio)", "model": name,
            "GFLOP/s": 2 * 4096**3 / measured["median_s"] / 1e9,
            "throughput / float32": 1 / paired_ratio(matmuls, name, "float32"),
        })  # fmt: skip
    with torch.no_grad():
        reference = model32(pixel_values=x).logits
        differences, agreement = {}, {}
        for name, case in cases.items():
            logits = case(x).logits.float()  # also the warm-up (compilation) of each case
            # relative to the logits' range: random weights put many logits near zero, where a ratio means nothing
            differences[name] = float((logits - reference).abs().max() / reference.abs().max())
            agreement[name] = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
        times = interleaved({name: (lambda c=case: c(x)) for name, case in cases.items()}, repeats=args.repeats)
    for name, measured in times.items():
        rows.append({
            "section": "precision, SFAR 8x224, 400 labels", "batch": batch_size, "model": name,
            "median s": measured["median_s"], "videos/s": batch_size / measured["median_s"],
            "throughput / float32": 1 / paired_ratio(times, name, "float32"),
            "max logit difference / max logit": differences[name],
            "top-1 agreement with float32": agreement[name],
        })  # fmt: skip
    print(json.dumps(rows[-len(times) :], indent=1), flush=True)


def training(args, rows: list) -> None:
    batch_size = args.train_batch_size
    x, labels = frames(batch_size), torch.arange(batch_size) % 400
    models = {"mean pooling + temporal (6 layers)": sfar_model("temporal"), "SFAR (coarse + fine)": sfar_model("sfar")}
    steps = {}
    for name, model in models.items():
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

        def step(model=model, optimizer=optimizer):
            model(pixel_values=x, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        steps[name] = step
    times = interleaved(steps, repeats=args.train_repeats)
    for name, measured in times.items():
        case = "train-sfar" if name.startswith("SFAR") else "train-mean"
        rows.append({
            "section": "training step, 8x224, 400 labels", "batch": batch_size, "model": name,
            "median s": measured["median_s"],
            "time / mean pooling": paired_ratio(times, name, "mean pooling + temporal (6 layers)"),
            "peak MB": peak_memory_mb(case, batch_size) if args.memory else None,
        })  # fmt: skip
    print(json.dumps(rows[-2:], indent=1), flush=True)


def labels_scaling(args, rows: list) -> None:
    x = frames(1)
    model = sfar_model(num_labels=100).eval()
    with torch.no_grad():
        vision_s = interleaved({"vision": lambda: model.sfar.get_frame_features(x)}, repeats=args.repeats)
        vision_s = vision_s["vision"]["median_s"]
        features = model.sfar.get_frame_features(x)
    for num_labels in (100, 400, 1000, 4000):
        model = sfar_model(num_labels=num_labels).eval()
        sfar = model.sfar

        def head(sfar=sfar):
            return sfar.head(features)

        with torch.no_grad():
            head()  # fills the label-set cache, as the first video of an evaluation does
            measured = interleaved({"head": head}, repeats=max(5, args.repeats))["head"]["median_s"]
        rows.append({
            "section": "labels, batch 1, 8x224", "labels": num_labels, "head s": measured,
            "head share of forward": measured / (measured + vision_s),
            "head s per 1000 labels": measured / num_labels * 1000,
        })  # fmt: skip
    print(json.dumps(rows[-4:], indent=1), flush=True)


SECTIONS = {"inference": inference, "precision": precision, "training": training, "labels": labels_scaling}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--only", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--batch_sizes", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--train_batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train_repeats", type=int, default=2)
    parser.add_argument(
        "--no_compile", dest="compile", action="store_false", help="leave out the torch.compile cases (minutes here)"
    )
    parser.add_argument(
        "--bf16_attn_implementation",
        default="sfar_sdpa",
        help="attention of the bfloat16 cases: sfar_sdpa (SFAR's blocked CPU attention, the default) or sdpa",
    )
    parser.add_argument("--no_memory", dest="memory", action="store_false", help="skip the peak-memory processes")
    parser.add_argument("--memory_case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        memory_case(args.memory_case, args.batch_sizes[0])
        return
    rows: list = []
    start = time.perf_counter()
    for name in args.only:
        SECTIONS[name](args, rows)
    notes = (
        f"ViT-B/16 size, random weights, float32 unless said; medians of interleaved repeats; "
        f"{time.perf_counter() - start:.0f} s in all. Peak MB: peak resident set of a fresh process over a second "
        "run of the case minus its resident set before it."
    )
    path = write_report(args.output_dir, "model_speed", "SFAR speed against its backbone", rows, notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
