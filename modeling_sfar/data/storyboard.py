"""The embedded default dataset: procedurally generated storyboard videos, written as real mp4 files.

Every class is a storyboard of three atomic actions of a coloured bar on a noisy background: it moves (left, right,
up, down), turns a quarter turn, grows, shrinks or pauses. Classes come in pairs that share atomic actions and differ
only by their order or by one step (the paper's "ambiguous" case). Half of the videos give every step an equal share
of the clip; the other half give the steps random, uneven shares with idle stretches between them (the paper's
"non-uniform" case). Everything is drawn from one seed, so a seed gives the same files.

The command line is `datasets_scripts/build_storyboard.py` (`write_storyboard`); the demo recipe
(`modeling_sfar.demo.recipe`) builds it too.

ALT's entity corpus of this visual world is written by hand (`storyboard_entities`, saved by
`save_storyboard_entities` in the format of `modeling_sfar.generation.entity_corpus`), as the sub-text candidates are
(`storyboard_candidates`): no language model runs here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from modeling_sfar.data.video_io import write_frames

__all__ = [
    "STORYBOARDS",
    "ATOMIC_ACTIONS",
    "build_storyboard_dataset",
    "write_storyboard",
    "storyboard_candidates",
    "storyboard_entities",
    "save_storyboard_entities",
    "render_storyboard",
]

# What each atomic action does to the bar's state (x, y, length, thickness, angle), and how a sub-text says it.
ATOMIC_ACTIONS = {
    "right": "the bar moves to the right",
    "left": "the bar moves to the left",
    "up": "the bar moves up",
    "down": "the bar moves down",
    "turn": "the bar turns a quarter turn",
    "grow": "the bar grows bigger",
    "shrink": "the bar shrinks",
    "pause": "the bar stays still",
}

# Class name -> storyboard. Pairs share their atomic actions and differ by order or by one step.
STORYBOARDS = {
    "slide right then grow": ("right", "grow", "pause"),
    "grow then slide right": ("grow", "right", "pause"),
    "shrink then slide left": ("shrink", "left", "pause"),
    "slide left then shrink": ("left", "shrink", "pause"),
    "rise, turn and fall": ("up", "turn", "down"),
    "rise, wait and fall": ("up", "pause", "down"),
    "drop, grow and go left": ("down", "grow", "left"),
    "drop, grow and go right": ("down", "grow", "right"),
    "turn and climb": ("turn", "up", "pause"),
    "shrink and spin": ("pause", "shrink", "turn"),
}

# Vague steps that fit any class: weaker candidates that TPP should not prefer.
VAGUE_STEPS = ("the bar is on the screen", "something changes in the video", "the video goes on until the end")

MOVE, SCALE = 0.3, 1.8  # a move covers 30% of the frame side; grow / shrink scale the bar by 1.8


@dataclass
class _State:
    x: float
    y: float
    scale: float
    angle: float  # 0: horizontal, 1: vertical

    def after(self, action: str) -> _State:
        x, y, scale, angle = self.x, self.y, self.scale, self.angle
        if action == "right":
            x += MOVE
        elif action == "left":
            x -= MOVE
        elif action == "up":
            y -= MOVE
        elif action == "down":
            y += MOVE
        elif action == "grow":
            scale *= SCALE
        elif action == "shrink":
            scale /= SCALE
        elif action == "turn":
            angle = 1 - angle
        return _State(x, y, scale, angle)

    def lerp(self, other: _State, t: float) -> _State:
        return _State(*(a + (b - a) * t for a, b in zip(vars(self).values(), vars(other).values(), strict=True)))


def _timeline(num_steps: int, num_frames: int, uniform: bool, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(start, end) frame of every step. Uniform: equal shares, no idle time. Non-uniform: random shares and gaps."""
    if uniform:
        bounds = np.linspace(0, num_frames, num_steps + 1).round().astype(int)
        return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    min_step = max(2, num_frames // 10)
    idle = int(round(num_frames * rng.uniform(0.2, 0.4)))
    free = num_frames - idle - min_step * num_steps
    lengths = min_step + np.floor(rng.dirichlet(np.full(num_steps, 0.8)) * free).astype(int)
    gaps = np.floor(rng.dirichlet(np.ones(num_steps + 1)) * (num_frames - lengths.sum())).astype(int)
    spans, t = [], int(gaps[0])
    for length, gap in zip(lengths, gaps[1:], strict=True):
        spans.append((t, t + int(length)))
        t += int(length) + int(gap)
    return spans


def render_storyboard(
    actions: tuple[str, ...],
    rng: np.random.Generator,
    num_frames: int = 32,
    size: int = 40,
    uniform: bool = True,
) -> np.ndarray:
    """Frames `(num_frames, size, size, 3)` uint8 of one video of the storyboard `actions`."""
    states = [_State(0.0, 0.0, 1.0, float(rng.integers(0, 2)) if "turn" in actions else 0.0)]
    for action in actions:
        states.append(states[-1].after(action))
    # Place the whole path inside the frame, with a random offset.
    margin = 0.2
    xs, ys = [s.x for s in states], [s.y for s in states]
    ox = rng.uniform(margin - min(xs), 1 - margin - max(xs))
    oy = rng.uniform(margin - min(ys), 1 - margin - max(ys))
    base = rng.uniform(0.25, 0.32) * size / max(s.scale for s in states) ** 0.5
    background = rng.integers(0, 50, size=(size, size, 3), dtype=np.uint8)
    colour = rng.integers(140, 256, size=3).astype(np.uint8)
    spans = _timeline(len(actions), num_frames, uniform, rng)

    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    step = 0
    for i in range(num_frames):
        while step < len(spans) and i >= spans[step][1]:
            step += 1
        if step == len(spans):
            state = states[-1]
        else:
            start, end = spans[step]
            progress = min(1.0, max(0.0, (i - start + 1) / (end - start))) if i >= start else 0.0
            state = states[step].lerp(states[step + 1], progress)
        length, thickness = base * state.scale, base * state.scale * 0.4
        width = length + (thickness - length) * state.angle
        height = thickness + (length - thickness) * state.angle
        cx, cy = (ox + state.x) * size, (oy + state.y) * size
        x0, x1 = int(round(cx - width / 2)), int(round(cx + width / 2))
        y0, y1 = int(round(cy - height / 2)), int(round(cy + height / 2))
        frame = background.copy()
        frame[max(0, y0) : max(0, y1 + 1), max(0, x0) : max(0, x1 + 1)] = colour
        frames[i] = frame
    return frames


def ambiguous_classes() -> set[str]:
    """Classes with a twin: another class with the same steps in another order, or with one step changed."""
    out = set()
    for a, steps_a in STORYBOARDS.items():
        for b, steps_b in STORYBOARDS.items():
            reordered = sorted(steps_a) == sorted(steps_b)
            one_step = sum(x != y for x, y in zip(steps_a, steps_b, strict=True)) == 1
            if a != b and (reordered or one_step):
                out.add(a)
    return out


def storyboard_candidates(seed: int = 0) -> dict[str, list[dict]]:
    """
    Candidate sub-text sets per class, as a sub-text generator would give them: the storyboard's own steps, the steps
    of another class, and a vague set that fits every class. Each candidate is `{"generator", "subtexts", "prompt"}`.
    (A reordering of the own steps would not be a candidate worth offering: TPP is blind to the order of sub-texts.)
    """
    rng = np.random.default_rng(seed)
    names = list(STORYBOARDS)
    out = {}
    for name, actions in STORYBOARDS.items():
        other = names[(names.index(name) + 1 + int(rng.integers(len(names) - 1))) % len(names)]
        out[name] = [
            {"generator": "storyboard", "subtexts": [ATOMIC_ACTIONS[a] for a in actions]},
            {"generator": "another class", "subtexts": [ATOMIC_ACTIONS[a] for a in STORYBOARDS[other]]},
            {"generator": "vague", "subtexts": list(VAGUE_STEPS)},
        ]
        for candidate in out[name]:
            candidate["prompt"] = f"storyboard ({candidate['generator']})"
    return out


# ALT's corpus of this world (its section 3.1): the action-related units by kind, each with a short description, and
# the atomic actions (or None: every class) that make a unit relevant to a class. Regions of the frame are the scenes
# here: a move ends near one side.
STORYBOARD_UNITS = {
    "object": {
        "bar": ("a bright coloured rectangle, the one thing in the frame that moves, turns and changes size", None),
        "background": ("dark noisy pixels behind the bar that stay the same in every frame", None),
    },
    "scene": {
        "left of the frame": ("the left-hand part of the picture, where the bar ends after moving left", ("left",)),
        "right of the frame": ("the right-hand part of the picture, where the bar ends after moving right", ("right",)),
        "top of the frame": ("the upper part of the picture, where the bar ends after moving up", ("up",)),
        "bottom of the frame": ("the lower part of the picture, where the bar ends after moving down", ("down",)),
    },
    "motion": {
        "moving right": ("sliding sideways towards the right edge of the frame", ("right",)),
        "moving left": ("sliding sideways towards the left edge of the frame", ("left",)),
        "moving up": ("rising straight towards the top edge of the frame", ("up",)),
        "moving down": ("sinking straight towards the bottom edge of the frame", ("down",)),
        "turning": ("rotating by a quarter turn, from lying flat to standing upright or back", ("turn",)),
        "growing": ("becoming longer and thicker at the same place", ("grow",)),
        "shrinking": ("becoming shorter and thinner at the same place", ("shrink",)),
        "staying still": ("keeping the same place, size and angle for a while", ("pause",)),
    },
}
# The content words of the class names, which the corpus generator adds as units of kind "label" (the set is checked
# against its stop-word removal by the tests).
STORYBOARD_LABEL_WORDS = {
    "climb": "to go upwards, rising step by step",
    "drop": "to go down suddenly, falling from a higher place",
    "fall": "to come down from a higher place to a lower one",
    "go": "to move from one place to another",
    "grow": "to become larger in size",
    "left": "on or towards the left-hand side, the opposite of right",
    "right": "on or towards the right-hand side, the opposite of left",
    "rise": "to move upwards to a higher position",
    "shrink": "to become smaller in size",
    "slide": "to move smoothly along, keeping the same orientation",
    "spin": "to rotate around its own centre",
    "turn": "to change orientation by rotating",
    "wait": "to stay in the same place without doing anything for a time",
}
# The default body parts of the corpus generator (`modeling_sfar.generation.entity_prompts.DEFAULT_BODY_PARTS`,
# checked by the tests), added to every corpus whether its actions show a body or not: here none does.
STORYBOARD_BODY_PARTS = {
    "head": "the top part of the body, holding the face and the brain",
    "face": "the front of the head, with the eyes, nose and mouth",
    "eyes": "the two organs of sight in the face",
    "mouth": "the opening in the face used to eat and speak",
    "neck": "the part of the body joining the head to the shoulders",
    "shoulders": "the joints where the arms meet the upper body",
    "arms": "the two upper limbs, from the shoulders to the hands",
    "elbows": "the joints in the middle of the arms",
    "hands": "the ends of the arms, used to hold and grasp things",
    "fingers": "the five thin parts at the end of each hand",
    "torso": "the trunk of the body, without the head, arms and legs",
    "hips": "the parts of the body where the legs join the trunk",
    "legs": "the two lower limbs, used to stand and walk",
    "knees": "the joints in the middle of the legs",
    "feet": "the ends of the legs, which a person stands on",
}
STORYBOARD_ENTITY_SOURCE = "written by hand"  # the `prompt` of every description: no model wrote them


def storyboard_entities() -> list[dict]:
    """
    ALT's entity corpus of the storyboard world, as rows of the `entities` configuration that the corpus generator
    writes (`modeling_sfar.data.entities`): `unit`, `description`, `text` ("unit: description"), `kinds`, `labels`
    (the classes whose storyboard the unit takes part in), `default` (a default body part), `generator`, `prompt`,
    `lesk`, `similarity` (0: no sense was selected among candidates), sorted by unit as the generator sorts them.

    Objects, regions of the frame (kind "scene") and primitive motions come from the storyboards; the content words of
    the class names are units of kind "label"; the default body parts are in the corpus although no class shows a
    body, as they are in every generated corpus.
    """
    from .entities import entity_text

    names = list(STORYBOARDS)
    units: dict[str, dict] = {}

    def add(unit: str, description: str, kind: str, labels: list[str], default: bool = False) -> None:
        if unit in units:  # a unit named under two kinds would need one description: keep the tables apart
            raise ValueError(f"storyboard unit {unit!r} is listed twice")
        units[unit] = {"description": description, "kinds": [kind], "labels": labels, "default": default}

    for kind, table in STORYBOARD_UNITS.items():
        for unit, (description, actions) in table.items():
            labels = [n for n in names if actions is None or set(actions) & set(STORYBOARDS[n])]
            add(unit, description, kind, labels)
    for word, description in STORYBOARD_LABEL_WORDS.items():
        add(word, description, "label", [n for n in names if word in n.replace(",", " ").split()])
    for part, description in STORYBOARD_BODY_PARTS.items():
        add(part, description, "body part", [], default=True)
    return [
        {
            "unit": unit,
            "description": info["description"],
            "text": entity_text(unit, info["description"]),
            "kinds": info["kinds"],
            "labels": info["labels"],
            "default": info["default"],
            "generator": "storyboard",
            "prompt": STORYBOARD_ENTITY_SOURCE,
            "lesk": 0,
            "similarity": 0.0,
        }
        for unit, info in sorted(units.items())
    ]


def save_storyboard_entities(folder: str | os.PathLike):
    """
    Write the storyboard's entity corpus (`storyboard_entities`) to `folder` with the library's entity dataset writer
    (`save_entity_dataset`): the `entities`, `descriptions` (the one hand-written description of each unit, selected)
    and `units` (per class and kind, the units of that kind, as a generator's accepted answer would list them)
    configurations and a card, so that `--entities folder` reads it as it reads a generated corpus. Returns the folder.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from .entities import config_metadata, save_entity_dataset

    entities = storyboard_entities()
    descriptions = [
        {
            "unit": row["unit"],
            "description": row["description"],
            "generator": row["generator"],
            "prompt": row["prompt"],
            "lesk": 0,
            "similarity": 0.0,
            "selected": True,
            "answer": row["description"],
        }
        for row in entities
    ]
    units = []
    for name in STORYBOARDS:
        for kind in STORYBOARD_UNITS:
            listed = [row["unit"] for row in entities if kind in row["kinds"] and name in row["labels"]]
            if listed:  # a class with no unit of a kind (no move: no region) has no answer for it
                units.append({"label": name, "class_name": name, "kind": kind, "units": listed,
                              "generator": "storyboard", "answer": ", ".join(listed)})  # fmt: skip
    data = DatasetCardData(configs=config_metadata(), tags=["alt", "entity-corpus", "synthetic"])
    card = DatasetCard(
        f"---\n{data.to_yaml()}\n---\n\n# Entity corpus of the storyboard videos\n\n"
        f"{len(entities)} entities of the embedded storyboard benchmark (`modeling_sfar.data.storyboard`), written "
        "by hand as its sub-text candidates are: objects, regions of the frame, primitive motions, the words of the "
        "class names and the default body parts.\n"
    )
    return save_entity_dataset(folder, entities, descriptions, units, card=card)


def build_storyboard_dataset(
    output_dir: str | os.PathLike,
    train_per_class: int = 30,
    test_per_class: int = 10,
    num_frames: int = 32,
    size: int = 40,
    seed: int = 0,
):
    """
    Write the videos under `output_dir/videos/<split>/` and return a `DatasetDict` (train, test) with columns
    `video` (path), `label` (`ClassLabel` of the class names), `timing` ("uniform" / "non-uniform") and `ambiguous`.
    The dataset is also saved with `save_to_disk` to `output_dir/dataset`.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from tqdm.auto import tqdm

    names = list(STORYBOARDS)
    ambiguous = ambiguous_classes()
    features = Features(
        {
            "video": Value("string"),
            "label": ClassLabel(names=names),
            "timing": Value("string"),
            "ambiguous": Value("bool"),
        }
    )
    rng = np.random.default_rng(seed)
    splits = {}
    total = len(names) * (train_per_class + test_per_class)
    progress = tqdm(total=total, desc="storyboard videos", unit="video")
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        folder = os.path.join(output_dir, "videos", split)
        os.makedirs(folder, exist_ok=True)
        rows = {"video": [], "label": [], "timing": [], "ambiguous": []}
        for label, name in enumerate(names):
            for i in range(per_class):
                uniform = (label + i) % 2 == 0  # half of every split, even with one video per class
                frames = render_storyboard(STORYBOARDS[name], rng, num_frames, size, uniform=uniform)
                path = os.path.abspath(os.path.join(folder, f"{label:02d}_{i:03d}.mp4"))
                write_frames(path, frames)
                rows["video"].append(path)
                rows["label"].append(label)
                rows["timing"].append("uniform" if uniform else "non-uniform")
                rows["ambiguous"].append(name in ambiguous)
                progress.update()
        splits[split] = Dataset.from_dict(rows, features=features)
    progress.close()
    dataset = DatasetDict(splits)
    dataset.save_to_disk(os.path.join(output_dir, "dataset"))
    return dataset


def write_storyboard(output_dir: str | os.PathLike, train_per_class: int = 30, test_per_class: int = 10, seed: int = 0):
    """
    The storyboard dataset (`build_storyboard_dataset`) and its sub-text candidates (`storyboard_candidates`, as
    `candidates.json`) in `output_dir`: what `datasets_scripts/build_storyboard.py` writes. Returns the `DatasetDict`.
    """
    dataset = build_storyboard_dataset(output_dir, train_per_class, test_per_class, seed=seed)
    with open(os.path.join(output_dir, "candidates.json"), "w") as f:
        json.dump(storyboard_candidates(seed), f, indent=1)
    return dataset
