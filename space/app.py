"""A Gradio app for a Hub Space: upload or pick a video, get SFAR's top-5 actions and the frames that mattered.

    SFAR_MODEL=org/sfar-vitb16 python app.py          # SFAR_MODEL may also be a local folder

The model is loaded with its own remote code (`trust_remote_code=True`), so the app needs only torch, transformers,
PyAV, matplotlib and gradio. Typed class names (with optional sub-texts) replace the label set for zero-shot use.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import torch
from transformers import AutoModelForVideoClassification, AutoProcessor

try:  # the Space's repo: a copy of the library's plots.py, staged beside this file by `push_to_hub.py space`
    from plots import denormalize, frame_weight_picture
except ImportError:  # a clone of the project
    from modeling_sfar.plots import denormalize, frame_weight_picture

MODEL = os.environ.get("SFAR_MODEL", "org/sfar-vitb16")
REVISION = os.environ.get("SFAR_REVISION") or None
EXAMPLES = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.mp4"))


class Classifier:
    """The model and its processor, and the label set it holds (the trained one, or the last one typed)."""

    def __init__(self, model: str, revision: str | None = None):
        self.model = AutoModelForVideoClassification.from_pretrained(
            model, revision=revision, trust_remote_code=True, use_safetensors=True
        ).eval()
        self.processor = AutoProcessor.from_pretrained(model, revision=revision, trust_remote_code=True)
        config = self.model.config
        self.trained = ([config.id2label[i] for i in range(len(config.id2label))], dict(config.subtexts or {}))
        self.current = ""

    def use_label_set(self, text: str) -> None:
        """Switch to the typed label set (empty text: the trained one); the text tower encodes it once."""
        text = text.strip()
        if text == self.current:
            return
        labels, subtexts = parse_label_set(text) if text else self.trained
        self.model.set_label_set(labels, self.processor.tokenizer, subtexts or None)
        self.current = text

    @torch.no_grad()
    def __call__(self, video: str, label_text: str = "", top_k: int = 5):
        self.use_label_set(label_text)
        inputs = self.processor(videos=video)
        out = self.model(**inputs)
        scores = out.logits[0].softmax(-1)
        top = scores.topk(min(top_k, scores.numel()))
        id2label = self.model.config.id2label
        result = {id2label[int(i)]: float(s) for s, i in zip(top.values, top.indices, strict=True)}
        best = int(top.indices[0])

        def weights(tensor):
            return None if tensor is None else tensor[0, best].tolist()

        frames = denormalize(inputs["pixel_values"][0], self.processor.video_processor)
        picture = frame_weight_picture(frames, weights(out.coarse_frame_weights), weights(out.fine_frame_weights),
                                       id2label[best])  # fmt: skip
        return result, picture


def parse_label_set(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """`class: sub-text; sub-text` per line (sub-texts optional) -> labels and their sub-texts."""
    labels, subtexts = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, _, rest = line.partition(":")
        name = name.strip()
        if not name:
            raise gr.Error(f"line {number}: a class name is missing before ':'")
        if name in subtexts:
            raise gr.Error(f"line {number}: class {name!r} is listed twice")
        labels.append(name)
        subtexts[name] = [s.strip() for s in rest.split(";") if s.strip()]
    counts = {len(s) for s in subtexts.values() if s}
    if len(counts) > 1:
        raise gr.Error(f"every class needs the same number of sub-texts; got {sorted(counts)}")
    if counts and not all(subtexts.values()):
        missing = next(name for name, s in subtexts.items() if not s)
        raise gr.Error(f"class {missing!r} has no sub-texts while others have; give every class the same number")
    return labels, (subtexts if counts else {})


def build_app(classifier: Classifier) -> gr.Blocks:
    def run(video, label_text):
        if not video:
            raise gr.Error("upload a video or pick an example first")
        try:
            return classifier(video, label_text or "")
        except (ValueError, RuntimeError, OSError) as error:  # a corrupt video, a label set the model rejects
            raise gr.Error(str(error)) from error

    with gr.Blocks(title="SFAR video action recognition") as app:
        gr.Markdown(
            "# SFAR: which action, and which frames\n"
            "Upload a video or pick an example. Optionally type your own classes, one per line "
            "(`class: sub-text; sub-text`), to classify among them (zero-shot)."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="video", sources=["upload"], elem_id="video")
                hint = "clean and jerk: lifting the bar to the shoulders; pushing it up"
                labels = gr.Textbox(label="label set (optional)", lines=4, elem_id="labels", placeholder=hint)
                button = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                prediction = gr.Label(label="top-5 actions", num_top_classes=5, elem_id="prediction")
                picture = gr.Image(label="frame weights", type="pil", elem_id="weights")
        button.click(run, inputs=[video, labels], outputs=[prediction, picture])
        if EXAMPLES:
            gr.Examples(EXAMPLES, inputs=[video])
    return app


if __name__ == "__main__":
    build_app(Classifier(MODEL, REVISION)).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
