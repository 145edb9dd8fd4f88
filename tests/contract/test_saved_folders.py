"""Folders saved by the release before the shared base still load: the previous commit's own shipped files (read from
this clone's git history) build and save a tiny SFAR and a tiny ALT in a process where `modeling_sfar` cannot be
imported; this package's classes then load those folders and give the logits the old code gave, and the pipelines
work on them (their config registers none of its own)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from modeling_sfar import AltForVideoClassification, SfarForVideoClassification, SfarProcessor
from modeling_sfar.families import family_of
from tests.conftest import (
    BLOCK_MODELING_SFAR,
    ENTITIES,
    LABELS,
    SUBTEXTS,
    ZERO_SHOT_LABELS,
    ZERO_SHOT_SUBTEXTS,
    run_python_offline,
)

REPO = Path(__file__).resolve().parents[2]
# The last commit whose shipped files predate the shared base (modeling_clip_video.py): its folders are the format
# users hold today.
PREVIOUS = "b15a7fe"

BUILD = BLOCK_MODELING_SFAR + textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import AutoTokenizer, CLIPConfig

    package, clip, out = sys.argv[1], sys.argv[2], sys.argv[3]
    labels, subtexts, entities = json.loads(sys.argv[4]), json.loads(sys.argv[5]), json.loads(sys.argv[6])
    sys.path.insert(0, package)
    from previous.configuration_alt import AltConfig
    from previous.configuration_sfar import SfarConfig
    from previous.modeling_alt import AltForVideoClassification
    from previous.modeling_sfar import SfarForVideoClassification
    from previous.processing_sfar import SfarProcessor
    from previous.video_processing_sfar import SfarVideoProcessor

    tokenizer = AutoTokenizer.from_pretrained(clip)
    towers = CLIPConfig.from_pretrained(clip)
    common = dict(text_config=towers.text_config.to_dict(), vision_config=towers.vision_config.to_dict(),
                  projection_dim=towers.projection_dim, num_frames=4)
    pixels = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = {}
    for name, model, texts in (
        ("sfar", SfarForVideoClassification(SfarConfig(**common, num_temporal_layers=1)), subtexts),
        ("alt", AltForVideoClassification(AltConfig(**common, token_merging_r=3, num_decoder_layers=1)), entities),
    ):
        torch.manual_seed(0)
        model.set_label_set(labels, tokenizer, texts)
        model.eval().save_pretrained(f"{out}/{name}")
        processor = SfarProcessor(video_processor=SfarVideoProcessor(num_frames=4, size={"shortest_edge": 36},
                                  crop_size={"height": 32, "width": 32}), tokenizer=tokenizer)
        processor.save_pretrained(f"{out}/{name}")
        with torch.no_grad():
            logits[name] = model(pixels).logits.tolist()
    print(json.dumps(logits))
    """
)


@pytest.fixture(scope="module")
def previous_folders(tiny_clip_dir, tmp_path_factory) -> tuple[Path, dict]:
    """SFAR and ALT folders saved by the previous commit's shipped files, and the logits that code gave."""
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{PREVIOUS}:modeling_sfar/remote_code"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    if names.returncode != 0:
        pytest.skip(f"commit {PREVIOUS} is not in this clone's history (a shallow clone?): {names.stderr.strip()}")
    root = tmp_path_factory.mktemp("previous")
    package = root / "code" / "previous"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in names.stdout.split():
        source = subprocess.run(
            ["git", "show", f"{PREVIOUS}:modeling_sfar/remote_code/{name}"], cwd=REPO, capture_output=True, check=True
        ).stdout
        (package / name).write_bytes(source)
    out = root / "saved"
    arguments = [json.dumps(LABELS), json.dumps(SUBTEXTS), json.dumps(ENTITIES)]
    run = run_python_offline(
        ["-c", BUILD, str(root / "code"), tiny_clip_dir, str(out), *arguments], cwd=root, tmp_path=root
    )
    return out, json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name, model_class", [("sfar", SfarForVideoClassification), ("alt", AltForVideoClassification)]
)
def test_a_folder_saved_by_the_previous_release_loads_and_gives_its_logits(previous_folders, name, model_class):
    folder, logits = previous_folders
    folder = folder / name
    config = json.loads((folder / "config.json").read_text())
    assert "modeling_clip_video.py" not in {p.name for p in folder.iterdir()}  # the old layout, truly
    assert family_of(config).model_class is model_class
    model = model_class.from_pretrained(folder, use_safetensors=True).eval()
    processor = SfarProcessor.from_pretrained(folder)
    assert processor.video_processor.num_frames == 4
    pixels = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(pixels).logits, torch.tensor(logits[name]), rtol=1e-5, atol=1e-5)
    assert list(model.config.id2label.values()) == LABELS


@pytest.mark.parametrize("name, texts", [("sfar", {"subtexts": ZERO_SHOT_SUBTEXTS}), ("alt", {})])
def test_a_folder_saved_before_folders_registered_pipelines_keeps_both(previous_folders, name, texts, video_path):
    """Without `custom_pipelines` in its config, such a folder gets transformers' video-classification pipeline with
    remote code, as before, and the zero-shot task from the installed package (registered on import)."""
    from transformers import pipeline
    from transformers.pipelines import VideoClassificationPipeline

    from modeling_sfar import ZeroShotVideoClassificationPipeline

    folder = previous_folders[0] / name
    assert "custom_pipelines" not in json.loads((folder / "config.json").read_text())
    classifier = pipeline("video-classification", model=str(folder), trust_remote_code=True)
    assert type(classifier) is VideoClassificationPipeline
    assert {item["label"] for item in classifier(video_path, top_k=4)} == set(LABELS)
    zero_shot = pipeline("zero-shot-video-classification", model=str(folder))
    assert type(zero_shot) is ZeroShotVideoClassificationPipeline
    ranked = zero_shot(video_path, candidate_labels=ZERO_SHOT_LABELS, **texts)
    assert sorted(item["label"] for item in ranked) == sorted(ZERO_SHOT_LABELS)
