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

REPO = Path(__file__).resolve().parents[2]


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

    card = DatasetCard.load(out / "README.md")  # the index's card (tests/library/test_cards.py checks its content)
    assert "kinetics400" in card.data.tags and "| train | 3 | 1 |" in card.text


# HMDB-51's 51 classes, as its class folders (hmdb51_org/<class>/) and split files (<class>_test_splitN.txt) name them
HMDB51_CLASSES = (
    "brush_hair cartwheel catch chew clap climb climb_stairs dive draw_sword dribble drink eat fall_floor fencing "
    "flic_flac golf handstand hit hug jump kick kick_ball kiss laugh pick pour pullup punch push pushup ride_bike "
    "ride_horse run shake_hands shoot_ball shoot_bow shoot_gun sit situp smile smoke somersault stand swing_baseball "
    "sword sword_exercise talk throw turn walk wave"
).split()


def make_hmdb51(root: Path, clip: Path, split: int = 1) -> None:
    """The published layout: hmdb51_org/<class>/<video>.avi and one split file per class, lines "<video> <0|1|2> "."""
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for cls in HMDB51_CLASSES:
        videos = [f"{cls}_train_{i}.avi" for i in range(2)] + [f"{cls}_test_0.avi", f"{cls}_unused_0.avi"]
        lines = [f"{video} {kind} \n" for video, kind in zip(videos, (1, 1, 2, 0), strict=True)]
        (splits / f"{cls}_test_split{split}.txt").write_text("".join(lines))
        for video in videos[:3]:
            put(clip, root / "hmdb51_org" / cls / video)


def test_hmdb51_numbers_its_classes_as_other_codebases_do(tmp_path, clip):
    """Sorted class names, the class folders' order: climb 5 / climb_stairs 6, kick 20 / kick_ball 21, sword 44 /
    sword_exercise 45 (sorting the split files' names instead swaps each pair: "climb_stairs_test" < "climb_test")."""
    assert len(HMDB51_CLASSES) == 51
    make_hmdb51(tmp_path, clip)
    dataset, report = build_hmdb51(tmp_path, split=1)
    names = dataset["train"].features["label"].names
    folders = sorted(p.name for p in (tmp_path / "hmdb51_org").iterdir())
    assert names == [name.replace("_", " ") for name in folders]
    for index, name in ((5, "climb"), (6, "climb stairs"), (20, "kick"), (21, "kick ball"), (44, "sword"),
                        (45, "sword exercise")):  # fmt: skip
        assert names[index] == name
    for split in ("train", "test"):  # every video carries the label of its folder
        for video, label in zip(dataset[split]["video"], dataset[split]["label"], strict=True):
            assert Path(video).parent.name.replace("_", " ") == names[label]
    assert report.kept == {"train": 102, "test": 51}


@pytest.mark.parametrize("builder", [build_ucf101, build_hmdb51])
@pytest.mark.parametrize("split", [0, 4])
def test_a_split_outside_1_to_3_is_refused_naming_the_argument(builder, split, tmp_path):
    with pytest.raises(ValueError, match=rf"--split {split}: the official splits are 1, 2, 3"):
        builder(tmp_path, split=split)


def test_the_command_line_refuses_a_bad_split_with_the_choices(tmp_path, capsys):
    from datasets_scripts.build_dataset import main

    with pytest.raises(SystemExit):
        main(["hmdb51", "--root", str(tmp_path), "--split", "4", "--output", str(tmp_path / "o")])
    assert "argument --split: invalid choice: 4 (choose from 1, 2, 3)" in capsys.readouterr().err


def test_kinetics400_takes_cvdfs_replacement_of_a_video_and_reports_it(tmp_path, clip, caplog):
    """CVDF's download holds re-encodings of corrupt videos in replacement/replacement_for_corrupted_k400/, named as
    the originals in train/: the replacement is indexed, whatever order the file system lists them in."""
    import logging

    from modeling_sfar.data.benchmarks import dataset_card

    make_kinetics(tmp_path, clip)
    replacement = tmp_path / "replacement" / "replacement_for_corrupted_k400" / "--nQbRBEz2s_000104_000114.mp4"
    put(clip, replacement)
    put(clip, tmp_path / "val" / "-0NiYgcJNoE_000000_000010.mp4")  # also in train/: no replacement decides
    with caplog.at_level(logging.INFO, logger="modeling_sfar.data.benchmarks"):
        dataset, report = build_kinetics400(tmp_path)
    videos = dict(zip(dataset["train"]["video_id"], dataset["train"]["video"], strict=True))
    assert videos["--nQbRBEz2s_000104_000114"] == str(replacement.resolve())
    assert videos["-0NiYgcJNoE_000000_000010"] == str((tmp_path / "train" / "-0NiYgcJNoE_000000_000010.mp4").resolve())
    assert [(d["video_id"], d["replacement"]) for d in report.duplicates] == [
        ("--nQbRBEz2s_000104_000114", True),
        ("-0NiYgcJNoE_000000_000010", False),
    ]
    assert "2 found in two places (1 taken from a replacement folder)" in report.summary()
    taken = f"1 listed videos are also in a replacement folder: the replacement is taken, e.g. {replacement} over"
    assert taken in caplog.text
    assert "1 listed videos are in two folders, none a replacement: the first by path is taken" in caplog.text
    card = dataset_card("kinetics400", dataset, report, "data/k400").text
    assert "2 listed videos were found in two places; 1 of them in a replacement folder" in card
    assert f"`--nQbRBEz2s_000104_000114` from `{replacement}`" in card


def test_charades_with_root_at_its_annotations_names_where_it_looked(tmp_path, clip):
    make_charades(tmp_path, clip)
    notes = tmp_path / "Charades"
    message = (
        rf"split 'train' is empty: none of its 2 listed videos is in {notes} itself \(it has no Charades_v1_480/, "
        r"Charades_v1/ or videos/ folder\); is --root the dataset's top folder\?"
    )
    with pytest.raises(ValueError, match=message):
        build_charades(notes)


def test_ucf101_without_its_video_folder_names_where_it_looked(tmp_path, clip):
    make_ucf101(tmp_path, clip)
    (tmp_path / "UCF-101").rename(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=r"none of its 4 listed videos is in .* itself \(it has no UCF-101/, UCF101/"):
        build_ucf101(tmp_path)


def test_every_index_has_the_split_its_benchmark_is_evaluated_on(tmp_path, clip):
    from modeling_sfar.data.benchmarks import CONVENTIONS, dataset_card, evaluation_split

    make_ucf101(tmp_path / "ucf101", clip)
    make_hmdb51(tmp_path / "hmdb51", clip)
    make_kinetics(tmp_path / "kinetics400", clip)
    make_charades(tmp_path / "charades", clip)
    builders = {"ucf101": build_ucf101, "hmdb51": build_hmdb51, "kinetics400": build_kinetics400,
                "charades": build_charades}  # fmt: skip
    for name, builder in builders.items():
        dataset, report = builder(tmp_path / name)
        evaluation = CONVENTIONS[name]["evaluation"]
        assert set(dataset) == {"train", evaluation} and evaluation_split(dataset) == evaluation
        card = dataset_card(name, dataset, report, f"data/{name}").text
        assert f"The split to evaluate on is `{evaluation}`" in card
        assert f"classes, numbered in {CONVENTIONS[name]['class_order']}" in " ".join(card.split())
