"""SFAR at the speed of its backbone: inference, reduced precision, a training step, and scaling with the labels.

    python benchmarks/model_speed.py                       # everything, ViT-B/16 size, random weights
    python benchmarks/model_speed.py --only inference --batch_sizes 1

Every figure is a ratio against a baseline timed in the same run, interleaved, the median of `--repeats` per-round
ratios:
- inference: SFAR's forward over the bare CLIP vision tower (+ projection) on the same 8 frames, 400 labels;
  transformers' `XCLIPModel` at the same size (its video side, with the 400 text embeddings computed beforehand,
  as SFAR's are); the tower against itself (the noise floor of a paired ratio on the machine of the run); and
  SFAR's forward over its own vision-tower call in the same forward (`within_call`: what SFAR adds, free of the
  drift between calls);
- precision: bfloat16 and bfloat16 + `torch.compile` (what `eval.py --dtype bfloat16 --compile` does: the
  bfloat16 model with `attn_implementation="sfar_sdpa"`, `--bf16_attn_implementation` to change it) over float32
  throughput, with the largest relative logit difference (`--no_compile` leaves compilation out), and the
  CPU's own bfloat16 / float32 ratio on a 4096^3 matmul;
- training: one optimizer step of SFAR (coarse + fine) over the mean-pooling model with the same temporal layers;
- labels: the head's time, share of the forward and memory (everything after the vision tower, the stored label
  set's bytes) for C in {100, 400, 1000, 4000};
- profile: where SFAR's time goes beyond the vision tower: torch.profiler's self time per operator over SFAR's
  forward and the bare tower, in alternating rounds, and the parts (temporal module, head) timed alone;
- checkpoint: a saved ViT-B/16-size SFAR (400 classes, 4 sub-texts): file size, the label set's share of it, and
  `from_pretrained` time, for the stored label set as it is saved now (what inference reads) against the legacy
  layout (the text tower's words, padded to the context).
The order of the cases rotates every round, and next to each median ratio the report gives the smallest, median
and largest per-round ratio ("min / median / max"): on a busy machine one round can be off by several percent.
Peak memory is the peak resident set of a fresh process running the case once more after a first run (steady
state: caches filled, optimizer states allocated), minus that process's resident set before it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks.harness import interleaved, paired_ratio, ratio_spread, write_report  # noqa: E402

VIT_B16 = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
           "image_size": 224, "patch_size": 16}  # fmt: skip
TEXT_B = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8,
          "max_position_embeddings": 77, "vocab_size": 49408}  # fmt: skip
PROMPT_WORDS, SUBTEXT_WORDS, NUM_SUBTEXTS = 16, 32, 4


def random_label_set(num_labels: int, seed: int = 0, width: int = 512):
    """A random label set as `encode_label_set` returns it, D = `width` (the projection's): the text tower's words,
    padded to the longest text, with typical lengths (prompts of 8-16 words, sub-texts of 16-32)."""
    from modeling_sfar.remote_code.label_set_sfar import SfarLabelSet

    gen = torch.Generator().manual_seed(seed)

    def words(*shape):
        lengths = torch.randint(shape[-1] // 2, shape[-1] + 1, shape[:-1], generator=gen)
        lengths.view(-1)[0] = shape[-1]  # the longest text sets the padded width
        return torch.randn(*shape, width, generator=gen), torch.arange(shape[-1]) < lengths.unsqueeze(-1)

    prompt, prompt_mask = words(num_labels, PROMPT_WORDS)
    subtexts, subtext_mask = words(num_labels, NUM_SUBTEXTS, SUBTEXT_WORDS)
    return SfarLabelSet(
        text_embeds=torch.nn.functional.normalize(torch.randn(num_labels, width, generator=gen), dim=-1),
        prompt_word_embeds=prompt,
        prompt_word_mask=prompt_mask,
        subtext_word_embeds=subtexts,
        subtext_word_mask=subtext_mask,
    )


def sfar_model(
    variant: str = "sfar",
    num_labels: int = 400,
    num_frames: int = 8,
    keep_words: bool = True,
    sizes: dict | None = None,
    **config_kwargs,
):
    """
    A ViT-B/16-size SFAR classifier with random weights and a random label set of `num_labels` classes, stored as
    `set_label_set` stores one. `keep_words=False` frees the text tower's words afterwards, so that the model holds
    what a loaded one holds (the inference constants); the forward is the same either way. `sizes` replaces the
    towers' sizes (`vision_config`, `text_config`, `projection_dim`: a tiny model for a test); `config_kwargs` go to
    `SfarConfig` (e.g. `token_merging_r`).
    """
    sizes = {"vision_config": VIT_B16, "text_config": TEXT_B, "projection_dim": 512, **(sizes or {})}
    from modeling_sfar import SFAR_VARIANTS, SfarConfig, SfarForVideoClassification

    settings = dict(SFAR_VARIANTS[variant])
    settings.pop("prompt_templates", None)
    if variant == "temporal":
        settings["num_temporal_layers"] = 6
    config = SfarConfig(
        **sizes,
        num_frames=num_frames,
        num_subtexts=NUM_SUBTEXTS,
        id2label={i: f"class {i}" for i in range(num_labels)},
        **settings,
        **config_kwargs,
    )
    torch.manual_seed(0)
    model = SfarForVideoClassification(config)
    model.sfar.store_label_set(random_label_set(num_labels, width=sizes["projection_dim"]))
    if not keep_words:
        cache = model.sfar.label_set_cache
        for name in ("prompt_word_embeds", "prompt_word_mask", "subtext_word_embeds", "subtext_word_mask"):
            setattr(cache, name, None)
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


def within_call(model, x: torch.Tensor, repeats: int, warmup: int = 1) -> list[float]:
    """
    SFAR's forward time over the time of its own vision-tower call inside that forward, for each of `repeats`
    calls: what SFAR adds to its backbone (frame flattening, projection, temporal module, head, label-set reads,
    output assembly), measured within one call, so that a slow spell of the machine between calls does not enter.
    The tower call is timed by forward hooks on `model.sfar.vision_model` (a few microseconds).
    """
    marks: list[float] = []
    vision = model.sfar.vision_model
    hooks = [
        vision.register_forward_pre_hook(lambda module, args: marks.append(time.perf_counter())),
        vision.register_forward_hook(lambda module, args, output: marks.append(time.perf_counter())),
    ]
    ratios = []
    try:
        for call in range(warmup + repeats):
            marks.clear()
            start = time.perf_counter()
            model(pixel_values=x)
            total = time.perf_counter() - start
            if len(marks) != 2:
                raise ValueError(
                    f"within_call times one call of model.sfar.vision_model per forward, saw {len(marks) // 2} "
                    "(token merging runs the tower's blocks itself: measure it with benchmarks/token_merging.py)"
                )
            if call >= warmup:
                ratios.append(total / (marks[1] - marks[0]))
    finally:
        for hook in hooks:
            hook.remove()
    return ratios


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def inference(args, rows: list) -> None:
    sfar = sfar_model().eval()
    xclip = xclip_model()
    text = torch.randn(400, 512)
    for batch_size in args.batch_sizes:
        x = frames(batch_size)
        with torch.no_grad():
            # The tower twice: the ratio of the two copies is the noise floor of a paired ratio on this machine
            # (1.000 on a quiet one); a ratio of SFAR within that band cannot be told from the tower's.
            times = interleaved(
                {
                    "CLIP vision tower": lambda x=x: sfar.sfar.get_frame_features(x),
                    "CLIP vision tower, again": lambda x=x: sfar.sfar.get_frame_features(x),
                    "SFAR": lambda x=x: sfar(pixel_values=x),
                    "X-CLIP": lambda x=x: xclip_video_side(xclip, x, text),
                },
                repeats=args.repeats,
            )
            inside = within_call(sfar, x, args.repeats)
        for name, measured in times.items():
            case = {"CLIP vision tower": "vision", "SFAR": "sfar", "X-CLIP": "xclip"}.get(name)
            rows.append({
                "section": "inference, 8x224, 400 labels", "batch": batch_size, "model": name,
                "median s": measured["median_s"], "videos/s": batch_size / measured["median_s"],
                "time / vision tower": paired_ratio(times, name, "CLIP vision tower"),
                "per round: min / median / max": ratio_spread(times, name, "CLIP vision tower"),
                "peak MB": peak_memory_mb(case, batch_size) if args.memory and case else None,
            })  # fmt: skip
        rows.append({
            "section": "inference, 8x224, 400 labels", "batch": batch_size,
            "model": "SFAR, within one call (forward / its own vision tower call)",
            "median s": None, "videos/s": None, "time / vision tower": statistics.median(inside),
            "per round: min / median / max": _spread(inside), "peak MB": None,
        })  # fmt: skip
        print(json.dumps(rows[-5:], indent=1), flush=True)


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


def _peak_tensor_mb(run) -> float:
    """
    Run `run()` once; the peak of the bytes held by the tensors it creates (MB), counted operator by operator.

    Each new storage an operator returns is counted until the last tensor seen on it is freed. (The resident set
    does not show this: the allocator hands the head memory that earlier calls freed.)
    """
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class PeakBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.live, self.peak, self.owners = 0, 0, {}

        def release(self, key: int, nbytes: int) -> None:
            self.owners.pop(key, None)
            self.live -= nbytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in tree_leaves(out):
                if not isinstance(tensor, torch.Tensor):
                    continue
                key = tensor.untyped_storage().data_ptr()
                known = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
                if key in self.owners or any(t.untyped_storage().data_ptr() == key for t in known):
                    continue  # a view, or an in-place result: no new memory
                nbytes = tensor.untyped_storage().nbytes()
                self.owners[key] = weakref.finalize(tensor, self.release, key, nbytes)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            return out

    tracker = PeakBytes()
    with tracker:
        result = run()
    del result
    return tracker.peak / 1e6


def labels_scaling(args, rows: list) -> None:
    x = frames(1)
    small = sfar_model(num_labels=100, keep_words=False).eval()
    with torch.no_grad():
        vision_s = interleaved({"vision": lambda m=small: m.sfar.get_frame_features(x)}, repeats=args.repeats)
        vision_s = vision_s["vision"]["median_s"]
        features = small.sfar.get_frame_features(x)
    del small
    for num_labels in (100, 400, 1000, 4000):
        model = sfar_model(num_labels=num_labels, keep_words=False).eval()  # as loaded: the inference constants
        sfar = model.sfar
        stored = sum(b.numel() * b.element_size() for b in sfar.label_set_cache.buffers())

        def head(sfar=sfar):
            return sfar.forward_head(features)

        with torch.no_grad():
            head()  # steady state, as from the second video of an evaluation on
            measured = interleaved({"head": head}, repeats=max(5, args.repeats))["head"]["median_s"]
            peak = _peak_tensor_mb(head) if args.memory else None
        rows.append({
            "section": "labels, batch 1, 8x224", "labels": num_labels, "head s": measured,
            "head share of forward": measured / (measured + vision_s),
            "head s per 1000 labels": measured / num_labels * 1000,
            "stored label set MB": stored / 1e6,
            "head working memory MB (peak of its tensors)": peak,
        })  # fmt: skip
        del model, sfar
    print(json.dumps(rows[-4:], indent=1), flush=True)


def profile(args, rows: list) -> None:
    """Where SFAR's forward spends the time its vision tower does not: operators, then parts."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model = sfar_model(keep_words=False).eval()
    sfar = model.sfar
    for batch_size in args.batch_sizes:
        x = frames(batch_size)
        cases = {"vision tower": lambda x=x: sfar.get_frame_features(x), "SFAR": lambda x=x: model(pixel_values=x)}
        self_us: dict[str, dict[str, float]] = {name: {} for name in cases}
        with torch.no_grad():
            for name in cases:
                cases[name]()  # warm-up: the label-set words cached, allocations made once
            for round_ in range(args.repeats):  # alternating order, summed over rounds
                for name in list(cases)[:: 1 if round_ % 2 == 0 else -1]:
                    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                        cases[name]()
                    for event in prof.key_averages():
                        self_us[name][event.key] = self_us[name].get(event.key, 0.0) + event.self_cpu_time_total
            tower_us = sum(self_us["vision tower"].values())
            extra = {
                op: self_us["SFAR"].get(op, 0.0) - self_us["vision tower"].get(op, 0.0)
                for op in set(self_us["SFAR"]) | set(self_us["vision tower"])
            }
            for op in sorted(extra, key=lambda op: -abs(extra[op]))[:8]:
                rows.append({
                    "section": f"profile, batch {batch_size}: operator self time, SFAR minus vision tower",
                    "operator": op, "SFAR - tower, % of tower": 100 * extra[op] / tower_us,
                    "tower ms per forward": self_us["vision tower"].get(op, 0.0) / 1e3 / args.repeats,
                    "SFAR ms per forward": self_us["SFAR"].get(op, 0.0) / 1e3 / args.repeats,
                })  # fmt: skip
            # the parts beyond the tower, timed alone on the tower's output (many short rounds: they take ms)
            features = sfar.get_frame_features(x)
            temporal = sfar._temporal(features, False, False)[0]
            parts = {
                "temporal module": lambda f=features: sfar._temporal(f, False, False),
                "head": lambda t=temporal: sfar._head(t, None),
            }
            if torch.get_num_threads() > 1:
                parts.update({f"{name}, 1 thread": _on_one_thread(run) for name, run in list(parts.items())})
            parts = interleaved(parts, repeats=max(20, args.repeats))
            tower = interleaved({"tower": cases["vision tower"]}, repeats=args.repeats)["tower"]["median_s"]
        for name, measured in parts.items():
            rows.append({
                "section": f"profile, batch {batch_size}: the parts beyond the vision tower, timed alone",
                "part": name, "median ms": measured["median_s"] * 1e3, "min ms": min(measured["times_s"]) * 1e3,
                "% of the vision tower": 100 * measured["median_s"] / tower,
            })  # fmt: skip
    print(json.dumps(rows[-4:], indent=1), flush=True)


def _on_one_thread(run):
    """`run` on one intra-op thread: what it costs without waiting for a second thread at every small matrix
    product (on a shared machine that thread may be descheduled)."""

    def case():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            run()
        finally:
            torch.set_num_threads(threads)

    return case


def save_legacy(model, path: str) -> None:
    """Save `model` as SFAR saved a label set before the inference constants were stored: the text tower's words,
    padded to the text context, and the sub-texts' class embeddings (`config.stored_prompt_words` absent)."""
    from safetensors.torch import save_file

    from modeling_sfar.remote_code.label_set_sfar import LEGACY_LABEL_SET_BUFFERS

    sfar = model.sfar
    words = {name: getattr(sfar.label_set_cache, name) for name in ("prompt_word_embeds", "prompt_word_mask",
             "subtext_word_embeds", "subtext_word_mask")}  # fmt: skip
    config = model.config.to_dict()
    config.pop("stored_prompt_words")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    weights = {k: v for k, v in model.state_dict().items() if ".label_set_cache." not in k}
    legacy = {**words, "text_embeds": sfar.text_embeds, "has_text_features": sfar.has_text_features}
    legacy["subtext_embeds"] = torch.zeros(*sfar.subtext_word_embeds.shape[:2], sfar.text_embeds.shape[-1])
    assert set(legacy) == set(LEGACY_LABEL_SET_BUFFERS)
    weights.update({f"sfar.label_set_cache.{k}": v.contiguous() for k, v in legacy.items()})
    save_file(weights, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


def checkpoint(args, rows: list) -> None:
    """Checkpoint size and load time of a ViT-B/16-size SFAR, 400 classes x 4 sub-texts, both layouts."""
    import tempfile

    from safetensors import safe_open

    from modeling_sfar import SfarForVideoClassification

    model = sfar_model().eval()
    with tempfile.TemporaryDirectory() as root:
        folders = {"stored now (inference constants)": os.path.join(root, "new"),
                   "legacy (the words, padded)": os.path.join(root, "legacy")}  # fmt: skip
        save_legacy(model, folders["legacy (the words, padded)"])
        model.save_pretrained(folders["stored now (inference constants)"])
        del model

        def load(folder):
            return SfarForVideoClassification.from_pretrained(folder).eval()

        times = interleaved(
            {name: (lambda f=folder: load(f)) for name, folder in folders.items()}, repeats=args.repeats
        )
        x = frames(1)
        with torch.no_grad():
            logits = {name: load(folder)(pixel_values=x).logits for name, folder in folders.items()}
        for name, folder in folders.items():
            path = os.path.join(folder, "model.safetensors")
            with safe_open(path, "pt") as f:
                slices = [f.get_slice(k) for k in f.keys() if ".label_set_cache." in k]
                label_set = sum(_numel(t.get_shape()) * _itemsize(t.get_dtype()) for t in slices)
            size = os.path.getsize(path)
            rows.append({
                "section": "checkpoint, ViT-B/16 size, 400 classes x 4 sub-texts, float32", "label set": name,
                "checkpoint MB": size / 1e6, "label set MB": label_set / 1e6, "label set share": label_set / size,
                "from_pretrained s": times[name]["median_s"],
                "load time / legacy": paired_ratio(times, name, "legacy (the words, padded)"),
                "per round: min / median / max": ratio_spread(times, name, "legacy (the words, padded)"),
                "logits equal to legacy's": bool(torch.equal(logits[name], logits["legacy (the words, padded)"])),
            })  # fmt: skip
    print(json.dumps(rows[-2:], indent=1), flush=True)


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _itemsize(dtype: str) -> int:
    return {"F32": 4, "F16": 2, "BF16": 2, "BOOL": 1, "I64": 8}[dtype]


SECTIONS = {
    "inference": inference,
    "profile": profile,
    "checkpoint": checkpoint,
    "labels": labels_scaling,
    "precision": precision,
    "training": training,
}


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
