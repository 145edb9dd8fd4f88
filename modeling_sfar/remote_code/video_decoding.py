"""Frame-exact video decoding with PyAV: frame i of a file is the i-th frame a player presents, whatever the container
and the frame timing, and it comes out as the player shows it, turned and mirrored by the file's display matrix
(docs/video_decoding.md).

`read_video_pyav(path, sample_indices_fn)` decodes only the frames asked for, seeking where the container indexes its
keyframes and checking every seek and frame against one pass over the packets; any doubt falls back to decoding from
the start. Errors name the file and the reason (`VideoDecodingError`).

This file is shipped to the Hub as remote code: PyAV is imported only when a file is decoded.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

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
# Files already warned about their display matrix (not a quarter turn or mirror, or not the same on every frame).
_warned_orientation_paths: set[str] = set()
# Keyframes decoded, at most, to find the display matrix of a file (where one does not yield a frame, the next may).
_ORIENTATION_PROBES = 3


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

    Frames come out as a player shows them: turned by quarter turns and mirrored as the display matrix of the
    video says (a phone's portrait video is returned upright and tall), whether the container (MP4/MOV, Matroska)
    or the video stream (H.264's display orientation message) carries it. The matrix is the one FFmpeg attaches to
    the first frame, found by decoding one keyframe during the packet pass, and it applies to every frame of the
    file. A matrix that is not a multiple of 90 degrees turns the frames by the nearest multiple instead (exactly
    halfway, the smaller turn), with a warning once per file.

    Returns:
        `(len(indices), H, W, 3)` uint8 RGB frames as displayed, in the order of the indices (repeats allowed), and
        the metadata, whose `width` and `height` are those of the displayed frames.

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
        _warn_about_orientation(timeline, path)
        fps = float(stream.average_rate) if stream.average_rate else None
        width, height = timeline.orientation.displayed_size(stream.codec_context.width, stream.codec_context.height)
        metadata = VideoMetadata(
            total_num_frames=total,
            fps=fps,
            width=width,
            height=height,
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
    The frames a video presents, from one pass over its packets, and how they are displayed.

    `presented`: `(count,)` ascending timestamps of the presented frames (packets that the decoder discards, such
    as the pre-roll before an edit list's start, are left out); `keyframes`: ascending timestamps of the keyframe
    packets, discarded ones included (decoding may start there). Both are None when the packets lack timestamps or
    repeat one: then frames can only be counted from the start. `matrix`: the display matrix of the first frame
    (`(a, b, c, d)`, see `_Orientation`), None without one; `orientation`: how every frame is turned for display;
    `rotation`: PyAV's angle of that matrix (`frame.rotation`), which later frames are compared with.
    """

    def __init__(
        self,
        count: int,
        presented: np.ndarray | None,
        keyframes: np.ndarray | None,
        matrix: tuple[int, int, int, int] | None = None,
        rotation: int = 0,
    ):
        self.count, self.presented, self.keyframes = count, presented, keyframes
        self.matrix, self.orientation, self.rotation = matrix, _Orientation.of(matrix), rotation

    @classmethod
    def read(cls, container, stream) -> _Timeline:
        """Demux every packet of `stream`; decode one keyframe on the way, for the display matrix (the container's
        matrix reaches the frames through the decoder, so a frame is the one place where FFmpeg has resolved it)."""
        presented, keyframes, timed = [], [], True
        matrix, rotation, probes = None, 0, _ORIENTATION_PROBES
        for packet in container.demux(stream):
            if not packet.size:
                continue  # the empty packets at the end, which flush a decoder
            pts = packet.pts
            timed = timed and pts is not None
            if packet.is_keyframe and pts is not None:
                keyframes.append(pts)
            if not packet.is_discard:
                presented.append(pts)
                if probes and packet.is_keyframe:
                    found, matrix, rotation = _probe_display_matrix(stream, packet)
                    probes = 0 if found else probes - 1
        if timed:
            presented_pts = np.sort(np.asarray(presented, dtype=np.int64))  # (count,)
            if presented_pts.size and np.all(np.diff(presented_pts) > 0) and keyframes:
                keyframe_pts = np.sort(np.asarray(keyframes, dtype=np.int64))
                return cls(len(presented), presented_pts, keyframe_pts, matrix, rotation)
        return cls(len(presented), None, None, matrix, rotation)

    def seekable(self, container) -> bool:
        """Whether frames can be reached by seeking: timestamps, an indexed container, no frame before the first
        keyframe (what a decoder does with those is its own choice, so only a decode from the start can say)."""
        return (
            self.presented is not None
            and container.format.name in EXACT_SEEK_FORMATS
            and self.keyframes[0] <= self.presented[0]
        )

    def check_matrix(self, frame, path: str) -> None:
        """
        Warn (once per file) where a decoded frame is turned otherwise than the first frame: every frame is still
        turned like the first (the frames of a video share one size).

        Only the turn is compared, through PyAV's `frame.rotation` (0 for a frame without a matrix, as after an
        orientation message that only the first frame carries). `frame.side_data` is not read here: it ties the
        frame and its side data into a reference cycle, which would keep every converted frame, with its
        threaded RGB converter, alive until the garbage collector runs, and a DataLoader worker forked meanwhile
        hangs when it collects one.
        """
        rotation = frame.rotation
        if rotation not in (0, self.rotation) and path not in _warned_orientation_paths:
            _warned_orientation_paths.add(path)
            logger.warning(
                f"{path}: the frame at timestamp {frame.pts} is turned by {rotation} degrees, the first frame by "
                f"{self.rotation} (FFmpeg's counter-clockwise angles); every frame is shown as the first one, "
                f"{self.orientation.describe()}"
            )

    def picture(self, frame) -> np.ndarray:
        """`(H, W, 3)` uint8 RGB of a decoded frame, as displayed."""
        return self.orientation.apply(frame.to_ndarray(format="rgb24"))


def _probe_display_matrix(stream, packet) -> tuple[bool, tuple[int, int, int, int] | None, int]:
    """
    Decode the keyframe `packet` alone and return whether it gave a frame, that frame's display matrix and PyAV's
    `rotation` of it.

    The decoder is drained (it may hold a frame back for reordering) and then reset, so decoding later starts
    afresh, as after a seek. A packet that fails to decode gives no frame. The frame is never converted to RGB
    (reading its side data ties it into a reference cycle: it must not hold a converter, see `check_matrix`).
    """
    import av

    try:
        frames = stream.decode(packet) or stream.decode(None)
    except av.error.FFmpegError:
        frames = []
    stream.codec_context.flush_buffers()
    if not frames:
        return False, None, 0
    return True, _display_matrix(frames[0]), frames[0].rotation


def _display_matrix(frame) -> tuple[int, int, int, int] | None:
    """The `(a, b, c, d)` entries (16.16 fixed point) of the display matrix that FFmpeg attached to `frame`."""
    from av.sidedata.sidedata import Type

    side_data = frame.side_data.get(Type.DISPLAYMATRIX)
    if side_data is None:
        return None
    a, b, _, c, d = np.frombuffer(bytes(side_data), dtype=np.int32)[:5].tolist()  # row-major 3 x 3, native order
    return a, b, c, d


@dataclass(frozen=True)
class _Orientation:
    """
    How a stored picture becomes the displayed one: `turns` quarter turns counter-clockwise, then mirrored left to
    right if `mirrored` (which with the turns gives all eight: the upside-down mirror is two turns and a mirror).

    FFmpeg's display matrix (libavutil/display.h) maps the pixel in column p, row q of the stored picture to column
    a * p + c * q, row b * p + d * q of the displayed one (rows counted downwards; the translation only moves the
    picture back into view). A quarter turn or a mirror has one non-zero entry per row: a and d (no turn, or a half
    turn), or b and c (a quarter turn: rows become columns).
    """

    turns: int = 0
    mirrored: bool = False
    exact: bool = True  # whether the matrix was this orientation; otherwise the nearest to it
    degrees: float = 0.0  # the matrix's own counter-clockwise angle (for the mirrored ones, before the mirror)

    @classmethod
    def of(cls, matrix: tuple[int, int, int, int] | None) -> _Orientation:
        """The orientation of a display matrix `(a, b, c, d)`, or the nearest quarter turn (and mirror) to it."""
        if matrix is None:
            return cls()
        a, b, c, d = matrix
        determinant = a * d - b * c
        if determinant == 0:  # the picture collapses to a line or a point: not a display transform, shown as stored
            return cls(exact=False, degrees=math.nan)
        mirrored = determinant < 0
        if mirrored:  # undo the mirror (which negates the column of a and c) to read the turn
            a, c = -a, -c
        degrees = math.degrees(math.atan2(-b, a))  # counter-clockwise, in (-180, 180]
        quarters = round(degrees / 90, 6)  # to the precision of the 16.16 entries, so that halfway is halfway
        turns = int(math.copysign(math.ceil(abs(quarters) - 0.5), quarters))  # the nearest; halfway: the smaller
        exact = (b == 0 and c == 0) if turns % 2 == 0 else (a == 0 and d == 0)
        return cls(turns % 4, mirrored, exact, degrees)

    def displayed_size(self, width: int, height: int) -> tuple[int, int]:
        """`(width, height)` of a displayed frame whose stored picture is `width` x `height`."""
        return (height, width) if self.turns % 2 else (width, height)

    def apply(self, picture: np.ndarray) -> np.ndarray:
        """The displayed `(H', W', 3)` view of a stored `(H, W, 3)` picture (no copy)."""
        picture = np.rot90(picture, self.turns)  # counter-clockwise, as displayed (rows counted downwards)
        return picture[:, ::-1] if self.mirrored else picture

    def describe(self) -> str:
        """In words, for messages: "turned 90 degrees clockwise, then mirrored left to right"."""
        turned = (
            "unturned",
            "turned 90 degrees counter-clockwise",
            "turned 180 degrees",
            "turned 90 degrees clockwise",
        )
        return turned[self.turns] + (", then mirrored left to right" if self.mirrored else "")


def _warn_about_orientation(timeline: _Timeline, path: str) -> None:
    """Once per file: a display matrix that is not a quarter turn or mirror, and what is done instead."""
    orientation = timeline.orientation
    if orientation.exact or path in _warned_orientation_paths:
        return
    _warned_orientation_paths.add(path)
    if math.isnan(orientation.degrees):
        what = "collapses the picture (its determinant is 0: not a display transform); its frames are shown as stored"
    else:
        what = (
            f"turns the picture by {orientation.degrees:.1f} degrees, not a multiple of 90; its frames are shown "
            f"{orientation.describe()}, the nearest quarter turn"
        )
    logger.warning(f"{path}: the display matrix {timeline.matrix} {what}")


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
            timeline.check_matrix(frame, container.name)
            if position in wanted:  # convert to RGB only the frames kept
                decoded[position] = timeline.picture(frame)
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
        timeline.check_matrix(frame, path)
        if index in wanted:
            decoded[index] = timeline.picture(frame)
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
