"""The frame-weight picture of the demo and the Space: the sampled frames in a row, and under them the coarse and
fine weights one class gives those frames.

Self-contained (torch at module level, matplotlib and Pillow when drawing): the Space's repo holds a copy of this
file, staged by `python scripts/push_to_hub.py space`, so the Space draws with the same code without installing this
package.
"""

from __future__ import annotations

import io

import torch

__all__ = ["denormalize", "frame_weight_picture"]


def denormalize(pixel_values: torch.Tensor, video_processor) -> torch.Tensor:
    """`(T, 3, H, W)` normalised frames back to `[0, 1]` with the processor's mean and std."""
    mean = torch.tensor(video_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(video_processor.image_std).view(1, 3, 1, 1)
    return (pixel_values * std + mean).clamp(0, 1)


def frame_weight_picture(frames: torch.Tensor, coarse, fine, label: str):
    """The sampled frames in a row, and below them the coarse and fine weights of `label` over those frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    count = frames.shape[0]
    fig = plt.figure(figsize=(max(6, 1.1 * count), 3.6), dpi=100)
    grid = fig.add_gridspec(2, count, height_ratios=[1, 1.6])
    for t in range(count):
        ax = fig.add_subplot(grid[0, t])
        ax.imshow(frames[t].permute(1, 2, 0).numpy())
        ax.set_axis_off()
        ax.set_title(str(t + 1), fontsize=8)
    ax = fig.add_subplot(grid[1, :])
    steps = list(range(1, count + 1))
    if coarse is not None:
        ax.plot(steps, coarse, marker="o", label="coarse (prompt + sub-texts)")
    if fine is not None:
        ax.plot(steps, fine, marker="s", label="fine (sub-texts)")
    ax.set_xticks(steps)
    ax.set_xlabel("sampled frame")
    ax.set_ylabel("weight")
    ax.set_title(f"frame weights for '{label}'", fontsize=10)
    if coarse is not None or fine is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
