"""Frame-exact video decoding with PyAV: frame i of a file is the i-th frame a player presents, whatever the container
and the frame timing (docs/video_decoding.md).

`read_video_pyav(path, sample_indices_fn)` decodes only the frames asked for, seeking where the container indexes its
keyframes and checking every seek and frame against one pass over the packets; any doubt falls back to decoding from
the start. Errors name the file and the reason (`VideoDecodingError`).

This file is shipped to the Hub as remote code: PyAV is imported only when a file is decoded.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import numpy as np
from transformers.utils import logging
from transformers.video_utils import VideoMetadata

logger = logging.get_logger(__name__)

__all__ = ["VideoDecodingError", "read_video_pyav", "EXACT_SEEK_FORMATS"]


class VideoDecodingError(ValueError):
    """A video file that cannot deliver the frames asked of it. The message names the file and the reason."""


# Demuxers whose seeks land exactly on the keyframe asked for: they read an index of the keyframes (MP4/MOV sample
# tables, Matroska cues, the AVI index). MPEG transport and program streams, raw streams and the rest have no index
# and seek by guessing a byte offset, so they are decoded from the start. Every seek is still checked.
EXACT_SEEK_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi"})

# Files already warned about (a seek or a frame that was not the one expected): one warning per file and process.
_warned_paths: set[str] = set()


def read_video_pyav(
    path: str, sample_indices_fn: Callable | None = None, threads: int | None = None
) -> tuple[np.ndarray, VideoMetadata]:
    """
    Decode the frames of `path` that `sample_indices_fn(metadata=...)` selects (all frames without it), with
    `threads` FFmpeg threads (None: FFmpeg's default in the main process, cores // workers in a DataLoader worker).

    Frame i is the i-th frame that the video presents, counted in presentation order after any pre-roll that an
    edit list discards, exactly as a decode of the whole file from its start yields it, whatever the container and
    the frame timing. One pass over the packets (no decoding) reads their timestamps and keyframes. Where the
    container seeks exactly (MP4/MOV, Matroska/WebM, AVI: they index their keyframes), decoding jumps to the
    keyframe before a far frame, checks where the seek landed, and checks that every frame the decoder returns is
    the one due; other containers are decoded from the start. A seek or a frame that is not the one expected makes
    the file decode from its start, with a warning once per file.

    Returns:
        `(len(indices), H, W, 3)` uint8 RGB frames, in the order of the indices (repeats allowed), and the metadata.

    Raises:
        FileNotFoundError: nothing exists at `path`.
        VideoDecodingError: (a `ValueError`) the path is a directory, the file is empty or not a video, or it cannot
            deliver the frames asked for; the message names the file and the reason.
        ValueError: `threads` < 1, or `sample_indices_fn` returned no indices or indices that are not frames of the
            video.
    """
    import av

    path = os.fspath(path)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"video file not found: {path}")
    if os.path.isdir(path):
        raise VideoDecodingError(f"{path} is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoDecodingError(f"video file is empty: {path}")
    container = _open(path, threads)
    try:
        stream = container.streams.video[0]
        try:
            timeline = _Timeline.read(container, stream)
        except av.error.FFmpegError as error:
            raise VideoDecodingError(f"cannot read the packets of {path}: {error}") from error
        total = timeline.count
        if total < 1:
            raise VideoDecodingError(f"video has no frames: {path}")
        fps = float(stream.average_rate) if stream.average_rate else None
        metadata = VideoMetadata(
            total_num_frames=total,
            fps=fps,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration=total / fps if fps else None,
            video_backend="pyav",
        )
        indices = np.arange(total) if sample_indices_fn is None else np.asarray(sample_indices_fn(metadata=metadata))
        _check_indices(indices, total, path)
        wanted = set(indices.tolist())
        decoded: dict[int, np.ndarray] = {}
        try:
            if timeline.seekable(container):
                try:
                    _decode_seeking(container, stream, timeline, wanted, decoded)
                except _NotTheFrameAsked as mismatch:
                    if path not in _warned_paths:
                        _warned_paths.add(path)
                        logger.warning(f"{path}: {mismatch}; decoding the file from its start instead")
                    decoded.clear()
                    container.close()
                    container = _open(path, threads)
                    _decode_sequentially(container, container.streams.video[0], timeline, wanted, decoded, path)
            else:
                container.close()  # the packet pass left it at the end; without an exact seek, reopen
                container = _open(path, threads)
                _decode_sequentially(container, container.streams.video[0], timeline, wanted, decoded, path)
        except av.error.FFmpegError as error:
            raise VideoDecodingError(f"cannot decode video {path}: {error}") from error
    finally:
        container.close()
    missing = sorted(wanted - decoded.keys())
    if missing:
        raise VideoDecodingError(
            f"{path}: frame {missing[0]} of the {total} its packets announce could not be decoded "
            f"(the decoder stopped before it; {len(decoded)} of the {len(wanted)} frames asked for were decoded)"
        )
    metadata.frames_indices = indices.tolist()
    return np.stack([decoded[i] for i in indices.tolist()]), metadata


def _open(path: str, threads: int | None):
    """Open `path` with PyAV, its first video stream set to decode with `threads` threads."""
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VideoDecodingError(f"cannot open video {path}: {error}") from error
    if not container.streams.video:
        container.close()
        raise VideoDecodingError(f"no video stream in {path}")
    if container.format.name in ("image2", "image2pipe") or container.format.name.endswith("_pipe"):  # jpeg_pipe, ...
        container.close()
        raise VideoDecodingError(f"{path} is a still image ({container.format.name}), not a video")
    _set_decoder_threads(container.streams.video[0], threads)
    return container


def _check_indices(indices: np.ndarray, total: int, path: str) -> None:
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"sample_indices_fn must return a non-empty 1-D array of integer frame indices for {path}, "
            f"got shape {indices.shape} and dtype {indices.dtype}"
        )
    if indices.min() < 0 or indices.max() >= total:
        raise ValueError(
            f"sample_indices_fn asked for frame {int(indices.max() if indices.max() >= total else indices.min())} "
            f"of {path}, which has frames 0 to {total - 1}"
        )


class _NotTheFrameAsked(Exception):
    """A seek landed after the keyframe asked for, or the decoder returned another frame than the one due."""


class _Timeline:
    """
    The frames a video presents, from one pass over its packets (nothing is decoded).

    `presented`: `(count,)` ascending timestamps of the presented frames (packets that the decoder discards, such
    as the pre-roll before an edit list's start, are left out); `keyframes`: ascending timestamps of the keyframe
    packets, discarded ones included (decoding may start there). Both are None when the packets lack timestamps or
    repeat one: then frames can only be counted from the start.
    """

    def __init__(self, count: int, presented: np.ndarray | None, keyframes: np.ndarray | None):
        self.count, self.presented, self.keyframes = count, presented, keyframes

    @classmethod
    def read(cls, container, stream) -> _Timeline:
        presented, keyframes, timed = [], [], True
        for packet in container.demux(stream):
            if not packet.size:
                continue  # the empty packets at the end, which flush a decoder
            pts = packet.pts
            timed = timed and pts is not None
            if packet.is_keyframe and pts is not None:
                keyframes.append(pts)
            if not packet.is_discard:
                presented.append(pts)
        if timed:
            presented_pts = np.sort(np.asarray(presented, dtype=np.int64))  # (count,)
            if presented_pts.size and np.all(np.diff(presented_pts) > 0) and keyframes:
                return cls(len(presented), presented_pts, np.sort(np.asarray(keyframes, dtype=np.int64)))
        return cls(len(presented), None, None)

    def seekable(self, container) -> bool:
        """Whether frames can be reached by seeking: timestamps, an indexed container, no frame before the first
        keyframe (what a decoder does with those is its own choice, so only a decode from the start can say)."""
        return (
            self.presented is not None
            and container.format.name in EXACT_SEEK_FORMATS
            and self.keyframes[0] <= self.presented[0]
        )


def _decode_seeking(container, stream, timeline: _Timeline, wanted: set[int], decoded: dict[int, np.ndarray]) -> None:
    """
    Fill `decoded` with the RGB frames whose indices are in `wanted`, decoding as little as possible.

    Frames are decoded in order up to the last one wanted, and only the wanted ones are converted to RGB. Where a
    keyframe lies between the last decoded frame and the next wanted one, the decoder jumps to that keyframe, so
    long gaps between sampled frames are skipped.

    Raises:
        _NotTheFrameAsked: a seek or a decoded frame was not the one expected (see `_frames_after_seek`).
    """
    presented, keyframes = timeline.presented, timeline.keyframes
    position, frames = -1, None  # the index of the last frame decoded; (index, frame) pairs since the last seek
    for target in sorted(wanted):
        if target <= position:
            continue
        key_pts = int(keyframes[np.searchsorted(keyframes, presented[target], side="right") - 1])
        first = int(np.searchsorted(presented, key_pts))  # the first frame presented from that keyframe on
        if frames is None or first > position + 1:  # jump over the gap to the keyframe before the target
            frames = _frames_after_seek(container, stream, presented, key_pts)
        for position, frame in frames:
            if position in wanted:  # convert to RGB only the frames kept
                decoded[position] = frame.to_ndarray(format="rgb24")
            if position >= target:
                break
        else:
            raise _NotTheFrameAsked(f"the decoder ended before frame {target}")


def _frames_after_seek(container, stream, presented: np.ndarray, key_pts: int):
    """
    Seek to the keyframe at `key_pts` and yield `(index, frame)` for every frame decoded from there on.

    The seek must land on that keyframe or an earlier one (decoding on from an earlier one is exact, only slower).
    Frames presented before the keyframe they were decoded after (the leading pictures of an open GOP, which need
    frames before the seek) are dropped; every other frame must carry the timestamp of the next presented frame.

    Raises:
        _NotTheFrameAsked: the seek landed after the keyframe, or not on a keyframe, or a frame was not the one due.
    """
    container.seek(key_pts, stream=stream, backward=True, any_frame=False)
    packets = container.demux(stream)
    landing = next((packet for packet in packets if packet.size), None)
    if landing is None or not landing.is_keyframe or landing.pts is None or landing.pts > key_pts:
        where = (
            "the end" if landing is None else f"a {'key' if landing.is_keyframe else 'non-key'}frame at {landing.pts}"
        )
        raise _NotTheFrameAsked(f"a seek to the keyframe at timestamp {key_pts} landed on {where}")
    due = int(np.searchsorted(presented, landing.pts))  # the index of the next frame to come
    for packet in itertools.chain((landing,), packets):
        for frame in packet.decode():
            if frame.pts is not None and frame.pts < landing.pts:
                continue
            if due >= len(presented) or frame.pts != presented[due]:
                expected = presented[due] if due < len(presented) else "none"
                raise _NotTheFrameAsked(f"the decoder returned the frame at {frame.pts} where {expected} was due")
            yield due, frame
            due += 1


def _decode_sequentially(
    container, stream, timeline: _Timeline, wanted: set[int], decoded: dict[int, np.ndarray], path: str
) -> None:
    """
    Decode from the start of a freshly opened container up to the last frame in `wanted`, frame i being the i-th
    that the decoder returns (the reference that the seeking path follows). Where the timestamps of the packets
    do not match the frames decoded, the frames are still counted as decoded, with a warning once per file.
    """
    last, presented = max(wanted), timeline.presented
    for index, frame in enumerate(container.decode(stream)):
        if presented is not None and path not in _warned_paths:
            if index >= len(presented) or frame.pts != presented[index]:
                _warned_paths.add(path)
                logger.warning(
                    f"{path}: the decoder's frame {index} (timestamp {frame.pts}) is not the one its packets "
                    f"announce; frames are counted in the order the decoder returns them"
                )
        if index in wanted:
            decoded[index] = frame.to_ndarray(format="rgb24")
        if index >= last:
            return


def _set_decoder_threads(stream, threads: int | None) -> None:
    """
    Set the decoder's thread count: `threads` when given; otherwise, in a DataLoader worker, the worker's share of
    the cores (cores // workers, at least 1) instead of FFmpeg's default of one thread per core, which with one
    threaded decoder per worker would oversubscribe the machine. The main process keeps FFmpeg's default.
    """
    if threads is None:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        if info is None:
            return
        threads = max(1, (os.cpu_count() or 1) // info.num_workers)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    stream.codec_context.thread_count = threads
