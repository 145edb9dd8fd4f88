"""TSN sampling, PyAV decoding, training and evaluation transforms, multi-view testing, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_sfar import SfarVideoProcessor, VideoDecodingError, read_video_pyav, tsn_frame_indices
from modeling_sfar.testing_utils import write_video


def test_tsn_evaluation_takes_segment_centres():
    np.testing.assert_array_equal(tsn_frame_indices(80, 8), [5, 15, 25, 35, 45, 55, 65, 75])


def test_tsn_multi_clip_spreads_offsets_evenly():
    indices = tsn_frame_indices(80, 4, num_clips=2).reshape(2, 4)
    np.testing.assert_array_equal(indices, [[5, 25, 45, 65], [15, 35, 55, 75]])


def test_tsn_training_draws_one_frame_per_segment():
    rng = np.random.default_rng(0)
    draws = np.stack([tsn_frame_indices(80, 8, training=True, generator=rng) for _ in range(200)])
    segments = draws // 10
    np.testing.assert_array_equal(segments, np.tile(np.arange(8), (200, 1)))  # always inside its own segment
    assert len(np.unique(draws[:, 0])) == 10  # and anywhere in it


def test_short_video_repeats_frames():
    indices = tsn_frame_indices(3, 8)
    assert len(indices) == 8 and set(indices) == {0, 1, 2} and list(indices) == sorted(indices)


def test_pyav_decodes_only_the_requested_frames_in_order(tmp_path):
    path = write_video(tmp_path / "v.mp4", num_frames=10)
    everything, metadata = read_video_pyav(path)
    assert everything.shape == (10, 48, 64, 3) and metadata.total_num_frames == 10
    some, _ = read_video_pyav(path, lambda metadata: np.array([7, 2, 2]))
    np.testing.assert_array_equal(some, everything[[7, 2, 2]])


@pytest.mark.parametrize("keyframe_interval", [30, 250])
def test_seeking_past_gaps_gives_the_frames_of_a_full_decode(tmp_path, keyframe_interval):
    """Decoding jumps to the keyframe before a far target: the frames are still exactly those of a full decode."""
    import av

    from modeling_sfar.data.video_io import write_frames

    frames = np.random.default_rng(0).integers(0, 255, (300, 32, 48, 3), dtype=np.uint8)
    path = write_frames(tmp_path / "v.mp4", frames, fps=30, keyframe_interval=keyframe_interval)
    with av.open(path) as container:
        stream = container.streams.video[0]
        keyframes = sum(packet.is_keyframe for packet in container.demux(stream))
    assert keyframes == -(-300 // keyframe_interval)  # the file has the keyframes the test is about
    everything, _ = read_video_pyav(path)
    for indices in ([0, 37, 75, 112, 150, 187, 225, 262], [5, 299], [299], [280, 3, 3, 150], list(range(0, 300, 41))):
        some, _ = read_video_pyav(path, lambda metadata, indices=indices: np.array(indices))
        np.testing.assert_array_equal(some, everything[indices])


def test_indexed_containers_are_read_by_seeking_not_from_the_start(tmp_path, monkeypatch):
    """The speed of far samples comes from seeking: an MP4 with keyframes every 30 frames must not fall back to a
    decode from the start, and decodes only around the frames asked for."""
    import modeling_sfar.remote_code.video_decoding as video_processing
    from modeling_sfar.data.video_io import write_frames

    frames = np.random.default_rng(0).integers(0, 255, (300, 32, 48, 3), dtype=np.uint8)
    path = write_frames(tmp_path / "v.mp4", frames, fps=30, keyframe_interval=30)
    everything, _ = read_video_pyav(path)

    def refuse(*args):
        raise AssertionError("decoded from the start")

    monkeypatch.setattr(video_processing, "_decode_sequentially", refuse)
    decoded = []
    real_after_seek = video_processing._frames_after_seek

    def counting(*args):
        for pair in real_after_seek(*args):
            decoded.append(pair[0])
            yield pair

    monkeypatch.setattr(video_processing, "_frames_after_seek", counting)
    indices = tsn_frame_indices(300, 8)
    some, _ = read_video_pyav(path, lambda metadata: indices)
    np.testing.assert_array_equal(some, everything[indices])
    assert len(decoded) < 300 // 2  # about 8 half-GOPs, not the whole file


@pytest.fixture(scope="module")
def processor():
    return SfarVideoProcessor(num_frames=4, size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})


def test_evaluation_transform_shape_and_normalisation(processor, video_path):
    pixel_values = processor(video_path, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 4, 3, 32, 32)
    assert pixel_values.dtype == torch.float32
    again = processor(video_path, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixel_values, again)  # evaluation is deterministic
    assert -2.0 < float(pixel_values.min()) and float(pixel_values.max()) < 2.3  # CLIP mean/std applied


def test_training_transform_is_random_and_keeps_shape(processor, video_path):
    from modeling_sfar.training.augmentation import VideoAugmentation

    torch.manual_seed(0)
    draws = [VideoAugmentation(processor)(video_path) for _ in range(4)]
    assert all(d.shape == (4, 3, 32, 32) for d in draws)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    # the processor itself is for inference: it has no training mode
    with pytest.raises(TypeError, match="unexpected keyword argument 'training'"):
        processor(video_path, training=True)


def test_training_crop_and_flip_are_shared_by_all_frames(processor, tmp_path):
    path = write_video(tmp_path / "still.mp4", num_frames=8)
    # a video whose frames are identical stays identical frame to frame after augmentation
    import av

    frames, _ = read_video_pyav(path)
    still = tmp_path / "same.mp4"
    with av.open(str(still), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frames[0], format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    from modeling_sfar.training.augmentation import VideoAugmentation

    torch.manual_seed(1)
    for _ in range(3):
        x = VideoAugmentation(processor)(str(still))
        for t in range(1, 4):
            torch.testing.assert_close(x[t], x[0], atol=0.15, rtol=0)


def test_multi_view_adds_a_view_axis(processor, video_path):
    pixel_values = processor([video_path, video_path], num_clips=2, num_crops=3, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (2, 6, 4, 3, 32, 32)


def test_processor_accepts_decoded_videos(processor):
    video = np.random.default_rng(0).integers(0, 255, size=(20, 48, 64, 3), dtype=np.uint8)
    assert processor(video, return_tensors="pt")["pixel_values"].shape == (1, 4, 3, 32, 32)


def test_missing_file_is_named(processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mp4"):
        processor(str(tmp_path / "nothere.mp4"))


def test_empty_file_is_named(processor, tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoDecodingError, match="video file is empty: .*empty.mp4"):
        processor(str(path))


def test_corrupt_file_is_named(processor, tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoDecodingError, match="corrupt.mp4"):
        processor(str(path))


def test_bad_files_raise_video_decoding_errors_naming_them(processor, tmp_path):
    """Every file that cannot deliver frames raises a VideoDecodingError (a ValueError), which names the file and
    says why; a path where nothing exists stays a FileNotFoundError."""
    import av
    from PIL import Image

    folder = tmp_path / "videos.mp4"
    folder.mkdir()
    with pytest.raises(VideoDecodingError, match=f"{folder} is a directory, not a video file"):
        processor(str(folder))
    image = tmp_path / "frame.mp4"  # a JPEG named like a video
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(image, format="JPEG")
    with pytest.raises(VideoDecodingError, match=r"frame.mp4 is a still image \(jpeg_pipe\), not a video"):
        processor(str(image))
    audio = tmp_path / "audio.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        silence.sample_rate = 8000
        container.mux(stream.encode(silence))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodingError, match="audio.wav"):
        read_video_pyav(audio)
    assert issubclass(VideoDecodingError, ValueError) and not issubclass(FileNotFoundError, VideoDecodingError)


def test_zero_frames_or_clips_blame_the_argument_not_the_video(processor, video_path):
    for kwargs, name in (({"num_clips": 0}, "num_clips"), ({"num_frames": 0}, "num_frames")):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer, got 0") as error:
            processor(video_path, **kwargs)
        assert not isinstance(error.value, VideoDecodingError)  # the video is fine


def test_indices_outside_the_video_blame_the_sampler(video_path):
    for indices, match in (([0, 12], "asked for frame 12 of .*clip.mp4, which has frames 0 to 11"), ([], "empty")):
        with pytest.raises(ValueError, match=match.replace("empty", "non-empty")) as error:
            read_video_pyav(video_path, lambda metadata, indices=indices: np.array(indices, dtype=np.int64))
        assert not isinstance(error.value, VideoDecodingError)


def test_processor_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = SfarVideoProcessor.from_pretrained(tmp_path)
    assert loaded.num_frames == 4 and loaded.crop_size == processor.crop_size


def test_training_settings_are_not_saved_and_old_configs_with_them_load(processor, video_path, tmp_path):
    """The saved processor is for inference: the training mode's settings are the training code's (issue 14)."""
    import json

    trained = SfarVideoProcessor(num_frames=4, size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})
    trained.flip_probability, trained.crop_area_min = 0.0, 0.6  # as train.py once set them
    trained.save_pretrained(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "video_preprocessor_config.json").read_text())
    assert not set(SfarVideoProcessor.legacy_training_settings) & set(saved), saved
    assert saved["num_frames"] == 4 and saved["crop_size"] == {"height": 32, "width": 32}

    # a repo saved before: its processor config holds the training settings; it loads, and evaluates as before
    old = {**saved, "training": False, "flip_probability": 0.0, "crop_area_min": 0.6, "grayscale_probability": 0.2}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "video_preprocessor_config.json").write_text(json.dumps(old))
    loaded = SfarVideoProcessor.from_pretrained(tmp_path / "old")
    assert loaded.flip_probability == 0.0 and loaded.crop_area_min == 0.6
    torch.testing.assert_close(loaded(video_path)["pixel_values"], processor(video_path)["pixel_values"])
    loaded.save_pretrained(tmp_path / "resaved")  # and saving it again drops them
    resaved = json.loads((tmp_path / "resaved" / "video_preprocessor_config.json").read_text())
    assert not set(SfarVideoProcessor.legacy_training_settings) & set(resaved)


def test_the_training_transform_carries_the_augmentation_not_the_processor(processor, video_path):
    from modeling_sfar.data.transform import VideoTransform
    from modeling_sfar.training.augmentation import VideoAugmentation

    def load(**settings):
        augmentation = VideoAugmentation(processor, **settings)
        transform = VideoTransform(processor, num_classes=2, multi_label=False, augmentation=augmentation, seed=3)
        return transform.load(video_path, index=0)

    never, always = load(flip_probability=0.0), load(flip_probability=1.0)
    torch.testing.assert_close(always, never.flip(-1))  # the same draws, mirrored
    assert not hasattr(processor, "flip_probability")  # the processor holds no training setting
    torch.testing.assert_close(load(), load())  # defaults: BIKE's, seeded by the row
    evaluation = VideoTransform(processor, num_classes=2, multi_label=False)
    torch.testing.assert_close(evaluation.load(video_path, 0), processor(video_path)["pixel_values"][0])


def test_dataloader_workers_decode_the_same_frames(tmp_path):
    """Workers decode with their share of the cores (fewer FFmpeg threads): the frames are the same."""
    path = write_video(tmp_path / "v.mp4", num_frames=24)
    expected, _ = read_video_pyav(path, lambda metadata: np.array([1, 9, 17, 23]))

    class Videos(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.from_numpy(read_video_pyav(path, lambda metadata: np.array([1, 9, 17, 23]))[0])

    for frames in torch.utils.data.DataLoader(Videos(), batch_size=2, num_workers=2):
        for video in frames:
            np.testing.assert_array_equal(video.numpy(), expected)


def test_decode_threads_are_set_saved_and_checked(tmp_path, monkeypatch):
    import av

    import modeling_sfar.remote_code.video_decoding as video_processing

    path = write_video(tmp_path / "v.mp4", num_frames=24)
    threads = []
    decode = video_processing._decode_seeking

    def spy(container, stream, *args):
        threads.append(stream.codec_context.thread_count)
        return decode(container, stream, *args)

    monkeypatch.setattr(video_processing, "_decode_seeking", spy)
    processor = SfarVideoProcessor(num_frames=4, decode_threads=1)
    processor.save_pretrained(tmp_path / "processor")
    loaded = SfarVideoProcessor.from_pretrained(tmp_path / "processor")
    assert loaded.decode_threads == 1
    one_thread = loaded(path)["pixel_values"]
    default = SfarVideoProcessor(num_frames=4)(path)["pixel_values"]
    # not set: FFmpeg's own default, which an opened decoder reports as the count it chose (one per core, plus one;
    # the reader has opened it by then, decoding a keyframe for the display matrix)
    with av.open(path) as container:
        untouched = container.streams.video[0]
        next(container.decode(untouched))
        ffmpeg_default = untouched.codec_context.thread_count
    assert threads == [1, ffmpeg_default]
    torch.testing.assert_close(one_thread, default, rtol=0, atol=0)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        read_video_pyav(path, threads=0)
