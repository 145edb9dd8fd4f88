# Copyright 2026 The SFAR-HF Authors. Licensed under the Apache License, Version 2.0.
"""Video processor of SFAR and ALT, for inference: TSN segment sampling, PyAV decoding (`video_decoding.py`), resize,
centre crop and CLIP's normalisation, and the views of multi-view testing.

Video loading is three small steps: choose frame indices (`SfarVideoProcessor.sample_frames`), decode those frames
(`read_video_pyav`), transform (`SfarVideoProcessor._preprocess`). Training augmentation is not here: it belongs to
the training code (`modeling_sfar.training.augmentation`), which reuses `tsn_frame_indices` and this processor's
resize and normalisation.

This file is shipped to the Hub as remote code: PyAV is imported only when a file is decoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling, SizeDict
from transformers.processing_utils import VideosKwargs
from transformers.utils import logging
from transformers.video_processing_utils import BaseVideoProcessor, BatchFeature
from transformers.video_utils import VideoMetadata

from .video_decoding import read_video_pyav

logger = logging.get_logger(__name__)

__all__ = ["SfarVideoProcessor", "tsn_frame_indices"]

class SfarVideoProcessorKwargs(VideosKwargs, total=False):
    """
    num_clips (`int`): temporal clips of multi-view testing (segment offsets spread evenly).
    num_crops (`int`): spatial crops of multi-view testing, 1 (centre) or 3 (along the longer side).
    decode_threads (`int`): FFmpeg threads per decoded video; None: FFmpeg's default (one per core) in the main
        process, the worker's share of the cores (cores // workers) in a DataLoader worker.
    """

    num_clips: int | None
    num_crops: int | None
    decode_threads: int | None


def tsn_frame_indices(
    total_num_frames: int,
    num_frames: int,
    training: bool = False,
    num_clips: int = 1,
    generator: np.random.Generator | None = None,
) -> np.ndarray:
    """
    TSN sampling: split the video into `num_frames` equal segments and take one frame in each.

    Training draws a random frame per segment; evaluation takes each segment's centre, or, with `num_clips` > 1, the
    offsets (k + 0.5) / num_clips of every segment. A video shorter than `num_frames` repeats frames.

    Returns:
        `(num_clips * num_frames,)` indices, clip after clip.

    Raises:
        ValueError: `num_frames` or `num_clips` is not a positive integer, or the video has no frames.
    """
    for name, value in (("num_frames", num_frames), ("num_clips", num_clips)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if total_num_frames < 1:
        raise ValueError("the video has no frames")
    segment = total_num_frames / num_frames
    starts = segment * np.arange(num_frames)  # (T,)
    if training:
        rng = generator if generator is not None else np.random.default_rng(torch.randint(2**31, ()).item())
        offsets = rng.random(num_frames)[None]  # (1, T)
    else:
        offsets = ((np.arange(num_clips) + 0.5) / num_clips)[:, None]  # (clips, 1)
    indices = np.floor(starts[None] + offsets * segment).astype(np.int64)  # (clips, T)
    return np.clip(indices, 0, total_num_frames - 1).reshape(-1)


class SfarVideoProcessor(BaseVideoProcessor):
    r"""
    Turns video files (or decoded videos) into `pixel_values` for SFAR and ALT: TSN segment centres, resize the short
    side to `size["shortest_edge"]` (256), centre crop `crop_size` (224), rescale to [0, 1] and normalise with CLIP's
    mean and std.

    Multi-view testing (`num_clips` temporal clips, `num_crops` in {1, 3} spatial crops): `pixel_values` gets a view
    axis, `(B, V, T, 3, H, W)` with V = clips x crops, whose logits the evaluation averages
    (`modeling_clip_video.average_over_views`). Otherwise `pixel_values` is `(B, T, 3, H, W)`.
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = SfarVideoProcessorKwargs
    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"shortest_edge": 256}
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 8
    num_clips = 1
    num_crops = 1
    decode_threads = None
    # Settings of the training augmentation that processors saved by older versions held: such a
    # processor_config.json still loads (they become attributes, unused) and saves without them.
    legacy_training_settings = ("training", "flip_probability", "crop_area_min", "grayscale_probability")

    def to_dict(self) -> dict[str, Any]:
        """The saved configuration: every setting but `legacy_training_settings`."""
        out = super().to_dict()
        for key in self.legacy_training_settings:
            out.pop(key, None)
        return out

    def sample_frames(
        self, metadata: VideoMetadata, num_frames: int | None = None, num_clips: int | None = None, **kwargs
    ) -> np.ndarray:
        """TSN indices for one video: `(clips * T,)`; see `tsn_frame_indices`."""
        num_frames = num_frames if num_frames is not None else self.num_frames
        num_clips = num_clips if num_clips is not None else self.num_clips
        return tsn_frame_indices(metadata.total_num_frames, num_frames, num_clips=num_clips)

    def fetch_videos(self, video_url_or_urls, sample_indices_fn=None):
        """Decode paths with PyAV (the base class would need torchcodec)."""
        if isinstance(video_url_or_urls, (list, tuple)):
            pairs = [self.fetch_videos(path, sample_indices_fn) for path in video_url_or_urls]
            return [video for video, _ in pairs], [metadata for _, metadata in pairs]
        return read_video_pyav(video_url_or_urls, sample_indices_fn, threads=self.decode_threads)

    def _preprocess(
        self,
        videos: list[torch.Tensor],
        do_resize: bool,
        size: SizeDict,
        resample,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        num_clips: int | None = None,
        num_crops: int | None = None,
        num_frames: int | None = None,
        return_tensors=None,
        **kwargs,
    ) -> BatchFeature:
        num_crops = num_crops or 1
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        clips = num_clips or 1
        out_size = (crop_size.height, crop_size.width)
        batch = []
        for video in videos:  # (clips * T, 3, H, W) uint8
            views = self._test_views(video, size, resample, out_size, do_resize, do_center_crop, num_crops)
            views = [
                self.rescale_and_normalize(v, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
                for v in views
            ]
            if len(video) % clips:
                raise ValueError(f"a video of {len(video)} frames cannot be split into {clips} clips")
            # (crops, clips*T, 3, h, w) -> (clips, crops, T, 3, h, w) -> (V, T, 3, h, w): views of one video
            stacked = torch.stack(views).unflatten(1, (clips, -1)).transpose(0, 1).flatten(0, 1)
            batch.append(stacked)
        pixel_values = torch.stack(batch)  # (B, V, T, 3, h, w)
        if pixel_values.shape[1] == 1:
            pixel_values = pixel_values[:, 0]  # (B, T, 3, h, w)
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    def _test_views(self, video, size, resample, out_size, do_resize, do_center_crop, num_crops) -> list[torch.Tensor]:
        """Evaluation crops: the centre crop after resizing to `size`, or 3 crops along the longer side."""
        import torchvision.transforms.v2.functional as tvF

        if num_crops == 1:
            if do_resize:
                video = self.resize(video, size=size, resample=resample)
            if do_center_crop:
                video = tvF.center_crop(video, list(out_size))
            return [video]
        # 3 crops: resize the short side to the crop size, then take the start, centre and end of the long side.
        video = self.resize(video, size=SizeDict(shortest_edge=min(out_size)), resample=resample)
        height, width = video.shape[-2:]
        crop_h, crop_w = out_size
        if width >= height:
            return [
                tvF.crop(video, (height - crop_h) // 2, left, crop_h, crop_w)
                for left in (0, (width - crop_w) // 2, width - crop_w)
            ]
        return [
            tvF.crop(video, top, (width - crop_w) // 2, crop_h, crop_w)
            for top in (0, (height - crop_h) // 2, height - crop_h)
        ]


SfarVideoProcessor.register_for_auto_class("AutoVideoProcessor")
