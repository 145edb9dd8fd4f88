"""Videos a run cannot use: what the reader raises for them, the log every process appends them to, and the check
that loads every video of a split before a run, as the run will load it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["BadVideoError", "BadVideoLog", "video_errors", "bad_video_reason", "check_videos"]


class BadVideoError(ValueError):
    """A video that a run met and could not use, with `--strict` (or with no usable replacement)."""


def video_errors() -> tuple[type[BaseException], ...]:
    """
    What the video reader raises for a file it cannot deliver frames from: `VideoDecodingError` (a file that is not a
    video, or whose frames cannot be decoded) and `OSError` (a missing, unreadable or folder path). Any other error,
    a plain `ValueError` for a bad argument among them, is a bug or a wrong setting, not a bad video: it stops the run.
    """
    from ..remote_code.video_decoding import VideoDecodingError

    return (VideoDecodingError, OSError)


def bad_video_reason(video: str, error: BaseException) -> str:
    """Why `video` could not be used: the state of the file when that explains it, else the reader's error."""
    if not os.path.exists(video):
        return "file not found"
    if os.path.isdir(video):
        return "a folder, not a file"
    if os.path.getsize(video) == 0:
        return "empty file"
    return f"cannot be decoded ({error.__class__.__name__}: {error})"


class BadVideoLog:
    """
    The videos a run met and could not use, as JSON lines in one file (`{"scope", "index", "video", "reason"}`).

    A file, not an attribute, because the videos are read in DataLoader workers and in every process of a
    data-parallel run: each appends its own lines, and the main process reads them all at the end. A resumed run
    appends to the killed run's file, so a video counts once however often it was met.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def reset(self) -> None:
        """Forget an earlier run's records (this file is the log's own; nothing else is removed)."""
        if os.path.isfile(self.path):
            os.remove(self.path)

    def add(self, scope: str, index: int, video: str, reason: str) -> None:
        line = json.dumps({"scope": scope, "index": int(index), "video": video, "reason": reason}) + "\n"
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        # One write of one short line in append mode: lines of concurrent writers do not interleave.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def read(self, scope: str) -> dict[int, tuple[str, str]]:
        """Row index -> (video, first reason) of every video recorded under `scope`."""
        out: dict[int, tuple[str, str]] = {}
        if not os.path.isfile(self.path):
            return out
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if record.get("scope") == scope:
                    out.setdefault(int(record["index"]), (record["video"], record["reason"]))
        return out


class _CheckRows(torch.utils.data.Dataset):
    """Positions of a split -> '' if the row's video loads as the run will load it, else the reason."""

    def __init__(self, videos: list[str], indices: list[int], positions: list[int], load: Callable):
        self.videos, self.indices, self.positions, self.load = videos, indices, positions, load

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, str]:
        position = self.positions[i]
        video = self.videos[position]
        try:
            self.load(video, self.indices[position])
        except video_errors() as error:
            return position, bad_video_reason(video, error)
        return position, ""


def _first(batch: list) -> Any:
    """The collate function of batches of one: the item itself."""
    return batch[0]


def check_videos(
    dataset, split: str, load: Callable[[str, int], Any], strict: bool = False, num_workers: int = 0
) -> tuple[Any, list[tuple[str, str]]]:
    """
    Load every video of `dataset` now, with `load(video, row_index)` (the run's own reader, sampling and
    transform: `VideoTransform.load`), and drop those that fail, logging each path and reason and the count. With
    `strict`, raise `BadVideoError` listing them instead.

    The files are read as they are at this call: nothing is cached between runs. In a data-parallel run every
    process checks its share of the rows and all get the whole list. `num_workers` DataLoader workers read in
    parallel. The row index is the `_index` column where there is one (see `with_row_index`), else the position.

    Returns:
        The usable rows, and the (video, reason) pairs of the dropped ones.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    videos = list(dataset["video"])
    indices = list(dataset["_index"]) if "_index" in dataset.column_names else list(range(len(videos)))
    state = PartialState()
    shard = list(range(state.process_index, len(videos), state.num_processes))
    loader = torch.utils.data.DataLoader(
        _CheckRows(videos, indices, shard, load), batch_size=1, num_workers=num_workers, collate_fn=_first
    )
    found = [(position, reason) for position, reason in loader if reason]
    if state.num_processes > 1:
        found = gather_object(found)
    bad = [(videos[position], reason) for position, reason in sorted(found)]
    if not bad:
        return dataset, []
    listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
    if strict:
        raise BadVideoError(f"{len(bad)} of {len(videos)} videos of split {split!r} cannot be used:\n{listing}")
    for path, reason in bad:
        logger.warning("skipping %s: %s", path, reason)
    logger.warning("skipped %d of %d videos of split %r", len(bad), len(videos), split)
    dropped = {position for position, _ in found}
    return dataset.select([i for i in range(len(videos)) if i not in dropped]), bad


