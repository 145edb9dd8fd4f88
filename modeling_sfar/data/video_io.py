"""Writing videos with PyAV (reading is `read_video_pyav` in the shipped `video_decoding.py`)."""

from __future__ import annotations

import os

__all__ = ["write_frames"]


def write_frames(path: str | os.PathLike, frames, fps: int = 8, keyframe_interval: int | None = None) -> str:
    """Write `frames` (T, H, W, 3) uint8 as an mp4 (H.264 where available, else MPEG-4) with PyAV; a keyframe every
    `keyframe_interval` frames exactly (no scene-cut keyframes) when given."""
    import av

    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}  # near-lossless: small shapes keep their edges
        if keyframe_interval:
            stream.codec_context.gop_size = keyframe_interval
            stream.options = {**stream.options, "g": str(keyframe_interval), "keyint_min": str(keyframe_interval),
                              "sc_threshold": "0", "x264-params": "scenecut=0"}  # fmt: skip
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return os.fspath(path)
