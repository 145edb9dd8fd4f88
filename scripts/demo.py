"""The main job on the embedded default: build a small SFAR from a CLIP checkpoint, save a Hub-ready folder, and
classify a generated video with `pipeline("video-classification", trust_remote_code=True)`.

Offline (the default) the CLIP is a tiny random one built locally; with `--base openai/clip-vit-base-patch16` it
starts from real CLIP weights wherever the Hub is reachable. Training lands with the training issue.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, pipeline

from modeling_sfar import convert_clip_to_sfar
from modeling_sfar.tiny import build_tiny_clip, write_video

logger = logging.getLogger("sfar.demo")

# A small storyboard label set: each class is a sequence of atomic actions of a moving square.
DEMO_SUBTEXTS = {
    "sliding right": [
        "the square appears on the left",
        "the square starts moving right",
        "the square crosses the middle",
        "the square stops on the right",
    ],
    "sliding left": [
        "the square appears on the right",
        "the square starts moving left",
        "the square crosses the middle",
        "the square stops on the left",
    ],
    "growing": [
        "the square is small in the centre",
        "the square starts to grow",
        "the square keeps growing",
        "the square fills the frame",
    ],
    "shrinking": [
        "the square fills the frame",
        "the square starts to shrink",
        "the square keeps shrinking",
        "the square is small in the centre",
    ],
    "pausing": [
        "the square appears in the centre",
        "the square stays still",
        "nothing moves for a while",
        "the square is still in the centre",
    ],
}


@dataclass
class DemoArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where the model folder and files go."})
    base: str | None = field(
        default=None, metadata={"help": "CLIP checkpoint (Hub id or folder); default: tiny random."}
    )
    num_frames: int = field(default=8, metadata={"help": "Frames per video."})
    seed: int = field(default=0, metadata={"help": "Random seed."})


def plot_frame_weights(coarse, fine, label: str, path: str) -> None:
    """Coarse and fine frame weights of the top class over the sampled frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = range(1, len(coarse) + 1)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(frames, coarse, marker="o", label="coarse a$^{coarse}$")
    ax.plot(frames, fine, marker="s", label="fine a$^{fine}$")
    ax.set_xlabel("sampled frame")
    ax.set_ylabel("weight")
    ax.set_title(f"frame weights for '{label}'")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses()
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    os.makedirs(args.output_dir, exist_ok=True)

    base = args.base or build_tiny_clip(os.path.join(args.output_dir, "tiny-clip"), seed=args.seed)
    labels = list(DEMO_SUBTEXTS)
    model, processor = convert_clip_to_sfar(base, labels, DEMO_SUBTEXTS, num_frames=args.num_frames)
    folder = os.path.join(args.output_dir, "sfar-demo")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    video = write_video(os.path.join(args.output_dir, "square.mp4"), num_frames=32, seed=args.seed)
    classifier = pipeline("video-classification", model=folder, trust_remote_code=True)
    predictions = classifier(video, top_k=5)

    with torch.no_grad():
        out = model(**processor(videos=video))
    top = int(out.logits[0].argmax())
    picture = os.path.join(args.output_dir, "frame_weights.png")
    plot_frame_weights(
        out.coarse_frame_weights[0, top].tolist(), out.fine_frame_weights[0, top].tolist(), labels[top], picture
    )

    total = sum(p.numel() for p in model.parameters())
    print(f"\nSFAR demo ({'random tiny CLIP' if args.base is None else args.base}), {total / 1e6:.2f} M parameters")
    print(f"model folder: {folder}\nvideo: {video}\nframe weights: {picture}\n")
    print(f"{'label':<16}{'score':>8}")
    for p in predictions:
        print(f"{p['label']:<16}{p['score']:>8.3f}")
    print(f"\n(untrained model: the scores show the pipeline works, not accuracy) {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
