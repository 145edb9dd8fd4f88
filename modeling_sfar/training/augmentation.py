"""Training augmentation: BIKE's video transform (a random frame per TSN segment, one random-resized crop, flip and
grayscale for all frames of a video; SFAR's paper, Table 5), and X-CLIP's Mixup / CutMix with label smoothing as
soft targets (ALT's recipe). The video processor saved with a model is for inference; these run only in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.image_utils import SizeDict

from ..remote_code.video_decoding import read_video_pyav
from ..remote_code.video_processing_sfar import tsn_frame_indices

__all__ = [
    "CROP_AREA",
    "CROP_ASPECT",
    "FLIP_PROBABILITY",
    "GRAYSCALE_PROBABILITY",
    "VideoAugmentation",
    "smooth_targets",
    "MixDraw",
    "draw_mix",
    "mix_batch",
    "MixingCollator",
]

# BIKE's training augmentation (SFAR paper Table 5): RandomResizedCrop area and aspect ranges, flip and grayscale rates.
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
FLIP_PROBABILITY = 0.5
GRAYSCALE_PROBABILITY = 0.2


class VideoAugmentation:
    """
    BIKE's training transform of one video file -> `(T, 3, H, W)` `pixel_values`: a random frame in each of the
    processor's `num_frames` TSN segments, the processor's resize of the short side, one random-sized crop (area
    `crop_area_min`-1 of the frame, aspect 3/4-4/3) for all frames resized to the processor's `crop_size`, a horizontal
    flip (`flip_probability`) and grayscale (`grayscale_probability`), each drawn once per video, then the
    processor's rescale and CLIP normalisation.

    Random draws come from torch's global generator (the frame offsets through a numpy generator seeded by one torch
    draw), in that order, so a caller that seeds torch (`VideoTransform`) gets the same clip every time.
    """

    def __init__(
        self,
        video_processor: Any,
        flip_probability: float | None = None,
        grayscale_probability: float | None = None,
        crop_area_min: float | None = None,
    ):
        self.video_processor = video_processor
        self.flip_probability = FLIP_PROBABILITY if flip_probability is None else flip_probability
        self.grayscale_probability = GRAYSCALE_PROBABILITY if grayscale_probability is None else grayscale_probability
        self.crop_area_min = CROP_AREA[0] if crop_area_min is None else crop_area_min
        for name in ("flip_probability", "grayscale_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.crop_area_min <= 1.0:
            raise ValueError(f"crop_area_min must lie in (0, 1], got {self.crop_area_min}")

    def sample_frames(self, metadata) -> np.ndarray:
        """A random frame in each TSN segment: `(T,)` indices (see `tsn_frame_indices`)."""
        return tsn_frame_indices(metadata.total_num_frames, self.video_processor.num_frames, training=True)

    def __call__(self, video: str) -> torch.Tensor:
        processor = self.video_processor
        frames, _ = read_video_pyav(video, self.sample_frames, threads=processor.decode_threads)  # (T, H, W, 3)
        frames = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W) uint8
        frames = self.augment(frames)
        return processor.rescale_and_normalize(
            frames,
            processor.do_rescale,
            processor.rescale_factor,
            processor.do_normalize,
            tuple(processor.image_mean),
            tuple(processor.image_std),
        )

    def augment(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 3, H, W) uint8 -> (T, 3, h, w) uint8: resize, one random-resized crop, flip, grayscale."""
        import torchvision.transforms.v2.functional as tvF

        processor = self.video_processor
        size = processor.size if isinstance(processor.size, SizeDict) else SizeDict(**processor.size)
        frames = processor.resize(frames, size=size, resample=processor.resample)
        height, width = frames.shape[-2:]
        top, left, crop_h, crop_w = random_resized_crop_box(height, width, (self.crop_area_min, CROP_AREA[1]))
        crop = processor.crop_size if isinstance(processor.crop_size, SizeDict) else SizeDict(**processor.crop_size)
        out_size = [crop.height, crop.width]
        frames = tvF.resized_crop(frames, top, left, crop_h, crop_w, size=out_size, antialias=True)
        if torch.rand(()) < self.flip_probability:
            frames = tvF.horizontal_flip(frames)
        if torch.rand(()) < self.grayscale_probability:
            frames = tvF.rgb_to_grayscale(frames, num_output_channels=3)
        return frames


def random_resized_crop_box(
    height: int, width: int, area_range: tuple[float, float] = CROP_AREA
) -> tuple[int, int, int, int]:
    """A crop box (top, left, height, width) of random area (`area_range` of the frame) and aspect (CROP_ASPECT), as
    torchvision draws it."""
    area = height * width
    log_ratio = (math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1]))
    for _ in range(10):
        target_area = area * torch.empty(()).uniform_(*area_range).item()
        aspect = math.exp(torch.empty(()).uniform_(*log_ratio).item())
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, ()).item())
            left = int(torch.randint(0, width - crop_w + 1, ()).item())
            return top, left, crop_h, crop_w
    side = min(height, width)  # fall back to a centre square
    return (height - side) // 2, (width - side) // 2, side, side


# -- Mixup, CutMix and label smoothing (X-CLIP's training augmentation, which ALT follows) ----------------------


def smooth_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """
    Soft targets of hard labels with label smoothing: `1 - smoothing + smoothing / C` on the labelled class,
    `smoothing / C` on every other (the convention of X-CLIP's and timm's blending, and of transformers'
    `label_smoothing_factor`: the cross-entropy on these targets is (1 - s) NLL + s * the mean of -log p over the
    classes). labels `(B,)` -> `(B, C)` float32; rows sum to 1.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must lie in [0, 1), got {smoothing}")
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32)
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


@dataclass
class MixDraw:
    """
    One batch's random choices of [`draw_mix`]: `kind` "mixup" or "cutmix", the Beta draw `lam` (for CutMix the
    share of each frame kept, corrected to the box as cut), the partner of every video `permutation` `(B,)`, and for
    CutMix the box `(top, bottom, left, right)` (rows top:bottom, columns left:right), the same in every frame.
    """

    kind: str
    lam: float
    permutation: torch.Tensor
    box: tuple[int, int, int, int] | None = None


def draw_mix(
    batch_size: int,
    height: int,
    width: int,
    mixup_alpha: float,
    cutmix_alpha: float,
    switch_prob: float,
    rng: np.random.Generator,
) -> MixDraw:
    """
    Draw one batch's mixing from `rng`, in this order: CutMix with probability `switch_prob` when both are on (else
    whichever is on), lam ~ Beta(alpha, alpha) of the chosen one, a random permutation of the batch (each video's
    partner), and for CutMix the box's centre, uniform over the pixels. The box (CutMix paper) has sides
    int(H sqrt(1 - lam)) and int(W sqrt(1 - lam)) around its centre, cut at the frame's edges, and lam becomes
    1 - box area / frame area.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        raise ValueError("draw_mix needs mixup_alpha > 0 or cutmix_alpha > 0")
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cut = bool(rng.random() < switch_prob)
    else:
        cut = cutmix_alpha > 0
    alpha = cutmix_alpha if cut else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    permutation = torch.as_tensor(rng.permutation(batch_size), dtype=torch.long)
    if not cut:
        return MixDraw("mixup", lam, permutation)
    ratio = float(np.sqrt(1.0 - lam))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(centre_y - cut_h // 2, 0), min(centre_y + cut_h // 2, height)
    left, right = max(centre_x - cut_w // 2, 0), min(centre_x + cut_w // 2, width)
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return MixDraw("cutmix", lam, permutation, (top, bottom, left, right))


def mix_batch(pixel_values: torch.Tensor, targets: torch.Tensor, draw: MixDraw) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Apply a [`MixDraw`] to a batch: video b with video `permutation[b]`. Mixup: lam x_b + (1 - lam) x_partner, every
    frame. CutMix: the partner's pixels inside the box, in every frame. Targets: lam t_b + (1 - lam) t_partner.
    pixel_values `(B, T, 3, H, W)`, targets `(B, C)` -> the same shapes (new tensors; the inputs are not changed).
    """
    partner = draw.permutation
    if draw.kind == "mixup":
        mixed = draw.lam * pixel_values + (1.0 - draw.lam) * pixel_values[partner]
    else:
        top, bottom, left, right = draw.box
        mixed = pixel_values.clone()
        mixed[..., top:bottom, left:right] = pixel_values[partner][..., top:bottom, left:right]
    return mixed, draw.lam * targets + (1.0 - draw.lam) * targets[partner]


class MixingCollator:
    """
    The training data collator of Mixup / CutMix and label smoothing: stacks the rows of `VideoTransform`
    (`pixel_values` `(T, 3, H, W)`, `labels` a class index), turns the labels into soft targets `(B, C)` with
    `label_smoothing` ([`smooth_targets`]), and mixes the batch ([`draw_mix`], [`mix_batch`]) when `mixup_alpha` or
    `cutmix_alpha` is above 0: X-CLIP's recipe (its `CutmixMixupBlending`) with its values 0.8, 1.0, 0.5 and 0.1.
    The model's loss then runs on the soft targets.

    Every batch's draws come from a numpy generator seeded by one draw of torch's global generator: reproducible
    under `set_seed` (the Trainer's seed; DataLoader workers get their own torch seeds), different in every worker.
    A resumed run continues with the generator's state at the resume, not with the uninterrupted run's batches.
    Single-label data only: the soft targets of a multi-label dataset are not defined here.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
    ):
        for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0: off), got {value}")
        if not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"mixup_switch_prob must lie in [0, 1], got {switch_prob}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing_factor must lie in [0, 1), got {label_smoothing}")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.switch_prob, self.label_smoothing = switch_prob, label_smoothing

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values = torch.stack([torch.as_tensor(f["pixel_values"]) for f in features])  # (B, T, 3, H, W)
        labels = torch.stack([torch.as_tensor(f["labels"]) for f in features])
        if labels.ndim != 1 or labels.is_floating_point():
            raise ValueError(
                "Mixup, CutMix and label smoothing take single-label rows (one class index each); got labels of "
                f"shape {tuple(labels.shape[1:])} per row"
            )
        targets = smooth_targets(labels, self.num_classes, self.label_smoothing)  # (B, C)
        if self.mixes:
            seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))
            draw = draw_mix(
                len(features),
                pixel_values.shape[-2],
                pixel_values.shape[-1],
                self.mixup_alpha,
                self.cutmix_alpha,
                self.switch_prob,
                np.random.default_rng(seed),
            )
            pixel_values, targets = mix_batch(pixel_values, targets, draw)
        return {"pixel_values": pixel_values, "labels": targets}


