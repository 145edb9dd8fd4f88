"""A Gradio app for a Hub Space: upload or pick a video, get the top-5 actions and what the model looked at: for SFAR
the frames that mattered to the top class, for ALT every region of the sampled frames with the text entity it was
aligned with.

    SFAR_MODEL=org/sfar-vitb16 python app.py          # SFAR_MODEL may also be a local folder

The model is loaded with its own remote code (`trust_remote_code=True`), so the app needs only torch, transformers,
PyAV, matplotlib and gradio. Typed class names (with optional sub-texts for SFAR; ALT keeps its entity corpus and takes
class names only) replace the label set for zero-shot use.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import torch
from transformers import AutoModelForVideoClassification, AutoProcessor

try:  # the Space's repo: a copy of the library's plots.py, staged beside this file by `push_to_hub.py space`
    from plots import denormalize, entity_region_picture, frame_weight_picture
except ImportError:  # a clone of the project
    from modeling_sfar.demo.plots import denormalize, entity_region_picture, frame_weight_picture

MODEL = os.environ.get("SFAR_MODEL", "org/sfar-vitb16")
REVISION = os.environ.get("SFAR_REVISION") or None
EXAMPLES = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.mp4"))
ALT_MODEL_TYPE = "alt_video"  # ALT's config.model_type (read by name: the app imports no model code)


class Classifier:
    """The model and its processor, and the label set it holds (the trained one, or the last one typed)."""

    def __init__(self, model: str, revision: str | None = None):
        self.model = AutoModelForVideoClassification.from_pretrained(
            model, revision=revision, trust_remote_code=True, use_safetensors=True
        ).eval()
        self.processor = AutoProcessor.from_pretrained(model, revision=revision, trust_remote_code=True)
        config = self.model.config
        self.is_alt = config.model_type == ALT_MODEL_TYPE
        subtexts = {} if self.is_alt else dict(config.subtexts or {})
        self.trained = ([config.id2label[i] for i in range(len(config.id2label))], subtexts)
        self.current = ""

    def use_label_set(self, text: str) -> None:
        """Switch to the typed label set (empty text: the trained one); the text tower encodes it once."""
        text = text.strip()
        if text == self.current:
            return
        labels, subtexts = parse_label_set(text) if text else self.trained
        if self.is_alt:
            if subtexts:
                raise gr.Error("this ALT model takes class names only, one per line (its entity corpus stays)")
            config = self.model.config
            self.model.set_label_set(
                labels, self.processor.tokenizer, config.entities if config.use_entity_corpus else None
            )
        else:
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
        if self.is_alt:  # the alignment is the video's, whatever the class: drawn for the top class's prediction
            indices = None if out.entity_indices is None else out.entity_indices[0]
            picture = entity_region_picture(frames, out.patch_to_token[0], indices, self.model.config.entities,
                                            id2label[best])  # fmt: skip
            return result, picture
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

    if classifier.is_alt:
        heading = "# ALT: which action, and which entities the regions were aligned with\n"
        typed, hint, shown = "one class name per line", "clean and jerk", "regions and entities"
    else:
        heading = "# SFAR: which action, and which frames\n"
        typed, hint = (
            "one per line (`class: sub-text; sub-text`)",
            "clean and jerk: lifting the bar to the shoulders; pushing it up",
        )
        shown = "frame weights"
    with gr.Blocks(title=f"{'ALT' if classifier.is_alt else 'SFAR'} video action recognition") as app:
        gr.Markdown(
            heading
            + "Upload a video or pick an example. Optionally type your own classes, "
            + typed
            + ", to classify among them (zero-shot)."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="video", sources=["upload"], elem_id="video")
                labels = gr.Textbox(label="label set (optional)", lines=4, elem_id="labels", placeholder=hint)
                button = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                prediction = gr.Label(label="top-5 actions", num_top_classes=5, elem_id="prediction")
                picture = gr.Image(label=shown, type="pil", elem_id="weights")
        button.click(run, inputs=[video, labels], outputs=[prediction, picture])
        if EXAMPLES:
            gr.Examples(EXAMPLES, inputs=[video])
    return app


if __name__ == "__main__":
    build_app(Classifier(MODEL, REVISION)).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
