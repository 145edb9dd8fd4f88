"""Dataset builders on small fake trees in the official layouts of UCF-101, HMDB-51, Kinetics-400 and Charades."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import load_from_disk

from modeling_sfar.data.benchmarks import build_charades, build_hmdb51, build_kinetics400, build_ucf101
from modeling_sfar.testing_utils import write_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return Path(write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", num_frames=4, height=16, width=16))


def put(clip: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, path)


def make_ucf101(root: Path, clip: Path) -> None:
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    train = [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 2",
        "YoYo/v_YoYo_g08_c01.avi 3",
        "YoYo/v_YoYo_g09_c01.avi 3",
    ]
    test = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "YoYo/v_YoYo_g01_c01.avi"]
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")
    for line in train[:3] + test:  # v_YoYo_g09_c01 is listed but missing
        put(clip, root / "UCF-101" / line.split()[0])


def test_ucf101(tmp_path, clip):
    make_ucf101(tmp_path, clip)
    dataset, report = build_ucf101(tmp_path, split=1)
    assert dataset["train"].features["label"].names == ["apply eye makeup", "handstand pushups", "yo yo"]
    assert dataset["train"]["label"] == [0, 1, 2] and dataset["test"]["label"] == [0, 2]
    assert all(Path(v).is_file() for v in dataset["train"]["video"])
    assert report.kept == {"train": 3, "test": 2}
    assert [Path(p).name for p in report.missing["train"]] == ["v_YoYo_g09_c01.avi"]
    with pytest.raises(FileNotFoundError, match="v_YoYo_g09_c01.avi"):
        build_ucf101(tmp_path, split=1, strict=True)


def test_ucf101_unknown_class_names_the_line(tmp_path, clip):
    make_ucf101(tmp_path, clip)
    (tmp_path / "ucfTrainTestlist" / "testlist01.txt").write_text("Juggling/v_Juggling_g01_c01.avi\n")
    with pytest.raises(ValueError, match=r"testlist01.txt:1: class 'Juggling'"):
        build_ucf101(tmp_path)


def test_ucf101_needs_its_lists(tmp_path):
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        build_ucf101(tmp_path)


def test_hmdb51(tmp_path, clip):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    layout = {
        "brush_hair": [
            "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1",
            "Aussie_brush_hair_u_cm_np1_fr_med_0.avi 2",
            "unused_brush_hair_0.avi 0",
        ],
        "ride_bike": ["bike_ride_f_cm_np1_ba_med_0.avi 1", "bike_ride_f_cm_np1_le_med_1.avi 1"],
    }
    for cls, lines in layout.items():
        (splits / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
        for line in lines[:2]:
            put(clip, tmp_path / "hmdb51_org" / cls / line.split()[0])
    (tmp_path / "hmdb51_org" / "ride_bike" / "bike_ride_f_cm_np1_le_med_1.avi").unlink()
    dataset, report = build_hmdb51(tmp_path, split=1)
    assert dataset["train"].features["label"].names == ["brush hair", "ride bike"]
    assert dataset["train"]["label"] == [0, 1] and dataset["test"]["label"] == [0]
    assert len(report.missing["train"]) == 1 and not report.missing["test"]


def make_kinetics(root: Path, clip: Path) -> None:
    notes = root / "annotations"
    notes.mkdir(parents=True)
    header = "label,youtube_id,time_start,time_end,split,is_cc\n"
    train = [
        "abseiling,---QUuC4vJs,3,13,train,0",
        "air drumming,--nQbRBEz2s,104,114,train,0",
        "air drumming,-0NiYgcJNoE,0,10,train,0",
        "abseiling,gone1234567,20,30,train,0",
    ]
    val = ["abseiling,0wR5jVB-WPk,417,427,val,0"]
    (notes / "train.csv").write_text(header + "\n".join(train) + "\n")
    (notes / "val.csv").write_text(header + "\n".join(val) + "\n")
    put(clip, root / "train" / "abseiling" / "---QUuC4vJs_000003_000013.mp4")  # per-class folders
    put(clip, root / "train" / "--nQbRBEz2s_000104_000114.mp4")  # flat
    put(clip, root / "train" / "-0NiYgcJNoE_000000_000010.mp4")
    put(clip, root / "val" / "0wR5jVB-WPk_000417_000427.mp4")


def test_kinetics400_reports_missing(tmp_path, clip):
    make_kinetics(tmp_path, clip)
    dataset, report = build_kinetics400(tmp_path)
    assert dataset["train"].features["label"].names == ["abseiling", "air drumming"]
    assert sorted(dataset["train"]["video_id"]) == sorted(
        ["---QUuC4vJs_000003_000013", "--nQbRBEz2s_000104_000114", "-0NiYgcJNoE_000000_000010"]
    )
    assert dataset["validation"]["label"] == [0]
    assert report.missing == {"train": ["gone1234567_000020_000030"], "validation": []}
    assert "1 missing" in report.summary()


def test_kinetics400_validation_label_outside_training_classes(tmp_path, clip):
    make_kinetics(tmp_path, clip)
    with open(tmp_path / "annotations" / "val.csv", "a") as f:
        f.write("zumba,abcdefghijk,0,10,val,0\n")
    with pytest.raises(ValueError, match=r"val.csv:3: label 'zumba'"):
        build_kinetics400(tmp_path)


def make_charades(root: Path, clip: Path) -> None:
    notes = root / "Charades"
    notes.mkdir(parents=True)
    (notes / "Charades_v1_classes.txt").write_text(
        "c000 Holding some clothes\nc001 Putting clothes somewhere\nc002 Taking some clothes from somewhere\n"
    )
    header = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
    (notes / "Charades_v1_train.csv").write_text(
        header
        + '46GP8,HR43,Kitchen,6,7,Yes,"A person cooks.",food,"A person cooks.",'
        + '"c002 11.90 21.20;c000 0.00 12.60",24.8\n'
        + 'N11GT,0KZ7,Stairs,6,7,Yes,"A person walks.",stairs,"A person walks.",,30.1\n'
    )
    (notes / "Charades_v1_test.csv").write_text(
        header + 'YSKX3,DJ5C,Closet,7,7,Yes,"Clothes.",clothes,"Clothes.","c001 0.0 5.0",10.0\n'
    )
    for vid in ("46GP8", "N11GT", "YSKX3"):
        put(clip, root / "Charades_v1_480" / f"{vid}.mp4")


def test_charades_is_multi_label(tmp_path, clip):
    make_charades(tmp_path, clip)
    dataset, _ = build_charades(tmp_path)
    names = dataset["train"].features["labels"].feature.names
    assert names == ["Holding some clothes", "Putting clothes somewhere", "Taking some clothes from somewhere"]
    assert dataset["train"]["labels"] == [[0, 2], []]
    assert dataset["test"]["labels"] == [[1]]


def test_command_line_saves_and_lists_missing(tmp_path, clip):
    make_kinetics(tmp_path / "k400", clip)
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "datasets_scripts" / "build_dataset.py"),
            "kinetics400",
            "--root",
            str(tmp_path / "k400"),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "train: 3 videos (1 missing)" in run.stdout
    assert load_from_disk(str(out))["train"].num_rows == 3
    assert (out / "missing_train.txt").read_text().split() == ["gone1234567_000020_000030"]
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(out / "README.md")  # the index's card (tests/test_cards.py checks its content)
    assert "kinetics400" in card.data.tags and "| train | 3 | 1 |" in card.text
