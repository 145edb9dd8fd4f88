"""A Gradio app for a Hub Space, in two tabs:

- classify: upload or pick a video, get the top-5 of the model's own classes and what the model looked at: for SFAR
  the frames that mattered to the top class, for ALT every region of the sampled frames with the text entity it was
  aligned with;
- zero-shot: type any class names (with optional sub-texts for SFAR; ALT keeps its entity corpus and takes class
  names only) and classify among them with the model's own zero-shot pipeline, getting the scores and, for SFAR, the
  top class's frame weights, for ALT the entities the regions were aligned with.

    SFAR_MODEL=org/sfar-vitb16 python app.py          # SFAR_MODEL may also be a local folder

The model is loaded with its own remote code (`trust_remote_code=True`), the zero-shot pipeline from the class its
folder registers (`custom_pipelines`), so the app needs only torch, transformers, PyAV, matplotlib and gradio.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import torch
from transformers import AutoModelForVideoClassification, AutoProcessor
from transformers.dynamic_module_utils import get_class_from_dynamic_module

try:  # the Space's repo: a copy of the library's plots.py, staged beside this file by `push_to_hub.py space`
    from plots import denormalize, entity_region_picture, frame_weight_picture
except ImportError:  # a clone of the project
    from modeling_sfar.demo.plots import denormalize, entity_region_picture, frame_weight_picture

MODEL = os.environ.get("SFAR_MODEL", "org/sfar-vitb16")
REVISION = os.environ.get("SFAR_REVISION") or None
EXAMPLES = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.mp4"))
ALT_MODEL_TYPE = "alt_video"  # ALT's config.model_type (read by name: the app imports no model code)
ZERO_SHOT = "zero-shot-video-classification"


class Classifier:
    """The model and its processor, and the model's own zero-shot pipeline around the same model."""

    def __init__(self, model: str, revision: str | None = None):
        self.model = AutoModelForVideoClassification.from_pretrained(
            model, revision=revision, trust_remote_code=True, use_safetensors=True
        ).eval()
        self.processor = AutoProcessor.from_pretrained(model, revision=revision, trust_remote_code=True)
        self.is_alt = self.model.config.model_type == ALT_MODEL_TYPE
        self.zero_shot = zero_shot_pipeline(model, revision, self.model, self.processor)

    @torch.no_grad()
    def __call__(self, video: str, top_k: int = 5):
        """The top-k of the model's own classes and the picture of what it looked at for the top one."""
        inputs = self.processor(videos=video)
        out = self.model(**inputs)
        # what the model was trained to score: every class's sigmoid for a multi-label model, else the softmax
        multi_label = self.model.config.problem_type == "multi_label_classification"
        scores = out.logits[0].sigmoid() if multi_label else out.logits[0].softmax(-1)
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

    def classify_among(self, video: str, label_text: str, template: str = ""):
        """
        Zero-shot: the scores of the typed classes (`class: sub-text; sub-text` per line, see `parse_label_set`;
        `template`: a prompt with `{}` for the class name, empty for the model's own), through the zero-shot pipeline
        (which encodes a label set once and keeps it for the calls with the same one). With them, for SFAR the picture
        of the top class's frame weights (for a model that weighs frames), for ALT the entities its regions were
        aligned with and their shares of the patches (for a model with an entity corpus).
        """
        if self.zero_shot is None:
            raise gr.Error(f"this model's config registers no {ZERO_SHOT} pipeline (a folder saved before folders "
                           "registered their pipelines): save it again with the current release")  # fmt: skip
        labels, subtexts = parse_label_set(label_text)
        if not labels:
            raise gr.Error("type the class names to classify among, one per line")
        config = self.model.config
        if self.is_alt:
            if subtexts:
                raise gr.Error("this ALT model takes class names only, one per line (its entity corpus stays)")
            asked = {"return_entities": bool(config.use_entity_corpus)}
        else:
            asked = {"subtexts": subtexts or None, "return_frame_weights": config.uses_subtexts}
        ranked = self.zero_shot(video, candidate_labels=labels, hypothesis_template=template.strip() or None, **asked)
        scores = {item["label"]: item["score"] for item in ranked}
        best = ranked[0]
        if self.is_alt:
            return scores, {entity["entity"]: entity["share"] for entity in best.get("entities", [])}
        # the pipeline keeps its decoded frames to itself: decoded again (the same frames) for the picture
        sampled = self.processor(videos=video, num_frames=self.model.config.num_frames)  # as the pipeline samples
        frames = denormalize(sampled["pixel_values"][0], self.processor.video_processor)
        picture = frame_weight_picture(frames, best.get("coarse_frame_weights"), best.get("fine_frame_weights"),
                                       best["label"])  # fmt: skip
        return scores, picture


def zero_shot_pipeline(source: str, revision: str | None, model, processor):
    """The zero-shot pipeline class the model's folder registers (`config.custom_pipelines`, its remote code), built
    around the model already loaded; None for a folder that registers none."""
    impl = (getattr(model.config, "custom_pipelines", None) or {}).get(ZERO_SHOT, {}).get("impl")
    if impl is None:
        return None
    pipeline_class = get_class_from_dynamic_module(impl, source, revision=revision)
    return pipeline_class(model=model, tokenizer=processor.tokenizer, video_processor=processor.video_processor,
                          task=ZERO_SHOT)  # fmt: skip


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
    def guarded(function):
        """`function(video, ...)` with the app's errors: no video, or a video or label set the model rejects."""

        def run(video, *args):
            if not video:
                raise gr.Error("upload a video or pick an example first")
            try:
                return function(video, *args)
            except (ValueError, RuntimeError, OSError) as error:  # a corrupt video, a label set the model rejects
                raise gr.Error(str(error)) from error

        return run

    name = "ALT" if classifier.is_alt else "SFAR"
    if classifier.is_alt:
        heading = "# ALT: which action, and which entities the regions were aligned with\n"
        typed, hint, shown = "one class name per line", "clean and jerk", "regions and entities"
    else:
        heading = "# SFAR: which action, and which frames\n"
        typed, hint = (
            "one per line, optionally with its sub-texts (`class: sub-text; sub-text`)",
            "clean and jerk: lifting the bar to the shoulders; pushing it up",
        )
        shown = "frame weights"
    with gr.Blocks(title=f"{name} video action recognition") as app:
        gr.Markdown(heading + "Upload a video or pick an example: **classify** among the model's own classes, or "
                    "type any classes in **zero-shot**.")  # fmt: skip
        with gr.Tab("classify", id="classify-tab"):
            with gr.Row():
                with gr.Column():
                    video = gr.Video(label="video", sources=["upload"], elem_id="video")
                    button = gr.Button("Classify", variant="primary", elem_id="classify")
                with gr.Column():
                    prediction = gr.Label(label="top-5 actions", num_top_classes=5, elem_id="prediction")
                    picture = gr.Image(label=shown, type="pil", elem_id="weights")
            button.click(guarded(classifier), inputs=[video], outputs=[prediction, picture])
            if EXAMPLES:
                gr.Examples(EXAMPLES, inputs=[video])
        with gr.Tab("zero-shot", id="zero-shot-tab"):
            gr.Markdown(f"Type the classes to classify among, {typed}.")
            with gr.Row():
                with gr.Column():
                    zero_shot_video = gr.Video(label="video", sources=["upload"], elem_id="zero-shot-video")
                    labels = gr.Textbox(label="classes", lines=4, elem_id="labels", placeholder=hint)
                    template = gr.Textbox(label="prompt template (optional)", elem_id="template",
                                          placeholder="a video of a person {}.")  # fmt: skip
                    zero_shot_button = gr.Button("Classify among these", variant="primary", elem_id="zero-shot")
                with gr.Column():
                    scores = gr.Label(label="scores", num_top_classes=10, elem_id="zero-shot-scores")
                    if classifier.is_alt:
                        detail = gr.Label(label="entities the regions were aligned with", num_top_classes=10,
                                          elem_id="zero-shot-entities")  # fmt: skip
                    else:
                        detail = gr.Image(label="frame weights of the top class", type="pil",
                                          elem_id="zero-shot-weights")  # fmt: skip
            zero_shot_button.click(guarded(classifier.classify_among), inputs=[zero_shot_video, labels, template],
                                   outputs=[scores, detail])  # fmt: skip
            if EXAMPLES:
                gr.Examples(EXAMPLES, inputs=[zero_shot_video])
    return app


if __name__ == "__main__":
    build_app(Classifier(MODEL, REVISION)).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
