"""Video input: decode, sample and transform 8 frames, against torchcodec's batched frame access on the same files;
DataLoader workers; and the pipeline's time per video.

    python benchmarks/video_input.py                 # needs torchcodec (pip) and FFmpeg's libraries (apt) for
                                                     # the comparison; the rest runs without them

Files: 10 s clips at 30 fps, 320x240 and 640x360, a keyframe every 250 and every 30 frames (H.264, written here).
Cases per file, interleaved, medians:
- ours: `SfarVideoProcessor` (PyAV: one pass over the packets for the frames' timestamps, decode up to the last
  needed frame, jump over gaps to the keyframe before a far target, check the seek's landing and every frame's
  timestamp, RGB only for the frames kept) + TSN sampling + resize/crop/normalise;
- ours, decode only: `read_video_pyav` with the same 8 indices;
- torchcodec: `VideoDecoder(path).get_frames_at(indices)` (decode only, no transform);
- the previous decoder (every frame from the start up to the last one needed), as the baseline of the seeking.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.harness import interleaved, write_report  # noqa: E402
from modeling_sfar import SfarVideoProcessor, read_video_pyav, tsn_frame_indices  # noqa: E402
from modeling_sfar.data.video_io import write_frames  # noqa: E402


def make_clip(path: str, width: int, height: int, keyframe_interval: int, seconds: int = 10, fps: int = 30) -> str:
    """A moving gradient with noise (so that the encoder has work to do) as H.264."""
    count = seconds * fps
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for t in range(count):
        base = (x + y + 4 * t) % 256
        frames[t] = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    return write_frames(path, frames, fps=fps, keyframe_interval=keyframe_interval)


def sequential_decode(path: str, indices: np.ndarray) -> np.ndarray:
    """The previous decoder: every frame from the start up to the last index, RGB for the kept ones."""
    import av

    wanted, out = set(indices.tolist()), {}
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= indices.max():
                break
    return np.stack([out[i] for i in indices.tolist()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/bench")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loader_videos", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)  # decoding is single-threaded per video; the workers are the parallelism
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as error:  # not installed, or FFmpeg's libraries missing
        VideoDecoder = None
        print(f"torchcodec unavailable ({type(error).__name__}: {str(error)[:120]}); its rows are left out")
    processor = SfarVideoProcessor(num_frames=8)
    rows = []
    indices = tsn_frame_indices(300, 8)  # 10 s at 30 fps, 8 segment centres
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in ((320, 240), (640, 360)):
            for keyframe_interval in (250, 30):
                path = make_clip(os.path.join(tmp, f"{width}x{height}-g{keyframe_interval}.mp4"), width, height,
                                 keyframe_interval)  # fmt: skip
                cases = {
                    "previous decoder (from the start)": lambda p=path: sequential_decode(p, indices),
                    "ours, decode only": lambda p=path: read_video_pyav(p, lambda metadata: indices),
                    "ours, decode + sample + transform": lambda p=path: processor(videos=p),
                }
                if VideoDecoder is not None:
                    cases["torchcodec get_frames_at"] = lambda p=path: VideoDecoder(p).get_frames_at(
                        indices.tolist()
                    )  # fmt: skip
                np.testing.assert_array_equal(
                    sequential_decode(path, indices), read_video_pyav(path, lambda metadata: indices)[0]
                )
                times = interleaved(cases, repeats=args.repeats)
                base = times["previous decoder (from the start)"]["median_s"]
                codec = times.get("torchcodec get_frames_at", {}).get("median_s")
                for name, measured in times.items():
                    rows.append({
                        "section": "8 frames from a 10 s clip", "size": f"{width}x{height}",
                        "keyframe every": keyframe_interval, "case": name, "ms": 1000 * measured["median_s"],
                        "speed-up vs previous": base / measured["median_s"],
                        "time / torchcodec": measured["median_s"] / codec if codec else None,
                    })  # fmt: skip

        # DataLoader workers: videos per second of processor output. With one FFmpeg thread per decode the workers
        # are the only parallelism (their scaling); by default a decode gets its share of the cores (cores //
        # workers), so a single worker already uses the idle core and a second one adds less.
        path = os.path.join(tmp, "640x360-g250.mp4")
        paths = [path] * args.loader_videos
        one_thread = SfarVideoProcessor(num_frames=8, decode_threads=1)

        class Videos(torch.utils.data.Dataset):
            def __init__(self, video_processor):
                self.video_processor = video_processor

            def __len__(self):
                return len(paths)

            def __getitem__(self, i):
                return self.video_processor(videos=paths[i], return_tensors="pt")["pixel_values"][0]

        def load(video_processor, workers: int):
            loader = torch.utils.data.DataLoader(Videos(video_processor), batch_size=4, num_workers=workers)
            for _ in loader:
                pass

        settings = {"one decoder thread each": (one_thread, (1, 2)), "default decoder threads": (processor, (0, 1, 2))}
        cases = {
            f"{w} worker(s), {threads}": (lambda p=video_processor, w=w: load(p, w))
            for threads, (video_processor, workers) in settings.items()
            for w in workers
        }
        times = interleaved(cases, repeats=max(2, args.repeats // 2))
        for threads, (_, workers) in settings.items():
            base = times[f"1 worker(s), {threads}"]["median_s"]
            for w in workers:
                measured = times[f"{w} worker(s), {threads}"]
                rows.append({
                    "section": "DataLoader, 640x360 keyframe every 250, 8 frames, batch 4",
                    "workers": f"{w} worker(s), {threads}", "videos/s": args.loader_videos / measured["median_s"],
                    "speed-up vs 1 worker (same threads)": base / measured["median_s"],
                })  # fmt: skip

        # the pipeline's time per video, on a tiny model (the decode + transform share; the model's own cost is
        # in model_speed.py)
        from transformers import pipeline

        from modeling_sfar import convert_clip_to_sfar
        from modeling_sfar.testing_utils import build_tiny_clip

        labels = [f"class {i}" for i in range(10)]
        subtexts = {label: [f"step {j} of {label}" for j in range(4)] for label in labels}
        model, proc = convert_clip_to_sfar(build_tiny_clip(os.path.join(tmp, "clip"), image_size=224, patch_size=32),
                                           labels, subtexts, num_frames=8)  # fmt: skip
        model.save_pretrained(os.path.join(tmp, "model"))
        proc.save_pretrained(os.path.join(tmp, "model"))
        classifier = pipeline("video-classification", model=os.path.join(tmp, "model"), trust_remote_code=True)
        measured = interleaved({"pipeline": lambda: classifier(path)}, repeats=args.repeats)["pipeline"]["median_s"]
        decode = [r for r in rows if r.get("case") == "ours, decode + sample + transform" and r["size"] == "640x360"
                  and r["keyframe every"] == 250][0]["ms"]  # fmt: skip
        rows.append({
            "section": "pipeline, 640x360 keyframe every 250, tiny model", "ms per video": 1000 * measured,
            "of which decode + transform (ms)": decode,
        })  # fmt: skip
    path = write_report(args.output_dir, "video_input", "Video input: decoding, loading, pipeline", rows,
                        notes="Medians of interleaved repeats; torch threads 1.")  # fmt: skip
    print(path.read_text())


if __name__ == "__main__":
    main()
