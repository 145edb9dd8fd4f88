"""Video indexes of the four benchmarks: local copies of UCF-101, HMDB-51, Kinetics-400 and Charades, in their official
layouts, turned into `datasets` DatasetDicts of (video path, label or labels) with human-readable class names, saved
with `save_to_disk` with a card (`build_benchmark`, what `datasets_scripts/build_dataset.py` runs).

Layouts read (the archives' own names):
  UCF-101:      UCF-101/<Class>/v_<Class>_gXX_cYY.avi and ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt
  HMDB-51:      <class>/<video>.avi (or hmdb51_org/<class>/...) and testTrainMulti_7030_splits/<class>_test_splitN.txt
                (1 = train, 2 = test, 0 = unused)
  Kinetics-400: annotations/{train,val}.csv (label,youtube_id,time_start,time_end,split[,is_cc]) and videos named
                <youtube_id>_<start:06d>_<end:06d>.<ext> anywhere under the root (flat or one folder per class)
  Charades:     Charades_v1_classes.txt, Charades_v1_{train,test}.csv (actions "c092 11.90 21.20;...") and
                Charades_v1_480/<id>.mp4 (the annotation files may sit in a Charades/ folder)

Each benchmark's own conventions are kept (`CONVENTIONS`): the class order other codebases use (for HMDB-51 the sorted
class names, not the order of its split files) and the split names, so that the split to evaluate on is `test`, or
`validation` for Kinetics-400, whose test labels are not published. Videos listed by the annotations but absent from
disk are counted and reported (always the case for Kinetics), and listed in `<output>/missing_<split>.txt`; `strict`
stops instead. A Kinetics video found in two folders (CVDF's `replacement/replacement_for_corrupted_k400/` beside the
original) is taken from the replacement, and reported.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub_cards import VIDEO_DATASET_CARD, template_path
from modeling_sfar import class_name_to_text

logger = logging.getLogger(__name__)

__all__ = [
    "build_ucf101",
    "build_hmdb51",
    "build_kinetics400",
    "build_charades",
    "BUILDERS",
    "BuildReport",
    "CONVENTIONS",
    "evaluation_split",
    "dataset_card",
    "BuildDatasetArguments",
    "build_benchmark",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
SPLITS = (1, 2, 3)  # the official train/test splits of UCF-101 and HMDB-51

# How each benchmark numbers its classes, as the codebases that report on it do, and the split it is evaluated on.
CONVENTIONS = {
    "ucf101": {"class_order": "the order of `classInd.txt` (its 1-based indices minus one)", "evaluation": "test"},
    "hmdb51": {
        "class_order": "the sorted class names, the order of the class folders that other codebases use (`climb` 5, "
        "`climb_stairs` 6; `kick` 20, `kick_ball` 21; `sword` 44, `sword_exercise` 45), not the sorted names of "
        "the split files, which put `climb_stairs` before `climb`",
        "evaluation": "test",
    },
    "kinetics400": {
        "class_order": "the sorted label names of `train.csv`",
        "evaluation": "validation",  # Kinetics-400's test labels are not published
    },
    "charades": {"class_order": "the order of `Charades_v1_classes.txt` (`c000` is 0)", "evaluation": "test"},
}


@dataclass
class BuildReport:
    """
    What a builder found: per split, the videos kept and those listed by the annotations but missing; the videos found
    in more than one place (`video_id`, `kept`, `skipped`, `replacement`: whether a replacement folder decided).
    """

    kept: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        text = ", ".join(
            f"{split}: {self.kept[split]} videos"
            + (f" ({len(self.missing[split])} missing)" if self.missing[split] else "")
            for split in self.kept
        )
        if self.duplicates:
            replaced = sum(d["replacement"] for d in self.duplicates)
            text += f"; {len(self.duplicates)} found in two places ({replaced} taken from a replacement folder)"
        return text


def evaluation_split(dataset) -> str | None:
    """The split a run evaluates on: `test` where the index has it, else `validation` (Kinetics-400), else None."""
    return next((name for name in ("test", "validation") if name in dataset), None)


def _check_split(split: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"--split {split}: the official splits are {', '.join(map(str, SPLITS))}")


def readable(name: str) -> str:
    """`ApplyEyeMakeup` -> `apply eye makeup`, `brush_hair` -> `brush hair` (Kinetics names are already readable): the
    model's class-name normalisation (`class_name_to_text`), lower-cased for the label names of UCF-101 and HMDB-51."""
    return class_name_to_text(name).lower()


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return root


def _videos_dir(root: Path, names: tuple[str, ...]) -> tuple[Path, str]:
    """The folder of the videos, and where it was looked for, for an error that finds none there."""
    folder = _first_dir(root, names)
    if folder != root:
        return folder, str(folder)
    tried = ", ".join(f"{name}/" for name in names[:-1]) + f" or {names[-1]}/"
    return root, f"{root} itself (it has no {tried} folder)"


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found; is --root the dataset's top folder?")
    return path


def _finish(
    rows: dict[str, list[dict]], names: list[str], multi_label: bool, report: BuildReport, strict: bool, searched: str
):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    for split, missing in report.missing.items():
        if missing and strict:
            shown = "\n".join(f"  {p}" for p in missing[:20])
            raise FileNotFoundError(f"{len(missing)} videos of split {split!r} are missing:\n{shown}")
        if missing:
            logger.warning(
                "%d of %d videos of split %r are missing", len(missing), len(missing) + len(rows[split]), split
            )
    labels = ClassLabel(names=names)
    features = {"video": Value("string"), "video_id": Value("string")}
    features.update({"labels": Sequence(labels)} if multi_label else {"label": labels})
    splits = {}
    for split, split_rows in rows.items():
        if not split_rows:
            listed = len(report.missing.get(split, []))
            raise ValueError(
                f"split {split!r} is empty: none of its {listed} listed videos is in {searched}; is --root the "
                "dataset's top folder?"
            )
        columns = {key: [row[key] for row in split_rows] for key in features}
        splits[split] = Dataset.from_dict(columns, features=Features(features))
        report.kept[split] = len(split_rows)
    return DatasetDict(splits)


def build_ucf101(root: str | os.PathLike, split: int = 1, strict: bool = False):
    """UCF-101, train/test split `split` (1-3). Returns (DatasetDict, BuildReport)."""
    _check_split(split)
    root = Path(root)
    lists = _first_dir(root, ("ucfTrainTestlist",))
    videos, searched = _videos_dir(root, ("UCF-101", "UCF101", "videos"))
    class_file = _need(lists / "classInd.txt", "classInd.txt")
    folders = []
    for line_no, line in enumerate(class_file.read_text().splitlines(), 1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise ValueError(f"{class_file}:{line_no}: expected '<index> <ClassName>', got {line!r}")
            folders.append(parts[1])
    index = {folder.lower(): i for i, folder in enumerate(folders)}
    rows, report = {}, BuildReport()
    for name, file in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        path = _need(lists / file, file)
        rows[name], report.missing[name] = [], []
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            relative = line.split()[0]
            folder = relative.split("/")[0]
            if folder.lower() not in index:
                raise ValueError(f"{path}:{line_no}: class {folder!r} is not in {class_file}")
            video = videos / relative
            if not video.is_file():
                report.missing[name].append(str(video))
                continue
            rows[name].append(
                {"video": str(video.resolve()), "video_id": Path(relative).stem, "label": index[folder.lower()]}
            )
    return _finish(rows, [readable(f) for f in folders], False, report, strict, searched), report


def build_hmdb51(root: str | os.PathLike, split: int = 1, strict: bool = False):
    """
    HMDB-51, split `split` (1-3) of the 70/30 split files. Classes are numbered in the order of their sorted names (the
    class folders' order, `CONVENTIONS`). Returns (DatasetDict, BuildReport).
    """
    _check_split(split)
    root = Path(root)
    lists = _first_dir(root, ("testTrainMulti_7030_splits", "splits"))
    videos, searched = _videos_dir(root, ("hmdb51_org", "videos"))
    suffix = f"_test_split{split}.txt"
    files = {f.name[: -len(suffix)]: f for f in lists.glob(f"*{suffix}")}
    if not files:
        raise FileNotFoundError(f"{lists}: no '<class>{suffix}' files; is --root the dataset's top folder?")
    # sorted by class name: sorting the file names instead puts "climb_stairs_test..." before "climb_test..."
    classes = sorted(files)
    rows, report = {"train": [], "test": []}, BuildReport(missing={"train": [], "test": []})
    for label, cls in enumerate(classes):
        path = files[cls]
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}:{line_no}: expected '<video> <0|1|2>', got {line!r}")
            if parts[1] == "0":
                continue
            name = "train" if parts[1] == "1" else "test"
            video = videos / cls / parts[0]
            if not video.is_file():
                report.missing[name].append(str(video))
                continue
            rows[name].append({"video": str(video.resolve()), "video_id": video.stem, "label": label})
    return _finish(rows, [readable(c) for c in classes], False, report, strict, searched), report


def _index_videos(root: Path) -> dict[str, list[Path]]:
    """Every video file under `root` by file stem, each stem's paths sorted (one per folder it is in)."""
    found: dict[str, list[Path]] = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                found.setdefault(Path(name).stem, []).append(Path(directory) / name)
    return {stem: sorted(paths) for stem, paths in found.items()}


def _is_replacement(path: Path, root: Path) -> bool:
    """Whether `path` lies in a replacement folder under `root` (CVDF's `replacement/replacement_for_corrupted_k400/`,
    re-encodings of videos whose first copy is corrupt)."""
    return any(part.lower().startswith("replacement") for part in path.relative_to(root).parts[:-1])


def _pick_copy(stem: str, paths: list[Path], root: Path, report: BuildReport) -> Path:
    """The copy of a video to index: the only one; else the one in a replacement folder; else the first by path (a
    choice that does not depend on the file system's listing order). A choice among several is recorded."""
    if len(paths) == 1:
        return paths[0]
    replacements = [p for p in paths if _is_replacement(p, root)]
    kept = (replacements or paths)[0]
    skipped = [str(p) for p in paths if p != kept]
    duplicate = {"video_id": stem, "kept": str(kept), "skipped": skipped, "replacement": bool(replacements)}
    report.duplicates.append(duplicate)
    return kept


def _log_duplicates(report: BuildReport) -> None:
    if not report.duplicates:
        return
    replaced = [d for d in report.duplicates if d["replacement"]]
    other = [d for d in report.duplicates if not d["replacement"]]
    if replaced:
        example = replaced[0]
        logger.info(
            "%d listed videos are also in a replacement folder: the replacement is taken, e.g. %s over %s",
            len(replaced), example["kept"], example["skipped"][0],
        )  # fmt: skip
    if other:
        example = other[0]
        logger.warning(
            "%d listed videos are in two folders, none a replacement: the first by path is taken, e.g. %s over %s",
            len(other), example["kept"], example["skipped"][0],
        )  # fmt: skip


def build_kinetics400(root: str | os.PathLike, strict: bool = False):
    """Kinetics-400 train and validation from the CSV annotations. Returns (DatasetDict, BuildReport)."""
    root = Path(root)
    notes = _first_dir(root, ("annotations", "kinetics400"))
    on_disk = _index_videos(root)
    tables = {}
    for name, file in (("train", "train.csv"), ("validation", "val.csv")):
        path = _need(notes / file, file)
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            needed = {"label", "youtube_id", "time_start", "time_end"}
            if not needed <= set(reader.fieldnames or ()):
                raise ValueError(f"{path}: expected columns {sorted(needed)}, got {reader.fieldnames}")
            tables[name] = (path, list(reader))
    names = sorted({row["label"] for row in tables["train"][1]})
    index = {n: i for i, n in enumerate(names)}
    rows, report = {}, BuildReport()
    for split, (path, table) in tables.items():
        rows[split], report.missing[split] = [], []
        for line_no, row in enumerate(table, 2):
            if row["label"] not in index:
                raise ValueError(f"{path}:{line_no}: label {row['label']!r} is not a training class")
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
            if stem not in on_disk:
                report.missing[split].append(stem)
                continue
            video = _pick_copy(stem, on_disk[stem], root, report)
            rows[split].append({"video": str(video.resolve()), "video_id": stem, "label": index[row["label"]]})
    _log_duplicates(report)
    return _finish(rows, names, False, report, strict, f"{root} or any folder under it"), report


def build_charades(root: str | os.PathLike, strict: bool = False):
    """Charades (multi-label: the classes of all actions of a video). Returns (DatasetDict, BuildReport)."""
    root = Path(root)
    notes = _first_dir(root, ("Charades",))
    videos, searched = _videos_dir(root, ("Charades_v1_480", "Charades_v1", "videos"))
    class_file = _need(notes / "Charades_v1_classes.txt", "Charades_v1_classes.txt")
    codes, names = {}, []
    for line_no, line in enumerate(class_file.read_text().splitlines(), 1):
        if line.strip():
            code, _, name = line.strip().partition(" ")
            if not re.fullmatch(r"c\d{3}", code) or not name:
                raise ValueError(f"{class_file}:{line_no}: expected 'cNNN <class name>', got {line!r}")
            codes[code] = len(names)
            names.append(name.strip())
    rows, report = {}, BuildReport()
    for split, file in (("train", "Charades_v1_train.csv"), ("test", "Charades_v1_test.csv")):
        path = _need(notes / file, file)
        rows[split], report.missing[split] = [], []
        with open(path, newline="") as f:
            for line_no, row in enumerate(csv.DictReader(f), 2):
                labels = set()
                for action in filter(None, (row.get("actions") or "").split(";")):
                    code = action.split()[0]
                    if code not in codes:
                        raise ValueError(f"{path}:{line_no}: action class {code!r} is not in {class_file}")
                    labels.add(codes[code])
                video = videos / f"{row['id']}.mp4"
                if not video.is_file():
                    report.missing[split].append(str(video))
                    continue
                rows[split].append({"video": str(video.resolve()), "video_id": row["id"], "labels": sorted(labels)})
    return _finish(rows, names, True, report, strict, searched), report


BUILDERS = {
    "ucf101": build_ucf101,
    "hmdb51": build_hmdb51,
    "kinetics400": build_kinetics400,
    "charades": build_charades,
}


# name, homepage (also the card's licence link: the videos stay under their authors' terms), citation
SOURCES = {
    "ucf101": (
        "UCF-101",
        "https://www.crcv.ucf.edu/data/UCF101.php",
        "Soomro, Zamir and Shah. UCF101: A Dataset of 101 Human Actions Classes From Videos in The Wild. "
        "CRCV-TR-12-01, 2012.",
    ),
    "hmdb51": (
        "HMDB-51",
        "https://serre-lab.clps.brown.edu/resource/hmdb-a-large-human-motion-database/",
        "Kuehne, Jhuang, Garrote, Poggio and Serre. HMDB: A Large Video Database for Human Motion Recognition. "
        "ICCV 2011.",
    ),
    "kinetics400": (
        "Kinetics-400",
        "https://github.com/cvdfoundation/kinetics-dataset",
        "Kay et al. The Kinetics Human Action Video Dataset. arXiv:1705.06950, 2017.",
    ),
    "charades": (
        "Charades",
        "https://prior.allenai.org/projects/charades",
        "Sigurdsson, Varol, Wang, Farhadi, Laptev and Gupta. Hollywood in Homes: Crowdsourcing Data Collection for "
        "Activity Understanding. ECCV 2016.",
    ),
}
CARD_TEMPLATE = template_path(VIDEO_DATASET_CARD)


def dataset_card(builder: str, dataset, report: BuildReport, output: str, split: int | None = None):
    """
    The card of a built index (a `huggingface_hub.DatasetCard` from `hub_cards/video_dataset_card.md`): the splits and
    which one is for evaluation, the class order (`CONVENTIONS`), the videos missing and those found twice.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from .datasets import dataset_labels

    name, homepage, citation = SOURCES[builder]
    first = dataset[next(iter(dataset))]
    classes, multi_label = dataset_labels(first)
    pretty_name = f"{name} (video index for SFAR{f', split {split}' if split else ''})"
    data = DatasetCardData(
        pretty_name=pretty_name,
        license="other",
        license_name=f"{name.lower()}-terms",
        license_link=homepage,
        task_categories=["video-classification"],
        tags=["sfar", "action-recognition", builder] + (["multi-label"] if multi_label else []),
    )
    splits = [{"name": s, "kept": report.kept.get(s, len(dataset[s])), "missing": len(report.missing.get(s, []))}
              for s in dataset]  # fmt: skip
    return DatasetCard.from_template(
        data,
        template_path=str(CARD_TEMPLATE),
        pretty_name=pretty_name,
        source_name=name,
        homepage=homepage,
        citation=citation,
        builder=builder,
        split=split,
        multi_label=multi_label,
        num_classes=len(classes),
        splits=splits,
        any_missing=any(row["missing"] for row in splits),
        evaluation_split=evaluation_split(dataset),
        class_order=CONVENTIONS[builder]["class_order"],
        duplicates=len(report.duplicates),
        replaced=sum(d["replacement"] for d in report.duplicates),
        duplicate_example=report.duplicates[0] if report.duplicates else None,
        output=output,
    )


@dataclass
class BuildDatasetArguments:
    """The command line of `datasets_scripts/build_dataset.py` after the benchmark's name."""

    root: str = field(metadata={"help": "The dataset's top folder, in its official layout."})
    output: str = field(metadata={"help": "Folder the index is saved to (save_to_disk), with its card."})
    split: int = field(
        default=1, metadata={"help": "UCF-101 / HMDB-51: the official split (1, 2 or 3).", "choices": list(SPLITS)}
    )
    strict: bool = field(default=False, metadata={"help": "Stop on a listed video missing from disk."})


def build_benchmark(benchmark: str, args: BuildDatasetArguments) -> BuildReport:
    """
    Build the index of `benchmark` (a key of `BUILDERS`) from `args.root`, save it to `args.output` with its card
    (`README.md`) and, per split with videos listed but absent, `missing_<split>.txt`.

    Returns:
        What the builder found (`BuildReport.summary()` is the line the command prints).
    """
    if benchmark not in BUILDERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {sorted(BUILDERS)}")
    builder = BUILDERS[benchmark]
    kwargs = {"split": args.split} if benchmark in ("ucf101", "hmdb51") else {}
    dataset, report = builder(args.root, strict=args.strict, **kwargs)
    dataset.save_to_disk(args.output)
    split = kwargs.get("split")
    dataset_card(benchmark, dataset, report, args.output, split).save(os.path.join(args.output, "README.md"))
    for name, missing in report.missing.items():
        if missing:
            with open(os.path.join(args.output, f"missing_{name}.txt"), "w") as f:
                f.write("\n".join(missing) + "\n")
    return report
