"""The pictures of the demo and the Space: for SFAR, the sampled frames in a row and under them the coarse and fine
weights one class gives those frames (`frame_weight_picture`); for ALT, the sampled frames with every merged region
coloured by the text entity it was aligned with, and a legend naming the entities (`entity_region_picture`).

Self-contained (torch at module level, matplotlib and Pillow when drawing): the Space's repo holds a copy of this
file, staged by `python scripts/push_to_hub.py space`, so the Space draws with the same code without installing this
package.
"""

from __future__ import annotations

import io

import torch

__all__ = [
    "denormalize",
    "frame_weight_picture",
    "patch_entities",
    "region_legend",
    "tint_regions",
    "entity_region_picture",
]


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


def patch_entities(patch_to_token: torch.Tensor, entity_indices: torch.Tensor) -> torch.Tensor:
    """
    The entity of every patch of every frame: the entity its merged token was aligned with.

    Args:
        patch_to_token: `(T, P + 1)`, ALT's `patch_to_token` of one video: for the class token (first) and every patch
            (row-major), the token of the frame it was merged into.
        entity_indices: `(T, N)`, ALT's `entity_indices` of the same video: the entity of every token.

    Returns:
        `(T, P)`: the entity index of every patch (the class token dropped).

    Raises:
        ValueError: shapes that do not belong together, or a token index beyond the frame's tokens.
    """
    if patch_to_token.ndim != 2 or entity_indices.ndim != 2 or patch_to_token.shape[0] != entity_indices.shape[0]:
        raise ValueError(
            f"patch_to_token (T, P + 1) and entity_indices (T, N) of one video expected, got "
            f"{tuple(patch_to_token.shape)} and {tuple(entity_indices.shape)}"
        )
    tokens = patch_to_token[:, 1:].long()  # (T, P)
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= entity_indices.shape[1]):
        raise ValueError(f"patch_to_token names tokens outside the frame's {entity_indices.shape[1]} tokens")
    return entity_indices.long().gather(1, tokens)  # (T, P)


def region_legend(patches: torch.Tensor) -> list[tuple[int, float]]:
    """`(entity index, share of all patches)` of every entity a `(T, P)` patch map shows, the largest share first
    (ties: the lower index first)."""
    counts = torch.bincount(patches.flatten().long())
    present = [(int(j), float(c) / patches.numel()) for j, c in enumerate(counts.tolist()) if c]
    return sorted(present, key=lambda item: (-item[1], item[0]))


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def tint_regions(frame: torch.Tensor, outline: torch.Tensor, tint: torch.Tensor | None = None) -> torch.Tensor:
    """
    One frame with its regions drawn: `(3, H, W)` in `[0, 1]` -> `(H, W, 3)`, every pixel half its own colour and
    half its patch's `tint` (`(s, s, 3)`; none: untinted), and white where `outline` (`(s, s)`, a label per patch:
    its entity, or its token) changes to the right or below. H and W are multiples of s.
    """
    _, height, width = frame.shape
    side = outline.shape[0]
    scale_y, scale_x = height // side, width // side

    def upscale(grid: torch.Tensor) -> torch.Tensor:  # (s, s, ...) -> (H, W, ...), nearest
        return grid.repeat_interleave(scale_y, 0).repeat_interleave(scale_x, 1)

    image = frame.permute(1, 2, 0).clone()  # (H, W, 3)
    if tint is not None:
        image = 0.5 * image + 0.5 * upscale(tint).to(image.dtype)
    label = upscale(outline)  # (H, W)
    edge = torch.zeros(height, width, dtype=torch.bool)
    edge[:, :-1] |= label[:, 1:] != label[:, :-1]
    edge[:-1, :] |= label[1:, :] != label[:-1, :]
    image[edge] = 1.0
    return image.clamp(0, 1)


def entity_region_picture(
    frames: torch.Tensor,
    patch_to_token: torch.Tensor,
    entity_indices: torch.Tensor | None,
    entities: list[str] | None,
    label: str,
):
    """
    The sampled frames in a row, every region (the patches merged into one token) tinted with the colour of its
    aligned entity, the borders between entities outlined, and a legend naming the entities shown with their share of
    the patches. Outlining every token's border instead would draw nearly the whole patch grid (most tokens are single
    patches: ViT-B/16 keeps 101 of 197 tokens at r = 8).

    Args:
        frames: `(T, 3, H, W)` in `[0, 1]` (see `denormalize`); H and W multiples of the patch grid's side.
        patch_to_token: `(T, P + 1)` and entity_indices: `(T, N)`, the model's outputs for this video (see
            `patch_entities`). `entity_indices` None (ALT without a corpus): the regions (tokens) are outlined,
            untinted.
        entities: the entity texts (`config.entities`), indexed by `entity_indices`.
        label: the class named in the title (the top class).

    Raises:
        ValueError: shapes that do not fit the frames (P must be a square grid), or an entity index with no text.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from PIL import Image

    count, _, height, width = frames.shape
    num_patches = patch_to_token.shape[-1] - 1
    side = round(num_patches**0.5)
    if patch_to_token.shape[0] != count or side * side != num_patches or height % side or width % side:
        raise ValueError(
            f"patch_to_token {tuple(patch_to_token.shape)} does not fit {count} frames of {height}x{width} pixels "
            "(one row per frame, the class token and a square grid of patches)"
        )
    regions = patch_to_token[:, 1:].long().view(count, side, side)  # (T, s, s) the token of every patch
    legend, colour_of = [], {}
    if entity_indices is not None:
        patches = patch_entities(patch_to_token, entity_indices)  # (T, P)
        shown = region_legend(patches)
        if entities is None or any(j >= len(entities) for j, _ in shown):
            raise ValueError(f"entity index beyond the {len(entities or [])} entity texts given")
        palette = plt.get_cmap("tab20").colors  # 20 colours; more entities than that repeat them
        colour_of = {j: palette[i % len(palette)] for i, (j, _) in enumerate(shown)}
        legend = [Patch(color=colour_of[j], label=f"{_short(entities[j])} ({100 * share:.0f}%)") for j, share in shown]
        patches = patches.view(count, side, side)
    rows = (len(legend) + 1) // 2  # the legend in two columns
    fig = plt.figure(figsize=(max(8, 2.0 * count), 2.6 + 0.25 * max(1, rows)), dpi=100)
    grid = fig.add_gridspec(2, count, height_ratios=[2.0, 0.25 * max(1, rows) + 0.1])
    for t in range(count):
        tint = None
        if colour_of:
            tint = torch.tensor([colour_of[int(j)] for j in patches[t].flatten()], dtype=frames.dtype)
            tint = tint.view(side, side, 3)
        image = tint_regions(frames[t], patches[t] if colour_of else regions[t], tint)
        ax = fig.add_subplot(grid[0, t])
        ax.imshow(image.numpy(), interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(str(t + 1), fontsize=8)
    ax = fig.add_subplot(grid[1, :])
    ax.set_axis_off()
    if legend:
        ax.legend(handles=legend, loc="upper center", ncol=min(2, len(legend)), fontsize=8, frameon=False)
        title = f"regions and their aligned entities; top class '{label}'"
    else:
        title = f"regions (no entity corpus: nothing to align); top class '{label}'"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
