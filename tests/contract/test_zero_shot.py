"""Zero-shot video classification through the folder's own pipeline (`pipeline("zero-shot-video-classification",
model=folder, trust_remote_code=True)`), and the video-classification pipeline's scores: the result equals
`scripts/eval.py` with the same labels and texts; the label set is encoded once for repeated calls and batches; the
family's texts come as values or as datasets, and a label without sub-texts gets the command that generates them;
multi-label models score with the sigmoid unless told otherwise."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import pipeline

from modeling_sfar import ZeroShotVideoClassificationPipeline, convert_clip_to_sfar
from modeling_sfar.data.storyboard import save_storyboard_entities, storyboard_entities
from modeling_sfar.data.subtexts import save_subtext_dataset
from modeling_sfar.evaluation import run as evaluation_run
from modeling_sfar.evaluation.run import parse_evaluation_args, run_evaluation
from tests.conftest import LABELS, SUBTEXTS, ZERO_SHOT_LABELS, ZERO_SHOT_SUBTEXTS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def save(model, processor, folder) -> str:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def zero_shot(folder: str, **kwargs) -> ZeroShotVideoClassificationPipeline:
    """The folder's own zero-shot pipeline (its remote code; the installed package is not asked)."""
    return pipeline("zero-shot-video-classification", model=folder, trust_remote_code=True, **kwargs)


def assert_same_ranking(ranked: list[dict], expected: list[dict]) -> None:
    """The same labels in the same order with the same scores (up to the rounding of another batch size)."""
    assert [item["label"] for item in ranked] == [item["label"] for item in expected]
    assert [item["score"] for item in ranked] == pytest.approx([item["score"] for item in expected], abs=1e-6)


def video_dataset(folder, videos: list[str], labels: list[str]) -> str:
    """A video dataset (as build_dataset.py saves one) whose test split holds `videos`, video i of class i."""
    features = Features({"video": Value("string"), "label": ClassLabel(names=labels)})
    test = Dataset.from_dict({"video": videos, "label": list(range(len(videos)))}, features=features)
    DatasetDict({"test": test}).save_to_disk(folder)
    return str(folder)


@pytest.mark.slow
def test_zero_shot_equals_eval_py_on_the_same_labels(case, real_videos, tmp_path, monkeypatch):
    """`scripts/eval.py` on a dataset of the real videos with new classes (SFAR with `--subtexts`, ALT with its own
    corpus) predicts, per video, the probabilities the pipeline returns for the same labels and texts."""
    folder = save(case.model, case.processor, tmp_path / "model")
    labels = ZERO_SHOT_LABELS[: len(real_videos)]
    dataset = video_dataset(tmp_path / "data", real_videos, labels)
    command = ["--model", folder, "--dataset", dataset, "--output_dir", str(tmp_path / "eval")]
    texts = {}
    if "subtexts" in case.zero_shot_texts:
        (tmp_path / "subtexts.json").write_text(json.dumps({label: ZERO_SHOT_SUBTEXTS[label] for label in labels}))
        command += ["--subtexts", str(tmp_path / "subtexts.json")]
        texts = {"subtexts": str(tmp_path / "subtexts.json")}  # the same file, read by the shipped reader
    predicted = []

    def evaluate_and_keep(*args, **kwargs):
        metrics, logits, label_ids = evaluate_split(*args, **kwargs)
        predicted.append(torch.from_numpy(logits))
        return metrics, logits, label_ids

    evaluate_split = evaluation_run.evaluate_split
    monkeypatch.setattr(evaluation_run, "evaluate_split", evaluate_and_keep)
    metrics = run_evaluation(*parse_evaluation_args(command))

    results = zero_shot(folder)(real_videos, candidate_labels=labels, **texts)
    for probabilities, ranked in zip(predicted[0].softmax(-1), results, strict=True):
        scores = {item["label"]: item["score"] for item in ranked}
        torch.testing.assert_close(torch.tensor([scores[label] for label in labels]), probabilities)
    top1 = sum(ranked[0]["label"] == label for ranked, label in zip(results, labels, strict=True))
    assert metrics["eval_top1"] == pytest.approx(100 * top1 / len(labels))


def test_the_label_set_is_encoded_once_for_repeated_calls_and_batches(case, video_path, tmp_path):
    """The text tower runs once per label set: again for the same labels it does not; a list of videos, batched or
    not, gives each video's own result; new labels are encoded anew. The model's stored label set is untouched."""
    folder = save(case.model, case.processor, tmp_path / "model")
    classifier = zero_shot(folder)
    calls = []
    classifier.model.base_model.text_model.register_forward_hook(lambda *args: calls.append(1))
    texts = case.zero_shot_texts
    first = classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, **texts)
    encoded = len(calls)
    assert encoded > 0 and [item["label"] for item in first] and len(first) == len(ZERO_SHOT_LABELS)
    assert classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, **texts) == first
    for batch_size in (1, 2):
        for ranked in classifier([video_path] * 3, candidate_labels=ZERO_SHOT_LABELS, batch_size=batch_size, **texts):
            assert_same_ranking(ranked, first)
    assert len(calls) == encoded
    classifier(video_path, candidate_labels=ZERO_SHOT_LABELS[:2], **texts)
    assert len(calls) > encoded
    assert list(classifier.model.config.id2label.values()) == LABELS
    assert classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, top_k=1, **texts) == first[:1]


def test_a_hypothesis_template_replaces_the_model_s_class_prompts(case, video_path, tmp_path):
    """`hypothesis_template` gives the scores of the label set encoded with that one prompt (in place of SFAR's
    template and ensemble, ALT's ensemble), and is part of the cached label set's identity; a template without
    exactly one `{}` is refused, naming it."""
    folder = save(case.model, case.processor, tmp_path / "model")
    classifier = zero_shot(folder)
    template = "a video of a person {}."
    texts = case.zero_shot_texts.get("subtexts")
    label_set = case.model.base_model.build_label_set(ZERO_SHOT_LABELS, case.processor.tokenizer, texts, template)
    with torch.no_grad():
        expected = case.model(**case.processor(videos=video_path), label_set=label_set).logits[0].softmax(-1)
    plain = classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, **case.zero_shot_texts)
    ranked = classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, hypothesis_template=template,
                        **case.zero_shot_texts)  # fmt: skip
    scores = {item["label"]: item["score"] for item in ranked}
    assert scores == pytest.approx({label: float(expected[i]) for i, label in enumerate(ZERO_SHOT_LABELS)}, abs=1e-6)
    assert scores != {item["label"]: item["score"] for item in plain}
    with pytest.raises(ValueError, match="'a video of' must contain exactly one"):
        classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, hypothesis_template="a video of",
                   **case.zero_shot_texts)  # fmt: skip


def test_the_installed_package_registers_the_task_for_a_model_object(converted, video_path):
    """`import modeling_sfar` registers the task: a model object (no folder, no remote code) with its processor's
    tokenizer and video processor gets the package's pipeline, with the same scores."""
    model, processor = converted
    classifier = pipeline("zero-shot-video-classification", model=model.eval(), tokenizer=processor.tokenizer,
                          video_processor=processor.video_processor)  # fmt: skip
    assert type(classifier) is ZeroShotVideoClassificationPipeline
    label_set = model.base_model.build_label_set(ZERO_SHOT_LABELS, processor.tokenizer, ZERO_SHOT_SUBTEXTS)
    with torch.no_grad():
        expected = model(**processor(videos=video_path), label_set=label_set).logits[0].softmax(-1)
    ranked = classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, subtexts=ZERO_SHOT_SUBTEXTS)
    torch.testing.assert_close(torch.tensor([item["score"] for item in ranked]), expected.sort(descending=True).values)
    with pytest.raises(ValueError, match="give `candidate_labels`"):
        classifier(video_path)
    with pytest.raises(ValueError, match="list of class names"):
        classifier(video_path, candidate_labels="jump")


def test_sfar_sub_texts_from_a_dataset_and_the_command_for_those_missing(
    converted, tiny_clip_dir, video_path, tmp_path
):
    """Sub-texts from a sub-text dataset folder give the dict's result; a label without sub-texts is refused with
    the labels named and the generator's command line for them; mean pooling takes the labels alone."""
    model, processor = converted
    folder = save(model, processor, tmp_path / "model")
    rows = [{"label": label, "subtexts": texts, "tpp": 50.0, "generator": "g", "prompt": "p"}
            for label, texts in ZERO_SHOT_SUBTEXTS.items()]  # fmt: skip
    save_subtext_dataset(tmp_path / "subtexts", rows, [{**row, "selected": True, "answer": ""} for row in rows])
    classifier = zero_shot(folder)
    from_dict = classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, subtexts=ZERO_SHOT_SUBTEXTS)
    assert classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, subtexts=str(tmp_path / "subtexts")) == from_dict

    with pytest.raises(ValueError) as missing:
        classifier(video_path, candidate_labels=["juggling", "ice skating"], subtexts=str(tmp_path / "subtexts"))
    message = str(missing.value)
    assert "1 of the 2 candidate labels" in message and "'ice skating'" in message
    assert "printf '%s\\n' 'ice skating' > classes.txt" in message
    assert "python datasets_scripts/generate_subtexts.py --classes classes.txt --model" in message
    with pytest.raises(ValueError, match="2 of the 2 candidate labels lack them \\(none were given\\)"):
        classifier(video_path, candidate_labels=["juggling", "ice skating"])
    with pytest.raises(ValueError, match="SfarModel reads subtexts, not entities"):
        classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, entities=["a ball"])
    with pytest.raises(ValueError, match="return_entities: SfarForVideoClassification returns no entity_indices"):
        classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, subtexts=ZERO_SHOT_SUBTEXTS, return_entities=True)

    torch.manual_seed(0)
    mean = save(*convert_clip_to_sfar(tiny_clip_dir, LABELS, None, variant="actionclip", num_frames=4,
                                      num_temporal_layers=1), tmp_path / "actionclip")  # fmt: skip
    ranked = zero_shot(mean)(video_path, candidate_labels=["juggling", "ice skating"])
    assert sorted(item["label"] for item in ranked) == ["ice skating", "juggling"]
    with pytest.raises(ValueError, match="the model computed no coarse_frame_weights or fine_frame_weights"):
        zero_shot(mean)(video_path, candidate_labels=["juggling", "ice skating"], return_frame_weights=True)


def test_alt_takes_a_corpus_as_texts_or_as_a_dataset_or_keeps_its_own(alt_converted, video_path, tmp_path):
    """ALT's entities: a list of texts and the corpus folder holding the same texts give one result; without
    entities the stored corpus is reused; the grounded entities name the corpus the call gave."""
    model, processor = alt_converted
    folder = save(model, processor, tmp_path / "model")
    corpus = save_storyboard_entities(tmp_path / "corpus")
    texts = [row["text"] for row in storyboard_entities()]
    classifier = zero_shot(folder)
    from_list = classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, entities=texts, return_entities=True)
    assert classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, entities=str(corpus),
                      return_entities=True) == from_list  # fmt: skip
    assert {e["entity"] for e in from_list[0]["entities"]} <= set(texts)
    assert sum(e["share"] for e in from_list[0]["entities"]) == pytest.approx(1.0)
    own = classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, return_entities=True)
    assert {e["entity"] for e in own[0]["entities"]} <= set(model.config.entities)
    with pytest.raises(ValueError, match="AltModel reads entities, not subtexts"):
        classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, subtexts=ZERO_SHOT_SUBTEXTS)
    with pytest.raises(ValueError, match="returns no coarse_frame_weights or fine_frame_weights .it offers "
                                         "return_entities"):  # fmt: skip
        classifier(video_path, candidate_labels=ZERO_SHOT_LABELS, return_frame_weights=True)


def test_a_dataset_of_texts_without_the_datasets_package_is_a_clear_error(tmp_path, monkeypatch):
    """The shipped reader imports `datasets` only when it reads a dataset; without it, it says what to install or
    give instead."""
    from modeling_sfar.remote_code import label_set_texts

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets.*dict label -> list of texts"):
        label_set_texts.load_subtexts(tmp_path)


def test_multi_label_models_score_with_the_sigmoid_unless_told(tiny_clip_dir, video_path, tmp_path):
    """A multi-label SFAR folder (`problem_type`): both pipelines return every class's sigmoid by default, the
    softmax when asked, at the call or when the pipeline is built."""
    torch.manual_seed(0)
    model, processor = convert_clip_to_sfar(tiny_clip_dir, LABELS, SUBTEXTS, num_frames=4, num_temporal_layers=1,
                                            problem_type="multi_label_classification")  # fmt: skip
    folder = save(model, processor, tmp_path / "model")
    with torch.no_grad():
        logits = model.eval()(**processor(videos=video_path)).logits[0]
    classifier = pipeline("video-classification", model=folder, trust_remote_code=True)
    assert type(classifier).__module__.endswith(".pipeline_clip_video")

    def scores(ranked):
        return {item["label"]: item["score"] for item in ranked}

    expected = {label: float(logits[i].sigmoid()) for i, label in model.config.id2label.items()}
    assert scores(classifier(video_path, top_k=4)) == pytest.approx(expected)
    softmax = {label: float(logits.softmax(-1)[i]) for i, label in model.config.id2label.items()}
    assert scores(classifier(video_path, top_k=4, function_to_apply="softmax")) == pytest.approx(softmax)
    told = pipeline("video-classification", model=folder, trust_remote_code=True, function_to_apply="softmax")
    assert scores(told(video_path, top_k=4)) == pytest.approx(softmax)
    for ranked in classifier([video_path] * 3, top_k=4, batch_size=2):  # videos batched through the model
        assert scores(ranked) == pytest.approx(expected, abs=1e-6)
    ranked = zero_shot(folder)(video_path, candidate_labels=LABELS, subtexts=SUBTEXTS)
    assert scores(ranked) == pytest.approx(expected, abs=1e-5)
