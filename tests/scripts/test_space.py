"""The Space's Gradio app, end to end in a real headless Chromium (Debian's, driven by Playwright) against the app
on localhost: upload a generated video, read the predicted label from the page, take a screenshot; then, in the
zero-shot tab, type classes and classify among them, reading their scores and the frame-weight picture."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ZERO_SHOT_LABELS, ZERO_SHOT_SUBTEXTS, free_port, wait_for_server

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytest.importorskip("gradio", reason="gradio is installed by `make test`")


@pytest.fixture(scope="module")
def app_module():
    sys.path.insert(0, str(REPO / "space"))
    import app

    yield app
    sys.path.remove(str(REPO / "space"))


def test_typed_label_sets_are_parsed_or_refused_with_the_line(app_module):
    import gradio as gr

    labels, subtexts = app_module.parse_label_set("jump: up; down\n\nrun: left foot; right foot\n")
    assert labels == ["jump", "run"] and subtexts == {"jump": ["up", "down"], "run": ["left foot", "right foot"]}
    assert app_module.parse_label_set("jump\nrun") == (["jump", "run"], {})
    with pytest.raises(gr.Error, match="line 2: class 'jump' is listed twice"):
        app_module.parse_label_set("jump: a; b\njump: c; d")
    with pytest.raises(gr.Error, match="same number of sub-texts"):
        app_module.parse_label_set("jump: a; b\nrun: c")
    with pytest.raises(gr.Error, match="class 'run' has no sub-texts"):
        app_module.parse_label_set("jump: a; b\nrun")


def test_classifier_matches_the_model_and_draws_the_frame_weights(app_module, converted, video_path, tmp_path):
    model, processor = converted
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    classifier = app_module.Classifier(str(tmp_path / "model"))
    scores, picture = classifier(video_path)
    with torch.no_grad():
        expected = model.eval()(**processor(videos=video_path)).logits.softmax(-1)[0]
    top = expected.topk(4)
    assert list(scores) == [model.config.id2label[int(i)] for i in top.indices]
    torch.testing.assert_close(torch.tensor(list(scores.values())), top.values)
    assert picture.size[0] > 400 and picture.size[1] > 200


def test_the_classify_tab_scores_a_multi_label_model_with_the_sigmoid(app_module, tiny_clip_dir, video_path, tmp_path):
    """A multi-label model (Charades-style, `problem_type`) is scored as its loss and its pipeline score it: every
    class's sigmoid, not a softmax over classes that may all be present."""
    from modeling_sfar import convert_clip_to_sfar

    labels = ["open door", "sit down", "drink"]
    subtexts = {label: [f"{label}, step {i}" for i in range(1, 5)] for label in labels}
    model, processor = convert_clip_to_sfar(tiny_clip_dir, labels, subtexts, num_frames=4, num_temporal_layers=1,
                                            problem_type="multi_label_classification")  # fmt: skip
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    scores, _ = app_module.Classifier(str(tmp_path / "model"))(video_path)
    with torch.no_grad():
        logits = model.eval()(**processor(videos=video_path)).logits[0]
    expected = {model.config.id2label[i]: float(logits[i].sigmoid()) for i in range(len(labels))}
    assert scores == pytest.approx(expected)


def test_the_zero_shot_tab_scores_typed_classes_and_draws_their_frame_weights(
    app_module, converted, video_path, tmp_path
):
    """Typed classes with their sub-texts (and a prompt template) get the scores of the model with that label set,
    through the folder's own zero-shot pipeline, and the picture of the top class's frame weights (the same pixels
    the library's plot draws from the model's outputs); the model's own classes stay."""
    from modeling_sfar.demo.plots import denormalize, frame_weight_picture

    model, processor = converted
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    classifier = app_module.Classifier(str(tmp_path / "model"))
    assert type(classifier.zero_shot).__module__.endswith(".pipeline_clip_video")
    assert classifier.zero_shot.model is classifier.model  # one model in memory for both tabs
    typed = "\n".join(f"{label}: {'; '.join(ZERO_SHOT_SUBTEXTS[label])}" for label in ZERO_SHOT_LABELS)
    for template in ("", "a video of a person {}."):
        scores, picture = classifier.classify_among(video_path, typed, template)
        label_set = model.base_model.build_label_set(ZERO_SHOT_LABELS, processor.tokenizer, ZERO_SHOT_SUBTEXTS,
                                                     template or None)  # fmt: skip
        inputs = processor(videos=video_path)
        with torch.no_grad():
            out = model.eval()(**inputs, label_set=label_set)
        probabilities = out.logits.softmax(-1)[0]
        assert scores == pytest.approx({label: float(probabilities[i]) for i, label in enumerate(ZERO_SHOT_LABELS)})
        best = int(probabilities.argmax())
        expected = frame_weight_picture(denormalize(inputs["pixel_values"][0], processor.video_processor),
                                        out.coarse_frame_weights[0, best].tolist(),
                                        out.fine_frame_weights[0, best].tolist(), ZERO_SHOT_LABELS[best])  # fmt: skip
        assert picture.size == expected.size and picture.tobytes() == expected.tobytes()
    assert list(classifier.model.config.id2label.values()) == list(model.config.id2label.values())
    with pytest.raises(ValueError, match="lack them \\(none were given\\)"):  # with the generator's command line
        classifier.classify_among(video_path, "alpha\nbeta")
    with pytest.raises(app_module.gr.Error, match="type the class names"):
        classifier.classify_among(video_path, "  \n")


def test_a_folder_without_registered_pipelines_keeps_the_classify_tab(app_module, converted, video_path, tmp_path):
    """A folder whose config registers no pipelines (saved before folders did) classifies as before; its zero-shot
    tab says why it cannot run."""
    model, processor = converted
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    del config["custom_pipelines"]
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    classifier = app_module.Classifier(str(tmp_path / "model"))
    assert classifier.zero_shot is None and len(classifier(video_path)[0]) == 4
    with pytest.raises(app_module.gr.Error, match="registers no zero-shot-video-classification pipeline"):
        classifier.classify_among(video_path, "alpha\nbeta")


def test_classifier_draws_what_an_alt_model_grounded(app_module, tiny_clip_dir, video_path, tmp_path):
    """An ALT folder in the Space: the top-5 are the model's, the picture is the entity-region one (drawn by the same
    library function, so the two pictures are the same pixels); in the zero-shot tab typed class names are scored with
    the entity corpus kept, the entities grounded in the video shown with their shares; sub-texts are refused, naming
    why."""
    import gradio as gr

    from modeling_sfar import convert_clip_to_alt
    from modeling_sfar.demo.plots import denormalize, entity_region_picture
    from tests.conftest import ENTITIES, LABELS

    torch.manual_seed(0)
    model, processor = convert_clip_to_alt(tiny_clip_dir, LABELS, ENTITIES, num_frames=4, token_merging_r=3)
    model.save_pretrained(tmp_path / "alt")
    processor.save_pretrained(tmp_path / "alt")
    classifier = app_module.Classifier(str(tmp_path / "alt"))
    assert classifier.is_alt
    scores, picture = classifier(video_path)
    inputs = processor(videos=video_path)
    with torch.no_grad():
        out = model.eval()(**inputs)
    top = out.logits.softmax(-1)[0].topk(4)
    assert list(scores) == [model.config.id2label[int(i)] for i in top.indices]
    torch.testing.assert_close(torch.tensor(list(scores.values())), top.values)
    frames = denormalize(inputs["pixel_values"][0], processor.video_processor)
    expected = entity_region_picture(frames, out.patch_to_token[0], out.entity_indices[0], ENTITIES,
                                     model.config.id2label[int(top.indices[0])])  # fmt: skip
    assert picture.size == expected.size and picture.tobytes() == expected.tobytes()

    zero_shot, entities = classifier.classify_among(video_path, "alpha\nbeta")
    label_set = model.base_model.build_label_set(["alpha", "beta"], processor.tokenizer)  # the stored corpus
    with torch.no_grad():
        probabilities = model(**inputs, label_set=label_set).logits.softmax(-1)[0]
    assert zero_shot == pytest.approx({"alpha": float(probabilities[0]), "beta": float(probabilities[1])})
    assert set(entities) <= set(ENTITIES) and sum(entities.values()) == pytest.approx(1.0)
    assert classifier.model.config.entities == ENTITIES
    with pytest.raises(gr.Error, match="class names only"):
        classifier.classify_among(video_path, "alpha: a; b\nbeta: c; d")
    back, _ = classifier(video_path)
    assert list(back) == list(scores)
    assert isinstance(app_module.build_app(classifier), gr.Blocks)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`apt-get install chromium`)")
@pytest.mark.slow
def test_upload_a_video_in_chromium_and_read_the_prediction(converted, video_path, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is installed by `make test`")
    model, processor = converted
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    with torch.no_grad():
        logits = model.eval()(**processor(videos=video_path)).logits[0]
    expected = model.config.id2label[int(logits.argmax())]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(REPO),  # the app of this clone takes its plots (and so the package) from this clone too
        SFAR_MODEL=str(folder),
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),
    )
    log = open(tmp_path / "app.log", "w")
    server = subprocess.Popen([sys.executable, str(REPO / "space" / "app.py")], cwd=tmp_path, env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(url, server, tmp_path / "app.log", "the app", 120)

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.locator("#video input[type=file]").set_input_files(video_path)
            page.locator("#video video").first.wait_for(timeout=60_000)  # uploaded and shown
            page.locator("#classify").click()
            prediction = page.locator("#prediction")
            sync_api.expect(prediction).to_contain_text(expected, timeout=120_000)
            page.locator("#weights img").first.wait_for(timeout=60_000)
            top = prediction.locator("[data-testid='label-output-value']").inner_text().strip()
            page.screenshot(path=str(tmp_path / "space.png"), full_page=True)

            page.get_by_role("tab", name="zero-shot").click()
            page.locator("#zero-shot-video input[type=file]").set_input_files(video_path)
            page.locator("#zero-shot-video video").first.wait_for(timeout=60_000)
            page.locator("#labels textarea").fill("alpha: a; b; c; d\nbeta: e; f; g; h")
            page.locator("#zero-shot").click()
            zero_shot = page.locator("#zero-shot-scores [data-testid='label-output-value']")
            sync_api.expect(zero_shot).to_have_text(re.compile(r"^(alpha|beta)$"), timeout=120_000)
            page.locator("#zero-shot-weights img").first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "zero-shot.png"), full_page=True)
            browser.close()
        assert top == expected
        assert (tmp_path / "space.png").stat().st_size > 10_000
        assert (tmp_path / "zero-shot.png").stat().st_size > 10_000
        if os.environ.get("SFAR_SCREENSHOT_DIR"):  # keep the pictures (the docs' screenshots come from here)
            for name, kept in (("space.png", "space.png"), ("zero-shot.png", "space_zero_shot.png")):
                shutil.copy(tmp_path / name, Path(os.environ["SFAR_SCREENSHOT_DIR"]) / kept)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_the_staged_space_draws_with_its_copy_of_the_library_plot(tmp_path):
    """The Space repo holds app.py and a copy of `modeling_sfar/demo/plots.py`; on the Hub (no package installed) the
    app takes the picture code from that copy, so the demo and the Space draw with one implementation."""
    from modeling_sfar.hub.push import push_space

    staging = tmp_path / "space-hub"
    files = push_space(REPO / "space", "org/sfar-demo", dry_run=True, staging=staging)
    assert {"app.py", "requirements.txt", "README.md", "plots.py"} <= set(files)
    assert (staging / "plots.py").read_bytes() == (REPO / "modeling_sfar" / "demo" / "plots.py").read_bytes()
    check = (
        "import sys; sys.modules['modeling_sfar'] = None\n"  # as on the Hub: the package is not installed
        "import app, plots\n"
        "assert app.frame_weight_picture is plots.frame_weight_picture, plots.__file__\n"
        "print(plots.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    run = subprocess.run(
        [sys.executable, "-c", check], cwd=staging, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert Path(run.stdout.strip().splitlines()[-1]).resolve() == (staging / "plots.py").resolve()
